"""``t2i eval``: every metric from the command line, with provenance beside each number.

Inputs name where images come from:
    DIR                       a folder of images (recursive)
    FILE.npz                  precomputed statistics (mu, sigma), FID only
    dataset:NAME:SPLIT[:N]    a registered data set (birds, scenes, or cub/coco/... with --data-root)
Metrics that need prompts (clipscore, faithfulness, rprecision) read a folder in the
generic folder format (images + metadata.jsonl with "image", "caption(s)" and, on the
synthetic worlds, "caption_attributes"), or dataset:NAME:SPLIT (real images with their
own first caption: the ceiling a generator can reach).

Runs under ``accelerate launch``: each process extracts a shard, statistics are merged.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from torch.utils.data import Dataset

from ..dist import init_distributed, is_main_process
from ..errors import MetricInputError, UserError

METRICS = ["fid", "kid", "is", "rprecision", "clipscore", "retrieval", "faithfulness", "stats", "all"]


# ----------------------------------------------------------------------------- arguments


def _common(p: argparse.ArgumentParser, extractor: Optional[str] = "inception") -> None:
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object (numbers + provenance)")
    g.add_argument("--out", type=Path, help="also write the JSON result to this file")
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice (subsets, splits, folds)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if extractor is None:
        return
    g = p.add_argument_group("features")
    g.add_argument("--extractor", default=extractor, choices=["inception", "synth", "clip"],
                   help=f"feature network (default {extractor}); synth = the evaluator trained on the synthetic worlds")
    g.add_argument("--world", default="birds", choices=["birds", "scenes"], help="synth evaluator world (default birds)")
    g.add_argument("--weights", help="weights file for the extractor (Inception .pth from torch-fidelity/pytorch-fid; "
                   "synth checkpoint folder; CLIP checkpoint)")
    g.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name for --extractor clip")
    g.add_argument("--resize-mode", default="bilinear", choices=["bilinear", "bicubic-antialias"],
                   help="how Inception inputs are resized to 299 (recorded with the result)")
    g.add_argument("--batch-size", type=int, default=50)
    g.add_argument("--size", type=int, default=64, help="render size for dataset:birds / dataset:scenes inputs")
    g.add_argument("--data-root", help="root folder for dataset:cub / coco / karpathy / folder inputs")
    g.add_argument("--allow-mixed-sizes", action="store_true", help="accept folders whose images differ in size")


def add_parser(subparsers: Any, name: str, help_text: str) -> None:
    group = subparsers.add_parser(name, help=help_text, description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(_group_parser=group)
    sub = group.add_subparsers(dest="metric", metavar="METRIC")

    p = sub.add_parser("fid", help="Frechet distance between two image sets or statistics files")
    _pair(p)
    _common(p)
    p.set_defaults(func=_wrap(_fid))

    p = sub.add_parser("kid", help="kernel inception distance (needs images, not statistics)")
    _pair(p, kid=True)
    _common(p)
    p.set_defaults(func=_wrap(_kid))

    p = sub.add_parser("is", help="Inception Score (synth: species/category logits; inception: needs the .pth weights)")
    p.add_argument("--images", required=True)
    p.add_argument("--splits", type=int, default=10)
    _common(p, extractor="synth")
    p.set_defaults(func=_wrap(_is))

    p = sub.add_parser("rprecision", help="R-precision with DAMSM-style encoders (true caption vs 99 mismatched)")
    p.add_argument("--images", required=True, help="folder with prompts (metadata.jsonl) or dataset:NAME:SPLIT")
    p.add_argument("--text-encoder", required=True, help="folder written by a text encoder's save_pretrained")
    p.add_argument("--image-encoder", required=True, help="folder written by an image encoder's save_pretrained")
    p.add_argument("--exclude-same-class", action="store_true", help="draw mismatched captions from other classes only")
    p.add_argument("--folds", type=int, default=10)
    _common(p, extractor=None)
    _data_opts(p)
    p.set_defaults(func=_wrap(_rprecision))

    p = sub.add_parser("clipscore", help="CLIPScore between images and their prompts")
    p.add_argument("--images", required=True, help="folder with prompts (metadata.jsonl) or dataset:NAME:SPLIT")
    p.add_argument("--convention", default="w2.5", choices=["raw", "x100", "w2.5"],
                   help="raw cosine, 100*cos, or 2.5*max(cos, 0) (Hessel et al.); printed with the result")
    _common(p, extractor="clip")
    p.set_defaults(func=_wrap(_clipscore))

    p = sub.add_parser("retrieval", help="image-text retrieval recall (R@1/5/10, medr, meanr, rSum)")
    p.add_argument("--embeddings", type=Path, help=".npz with image_emb, text_emb, caption_to_image")
    p.add_argument("--sims", type=Path, help=".npy similarity matrix, images x captions")
    p.add_argument("--caption-to-image", type=Path, help=".npy image index of each caption (with --sims)")
    p.add_argument("--protocol", default="full", choices=["full", "coco"], help="coco: 1K (mean of 5 folds) and 5K")
    p.add_argument("--tie", default="pessimistic", choices=["pessimistic", "optimistic"],
                   help="a negative scoring exactly like the positive ranks above it (pessimistic) or below")
    p.add_argument("--normalize", action="store_true", help="L2-normalise embeddings first (cosine similarity)")
    _common(p, extractor=None)
    p.set_defaults(func=_wrap(_retrieval))

    p = sub.add_parser("faithfulness", help="does each image show what its prompt names? (synthetic worlds)")
    p.add_argument("--images", required=True, help="folder with prompts + caption_attributes, or dataset:birds|scenes:SPLIT")
    _common(p, extractor="synth")
    p.set_defaults(func=_wrap(_faithfulness))

    p = sub.add_parser("stats", help="write reference statistics (.npz with mu, sigma) for a folder or data set")
    p.add_argument("--input", required=True, help="DIR or dataset:NAME:SPLIT[:N]")
    p.add_argument("--output", type=Path, required=True, help="the .npz to write")
    _common(p)
    p.set_defaults(func=_wrap(_stats))

    p = sub.add_parser("all", help="FID, KID and IS (+ faithfulness with --extractor synth when the images carry prompts)")
    _pair(p, kid=True)
    p.add_argument("--splits", type=int, default=10)
    _common(p, extractor="synth")
    p.set_defaults(func=_wrap(_all))


def _pair(p: argparse.ArgumentParser, kid: bool = False) -> None:
    p.add_argument("--real", required=True, help="reference: DIR, FILE.npz (FID only) or dataset:NAME:SPLIT[:N]")
    p.add_argument("--fake", required=True, help="generated: DIR, FILE.npz (FID only) or dataset:NAME:SPLIT[:N]")
    if kid:
        p.add_argument("--subsets", type=int, default=100, help="KID: random subsets (default 100)")
        p.add_argument("--subset-size", type=int, default=1000, help="KID: images per subset, capped at the set size")


def _data_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=64, help="render size for dataset:birds / dataset:scenes")
    p.add_argument("--data-root", help="root folder for dataset:cub / coco / karpathy / folder inputs")
    p.add_argument("--batch-size", type=int, default=50)


# ----------------------------------------------------------------------------- inputs


def _parse_dataset(spec: str) -> Tuple[str, str, Optional[int]]:
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not parts[1] or not parts[2]:
        raise UserError(f"{spec!r}: expected dataset:NAME:SPLIT[:N], e.g. dataset:birds:test:1000")
    n = None
    if len(parts) == 4:
        try:
            n = int(parts[3])
        except ValueError:
            raise UserError(f"{spec!r}: N must be an integer") from None
    return parts[1], parts[2], n


def load_split(spec: str, args: argparse.Namespace) -> Any:
    """A LoadedSplit from ``dataset:NAME:SPLIT[:N]`` or a folder in the generic folder format."""
    from ..data.records import BadInputPolicy
    from ..registry import DATASETS

    if spec.startswith("dataset:"):
        name, split, n = _parse_dataset(spec)
        if name in ("birds", "scenes"):
            kw: Dict[str, Any] = {"size": args.size}
            if n is not None:
                kw.update(n=n, n_train=n, n_test=n)
            loaded = DATASETS.build(name, split=split, **kw)
        else:
            if not getattr(args, "data_root", None):
                raise UserError(f"{spec}: pass --data-root for data set {name!r}")
            loaded = DATASETS.build(name, root=args.data_root, split=split, policy=BadInputPolicy())
            if n is not None:
                loaded.samples = loaded.samples[:n]
        return loaded
    root = Path(spec)
    if not root.is_dir():
        raise UserError(f"{spec}: not a folder (nor dataset:NAME:SPLIT)")
    from ..data.folder import load_folder

    return load_folder(root, "test", BadInputPolicy(on_error="error"))


class SplitImages(Dataset):
    """(index, uint8 CHW) over a LoadedSplit, in the split's order (so prompts stay aligned)."""

    def __init__(self, split: Any) -> None:
        self.samples = split.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Tuple[int, Any]:
        import torch

        img = self.samples[i].load_image()
        return i, torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def _image_source(spec: str, args: argparse.Namespace) -> Any:
    """Images to extract from ``spec``: the files of a folder, or a data set's images."""
    from .engine import list_images

    if spec.startswith("dataset:"):
        return SplitImages(load_split(spec, args))
    return list_images(spec, allow_mixed_sizes=args.allow_mixed_sizes)


