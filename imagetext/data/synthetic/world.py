"""Loading the synthetic worlds as a :class:`LoadedSplit` and writing them to disk.

Sample ``i`` of split ``s`` under seed ``S`` depends only on ``(world, S, s, i)`` (not on
how many samples are asked for), so a prefix of a split is always the same data.
Captions and ground truth are made when a split is loaded (cheap); pixels are drawn
only when :meth:`Sample.load_image` calls ``Sample.render``.
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from PIL import Image

from ...cliargs import prepare_output_dir, write_text_atomic
from ...errors import ConfigError
from ..records import BadInputPolicy, DataReport, LoadedSplit, Sample
from . import birds, scenes
from ._common import Rng, check_size, check_split, image_seed

GENERATOR_VERSION = "1.0"
WORLDS = ("birds", "scenes")
CAPTIONS_PER_IMAGE = {"birds": 10, "scenes": 5}


def _check_world(world: str) -> str:
    if world not in WORLDS:
        raise ConfigError(f"unknown synthetic world {world!r}; choose one of: {', '.join(WORLDS)}")
    return world


def class_names(world: str) -> List[str]:
    """Species names (birds) or object categories (scenes); index = label id."""
    return list(birds.SPECIES_NAMES) if _check_world(world) == "birds" else list(scenes.SCENE_CATEGORIES)


def allowed_classes(world: str, split: str, class_disjoint: bool) -> List[int]:
    """Label ids that may occur in ``split`` (all of them unless the split is class-disjoint)."""
    if not class_disjoint:
        return list(range(len(class_names(world))))
    if world != "birds":
        raise ConfigError("class_disjoint=True is only defined for the single-label 'birds' world")
    train_ids, test_ids = birds.class_disjoint_split()
    return train_ids if split == "train" else test_ids


def make_ground_truth(world: str, seed: int, split: str, index: int, class_disjoint: bool = False) -> Dict[str, Any]:
    """The full ground truth of one image (what it shows); no pixels are drawn."""
    img_seed = image_seed(world, seed, split, index)
    rng = Rng("ground-truth", img_seed)
    if world == "birds":
        return birds.sample_bird(rng, rng.choice(allowed_classes(world, split, class_disjoint)), img_seed)
    return scenes.sample_scene(rng, img_seed)


def make_captions(world: str, gt: Dict[str, Any]) -> Tuple[List[str], List[Dict[str, Any]]]:
    """The image's captions and, aligned with them, what each caption mentions."""
    if world == "birds":
        return birds.bird_captions(gt, CAPTIONS_PER_IMAGE["birds"])
    return scenes.scene_captions(gt, CAPTIONS_PER_IMAGE["scenes"])


def render(world: str, gt: Dict[str, Any], size: int) -> Image.Image:
    """Draw the image described by ``gt`` (deterministic: the same ``gt`` gives the same pixels)."""
    return birds.render_bird(gt, size) if world == "birds" else scenes.render_scene(gt, size)


def labels_of(world: str, gt: Dict[str, Any]) -> Tuple[int, ...]:
    """Species id (birds) or the sorted set of category ids present (scenes)."""
    if world == "birds":
        return (int(gt["species_id"]),)
    return tuple(sorted({scenes.SCENE_CATEGORIES.index(o["category"]) for o in gt["objects"]}))


def load_synthetic(
    world: str,
    split: str = "train",
    n: Optional[int] = None,
    seed: int = 0,
    size: int = 64,
    class_disjoint: bool = False,
    n_train: int = 2000,
    n_test: int = 500,
    policy: Optional[BadInputPolicy] = None,
) -> LoadedSplit:
    """Load one split of a synthetic world; images render lazily via ``Sample.render``.

    Args:
        world: ``"birds"`` or ``"scenes"``.
        split: ``"train"`` or ``"test"`` (they never share image seeds).
        n: number of samples; defaults to ``n_train`` / ``n_test``.
        seed: world seed; sample ``i`` is the same for any ``n``.
        size: image side in pixels (32 to 256).
        class_disjoint: birds only; train and test use disjoint species (45 / 15).
        policy: accepted for a uniform loader signature; generated samples are never bad.
    """
    _check_world(world)
    check_split(split)
    check_size(size)
    count = (n_train if split == "train" else n_test) if n is None else n
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"number of synthetic samples must be a non-negative integer, got {count!r}")
    allowed = allowed_classes(world, split, class_disjoint)
    report = DataReport(source=world, root=f"synthetic:{world}(seed={seed},size={size})", split=split)
    samples = []
    for i in range(count):
        gt = make_ground_truth(world, seed, split, i, class_disjoint)
        caps, cap_atts = make_captions(world, gt)
        labels = labels_of(world, gt)
        samples.append(Sample(
            key=f"{i:06d}",
            captions=caps,
            labels=labels,
            render=functools.partial(render, world, gt, size),
            attributes=gt,
            caption_attributes=cap_atts,
        ))
        report.captions += len(caps)
        report.labels += len(labels)
    report.images = len(samples)
    report.classes = len(allowed)
    return LoadedSplit(samples=samples, class_names=class_names(world), report=report, multi_label=world == "scenes")


