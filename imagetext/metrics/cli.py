"""``t2i eval``: every metric from the command line, with provenance beside each number.

Inputs name where images come from:
    DIR                       a folder of images (recursive); with one metadata.jsonl, the images it lists
    FILE.npz                  precomputed statistics (mu, sigma), FID only
    dataset:NAME:SPLIT[:N]    a registered data set (birds, scenes, or cub/coco/karpathy/folder with --data-root)
    model:DIR                 generate-then-score (--fake, or --images of is/rprecision/faithfulness only):
                              a trained text-to-image model draws one image per prompt of --real (its
                              first caption per image) or of --prompts-from, seeded by --gen-seed
                              (default --seed), in memory; the JSON records model, n and seed
Metrics that need prompts (clipscore, faithfulness, rprecision) read a folder in the
generic folder format (images + metadata.jsonl with "image", "caption(s)" and, on the
synthetic worlds, "caption_attributes"), or dataset:NAME:SPLIT (real images with their
own first caption: the ceiling a generator can reach).

Every input is resolved and every output path checked before any extraction; items not
used (hidden files, non-images, rows the loader rejected) are named in the JSON and
counted on stderr. Images may differ in size: each is resized on its own to the
extractor's input, and the result records the sizes seen and the resize mode.
Runs under ``accelerate launch``: each process extracts a shard, statistics are merged.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..cliargs import check_output_file, int_range, positive_int, seed_int, nonneg_int, write_text_atomic
from ..dist import init_distributed, is_main_process
from ..errors import MetricInputError, UserError

METRICS = ["fid", "kid", "is", "rprecision", "clipscore", "retrieval", "faithfulness", "stats", "all"]
EXTRACTOR_HELP = {
    "inception": "inception = Inception-v3 with the TF FID weights",
    "synth": "synth = the evaluator trained on the synthetic worlds",
    "clip": "clip = an open_clip model (--clip-model, --weights)",
}


# ----------------------------------------------------------------------------- arguments


def _output(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object (numbers, inputs used/skipped, provenance)")
    g.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON result to FILE (checked before any work)")
    g.add_argument("--seed", type=seed_int, default=0, help="seed of every random choice: subsets, splits, folds (default 0)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _compute(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("compute")
    g.add_argument("--batch-size", type=positive_int, default=50, help="images per forward pass (default 50)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where networks run; auto = accelerate's device under accelerate launch, else CUDA if present (default auto)")
    g.add_argument("--workers", type=nonneg_int, default=None, metavar="N",
                   help="data-loader workers decoding images (default: 0 on CPU, up to 8 on CUDA)")


def _features(p: argparse.ArgumentParser, extractors: Sequence[str]) -> None:
    g = p.add_argument_group("features")
    if len(extractors) > 1:
        g.add_argument("--extractor", default=extractors[0], choices=list(extractors),
                       help=f"feature network (default {extractors[0]}): " + "; ".join(EXTRACTOR_HELP[e] for e in extractors))
    else:
        p.set_defaults(extractor=extractors[0])
    if "synth" in extractors:
        g.add_argument("--world", default="birds", choices=["birds", "scenes"], help="synth evaluator's world (default birds)")
    weights = {"inception": "Inception .pth from torch-fidelity/pytorch-fid", "synth": "synth evaluator folder",
               "clip": "CLIP checkpoint (without it CLIP is randomly initialised and says so)"}
    g.add_argument("--weights", metavar="PATH", help="weights for the extractor: " + "; ".join(weights[e] for e in extractors))
    if "clip" in extractors:
        g.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name for the clip extractor (default ViT-B-32)")
    if "inception" in extractors:
        g.add_argument("--resize-mode", default="bilinear", choices=["bilinear", "bicubic-antialias"],
                       help="how Inception inputs are resized to 299 (recorded with the result; default bilinear)")
    _compute(p)


def _data(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data sets (dataset:NAME:SPLIT inputs)")
    g.add_argument("--size", type=int_range(32, 256), default=64, help="render size for dataset:birds / dataset:scenes (default 64)")
    g.add_argument("--data-root", metavar="DIR", help="root folder for dataset:cub / coco / karpathy / folder inputs")


def _pair(p: argparse.ArgumentParser, npz: bool) -> None:
    kinds = "DIR, FILE.npz or dataset:NAME:SPLIT[:N]" if npz else "DIR or dataset:NAME:SPLIT[:N]"
    p.add_argument("--real", required=True, metavar="INPUT", help=f"reference images: {kinds}")
    p.add_argument("--fake", required=True, metavar="INPUT",
                   help=f"generated images: {kinds}, or model:DIR (a trained text-to-image model draws one image "
                        "per prompt of --real, or of --prompts-from)")
    _generation(p, pair=True)


def _generation(p: argparse.ArgumentParser, pair: bool) -> None:
    """Options of model:DIR inputs (generate-then-score)."""
    g = p.add_argument_group("generation (model:DIR inputs)")
    default = "default: --real's" if pair else "required with model:DIR"
    g.add_argument("--prompts-from", metavar="INPUT",
                   help=f"the prompts a model:DIR input draws, the first caption of each image of "
                        f"dataset:NAME:SPLIT[:N] or a folder with metadata.jsonl ({default})")
    g.add_argument("--gen-seed", type=seed_int, default=None, metavar="SEED",
                   help="noise seed of the generated images (default: --seed)")
    g.add_argument("--gen-batch-size", type=positive_int, default=64, metavar="N",
                   help="prompts per generator forward pass (default 64; the images do not depend on it)")


MODEL_IMAGES_HELP = " or model:DIR with --prompts-from INPUT (generate-then-score)"


def _kid_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subsets", type=positive_int, default=100, help="KID: random subsets (default 100)")
    p.add_argument("--subset-size", type=positive_int, default=None, metavar="N",
                   help="KID: images per subset (default min(1000, smaller set)); larger than a set is an error")


def add_parser(subparsers: Any, name: str, help_text: str) -> None:
    group = subparsers.add_parser(name, help=help_text, description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(_group_parser=group)
    sub = group.add_subparsers(dest="metric", metavar="METRIC")

    def cmd(name: str, help_text: str, fn: Callable[[argparse.Namespace], Dict[str, Any]]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=_wrap(fn))
        return p

    p = cmd("fid", "Frechet distance between two image sets or statistics files", _fid)
    _pair(p, npz=True)
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare statistics made differently (extractor, weights, resize mode, input size); the output records it")
    _features(p, ["inception", "synth", "clip"])
    _data(p)
    _output(p)

    p = cmd("kid", "kernel inception distance (needs images, not statistics)", _kid)
    _pair(p, npz=False)
    _kid_opts(p)
    _features(p, ["inception", "synth", "clip"])
    _data(p)
    _output(p)

    p = cmd("is", "Inception Score (synth: species/category logits; inception: needs the .pth weights)", _is)
    p.add_argument("--images", required=True, metavar="INPUT", help="DIR or dataset:NAME:SPLIT[:N]" + MODEL_IMAGES_HELP)
    _generation(p, pair=False)
    p.add_argument("--splits", type=positive_int, default=10, help="splits for mean ± std (default 10; at most the number of images)")
    _features(p, ["synth", "inception"])
    _data(p)
    _output(p)

    p = cmd("rprecision", "R-precision with DAMSM-style encoders (true caption vs 99 mismatched)", _rprecision)
    p.add_argument("--images", required=True, metavar="INPUT",
                   help="folder with prompts (metadata.jsonl) or dataset:NAME:SPLIT" + MODEL_IMAGES_HELP)
    _generation(p, pair=False)
    p.add_argument("--text-encoder", required=True, metavar="DIR", help="folder written by a text encoder's save_pretrained")
    p.add_argument("--image-encoder", required=True, metavar="DIR", help="folder written by an image encoder's save_pretrained")
    p.add_argument("--exclude-same-class", action="store_true", help="draw mismatched captions from other classes only")
    p.add_argument("--folds", type=positive_int, default=10, help="folds for mean ± std (default 10)")
    _compute(p)
    _data(p)
    _output(p)

    p = cmd("clipscore", "CLIPScore between images and their prompts", _clipscore)
    p.add_argument("--images", required=True, metavar="INPUT", help="folder with prompts (metadata.jsonl) or dataset:NAME:SPLIT")
    p.add_argument("--convention", default="w2.5", choices=["raw", "x100", "w2.5"],
                   help="raw cosine, 100*cos, or 2.5*max(cos, 0) (Hessel et al.); printed with the result (default w2.5)")
    _features(p, ["clip"])
    _data(p)
    _output(p)

    p = cmd("retrieval", "image-text retrieval recall (R@1/5/10, medr, meanr, rSum)", _retrieval)
    p.add_argument("--model", metavar="DIR", help="a trained matcher folder (or its run folder): embeds --data itself")
    p.add_argument("--data", metavar="INPUT", help="with --model: images and all their captions, "
                   "dataset:NAME:SPLIT[:N] or a folder with metadata.jsonl")
    p.add_argument("--embeddings", type=Path, metavar="FILE.npz", help=".npz with image_emb, text_emb, caption_to_image")
    p.add_argument("--sims", type=Path, metavar="FILE.npy", help=".npy similarity matrix, images x captions")
    p.add_argument("--caption-to-image", type=Path, metavar="FILE.npy", help=".npy image index of each caption (with --sims)")
    p.add_argument("--protocol", default="full", choices=["full", "coco"],
                   help="full: the whole set; coco: 1K (mean of 1000-image folds) and 5K when there are 5000 images")
    p.add_argument("--tie", default="pessimistic", choices=["pessimistic", "optimistic"],
                   help="a negative scoring exactly like the positive ranks above it (pessimistic) or below")
    p.add_argument("--normalize", action="store_true", help="L2-normalise embeddings first (cosine similarity)")
    p.add_argument("--image-size", type=int_range(16, 1024), default=None, metavar="PX",
                   help="with --model: side the images are resized to before the matcher (default: --size)")
    p.add_argument("--rerank", metavar="DIR", help="with --model: an interaction (cross-attention) model folder that "
                   "re-ranks each query's --rerank-k shortlist; the re-ranked recall is reported, the embedding-only "
                   "recall beside it under embedding_only")
    p.add_argument("--rerank-k", type=positive_int, default=20, metavar="K",
                   help="shortlist size re-ranked per query (default 20; cut to the gallery with a note)")
    p.add_argument("--rerank-image-size", type=int_range(16, 1024), default=None, metavar="PX",
                   help="side the images are resized to for the --rerank model (default: --image-size)")
    _compute(p)
    _data(p)
    _output(p)

    p = cmd("faithfulness", "does each image show what its prompt names? (synthetic worlds)", _faithfulness)
    p.add_argument("--images", required=True, metavar="INPUT",
                   help="folder with prompts + caption_attributes, or dataset:birds|scenes:SPLIT" + MODEL_IMAGES_HELP)
    _generation(p, pair=False)
    _features(p, ["synth"])
    _data(p)
    _output(p)

    p = cmd("stats", "write reference statistics (.npz with mu, sigma, n and provenance) for a folder or data set", _stats)
    p.add_argument("--input", required=True, metavar="INPUT", help="DIR or dataset:NAME:SPLIT[:N]")
    p.add_argument("--output", type=Path, required=True, metavar="FILE.npz", help="the .npz to write (checked before any work)")
    _features(p, ["inception", "synth", "clip"])
    _data(p)
    _output(p)

    p = cmd("all", "FID, KID and IS (+ faithfulness with --extractor synth when the images carry prompts)", _all)
    _pair(p, npz=False)
    _kid_opts(p)
    p.add_argument("--splits", type=positive_int, default=10, help="IS splits (default 10)")
    _features(p, ["synth", "inception", "clip"])
    _data(p)
    _output(p)


# ----------------------------------------------------------------------------- inputs and features


def _resolve(spec: str, args: argparse.Namespace, what: str, **kw: Any) -> Any:
    from .inputs import resolve_input

    return resolve_input(spec, args, what=what, **kw)


def _extractor(args: argparse.Namespace) -> Any:
    from ..registry import FEATURE_EXTRACTORS

    if args.extractor == "inception":
        ext = FEATURE_EXTRACTORS.build("inception", weights_path=args.weights, resize_mode=args.resize_mode)
    elif args.extractor == "synth":
        ext = FEATURE_EXTRACTORS.build("synth", world=args.world, path=args.weights)
    else:
        ext = FEATURE_EXTRACTORS.build("clip", model_name=args.clip_model, pretrained=args.weights)
    if ext.provenance.weights == "random-init":
        _warn(args, f"{ext.provenance.extractor} has random weights (no --weights given): the number only checks "
                    "the plumbing and means nothing about image quality")
    return ext


def _run(extractor: Any, images: Any, args: argparse.Namespace, **keep: bool) -> Any:
    """Extract features of a resolved input; records the sizes seen and the device in ``args._runs``."""
    from .engine import extract

    r = extract(extractor, images.source(), batch_size=args.batch_size, progress=not args.no_progress,
                desc=f"features {images.spec}", device=args.device, num_workers=args.workers, **keep)
    args._runs[images.spec] = {"image_sizes": r.image_sizes, "device": r.device}
    return r


def _provenance(extractor: Any, args: argparse.Namespace) -> Dict[str, Any]:
    from .. import __version__
    from ..dist import rank_and_world_size

    p = extractor.provenance
    runs = getattr(args, "_runs", {})
    return {"processes": rank_and_world_size()[1], "extractor": p.extractor, "weights": p.weights,
            "weights_sha256": p.weights_sha256, "resize_mode": p.resize_mode, "input_size": p.input_size,
            "feature_dim": p.feature_dim, "device": sorted({r["device"] for r in runs.values()}) or None,
            "precision": "float32 (no TF32)", "image_sizes": {k: r["image_sizes"] for k, r in runs.items()},
            "seed": args.seed, "version": __version__}


def _stats_meta(extractor: Any, args: argparse.Namespace, n: int) -> Dict[str, Any]:
    meta = _provenance(extractor, args)
    meta["n"] = n
    return meta


def _check_against(st_meta: Dict[str, Any], other: Dict[str, Any], spec: str, args: argparse.Namespace,
                   out: Dict[str, Any]) -> None:
    """Refuse statistics made differently from the other side unless --allow-mismatch (then record it)."""
    from .fid import compare_provenance

    diffs, unknown = compare_provenance(st_meta, other)
    if diffs:
        shown = "; ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diffs.items())
        if not args.allow_mismatch:
            raise MetricInputError(f"{spec}: statistics made differently from the other input ({shown}); such FIDs are "
                                   "not comparable. Recompute them with the same settings, or pass --allow-mismatch")
        out.setdefault("provenance_mismatch", {})[spec] = diffs
        _warn(args, f"{spec}: compared despite different provenance ({shown}), as --allow-mismatch asked")
    if unknown:
        out.setdefault("provenance_unchecked", {})[spec] = unknown
        _warn(args, f"{spec}: does not record {', '.join(unknown)}; cannot check that it was made like the other input")


def _warn(args: argparse.Namespace, text: str) -> None:
    args._warnings.append(text)
    if is_main_process():
        print(f"t2i eval: warning: {text}", file=sys.stderr)


def _inputs(out: Dict[str, Any], args: argparse.Namespace, **sets: Any) -> None:
    """Record what each input used and skipped; say on stderr when it used fewer than it was given."""
    out["inputs"] = {}
    for role, s in sets.items():
        summ = s.summary()
        summ["spec"] = s.spec
        out["inputs"][role] = summ
        if s.generated is not None and is_main_process():
            print(f"t2i eval: note: --{role} {s.spec}: " + "; ".join(s.notes), file=sys.stderr)
        elif summ["used"] < summ["given"] and is_main_process():
            probs = [str(p) for p in s.skipped]
            shown = "; ".join(probs[:3]) + (f"; ... ({len(probs) - 3} more in the JSON)" if len(probs) > 3 else "")
            parts = [f"{summ['skipped']} skipped" + (f" ({shown})" if shown else "")] if summ["skipped"] else []
            parts += s.notes
            print(f"t2i eval: note: --{role} {s.spec}: used {summ['used']} of {summ['given']} item(s); "
                  + "; ".join(parts), file=sys.stderr)


# ----------------------------------------------------------------------------- metrics


def _fid(args: argparse.Namespace) -> Dict[str, Any]:
    from .fid import fid_from_stats

    real = _resolve(args.real, args, "--real", allow_stats=True)
    fake = _resolve(args.fake, args, "--fake", allow_stats=True, allow_model=True, reference=real)
    out: Dict[str, Any] = {"metric": "fid", "real": args.real, "fake": args.fake}
    if real.kind == "stats" and fake.kind == "stats":
        # nothing is extracted: the provenance is the files'
        _check_against(fake.stats.meta, real.stats.meta, args.fake, args, out)
        s1, s2 = real.stats, fake.stats
        prov = {k: real.stats.meta.get(k) for k in ("extractor", "weights", "weights_sha256", "resize_mode",
                                                    "input_size", "feature_dim")}
        prov["from_statistics"] = True
    else:
        ext = _extractor(args)
        sts = []
        for s in (real, fake):
            if s.kind == "stats":
                _check_against(s.stats.meta, _provenance(ext, args), s.spec, args, out)
                if s.stats.dim != ext.feature_dim:
                    raise MetricInputError(f"{s.spec}: {s.stats.dim}-d statistics, but {ext.provenance.extractor} "
                                           f"gives {ext.feature_dim}-d features")
                sts.append(s.stats)
            else:
                sts.append(_run(ext, s, args).stats)
        s1, s2 = sts
        prov = _provenance(ext, args)
    out.update({"fid": fid_from_stats(s1, s2, check_meta=False), "n_real": int(s1.n), "n_fake": int(s2.n)})
    _inputs(out, args, real=real, fake=fake)
    out.update(prov)
    return out


def _kid_subset_size(args: argparse.Namespace, real: Any, fake: Any) -> int:
    n = min(real.used, fake.used)
    if args.subset_size is None:
        return min(1000, n)
    if args.subset_size > n:
        small = "--real" if real.used <= fake.used else "--fake"
        raise MetricInputError(f"--subset-size {args.subset_size} is larger than the {n} images of {small}; every subset "
                               f"would be the whole set (KID std 0). Pass --subset-size {n} or fewer")
    if args.subset_size < 2:
        raise MetricInputError("--subset-size must be at least 2")
    return args.subset_size


def _kid(args: argparse.Namespace) -> Dict[str, Any]:
    from .kid import kernel_inception_distance

    real = _resolve(args.real, args, "--real")
    fake = _resolve(args.fake, args, "--fake", allow_model=True, reference=real)
    size = _kid_subset_size(args, real, fake)
    ext = _extractor(args)
    r1, r2 = _run(ext, real, args, keep_features=True), _run(ext, fake, args, keep_features=True)
    out: Dict[str, Any] = {"metric": "kid", **kernel_inception_distance(r1.features, r2.features, subsets=args.subsets,
                                                                         subset_size=size, seed=args.seed),
                           "real": args.real, "fake": args.fake}
    _inputs(out, args, real=real, fake=fake)
    out.update(_provenance(ext, args))
    return out


def _check_splits(args: argparse.Namespace, images: Any) -> None:
    if args.splits > images.used:
        raise MetricInputError(f"--splits {args.splits} is more than the {images.used} images of {images.spec}")


def _no_logits(ext: Any) -> Optional[str]:
    """Why ``ext`` cannot give IS (no class logits), or None; known before any extraction."""
    if ext.extra.get("has_logits"):
        return None
    return (f"extractor {ext.provenance.extractor} ({ext.provenance.weights}) gives no class logits: "
            "use --extractor synth, or --extractor inception --weights <torch-fidelity .pth>")


def _is_from(ext: Any, r: Any, args: argparse.Namespace) -> Dict[str, Any]:
    """IS from the class logits of an extraction."""
    from .isc import inception_score_of_logits

    if r.logits is None:
        raise MetricInputError(_no_logits(ext) or f"extractor {ext.provenance.extractor} gave no logits")
    return inception_score_of_logits(r.logits, bool(ext.extra.get("multi_label")), splits=args.splits, seed=args.seed)


def _is(args: argparse.Namespace) -> Dict[str, Any]:
    images = _resolve(args.images, args, "--images", allow_model=True)
    _check_splits(args, images)
    ext = _extractor(args)
    if _no_logits(ext):
        raise MetricInputError(_no_logits(ext))
    r = _run(ext, images, args, keep_logits=True)
    out: Dict[str, Any] = {"metric": "is", **_is_from(ext, r, args), "images": args.images}
    _inputs(out, args, images=images)
    out.update(_provenance(ext, args))
    return out


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


def _faithfulness(args: argparse.Namespace) -> Dict[str, Any]:
    from .faithfulness import faithfulness

    images = _resolve(args.images, args, "--images", need_prompts=True, allow_model=True)
    mentions = _mentions(images.split, args.images)
    ext = _extractor(args)
    r = _run(ext, images, args, keep_heads=True)
    out: Dict[str, Any] = {"metric": "faithfulness", **faithfulness(r.heads, mentions, ext.extra["config"]),
                           "images": args.images}
    _inputs(out, args, images=images)
    out.update(_provenance(ext, args))
    return out


def _clipscore(args: argparse.Namespace) -> Dict[str, Any]:
    import numpy as np

    from .clipscore import clip_score

    images = _resolve(args.images, args, "--images", need_prompts=True)
    ext = _extractor(args)
    caps = _prompts(images.split)
    r = _run(ext, images, args, keep_features=True)
    txt = np.concatenate([ext.extra["encode_text"](caps[a:a + 256]).numpy() for a in range(0, len(caps), 256)])
    out: Dict[str, Any] = {"metric": "clipscore", **clip_score(r.features, txt, convention=args.convention),
                           "images": args.images}
    _inputs(out, args, images=images)
    out.update(_provenance(ext, args))
    return out


def _load_encoder(path: str, kind: str, flag: str) -> Any:
    from ..encoders import ImageEncoder, TextEncoder, load_pretrained_encoder

    if not Path(path).is_dir():
        raise UserError(f"{flag} {path}: not a folder (give the folder an encoder's save_pretrained wrote)")
    enc = load_pretrained_encoder(path).eval()
    want = TextEncoder if kind == "text" else ImageEncoder
    if not isinstance(enc, want):
        other = "--image-encoder" if kind == "text" else "--text-encoder"
        raise UserError(f"{flag} {path}: holds a {'text' if isinstance(enc, TextEncoder) else 'image'} encoder, "
                        f"not a {kind} encoder; did you swap it with {other}?")
    return enc


def _rprecision(args: argparse.Namespace) -> Dict[str, Any]:
    import numpy as np
    import torch

    from .engine import extract
    from .rprecision import r_precision

    images = _resolve(args.images, args, "--images", need_prompts=True, allow_model=True)
    if args.folds > images.used:
        raise MetricInputError(f"--folds {args.folds} is more than the {images.used} images of {args.images}")
    txt_enc = _load_encoder(args.text_encoder, "text", "--text-encoder")
    img_enc = _load_encoder(args.image_encoder, "image", "--image-encoder")
    split = images.split
    caps = _prompts(split)

    class _Global(torch.nn.Module):  # the image encoder as an extractor: [0, 1] in, global embedding out
        def __init__(self) -> None:
            super().__init__()
            self.enc = img_enc

        @torch.no_grad()
        def forward(self, x: torch.Tensor) -> Dict[str, Any]:
            return {"features": self.enc(x * 2.0 - 1.0).global_.float()}

    r = extract(_Global(), images.source(), batch_size=args.batch_size, keep_features=True,
                progress=not args.no_progress, desc=f"image embeddings {args.images}", device=args.device,
                num_workers=args.workers)
    txt_enc = txt_enc.to(r.device)
    with torch.no_grad():
        txt = np.concatenate([txt_enc.encode_text(caps[a:a + args.batch_size]).sentence.float().cpu().numpy()
                              for a in range(0, len(caps), args.batch_size)])
    labels = np.array([s.labels[0] if s.labels else -1 for s in split.samples])
    res = r_precision(r.features, txt, labels=labels if args.exclude_same_class else None,
                      exclude_same_class=args.exclude_same_class, caption_ids=np.unique(caps, return_inverse=True)[1],
                      folds=args.folds, seed=args.seed)
    from .. import __version__

    out: Dict[str, Any] = {"metric": "rprecision", **res, "images": args.images, "text_encoder": args.text_encoder,
                           "image_encoder": args.image_encoder}
    _inputs(out, args, images=images)
    out.update({"device": r.device, "image_sizes": r.image_sizes, "seed": args.seed, "version": __version__})
    return out


def _retrieval(args: argparse.Namespace) -> Dict[str, Any]:
    from ..safeio import load_npy, load_npz
    from .retrieval import EmbeddingSimilarity, coco_retrieval, retrieval_recall

    given = [n for n, v in (("--model", args.model), ("--embeddings", args.embeddings), ("--sims", args.sims)) if v]
    if len(given) > 1:
        raise UserError(f"give one of --model (with --data), --embeddings, or --sims with --caption-to-image; got {' and '.join(given)}")
    out: Dict[str, Any] = {}
    if args.rerank is not None and args.model is None:
        raise UserError("--rerank needs --model (the embedding model whose shortlists it re-ranks) and --data: "
                        "the re-ranker scores images and captions itself, which --embeddings / --sims do not hold")
    reranker = None
    if args.model is not None:
        if not args.data:
            raise UserError("--model needs --data (dataset:NAME:SPLIT[:N] or a folder with metadata.jsonl)")
        model = _embedding_model(args)
        if args.rerank is not None:
            reranker = _reranker(args)
        images = _resolve(args.data, args, "--data", need_prompts=True)
        sims, c2i = _embed_with_model(args, images, model)
        _inputs(out, args, data=images)
    elif args.embeddings is not None:
        if args.caption_to_image is not None:
            raise UserError("give either --embeddings, or --sims with --caption-to-image, not both")
        z = load_npz(args.embeddings, "--embeddings", required=("image_emb", "text_emb", "caption_to_image"))
        sims: Any = EmbeddingSimilarity(z["image_emb"], z["text_emb"], normalize=args.normalize)
        c2i = z["caption_to_image"]
    elif args.sims is not None and args.caption_to_image is not None:
        sims = load_npy(args.sims, "--sims", mmap=True)
        c2i = load_npy(args.caption_to_image, "--caption-to-image")
    else:
        raise UserError("give --embeddings FILE.npz, or --sims FILE.npy with --caption-to-image FILE.npy")
    from .. import __version__

    if args.protocol == "coco":
        res: Dict[str, Any] = coco_retrieval(sims, c2i, tie=args.tie)
    else:
        res = retrieval_recall(sims, c2i, tie=args.tie)
    if reranker is not None:
        emb_only = {"tie": args.tie, **res}
        res, info = _reranked(args, reranker, images, sims, c2i)
        res = {**res, "rerank": info, "embedding_only": emb_only}
    return {"metric": "retrieval", "protocol": args.protocol, "tie": args.tie, **res,
            **({"model": args.model, "data": args.data} if args.model else {}), **out, "version": __version__}


_EMBEDDER = ("embed_images", "embed_texts")
_RERANKER = ("encode_images", "rerank_retrieval")


def _embedding_model(args: argparse.Namespace) -> Any:
    """The ``--model`` folder's matcher, refused with a clear message when it cannot embed (an interaction model)."""
    from ..registry import load_saved_model_with

    return load_saved_model_with(args.model, _EMBEDDER, "--model", "an embedding matcher",
                                 "an interaction model scores image-caption pairs jointly and cannot embed: give an "
                                 "embedding matcher as --model and the interaction model as --rerank").eval()