def _extractor(args: argparse.Namespace) -> Any:
    from ..registry import FEATURE_EXTRACTORS

    if args.extractor == "inception":
        return FEATURE_EXTRACTORS.build("inception", weights_path=args.weights, resize_mode=args.resize_mode)
    if args.extractor == "synth":
        return FEATURE_EXTRACTORS.build("synth", world=args.world, path=args.weights)
    return FEATURE_EXTRACTORS.build("clip", model_name=args.clip_model, pretrained=args.weights)


def _run(extractor: Any, spec: str, args: argparse.Namespace, source: Any = None, **keep: bool) -> Any:
    """Extract features of ``spec`` (or of an already-built ``source`` of its images)."""
    from .engine import extract

    return extract(extractor, _image_source(spec, args) if source is None else source, batch_size=args.batch_size,
                   progress=not args.no_progress, desc=f"features {spec}", **keep)


def _stats_of(extractor: Any, spec: str, args: argparse.Namespace) -> Any:
    from .fid import FeatureStats

    if spec.endswith(".npz"):
        st = FeatureStats.load_npz(spec)
        ext = st.meta.get("extractor")
        if ext is not None and ext != extractor.provenance.extractor:
            raise MetricInputError(f"{spec}: statistics from extractor {ext!r}, but this run uses "
                                   f"{extractor.provenance.extractor!r}; FIDs across extractors are not comparable")
        if st.dim != extractor.feature_dim:
            raise MetricInputError(f"{spec}: {st.dim}-d statistics, but {extractor.provenance.extractor} gives "
                                   f"{extractor.feature_dim}-d features")
        return st
    st = _run(extractor, spec, args).stats
    st.meta.update(_provenance(extractor, args))
    return st


