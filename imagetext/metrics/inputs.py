"""What an evaluation input means, resolved once, with every unused item accounted for.

An input names where images come from:

    DIR                       a folder of images (recursive)
    FILE.npz                  precomputed statistics (mu, sigma), FID only
    dataset:NAME:SPLIT[:N]    a registered data set (birds, scenes; cub/coco/karpathy/folder with --data-root)
    model:DIR                 generated images only: a saved text-to-image model draws one image per
                              prompt of a reference input (see :func:`generate_from_model`)

Rules for a folder (the same for every metric, so ``fid`` and ``all`` never score
different images of one folder):

- with one metadata file at its top level (``metadata.jsonl``, ``test.jsonl``, ... in the
  generic folder format) it means the images that file lists, in its order, with their
  prompts; image files it does not list are skipped and named;
- with several split files (``train.jsonl`` and ``test.jsonl``: a world's root) it is
  ambiguous and refused, naming the ``dataset:folder:SPLIT --data-root DIR`` form;
- without metadata it means every image file under it.

Hidden files, files that are not images, and rows the loader rejects are *skipped*:
each is a :class:`~imagetext.data.records.Problem` naming the file (and line). So for
every input ``used + skipped + beyond_limit == given``, the summary carries all four,
and the CLI says on stderr when it used fewer items than it was given.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..data.records import BadInputPolicy, DataReport, LoadedSplit, Problem, Sample
from ..errors import MetricInputError, UserError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
METADATA_EXTS = {".jsonl", ".csv"}
# Files of the generic folder format itself (not items): read with the metadata.
FORMAT_FILES = {"classes.json", "world.json"}
MODEL_PREFIX = "model:"
# model:DIR generates in calls of this many prompts (pipelines cap one call at 10,000 images and hold
# a call's float images in memory). Fixed, so the images never depend on --gen-batch-size.
GEN_CHUNK = 1000
GEN_WARNINGS_KEPT = 20  # pipeline warnings kept in the JSON (the count is always there)


@dataclass
class ImageSet:
    """One resolved input: the images to extract, prompts if any, and what was not used."""

    spec: str
    kind: str  # folder | dataset | stats | generated (model:DIR)
    report: DataReport
    paths: List[Path] = field(default_factory=list)  # folder without metadata
    split: Optional[LoadedSplit] = None  # folder with metadata, or data set
    stats: Any = None  # FeatureStats, for .npz inputs
    beyond_limit: int = 0  # items left out by the N of dataset:NAME:SPLIT:N
    notes: List[str] = field(default_factory=list)
    generated: Optional[Dict[str, Any]] = None  # model:DIR inputs: model, n, seed, prompts_from, ...

    @property
    def used(self) -> int:
        if self.kind == "stats":
            return int(self.stats.n)
        return len(self.split.samples) if self.split is not None else len(self.paths)

    @property
    def skipped(self) -> List[Problem]:
        return [p for p in self.report.problems if p.action == "skipped"]

    @property
    def has_prompts(self) -> bool:
        return self.split is not None

    def source(self) -> Any:
        """A Dataset of ``(index, uint8 CHW tensor)`` in input order."""
        from .engine import ImageFiles, SplitImages

        if self.kind == "stats":
            raise MetricInputError(f"{self.spec}: statistics, not images")
        return SplitImages(self.split) if self.split is not None else ImageFiles(self.paths)

    def summary(self) -> Dict[str, Any]:
        """Counts and named problems, for the JSON output."""
        skipped = self.skipped
        out = {
            "kind": self.kind,
            "given": self.used + len(skipped) + self.beyond_limit,
            "used": self.used,
            "skipped": len(skipped),
            "beyond_limit": self.beyond_limit,
            "converted": sum(1 for p in self.report.problems if p.action == "converted"),
            "problems": [str(p) for p in self.report.problems],
            "notes": list(self.notes),
        }
        if self.generated is not None:
            out["generated"] = dict(self.generated)
        return out


def parse_dataset_spec(spec: str) -> tuple[str, str, Optional[int]]:
    """``dataset:NAME:SPLIT[:N]`` -> (name, split, N or None); UserError naming the spec."""
    from ..registry import DATASETS

    parts = spec.split(":")
    if len(parts) not in (3, 4) or not parts[1] or not parts[2]:
        raise UserError(f"{spec!r}: expected dataset:NAME:SPLIT[:N], e.g. dataset:birds:test:1000")
    if parts[1] not in DATASETS:
        raise UserError(f"{spec!r}: unknown data set {parts[1]!r}; known: {', '.join(sorted(DATASETS.names()))}")
    n = None
    if len(parts) == 4:
        try:
            n = int(parts[3])
        except ValueError:
            raise UserError(f"{spec!r}: N must be an integer, got {parts[3]!r}") from None
        if n < 1:
            raise UserError(f"{spec!r}: N must be >= 1, got {n}")
    return parts[1], parts[2], n


def _load_dataset(spec: str, args: argparse.Namespace) -> ImageSet:
    from ..registry import DATASETS

    name, split, n = parse_dataset_spec(spec)
    policy = BadInputPolicy(on_error="skip")
    if name in ("birds", "scenes"):
        kw: Dict[str, Any] = {"size": getattr(args, "size", 64)}
        if n is not None:  # synthetic splits are generated to any length: N is the size, nothing is left out
            kw.update(n=n, n_train=n, n_test=n)
        loaded = DATASETS.build(name, split=split, **kw)
    else:
        root = getattr(args, "data_root", None)
        if not root:
            raise UserError(f"{spec}: pass --data-root DIR for data set {name!r}")
        if not Path(root).is_dir():
            raise UserError(f"--data-root {root}: not a folder")
        loaded = DATASETS.build(name, root=root, split=split, policy=policy)
    out = ImageSet(spec, "dataset", loaded.report, split=loaded)
    if n is not None and len(loaded.samples) > n:
        out.beyond_limit = len(loaded.samples) - n
        out.notes.append(f"first {n} of {len(loaded.samples)} images (N={n} in the spec)")
        loaded.samples = loaded.samples[:n]
    return out


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _load_folder(spec: str, root: Path) -> ImageSet:
    from ..data.folder import available_splits, load_folder

    files = sorted(p for p in root.rglob("*") if p.is_file())
    metas = [p for p in files if p.parent == root and p.suffix.lower() in METADATA_EXTS and not p.name.startswith(".")]
    report = DataReport(source="folder", root=str(root), split="-")
    splits = available_splits(root) if metas else []
    if len(metas) > 1 or len(splits) > 1:
        shown = ", ".join(splits or [p.name for p in metas])
        raise UserError(f"{spec}: holds several metadata files or splits ({shown}); name the split to use, e.g. "
                        f"dataset:folder:{(splits or [metas[-1].stem])[-1]} --data-root {spec}")
    referenced: set = set()  # every image a row names, accepted or not (rejected rows are reported by the loader)
    split = None
    if metas:
        split = load_folder(root, splits[0] if splits else "test", BadInputPolicy(on_error="skip"))
        report = split.report
        referenced = _referenced_images(root, metas[0])
    out = ImageSet(spec, "folder", report, split=split)
    for p in files:
        rel = p.relative_to(root)
        if p in metas or (split is not None and p.parent == root and p.name in FORMAT_FILES):
            continue  # the format's own files: read, not items
        if _is_hidden(p, root):
            report.add(Problem(str(rel), "hidden file"))
        elif p.suffix.lower() not in IMAGE_EXTS:
            report.add(Problem(str(rel), f"not an image ({p.suffix or 'no extension'})"))
        elif split is not None:
            if p.resolve() not in referenced:
                report.add(Problem(str(rel), f"image not listed in {metas[0].name}"))
        else:
            out.paths.append(p)
    return out


def _referenced_images(root: Path, meta: Path) -> set:
    from ..data.folder import _IMAGE_KEYS, iter_rows

    scratch = DataReport(source="folder", root=str(root), split="*")
    out = set()
    for _, _, row in iter_rows(meta, scratch, BadInputPolicy()):
        image = next((row[k] for k in _IMAGE_KEYS if row.get(k)), None)
        if isinstance(image, str) and image.strip():
            out.add((root / image).resolve())
    return out


def load_stats_input(spec: str) -> ImageSet:
    """An ``.npz`` of statistics, validated (see :meth:`FeatureStats.load_npz`)."""
    from .fid import FeatureStats

    st = FeatureStats.load_npz(spec)
    return ImageSet(spec, "stats", DataReport(source="stats", root=spec, split="-"), stats=st)


def _chunk_seed(seed: int, chunk: int) -> int:
    """The noise seed of generation call ``chunk``: ``seed`` itself for the first (so a set of up
    to GEN_CHUNK prompts draws exactly what ``t2i generate --seed S --n 1`` draws from the same
    prompts), then a SeedSequence child, so later chunks never repeat the first one's noise."""
    if chunk == 0:
        return int(seed)
    import numpy as np

    return int(np.random.SeedSequence([int(seed), chunk]).generate_state(1)[0])