# what write_world writes, and so what --overwrite may remove
WORLD_OUTPUTS = ("images", "train.jsonl", "test.jsonl", "classes.json", "world.json", "*.tmp")


def prepare_world_dir(out: Path, overwrite: bool = False, flag: str = "out") -> Path:
    """Check ``out`` can take a world, before anything is rendered.

    A missing or empty folder is used as is. A non-empty one is refused unless
    ``overwrite``; then what a world consists of (:data:`WORLD_OUTPUTS`) is removed, so an
    earlier, larger world can never leave images behind, and other files are left alone.

    Raises:
        UserError: ``out`` is a file, not writable, or non-empty without ``overwrite``.
    """
    return prepare_output_dir(Path(out), flag, overwrite, owned=WORLD_OUTPUTS)


def write_world(
    world: str,
    out: Path,
    n_train: int,
    n_test: int,
    seed: int,
    size: int,
    class_disjoint: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    out_flag: str = "out",
) -> Dict[str, Any]:
    """Write a world in the generic folder format (read back by the ``folder`` source).

    Layout: ``images/<split>/<key>.png``, ``train.jsonl`` / ``test.jsonl`` (one record per
    image: image, captions, labels, label_names, attributes, caption_attributes),
    ``classes.json`` (index = label id) and ``world.json`` (how it was made).

    Every argument and the output folder are checked before the first image is drawn
    (see :func:`prepare_world_dir`; ``out_flag`` names the folder in messages).

    Returns:
        A summary: output folder, counts per split, classes, captions, seconds.

    Raises:
        ConfigError: a bad world, size, count or class_disjoint for scenes.
        UserError: ``out`` cannot take the world (see :func:`prepare_world_dir`).
    """
    from tqdm import tqdm

    _check_world(world)
    check_size(size)
    for name, count in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {count!r}")
    allowed_classes(world, "train", class_disjoint)  # class_disjoint is birds-only
    out = prepare_world_dir(Path(out), overwrite, out_flag)
    start = time.time()
    names = class_names(world)
    counts: Dict[str, int] = {}
    captions = 0
    for split, count in (("train", n_train), ("test", n_test)):
        loaded = load_synthetic(world, split, n=count, seed=seed, size=size, class_disjoint=class_disjoint)
        img_dir = out / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        tmp = out / f"{split}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for s in tqdm(loaded.samples, desc=f"{world} {split}", unit="img", disable=not progress):
                rel = f"images/{split}/{s.key}.png"
                s.load_image().save(out / rel)
                record = {
                    "image": rel,
                    "captions": s.captions,
                    "labels": list(s.labels),
                    "label_names": [names[k] for k in s.labels],
                    "attributes": s.attributes,
                    "caption_attributes": s.caption_attributes,
                }
                f.write(json.dumps(record) + "\n")
        tmp.replace(out / f"{split}.jsonl")  # a half-written split never looks complete
        counts[split] = len(loaded)
        captions += loaded.report.captions
    write_text_atomic(out / "classes.json", json.dumps(names, indent=1) + "\n")
    meta = {
        "world": world,
        "seed": seed,
        "size": size,
        "counts": counts,
        "captions_per_image": CAPTIONS_PER_IMAGE[world],
        "class_disjoint": class_disjoint,
        "classes": len(names),
        "multi_label": world == "scenes",
        "generator_version": GENERATOR_VERSION,
    }
    write_text_atomic(out / "world.json", json.dumps(meta, indent=1) + "\n")
    return {"out": str(out), "world": world, "train": counts["train"], "test": counts["test"],
            "classes": len(names), "captions": captions, "seconds": round(time.time() - start, 2)}