def _reranker(args: argparse.Namespace) -> Any:
    """The ``--rerank`` folder's interaction model, refused with a clear message when it cannot re-rank."""
    from ..registry import load_saved_model_with

    return load_saved_model_with(args.rerank, _RERANKER, "--rerank", "an interaction (re-ranking) model",
                                 "give a cross-attention matcher's folder (train one with scripts/train_matching.py "
                                 "--config configs/matching/birds_interaction_tiny.yaml, or any config with "
                                 "model.name: scan)").eval()


def _reranked(args: argparse.Namespace, reranker: Any, images: Any, sims: Any, c2i: Any) -> tuple:
    """Recall after re-ranking each query's embedding shortlist with ``reranker`` (full or COCO 1K/5K protocol).

    Returns (the recall dictionary, shaped like the embedding-only one; what was re-ranked).
    """
    import numpy as np
    import torch

    from .engine import EmbeddingExtractor, extract

    size = args.rerank_image_size or args.image_size or args.size
    r = extract(EmbeddingExtractor(reranker, size, method="encode_images"), images.source(),
                batch_size=args.batch_size, keep_features=True, stats=False, progress=not args.no_progress,
                desc=f"re-ranker regions {images.spec}", device=args.device, num_workers=args.workers)
    regions = torch.from_numpy(r.features)
    captions = [c for s in images.split.samples for c in s.captions]
    c2i = np.asarray(c2i)
    n_img, n_cap = sims.shape
    dense = np.asarray(sims.block(np.arange(n_img), np.arange(n_cap)), dtype=np.float32)
    k = args.rerank_k

    def one(rows: slice) -> Dict[str, Any]:
        cols = np.flatnonzero((c2i >= rows.start) & (c2i < rows.stop))
        n_i, n_c = rows.stop - rows.start, len(cols)
        for gallery, n in (("t2i (images)", n_i), ("i2t (captions)", n_c)):
            if k > n:
                _warn(args, f"--rerank-k {k} is larger than the {gallery} gallery of {n}: its shortlists are cut "
                      f"to {n}, i.e. every item is re-ranked")
        return reranker.rerank_retrieval(dense[rows][:, cols], regions[rows], [captions[j] for j in cols],
                                         c2i[cols] - rows.start, k=k, batch_size=args.batch_size)

    if args.protocol == "coco":  # the folds and labels of coco_retrieval, which already checked them
        folds = n_img // 1000
        per = [one(slice(f * 1000, (f + 1) * 1000)) for f in range(folds)]
        res: Dict[str, Any] = {"n_images": n_img,
                               "1k": {**{key: float(np.mean([p[key] for p in per])) for key in per[0]}, "folds": folds}}
        if folds > 1:
            res["5k" if folds == 5 else f"all_{n_img}"] = one(slice(0, n_img))
    else:
        res = {**one(slice(0, n_img)), "folds": 1}
    info = {"model": args.rerank, "k": k, "image_size": size,
            "ties": "final lists are total orders: equal interaction scores keep the embedding order, and items "
                    "outside the shortlist follow it in the embedding order"}
    return res, info


