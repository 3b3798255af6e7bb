"""CUB-200-2011 with the StackGAN/AttnGAN caption metadata, in the published layout.

Root layout (AttnGAN's ``data/birds``)::

    CUB_200_2011/images/<class>/<img>.jpg
    CUB_200_2011/images.txt            "<id> <class>/<img>.jpg"
    CUB_200_2011/bounding_boxes.txt    "<id> x y w h"
    CUB_200_2011/classes.txt           "<n> <class>" (optional)
    text/<class>/<img>.txt             10 captions, one per line (or text_c10/)
    train/filenames.pickle             ["<class>/<img>", ...]   (Python 2 pickles)
    train/class_info.pickle            [class number, ...]      (one per filename)
    test/...                           the same for the test split

The standard split is class-disjoint (150 train / 50 test species). Labels are
0-based ids over all 200 classes (sorted folder names), so train and test ids never
collide; ``class_info`` is only cross-checked against the folder.

Text files are UTF-8 (a BOM or UTF-16 is accepted and noted): a caption line, an
``images.txt`` / ``bounding_boxes.txt`` line or a ``classes.txt`` line with a byte that
is not UTF-8 is a skipped Problem on that line, and the other lines are kept. Class
names are the union of ``classes.txt`` (lines ``<number> <name>``; another line is a
Problem) and the ``images/`` folders, so a bad line cannot renumber the classes when
the folder is there. A missing image or caption file is a skipped Problem naming it;
a box with a non-numeric or non-finite value is a Problem and the image is used uncropped.
"""
from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import DataError, UserError
from .images import check_image
from .records import (
    BadInputPolicy, DataReport, LoadedSplit, Problem, Sample, clean_captions, finish_split, read_lines, unknown_split,
)

_SPLIT_DIRS = {"train": "train", "test": "test", "val": "test"}
_CLASS_NUMBER = re.compile(r"^(\d+)\.")


