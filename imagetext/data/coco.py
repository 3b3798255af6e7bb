"""MS-COCO 2014 captions with multi-labels from the instance annotations.

Root layout (as downloaded)::

    annotations/captions_{train,val}2014.json    images[{id, file_name}], annotations[{image_id, caption}]
    annotations/instances_{train,val}2014.json   categories[{id, name}], annotations[{image_id, category_id}]
    train2014/  val2014/                         the images

Split ``train`` reads train2014; ``test`` and ``val`` read val2014 (the usual T2I test set).
Labels are the sorted set of contiguous category indices (COCO's 80 category ids, in
id order, become 0..79). An image without instance annotations has no labels (``()``):
only its own caption is a positive for it. If the instances file is missing, the split
still loads with empty labels everywhere and one ``converted`` Problem says so -- the
captions are usable, and the label-guided losses then see no label positives.

Category ids must be integers (an integral JSON number such as ``18.0`` is 18); a
category with another id (``true``, ``1.5``, ``"x"``) is a DataError naming it, and an
instance annotation whose ``category_id`` matches no category (booleans never do) is
counted in one skipped Problem that shows examples. A missing image file is a skipped
Problem naming the file. The JSON files must be UTF-8 (or carry a BOM); a byte that is
not is a DataError naming line and column.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from ..errors import DataError
from .images import check_image
from .records import (
    BadInputPolicy, DataReport, LoadedSplit, Problem, Sample, clean_captions, finish_split, read_text, unknown_split,
)

_SPLITS = {"train": "train", "val": "val", "test": "val"}


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: not found; --root must hold annotations/captions_<split><year>.json, "
                        "train<year>/ and val<year>/ (the COCO download layout)")
    text, _ = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None


def _as_id(value: Any) -> Any:
    """An id for matching: integral numbers as int; booleans can never equal an id."""
    if isinstance(value, bool):
        return ("not an id", value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        hash(value)
    except TypeError:
        return ("not an id", repr(value))
    return value


def _category_id(cat: Any, path: Path) -> int:
    v = cat.get("id") if isinstance(cat, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise DataError(f"{path}: category {json.dumps(cat)[:120]}: id must be an integer")
    return int(v)


def _records(obj: Any, key: str, path: Path) -> List[Dict[str, Any]]:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), list):
        raise DataError(f"{path}: expected a JSON object with a {key!r} list")
    return obj[key]


def _read_labels(path: Path, report: DataReport, policy: BadInputPolicy) -> tuple[List[str], Dict[int, Set[int]]]:
    """Category names (in id order) and image_id -> set of contiguous category indices."""
    obj = _load_json(path)
    cats = sorted(_records(obj, "categories", path), key=lambda c: _category_id(c, path))
    ids = [_category_id(c, path) for c in cats]
    dup = next((i for k, i in enumerate(ids) if i in ids[:k]), None)
    if dup is not None:
        raise DataError(f"{path}: category id {dup} is listed twice")
    index = {i: k for k, i in enumerate(ids)}
    names = [str(c.get("name", c["id"])) for c in cats]
    labels: Dict[Any, Set[int]] = defaultdict(set)
    unknown: List[Any] = []
    for ann in _records(obj, "annotations", path):
        raw = ann.get("category_id") if isinstance(ann, dict) else ann
        cat = index.get(_as_id(raw)) if isinstance(ann, dict) else None
        if cat is None:
            unknown.append(raw)
            continue
        labels[_as_id(ann.get("image_id"))].add(cat)
    if unknown:
        shown = ", ".join(json.dumps(v, default=str)[:40] for v in unknown[:3])
        policy.handle(report, Problem(str(path), f"{len(unknown)} instance annotations with an unknown category_id "
                                      f"(e.g. {shown}) ignored"))
    return names, labels


def load_coco(
    root: Path,
    split: str = "train",
    policy: Optional[BadInputPolicy] = None,
    year: int = 2014,
    max_captions: Optional[int] = None,
) -> LoadedSplit:
    """Load COCO ``train`` or ``val``/``test`` captions and category multi-labels.

    Args:
        root: folder holding ``annotations/``, ``train2014/`` and ``val2014/``.
        split: ``train``, ``val`` or ``test`` (val and test both read val<year>).
        policy: bad-input policy.
        year: 2014 (the T2I standard) or 2017.
        max_captions: keep at most this many captions per image (COCO has 5-7).

    Returns:
        A multi-label :class:`LoadedSplit` whose class names are the category names.
    """
    policy = policy or BadInputPolicy()
    root = Path(root)
    if split not in _SPLITS:
        raise unknown_split("coco", split, tuple(_SPLITS))
    part = f"{_SPLITS[split]}{year}"
    report = DataReport(source="coco", root=str(root), split=split)
    cap_path = root / "annotations" / f"captions_{part}.json"
    caps = _load_json(cap_path)
    images = _records(caps, "images", cap_path)
    annotations = _records(caps, "annotations", cap_path)

    inst_path = root / "annotations" / f"instances_{part}.json"
    if inst_path.is_file():
        class_names, labels = _read_labels(inst_path, report, policy)
    else:
        class_names, labels = [], {}
        report.add(Problem(str(inst_path), "not found; every image has empty labels", action="converted"))

    by_image: Dict[Any, List[Any]] = defaultdict(list)
    malformed = 0
    for ann in annotations:
        if isinstance(ann, dict):
            by_image[_as_id(ann.get("image_id"))].append(ann.get("caption"))
        else:
            malformed += 1
    if malformed:
        policy.handle(report, Problem(str(cap_path), f"{malformed} caption annotations are not objects; ignored"))
    known_ids = {_as_id(img.get("id")) for img in images if isinstance(img, dict)}
    orphans = [k for k in by_image if k not in known_ids]
    if orphans:
        policy.handle(report, Problem(str(cap_path), f"{sum(len(by_image[k]) for k in orphans)} captions refer to unknown image ids (e.g. {orphans[0]}); ignored"))

    image_dir = root / part
    samples: List[Sample] = []
    seen: Set[Any] = set()
    for img in images:
        img_id, file_name = (img.get("id"), img.get("file_name")) if isinstance(img, dict) else (None, None)
        if img_id is None or not file_name or isinstance(img_id, bool) or not isinstance(file_name, str):
            policy.handle(report, Problem(str(cap_path), f"image record without id or file_name: {img!r}"[:200]))
            continue
        img_id = _as_id(img_id)
        if img_id in seen:
            policy.handle(report, Problem(str(cap_path), f"duplicate image id {img_id} ({file_name})"))
            continue
        seen.add(img_id)
        where = f"{cap_path} (image {img_id} {file_name})"
        captions = clean_captions(by_image.get(img_id, []), where, report, policy)
        if not captions:
            policy.handle(report, Problem(where, "no non-empty caption; image skipped"))
            continue
        if not check_image(image_dir / file_name, report, policy):
            continue
        samples.append(
            Sample(
                key=str(file_name),
                captions=captions[:max_captions] if max_captions else captions,
                labels=tuple(sorted(labels.get(img_id, ()))),
                image_path=image_dir / file_name,
            )
        )
    return finish_split(samples, class_names, report, multi_label=True)