def _embed_with_model(args: argparse.Namespace, images: Any, model: Any = None) -> tuple:
    """Image and caption embeddings of ``images`` by the saved matcher ``args.model`` (every caption of each image)."""
    import numpy as np
    import torch

    from .engine import EmbeddingExtractor, extract
    from .retrieval import EmbeddingSimilarity

    if model is None:
        model = _embedding_model(args)
    r = extract(EmbeddingExtractor(model, args.image_size or args.size), images.source(), batch_size=args.batch_size, keep_features=True,
                progress=not args.no_progress, desc=f"image embeddings {images.spec}", device=args.device,
                num_workers=args.workers)
    args._runs[images.spec] = {"image_sizes": r.image_sizes, "device": r.device}
    caps = [(i, c) for i, s in enumerate(images.split.samples) for c in s.captions]
    with torch.no_grad():
        txt = np.concatenate([model.embed_texts([c for _, c in caps[a:a + args.batch_size]]).float().cpu().numpy()
                              for a in range(0, len(caps), args.batch_size)])
    return EmbeddingSimilarity(r.features, txt), np.array([i for i, _ in caps])


def _stats(args: argparse.Namespace) -> Dict[str, Any]:
    images = _resolve(args.input, args, "--input")
    ext = _extractor(args)
    st = _run(ext, images, args).stats
    st.meta.update(_stats_meta(ext, args, int(st.n)))
    if is_main_process():
        st.save_npz(args.output)
    out: Dict[str, Any] = {"metric": "stats", "output": str(args.output), "n": int(st.n), "input": args.input}
    _inputs(out, args, input=images)
    out.update(_provenance(ext, args))
    return out