def _provenance(extractor: Any, args: argparse.Namespace) -> Dict[str, Any]:
    from .. import __version__
    from ..dist import rank_and_world_size

    p = extractor.provenance
    return {"processes": rank_and_world_size()[1], "extractor": p.extractor, "weights": p.weights, "weights_sha256": p.weights_sha256,
            "resize_mode": p.resize_mode, "input_size": p.input_size, "feature_dim": p.feature_dim,
            "seed": args.seed, "version": __version__}


# ----------------------------------------------------------------------------- metrics


def _fid(args: argparse.Namespace) -> Dict[str, Any]:
    from .fid import fid_from_stats

    ext = _extractor(args)
    s1, s2 = _stats_of(ext, args.real, args), _stats_of(ext, args.fake, args)
    return {"metric": "fid", "fid": fid_from_stats(s1, s2, check_meta=False), "n_real": int(s1.n), "n_fake": int(s2.n),
            "real": args.real, "fake": args.fake, **_provenance(ext, args)}


def _features_for_kid(ext: Any, spec: str, args: argparse.Namespace) -> Any:
    if spec.endswith(".npz"):
        raise MetricInputError(f"{spec}: KID needs the features of every image, not mean/covariance statistics")
    return _run(ext, spec, args, keep_features=True)


def _kid(args: argparse.Namespace) -> Dict[str, Any]:
    from .kid import kernel_inception_distance

    ext = _extractor(args)
    r1, r2 = _features_for_kid(ext, args.real, args), _features_for_kid(ext, args.fake, args)
    res = kernel_inception_distance(r1.features, r2.features, subsets=args.subsets, subset_size=args.subset_size, seed=args.seed)
    return {"metric": "kid", **res, "real": args.real, "fake": args.fake, **_provenance(ext, args)}