def _load_py2_pickle(path: Path) -> Any:
    """Load a Python 2 pickle (str objects arrive as latin-1 str or bytes)."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"{path}: not found (the AttnGAN/StackGAN split metadata)") from None
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ...
        raise DataError(f"{path}: not a readable pickle ({e})") from None


def _as_str(x: Any) -> str:
    return x.decode("latin-1") if isinstance(x, (bytes, bytearray)) else str(x)


def _read_filenames(split_dir: Path) -> List[str]:
    path = split_dir / "filenames.pickle"
    obj = _load_py2_pickle(path)
    if not isinstance(obj, (list, tuple)):
        raise DataError(f"{path}: expected a list of '<class>/<image>' names, got {type(obj).__name__}")
    return [_as_str(x).strip() for x in obj]


def _read_id_file(path: Path, report: DataReport, policy: BadInputPolicy, n_fields: int) -> Dict[str, List[str]]:
    """Parse ``"<id> field..."`` lines into id -> fields; malformed lines become Problems."""
    out: Dict[str, List[str]] = {}
    for lineno, line in read_lines(path, report, policy):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != n_fields + 1:
            policy.handle(report, Problem(str(path), f"expected {n_fields + 1} fields, got {len(parts)}", lineno))
            continue
        out[parts[0]] = parts[1:]
    return out


def _class_names(cub: Path, image_names: Dict[str, str], report: DataReport, policy: BadInputPolicy) -> List[str]:
    """All class folder names, sorted: classes.txt and images/ folders, else images.txt."""
    names = set()
    classes_txt = cub / "classes.txt"
    if classes_txt.is_file():
        for lineno, line in read_lines(classes_txt, report, policy):
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            if len(parts) != 2 or not re.fullmatch(r"[0-9]+", parts[0]):
                policy.handle(report, Problem(str(classes_txt), f"expected '<class number> <class name>', got {line.strip()!r}"[:160], lineno))
                continue
            names.add(parts[1].strip())
    images_dir = cub / "images"
    if images_dir.is_dir():
        names |= {p.name for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if names:
        return sorted(names)
    return sorted({n.split("/", 1)[0] for n in image_names.values() if "/" in n})


def _read_captions(path: Path, report: DataReport, policy: BadInputPolicy) -> Optional[List[str]]:
    """The captions of one image; None (after a Problem) when the file is missing."""
    if not path.is_file():
        policy.handle(report, Problem(str(path), "caption file not found"))
        return None
    try:
        lines = read_lines(path, report, policy)
    except UserError as e:
        if policy.on_error == "error":
            raise
        policy.handle(report, Problem(str(path), str(e).replace(f"{path}: ", "", 1)))
        return None
    captions: List[str] = []
    for lineno, text in lines:
        if "\ufffd" in text:
            # the released CUB text files contain U+FFFD pairs where a character was lost
            text = text.replace("\ufffd", " ")
            report.add(Problem(str(path), "U+FFFD replacement characters replaced by spaces", lineno, action="converted"))
        captions += clean_captions([text], str(path), report, policy, first_line=lineno)
    return captions


def load_cub(
    root: Path,
    split: str = "train",
    policy: Optional[BadInputPolicy] = None,
    crop: bool = True,
    max_captions: Optional[int] = None,
) -> LoadedSplit:
    """Load one split of CUB-200-2011 with AttnGAN's metadata.

    Args:
        root: the folder holding ``CUB_200_2011/``, ``text/``, ``train/`` and ``test/``.
        split: ``train``, ``test`` (``val`` is an alias of ``test``) or ``all`` (every
            image listed in ``images.txt``, no split metadata needed).
        policy: bad-input policy (skip and count, or raise).
        crop: crop around the bounding box (StackGAN/AttnGAN's 0.75 rule) at load time.
        max_captions: keep at most this many captions per image (AttnGAN uses 10).

    Returns:
        A single-label :class:`LoadedSplit`; ``labels == (class_id,)``.
    """
    policy = policy or BadInputPolicy()
    root = Path(root)
    if split not in _SPLIT_DIRS and split != "all":
        raise unknown_split("cub", split, ("train", "test", "val", "all"))
    cub = root / "CUB_200_2011"
    if not cub.is_dir():
        raise DataError(f"{cub}: not found; --root must hold CUB_200_2011/, text/, train/ and test/")
    report = DataReport(source="cub", root=str(root), split=split)

    images_txt = cub / "images.txt"
    id_to_name: Dict[str, str] = {}
    if images_txt.is_file():
        id_to_name = {k: v[0] for k, v in _read_id_file(images_txt, report, policy, 1).items()}
    elif split == "all":
        raise DataError(f"{images_txt}: not found (needed for split 'all')")
    name_to_id = {Path(n).with_suffix("").as_posix(): i for i, n in id_to_name.items()}

    boxes: Dict[str, Tuple[float, float, float, float]] = {}
    bad_boxes: Dict[str, str] = {}
    bbox_txt = cub / "bounding_boxes.txt"
    if crop and bbox_txt.is_file():
        for img_id, fields in _read_id_file(bbox_txt, report, policy, 4).items():
            try:
                box = tuple(float(v) for v in fields)
            except ValueError:
                box = ()
            if len(box) != 4 or not all(math.isfinite(v) for v in box):
                bad_boxes[img_id] = f"image id {img_id}: box is not four finite numbers: {' '.join(fields)}; used uncropped"
                continue
            boxes[img_id] = box  # type: ignore[assignment]
    elif crop:
        report.add(Problem(str(bbox_txt), "not found; images are used uncropped", action="converted"))

    class_names = _class_names(cub, id_to_name, report, policy)
    class_index = {n: i for i, n in enumerate(class_names)}

    if split == "all":
        keys = sorted(name_to_id, key=lambda k: int(name_to_id[k]) if name_to_id[k].isdigit() else 0)
        class_info: Optional[List[Any]] = None
        split_file = str(images_txt)
    else:
        split_dir = root / _SPLIT_DIRS[split]
        keys = _read_filenames(split_dir)
        split_file = str(split_dir / "filenames.pickle")
        info_path = split_dir / "class_info.pickle"
        class_info = None
        if info_path.is_file():
            obj = _load_py2_pickle(info_path)
            if isinstance(obj, (list, tuple)) and len(obj) == len(keys):
                class_info = list(obj)
            else:
                n = len(obj) if isinstance(obj, (list, tuple)) else type(obj).__name__
                report.add(Problem(str(info_path), f"has {n} entries for {len(keys)} filenames; ignored", action="converted"))

    text_dir = root / "text"
    if not text_dir.is_dir() and (root / "text_c10").is_dir():
        text_dir = root / "text_c10"

    samples: List[Sample] = []
    for i, key in enumerate(keys):
        where = f"{split_file}[{i}]"
        cls_name = key.split("/", 1)[0] if "/" in key else ""
        if cls_name not in class_index:
            policy.handle(report, Problem(where, f"{key!r}: unknown class folder {cls_name!r}"))
            continue
        label = class_index[cls_name]
        if class_info is not None:
            m = _CLASS_NUMBER.match(cls_name)
            try:
                info = int(_as_str(class_info[i]))
            except ValueError:
                info = None
            if m and info is not None and info != int(m.group(1)):
                report.add(Problem(where, f"class_info says {info}, folder says {cls_name}; using the folder", action="converted"))

        img_id = name_to_id.get(key)
        rel = id_to_name[img_id] if img_id is not None else key + ".jpg"
        image_path = cub / "images" / rel
        captions = _read_captions(text_dir / (key + ".txt"), report, policy)
        if captions is None:
            continue
        if not captions:
            policy.handle(report, Problem(str(text_dir / (key + ".txt")), "no non-empty caption; image skipped"))
            continue
        if not check_image(image_path, report, policy):
            continue
        bbox = boxes.get(img_id) if img_id is not None else None
        if crop and bbox is not None and (bbox[2] <= 0 or bbox[3] <= 0):
            report.add(Problem(str(bbox_txt), f"image id {img_id}: empty box {bbox}; used uncropped", action="converted"))
            bbox = None
        elif crop and bbox is None and (boxes or bad_boxes):
            reason = bad_boxes.get(img_id or "") or f"no box for {key}; used uncropped"
            report.add(Problem(str(bbox_txt), reason, action="converted"))
        samples.append(
            Sample(
                key=key,
                captions=captions[:max_captions] if max_captions else captions,
                labels=(label,),
                image_path=image_path,
                bbox=bbox if crop else None,
            )
        )
    return finish_split(samples, class_names, report, multi_label=False)