def _all(args: argparse.Namespace) -> Dict[str, Any]:
    """FID, KID, IS and (synth) faithfulness from one extraction of each set."""
    from .faithfulness import faithfulness
    from .fid import fid_from_stats
    from .kid import kernel_inception_distance

    real = _resolve(args.real, args, "--real")
    fake = _resolve(args.fake, args, "--fake", allow_model=True, reference=real)
    size = _kid_subset_size(args, real, fake)
    _check_splits(args, fake)
    mentions, why = None, "needs --extractor synth"
    if args.extractor == "synth":
        why = "the generated images carry no prompts (no metadata.jsonl)"
        if fake.has_prompts:
            try:
                mentions = _mentions(fake.split, args.fake)
            except MetricInputError as e:  # prompts without ground truth
                why = str(e)
    ext = _extractor(args)
    out: Dict[str, Any] = {"metric": "all", "real": args.real, "fake": args.fake}
    r1 = _run(ext, real, args, keep_features=True)
    # the generated set is read once: features (FID, KID), logits (IS), heads (faithfulness)
    r2 = _run(ext, fake, args, keep_features=True, keep_logits=True, keep_heads=mentions is not None)
    out["fid"] = fid_from_stats(r1.stats, r2.stats, check_meta=False)
    out["n_real"], out["n_fake"] = r1.n, r2.n
    out.update(kernel_inception_distance(r1.features, r2.features, subsets=args.subsets, subset_size=size, seed=args.seed))
    try:
        out.update(_is_from(ext, r2, args))
    except MetricInputError as e:
        out["is_skipped"] = str(e)
    if mentions is not None:
        out["faithfulness"] = faithfulness(r2.heads, mentions, ext.extra["config"])
    else:
        out["faithfulness_skipped"] = why
    _inputs(out, args, real=real, fake=fake)
    out.update(_provenance(ext, args))
    return out