def _is_from(ext: Any, r: Any, args: argparse.Namespace) -> Dict[str, Any]:
    """IS from the class logits of an extraction."""
    from .inception_score import inception_score

    if r.logits is None:
        raise MetricInputError(f"extractor {ext.provenance.extractor} ({ext.provenance.weights}) gives no class logits: "
                               "use --extractor synth, or --extractor inception --weights <torch-fidelity .pth>")
    if ext.extra.get("multi_label"):
        # scenes: per-category sigmoids, renormalised into a distribution over categories
        from scipy.special import expit

        p = expit(r.logits.astype(np.float64))
        return inception_score(p / p.sum(1, keepdims=True), splits=args.splits, seed=args.seed)
    return inception_score(r.logits, splits=args.splits, seed=args.seed, from_logits=True)


def _is(args: argparse.Namespace) -> Dict[str, Any]:
    ext = _extractor(args)
    r = _run(ext, args.images, args, keep_logits=True)
    return {"metric": "is", **_is_from(ext, r, args), "images": args.images, **_provenance(ext, args)}


def _prompts(split: Any) -> List[str]:
    """The prompt of each image: its first caption."""
    return [s.captions[0] for s in split.samples]


def _mentions(split: Any, spec: str) -> List[Any]:
    """What each image's prompt names (``caption_attributes`` of its first caption)."""
    atts = [(s.caption_attributes or [None])[0] for s in split.samples]
    missing = [s.key for s, a in zip(split.samples, atts) if a is None]
    if missing:
        raise MetricInputError(f"{spec}: {len(missing)} image(s) have no caption_attributes (e.g. {missing[0]}); "
                               "faithfulness needs prompts from a synthetic world")
    return atts


def _need_synth(ext: Any) -> None:
    if not ext.provenance.extractor.startswith("synth"):
        raise UserError("faithfulness needs --extractor synth (its attribute heads judge the prompts)")


def _faithfulness(args: argparse.Namespace) -> Dict[str, Any]:
    from .faithfulness import faithfulness

    ext = _extractor(args)
    _need_synth(ext)
    split = load_split(args.images, args)
    mentions = _mentions(split, args.images)
    r = _run(ext, args.images, args, source=SplitImages(split), keep_heads=True)
    return {"metric": "faithfulness", **faithfulness(r.heads, mentions, ext.extra["config"]),
            "images": args.images, **_provenance(ext, args)}


def _clipscore(args: argparse.Namespace) -> Dict[str, Any]:
    from .clipscore import clip_score

    ext = _extractor(args)
    if "encode_text" not in ext.extra:
        raise UserError("clipscore needs --extractor clip")
    split = load_split(args.images, args)
    caps = _prompts(split)
    r = _run(ext, args.images, args, source=SplitImages(split), keep_features=True)
    txt = np.concatenate([ext.extra["encode_text"](caps[a:a + 256]).numpy() for a in range(0, len(caps), 256)])
    return {"metric": "clipscore", **clip_score(r.features, txt, convention=args.convention), "images": args.images,
            **_provenance(ext, args)}