def _renumber(warning: str, offset: int) -> str:
    """A pipeline warning ("prompt 3: ...") of a later chunk, with the prompt's number in the whole set."""
    return re.sub(r"^prompt (\d+)", lambda m: f"prompt {int(m.group(1)) + offset}", warning)


def generate_from_model(spec: str, args: argparse.Namespace, reference: ImageSet, flag: str = "") -> ImageSet:
    """``model:DIR``: the saved model draws one image per prompt of ``reference``, in memory.

    The model is loaded with :func:`~imagetext.registry.load_saved_model` and must have
    ``generate_tensors(prompts, seed=, num_images=1, batch_size=)`` returning images in
    [-1, 1] at its own size. Each reference image's first caption is its prompt; the
    generated sample carries that caption, its ``caption_attributes`` and the labels, so
    faithfulness and R-precision read what each image was asked to show. Seeded by
    ``--gen-seed`` (default ``--seed``); batches of ``--gen-batch-size``.

    Raises:
        UserError / MetricInputError: no folder after ``model:``, not a saved model, a model
            that cannot generate (a matcher), or a reference without prompts.
    """
    import functools

    import numpy as np
    import torch
    from PIL import Image

    from ..registry import load_saved_model
    from .engine import resolve_device

    directory = spec[len(MODEL_PREFIX):]
    if not directory.strip():
        raise UserError(f"{flag}{spec}: name the model folder, e.g. model:runs/t2i/dfgan_birds/final")
    if not reference.has_prompts:
        raise MetricInputError(f"{flag}{spec}: the reference {reference.spec} has no prompts to draw (a folder without "
                               "metadata.jsonl, or statistics); pass --prompts-from dataset:NAME:SPLIT[:N] or a folder "
                               "with metadata.jsonl")
    try:
        model = load_saved_model(directory)
    except UserError as e:
        raise UserError(f"{flag}{spec}: {e}") from None
    if not callable(getattr(model, "generate_tensors", None)):
        raise MetricInputError(f"{flag}{spec}: {directory} holds a {type(model).__name__}, which cannot generate images "
                               "(a matcher or encoder?); give a trained text-to-image model's folder")
    if hasattr(model, "to"):
        model.to(resolve_device(getattr(args, "device", "auto") or "auto"))
    seed = getattr(args, "gen_seed", None)
    seed = int(getattr(args, "seed", 0) if seed is None else seed)
    batch = int(getattr(args, "gen_batch_size", 64) or 64)
    ref = reference.split.samples
    prompts = [s.captions[0] for s in ref]
    kw: Dict[str, Any] = {}
    show = not getattr(args, "no_progress", False)
    try:  # pipelines that can show a bar get one; the protocol itself does not require it
        import inspect

        if show and "progress" in inspect.signature(model.generate_tensors).parameters:
            kw["progress"] = True
    except (TypeError, ValueError):
        pass
    arrays: List[np.ndarray] = []
    warnings: List[str] = []
    for k, a in enumerate(range(0, len(prompts), GEN_CHUNK)):
        x = model.generate_tensors(prompts[a:a + GEN_CHUNK], seed=_chunk_seed(seed, k), num_images=1,
                                   batch_size=batch, **kw)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != len(prompts[a:a + GEN_CHUNK]) or x.shape[1] != 3:
            raise MetricInputError(f"{flag}{spec}: generate_tensors returned {getattr(x, 'shape', type(x).__name__)}, "
                                   f"not ({len(prompts[a:a + GEN_CHUNK])}, 3, H, W) images")
        if not torch.isfinite(x).all():
            raise MetricInputError(f"{flag}{spec}: the model generated NaN/inf pixels (a diverged generator?)")
        # the pipeline's own [-1, 1] -> uint8 rounding, so these are the pixels `t2i generate` would save
        arrays.append(((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        warnings += [_renumber(w, a) for w in (getattr(model, "last_warnings", None) or [])]
    pixels = np.concatenate(arrays)
    samples = [
        Sample(key=f"generated-{i:05d}", captions=[r.captions[0]], labels=tuple(r.labels),
               # a picklable renderer (data-loader workers may pickle the data set)
               render=functools.partial(Image.fromarray, np.ascontiguousarray(pixels[i])),
               caption_attributes=[r.caption_attributes[0]] if r.caption_attributes else None)
        for i, r in enumerate(ref)
    ]
    report = DataReport(source="model", root=directory, split="-", images=len(samples), captions=len(samples))
    split = LoadedSplit(samples, list(reference.split.class_names), report, multi_label=reference.split.multi_label)
    out = ImageSet(spec, "generated", report, split=split)
    out.generated = {"model": directory, "n": len(samples), "seed": seed, "prompts_from": reference.spec,
                     "prompt": "first caption of each image", "batch_size": batch,
                     "image_size": [int(pixels.shape[2]), int(pixels.shape[1])], "warnings": len(warnings),
                     "warning_examples": warnings[:GEN_WARNINGS_KEPT]}
    out.notes.append(f"generated by {directory}: one image per prompt of {reference.spec} (its first caption), seed {seed}")
    if warnings:
        out.notes.append(f"{len(warnings)} prompt warning(s) from the model (unknown words read as <unk>, or prompts "
                         f"cut to the text encoder's length), e.g. {warnings[0]}")
    return out


def resolve_input(spec: str, args: argparse.Namespace, allow_stats: bool = False, need_prompts: bool = False,
                  what: str = "", allow_model: bool = False, reference: Optional[ImageSet] = None) -> ImageSet:
    """Resolve ``spec`` (folder, ``.npz``, ``dataset:...`` or ``model:DIR``) before any extraction.

    ``model:DIR`` is accepted only where the images are the generated ones (``allow_model``):
    it draws one image per prompt of ``--prompts-from`` when given, else of ``reference``
    (the resolved ``--real``), see :func:`generate_from_model`.

    Raises:
        UserError / MetricInputError: the input does not exist, is the wrong kind for this
            metric, has fewer than 2 usable images, or (``need_prompts``) has no prompts.
    """
    flag = f"{what} " if what else ""
    if spec.startswith(MODEL_PREFIX):
        if not allow_model:
            raise UserError(f"{flag}{spec}: a model can only stand for the generated images (--fake of fid/kid/all, "
                            "--images of is/rprecision/faithfulness); this input must be real images: a folder, "
                            "dataset:NAME:SPLIT[:N]" + (" or FILE.npz" if allow_stats else ""))
        prompts_from = getattr(args, "prompts_from", None)
        if prompts_from:
            if prompts_from.startswith(MODEL_PREFIX):
                raise UserError(f"--prompts-from {prompts_from}: give real captions (dataset:NAME:SPLIT[:N] or a folder "
                                "with metadata.jsonl), not a model")
            reference = resolve_input(prompts_from, args, need_prompts=True, what="--prompts-from")
        elif reference is None:
            raise UserError(f"{flag}{spec}: which prompts should it draw? pass --prompts-from dataset:NAME:SPLIT[:N] "
                            "(or a folder with metadata.jsonl)")
        out = generate_from_model(spec, args, reference, flag)
    elif spec.startswith("dataset:"):
        out = _load_dataset(spec, args)
    elif spec.lower().endswith(".npz"):
        if not allow_stats:
            metric = {"kid": "KID", "is": "IS", "stats": "stats"}.get(getattr(args, "metric", ""), "this metric")
            raise MetricInputError(f"{flag}{spec}: {metric} needs the images (a folder or dataset:...), "
                                   "not mean/covariance statistics")
        return load_stats_input(spec)
    else:
        root = Path(spec)
        if not root.exists():
            raise UserError(f"{flag}{spec}: no such folder (give a folder of images, FILE.npz or dataset:NAME:SPLIT)")
        if not root.is_dir():
            raise UserError(f"{flag}{spec}: not a folder (give a folder of images, FILE.npz or dataset:NAME:SPLIT)")
        out = _load_folder(spec, root)
    if need_prompts and not out.has_prompts:
        raise MetricInputError(f"{flag}{spec}: no prompts; this metric needs a folder with metadata.jsonl "
                               "(image + caption per row) or dataset:NAME:SPLIT")
    if out.used < 2:
        why = f" ({len(out.skipped)} skipped: {out.skipped[0]})" if out.skipped else ""
        raise MetricInputError(f"{flag}{spec}: {out.used} usable image(s){why}; need at least 2")
    return out
