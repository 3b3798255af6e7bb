"""Karpathy splits (``dataset_coco.json``, ``dataset_flickr30k.json``, ``dataset_flickr8k.json``).

The JSON is ``{"images": [{"filename", "filepath" (COCO only), "split", "sentences":
[{"raw", "tokens"}]}]}`` with ``split`` one of train / val / test / restval. The
matching literature trains on train + restval (113,287 COCO images) and tests on the
5k test split (or its 1k folds); Flickr30K has 29k / 1k / 1k.

Images are looked for at ``image_root/<filepath>/<filename>``, ``image_root/<filename>``,
``root/<filepath>/<filename>``, ``root/images/<filename>``, ``root/flickr30k-images/<filename>``
and ``root/<filename>``. There are no labels.

An image whose ``split`` is not one of train / val / test / restval (``"tset"``,
``"Test"``, missing) belongs to no split: it is a skipped Problem naming the image and
the value, with the closest valid name suggested, in every split loaded (``all`` takes
every image). A missing image file is a skipped Problem naming the file. The JSON must
be UTF-8 (or carry a BOM); a byte that is not is a DataError naming line and column.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import DataError
from .images import check_image
from .records import (
    BadInputPolicy, DataReport, LoadedSplit, Problem, Sample, clean_captions, finish_split, read_text, unknown_split,
)

_SPLITS = ("train", "val", "test", "restval", "all")
SPLIT_VALUES = ("train", "val", "test", "restval")


def _bad_split(value: object) -> str:
    """Why an image's ``split`` value is not a split, with the closest valid name."""
    if value is None:
        return "no 'split' value; it belongs to no split"
    text = str(value)
    close = [n for n in SPLIT_VALUES if n == text.strip().lower()] or difflib.get_close_matches(
        text.strip().lower(), SPLIT_VALUES, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; use one of {', '.join(SPLIT_VALUES)}"
    return f"unknown split {value!r}{hint}"


def find_karpathy_json(root: Path, json_name: Optional[str] = None) -> Path:
    """The split file in ``root`` (or ``root/annotations``); DataError if none or ambiguous."""
    if json_name:
        for cand in (Path(json_name), root / json_name, root / "annotations" / json_name):
            if cand.is_file():
                return cand
        raise DataError(f"{root / json_name}: not found")
    found = sorted(root.glob("dataset_*.json")) or sorted((root / "annotations").glob("dataset_*.json"))
    if not found:
        raise DataError(f"{root}: no dataset_*.json (Karpathy split file) found here or in annotations/; "
                        "is this the right --format?")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{root}: several split files ({names}); choose one with json_name=")
    return found[0]


def _candidates(root: Path, image_root: Optional[Path], filepath: str, filename: str) -> List[Path]:
    out: List[Path] = []
    if image_root is not None:
        if filepath:
            out.append(image_root / filepath / filename)
        out.append(image_root / filename)
    if filepath:
        out.append(root / filepath / filename)
    out += [root / "images" / filename, root / "flickr30k-images" / filename, root / filename]
    return out


def load_karpathy(
    root: Path,
    split: str = "train",
    policy: Optional[BadInputPolicy] = None,
    json_name: Optional[str] = None,
    image_root: Optional[Path] = None,
    include_restval: bool = True,
    max_captions: Optional[int] = None,
) -> LoadedSplit:
    """Load one Karpathy split.

    Args:
        root: folder with the ``dataset_*.json`` and (usually) the images.
        split: ``train``, ``val``, ``test``, ``restval`` or ``all``.
        policy: bad-input policy.
        json_name: which split file, when the folder holds several.
        image_root: where the images are, when not under ``root``.
        include_restval: ``train`` also takes the ``restval`` images (the standard 113k COCO train set).
        max_captions: keep at most this many captions per image (the benchmarks use 5).
    """
    policy = policy or BadInputPolicy()
    root = Path(root)
    if split not in _SPLITS:
        raise unknown_split("karpathy", split, _SPLITS)
    path = find_karpathy_json(root, json_name)
    text, _ = read_text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list):
        raise DataError(f"{path}: expected a JSON object with an 'images' list")
    wanted = {split}
    if split == "train" and include_restval:
        wanted.add("restval")
    report = DataReport(source="karpathy", root=str(root), split=split)
    image_root = Path(image_root) if image_root is not None else None
    dir_cache: Dict[Path, bool] = {}  # one stat per folder, not per image, to rule folders out

    samples: List[Sample] = []
    for i, img in enumerate(obj["images"]):
        where = f"{path} (images[{i}])"
        if not isinstance(img, dict) or not img.get("filename"):
            policy.handle(report, Problem(where, "image entry without a filename"))
            continue
        filename, filepath = str(img["filename"]), str(img.get("filepath") or "")
        if split != "all":
            value = img.get("split")
            if not isinstance(value, str) or value not in SPLIT_VALUES:
                policy.handle(report, Problem(f"{path} (images[{i}] {filename})", _bad_split(value)))
                continue
            if value not in wanted:
                continue
        raw: List[Any] = []
        for sent in img.get("sentences") or []:
            if isinstance(sent, dict) and "raw" not in sent and isinstance(sent.get("tokens"), list):
                raw.append(" ".join(map(str, sent["tokens"])))  # some re-exports keep only tokens
            else:
                raw.append(sent.get("raw") if isinstance(sent, dict) else sent)
        where = f"{path} ({filename})"
        captions = clean_captions(raw, where, report, policy)
        if not captions:
            policy.handle(report, Problem(where, "no non-empty caption; image skipped"))
            continue
        cands = _candidates(root, image_root, filepath, filename)
        image_path = next(
            (c for c in cands if dir_cache.setdefault(c.parent, c.parent.is_dir()) and c.is_file()), cands[0]
        )
        if not check_image(image_path, report, policy):
            continue
        key = f"{filepath}/{filename}" if filepath else filename
        samples.append(
            Sample(key=key, captions=captions[:max_captions] if max_captions else captions, image_path=image_path)
        )
    return finish_split(samples, [], report, multi_label=False)