def _rprecision(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from ..encoders import load_pretrained_encoder
    from .rprecision import r_precision

    txt_enc = load_pretrained_encoder(args.text_encoder).eval()
    img_enc = load_pretrained_encoder(args.image_encoder).eval()
    split = load_split(args.images, args)
    caps = _prompts(split)
    src = SplitImages(split)
    img_l, txt_l = [], []
    with torch.no_grad():
        for a in range(0, len(src), args.batch_size):
            idx = range(a, min(a + args.batch_size, len(src)))
            x = torch.stack([src[i][1] for i in idx]).float() / 127.5 - 1.0
            img_l.append(img_enc(x).global_.float().numpy())
            txt_l.append(txt_enc.encode_text([caps[i] for i in idx]).sentence.float().numpy())
    labels = np.array([s.labels[0] if s.labels else -1 for s in split.samples])
    res = r_precision(np.concatenate(img_l), np.concatenate(txt_l), labels=labels if args.exclude_same_class else None,
                      exclude_same_class=args.exclude_same_class, caption_ids=np.unique(caps, return_inverse=True)[1],
                      folds=args.folds, seed=args.seed)
    from .. import __version__

    return {"metric": "rprecision", **res, "images": args.images, "text_encoder": args.text_encoder,
            "image_encoder": args.image_encoder, "seed": args.seed, "version": __version__}


def _retrieval(args: argparse.Namespace) -> Dict[str, Any]:
    from .retrieval import EmbeddingSimilarity, coco_retrieval, retrieval_recall

    if args.embeddings is not None:
        if not args.embeddings.is_file():
            raise UserError(f"{args.embeddings}: no such file")
        z = np.load(args.embeddings)
        miss = [k for k in ("image_emb", "text_emb", "caption_to_image") if k not in z.files]
        if miss:
            raise MetricInputError(f"{args.embeddings}: missing key(s) {', '.join(miss)} (has {', '.join(z.files)})")
        sims: Any = EmbeddingSimilarity(z["image_emb"], z["text_emb"], normalize=args.normalize)
        c2i = z["caption_to_image"]
    elif args.sims is not None and args.caption_to_image is not None:
        for f in (args.sims, args.caption_to_image):
            if not f.is_file():
                raise UserError(f"{f}: no such file")
        sims, c2i = np.load(args.sims, mmap_mode="r"), np.load(args.caption_to_image)
    else:
        raise UserError("give --embeddings FILE.npz, or --sims FILE.npy with --caption-to-image FILE.npy")
    from .. import __version__

    if args.protocol == "coco":
        res: Dict[str, Any] = coco_retrieval(sims, c2i, tie=args.tie)
    else:
        res = retrieval_recall(sims, c2i, tie=args.tie)
    return {"metric": "retrieval", "protocol": args.protocol, "tie": args.tie, **res, "version": __version__}


def _stats(args: argparse.Namespace) -> Dict[str, Any]:
    ext = _extractor(args)
    if args.input.endswith(".npz"):
        raise UserError("--input must be images (DIR or dataset:...), not statistics")
    st = _stats_of(ext, args.input, args)
    st.save_npz(args.output)
    return {"metric": "stats", "output": str(args.output), "n": int(st.n), "input": args.input, **_provenance(ext, args)}


def _all(args: argparse.Namespace) -> Dict[str, Any]:
    """FID, KID, IS and (synth) faithfulness from one extraction of each set."""
    from .faithfulness import faithfulness
    from .fid import fid_from_stats
    from .kid import kernel_inception_distance

    if args.fake.endswith(".npz"):  # before any extraction, so a wrong input costs nothing
        raise MetricInputError(f"{args.fake}: 'all' needs the generated images (KID, IS), not statistics")
    ext = _extractor(args)
    out: Dict[str, Any] = {"metric": "all", "real": args.real, "fake": args.fake}
    r1 = _features_for_kid(ext, args.real, args)
    # the generated set is read once: features (FID, KID), logits (IS), heads (faithfulness)
    split, source, mentions, why = None, None, None, None
    if ext.provenance.extractor.startswith("synth"):
        try:
            split = load_split(args.fake, args)
            source = SplitImages(split)
            mentions = _mentions(split, args.fake)
        except UserError as e:  # a plain folder of images, or prompts without ground truth
            why = str(e)
    r2 = _run(ext, args.fake, args, source=source, keep_features=True, keep_logits=True, keep_heads=mentions is not None)
    out["fid"] = fid_from_stats(r1.stats, r2.stats, check_meta=False)
    out["n_real"], out["n_fake"] = r1.n, r2.n
    out.update(kernel_inception_distance(r1.features, r2.features, subsets=args.subsets,
                                         subset_size=args.subset_size, seed=args.seed))
    try:
        out.update(_is_from(ext, r2, args))
    except MetricInputError as e:
        out["is_skipped"] = str(e)
    if mentions is not None:
        out["faithfulness"] = faithfulness(r2.heads, mentions, ext.extra["config"])
    else:
        out["faithfulness_skipped"] = why or "needs --extractor synth"
    out.update(_provenance(ext, args))
    return out


# ----------------------------------------------------------------------------- output


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _emit(result: Dict[str, Any], args: argparse.Namespace) -> None:
    if not is_main_process():
        return
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for k2, v2 in v.items():
                print(f"  {k2}: {_fmt(v2) if not isinstance(v2, dict) else json.dumps(v2, default=str)}")
        else:
            print(f"{k}: {_fmt(v)}")


def _wrap(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        init_distributed()
        _emit(fn(args), args)
        return 0

    return run


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["eval", *sys.argv[1:]]))