# ----------------------------------------------------------------------------- output


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _emit(result: Dict[str, Any], args: argparse.Namespace) -> None:
    if not is_main_process():
        return
    if args._warnings:
        result["warnings"] = list(args._warnings)
    text = json.dumps(result, indent=2, default=str)
    if args.out is not None:
        write_text_atomic(args.out, text + "\n")
    if args.json:
        print(text)
        return
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for k2, v2 in v.items():
                print(f"  {k2}: {_fmt(v2) if not isinstance(v2, dict) else json.dumps(v2, default=str)}")
        else:
            print(f"{k}: {_fmt(v)}")


def _check_outputs(args: argparse.Namespace) -> None:
    """Every file the command will write can be written: checked before any work."""
    if args.out is not None:
        check_output_file(args.out, "--out")
    output = getattr(args, "output", None)
    if output is not None:
        check_output_file(output, "--output", suffix=".npz")
        if args.out is not None and args.out.resolve() == output.resolve():
            raise UserError(f"--out and --output both name {output}")


def _wrap(fn: Callable[[argparse.Namespace], Dict[str, Any]]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        args._warnings, args._runs = [], {}
        _check_outputs(args)
        init_distributed()
        _emit(fn(args), args)
        return 0

    return run


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["eval", *sys.argv[1:]]))
