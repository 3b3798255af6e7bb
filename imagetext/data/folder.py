"""Users' own data: a folder of images plus JSONL or CSV metadata.

Layout::

    root/<split>.jsonl | root/<split>.csv          one file per split, or
    root/metadata.jsonl | root/metadata.csv        one file, with an optional "split" column
    root/classes.json                              optional: ["name", ...] or {"name": id}
    root/<image paths named in the metadata>

JSONL rows: ``"image"`` (path relative to root; ``file_name``/``filename``/``path`` also
accepted), ``"caption"`` (str) or ``"captions"`` (list; ``"text"`` also accepted),
optional ``"label"`` (int or str) or ``"labels"`` (list), ``"attributes"`` and
``"caption_attributes"`` (one dict per caption). CSV: columns ``image``, ``caption`` or
``captions`` (several captions separated by ``|``), ``label`` or ``labels`` (separated
by ``|``). Rows naming the same image are merged (one row per caption is common).

Labels: integers are class ids; strings are class names, mapped through classes.json
when present (a label not in it is a Problem naming file and line, and the row is
skipped), else numbered in sorted order over *all* metadata files in root, so train
and test share ids. This is also the layout ``t2i data synth`` writes (plus
``world.json``).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import DataError
from .images import check_image
from .records import BadInputPolicy, DataReport, LoadedSplit, Problem, Sample, clean_captions, finish_split, read_text

_IMAGE_KEYS = ("image", "file_name", "filename", "path")
_CAPTION_KEYS = ("captions", "caption", "text")
Row = Tuple[str, int, Dict[str, Any]]  # (file, line, fields)


def find_metadata(root: Path, split: str) -> Tuple[Path, bool]:
    """The metadata file for ``split`` and whether rows must be filtered by a split column."""
    for name in (f"{split}.jsonl", f"{split}.csv"):
        if (root / name).is_file():
            return root / name, False
    for name in ("metadata.jsonl", "metadata.csv"):
        if (root / name).is_file():
            return root / name, True
    raise DataError(
        f"{root}: no metadata for split {split!r}; expected {split}.jsonl, {split}.csv, "
        "metadata.jsonl or metadata.csv"
    )


def _split_bar(value: Any) -> List[str]:
    if value is None:
        return []
    return [v for v in str(value).split("|")]


def iter_rows(path: Path, report: DataReport, policy: BadInputPolicy) -> Iterator[Row]:
    """Rows of a JSONL or CSV file as dicts, with 1-based line numbers; bad lines are Problems."""
    text, note = read_text(path)
    if note:
        report.add(Problem(str(path), note, action="converted"))
    text = text.lstrip("\ufeff")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if not any(k in fields for k in _IMAGE_KEYS):
            raise DataError(f"{path}: no image column (one of {', '.join(_IMAGE_KEYS)}); columns: {fields}")
        for raw in reader:
            row = {(k or "").strip(): v for k, v in raw.items() if k is not None}
            out: Dict[str, Any] = {k: row[k] for k in row if k not in _CAPTION_KEYS + ("label", "labels")}
            caps: List[str] = []
            for k in _CAPTION_KEYS:
                caps += _split_bar(row.get(k)) if row.get(k) not in (None, "") else []
            out["captions"] = caps
            labels: List[str] = []
            for k in ("labels", "label"):
                labels += [v.strip() for v in _split_bar(row.get(k)) if v.strip()]
            out["labels"] = labels
            # line_num is the record's last physical line: exact for one-line records
            yield str(path), reader.line_num, out
        return
    for lineno, line_text in enumerate(text.splitlines(), 1):
        if not line_text.strip():
            continue  # blank lines carry no item
        try:
            obj = json.loads(line_text)
        except json.JSONDecodeError as e:
            policy.handle(report, Problem(str(path), f"invalid JSON ({e.msg})", lineno))
            continue
        if not isinstance(obj, dict):
            policy.handle(report, Problem(str(path), "a row must be a JSON object", lineno))
            continue
        yield str(path), lineno, obj


def _raw_captions(row: Dict[str, Any]) -> List[Any]:
    for k in _CAPTION_KEYS:
        if k in row and row[k] is not None:
            v = row[k]
            return list(v) if isinstance(v, (list, tuple)) else [v]
    return []


def _raw_labels(row: Dict[str, Any]) -> List[Any]:
    for k in ("labels", "label"):
        if k in row and row[k] is not None:
            v = row[k]
            return list(v) if isinstance(v, (list, tuple)) else [v]
    return []


def _is_int_like(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    return isinstance(x, str) and x.strip().isdigit()


class LabelMap:
    """Maps raw labels (ids or names) to class ids, per the rules in the module docstring."""

    def __init__(self, class_names: List[str], from_file: Optional[Path], ids_only: bool) -> None:
        self.class_names = class_names
        self.from_file = from_file
        self.ids_only = ids_only
        self._index = {n: i for i, n in enumerate(class_names)}

    @classmethod
    def build(cls, root: Path, seen: Sequence[Any]) -> "LabelMap":
        """From ``root/classes.json`` if present, else from every raw label ``seen``."""
        path = root / "classes.json"
        if path.is_file():
            try:
                obj = json.loads(read_text(path)[0].lstrip("\ufeff"))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: not valid JSON ({e})") from None
            if isinstance(obj, dict) and isinstance(obj.get("classes"), list):
                obj = obj["classes"]
            if isinstance(obj, list) and all(isinstance(n, str) for n in obj):
                return cls(list(obj), path, ids_only=False)
            if isinstance(obj, dict) and all(isinstance(v, int) for v in obj.values()):
                ids = sorted(obj.values())
                if ids != list(range(len(ids))):
                    raise DataError(f"{path}: class ids must be 0..{len(ids) - 1}, each once")
                names = [""] * len(ids)
                for name, i in obj.items():
                    names[i] = name
                return cls(names, path, ids_only=False)
            raise DataError(f"{path}: expected a list of class names or a {{name: id}} object")
        if all(_is_int_like(x) for x in seen):
            n = max((int(x) for x in seen), default=-1) + 1
            return cls([str(i) for i in range(n)], None, ids_only=True)
        names = sorted({str(x).strip() for x in seen if isinstance(x, (str, int)) and not isinstance(x, bool)})
        return cls(names, None, ids_only=False)

    def __call__(self, raw: Any) -> Optional[int]:
        """The class id, or None for an unknown label."""
        if isinstance(raw, bool) or raw is None:
            return None
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if self.ids_only or (self.from_file is not None and isinstance(raw, int)):
            if not _is_int_like(raw):
                return None
            i = int(raw)
            return i if 0 <= i < len(self.class_names) else None
        if isinstance(raw, (str, int)):
            name = str(raw).strip()
            if name in self._index:
                return self._index[name]
            if self.from_file is not None and name.isdigit() and int(name) < len(self.class_names):
                return int(name)  # a CSV id column next to a classes.json
        return None


def _metadata_files(root: Path) -> List[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".jsonl", ".csv"))


def load_folder(
    root: Path,
    split: str = "train",
    policy: Optional[BadInputPolicy] = None,
    multi_label: Optional[bool] = None,
    max_captions: Optional[int] = None,
) -> LoadedSplit:
    """Load a folder of images with JSONL/CSV metadata.

    Args:
        root: the folder (metadata files at its top level).
        split: which split; ``<split>.jsonl``/``.csv`` first, else ``metadata.*`` rows
            whose ``split`` column equals it (all rows when there is no split column).
        policy: bad-input policy.
        multi_label: force single/multi-label; default: ``world.json``'s
            ``multi_label`` if present, else True when any image has several labels.
        max_captions: keep at most this many captions per image.
    """
    policy = policy or BadInputPolicy()
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    meta, filter_split = find_metadata(root, split)
    report = DataReport(source="folder", root=str(root), split=split)
    rows = list(iter_rows(meta, report, policy))
    if filter_split and any("split" in r for _, _, r in rows):
        rows = [t for t in rows if str(t[2].get("split", "")).strip() == split]

    # labels seen anywhere in root, so every split numbers string labels the same way
    seen: List[Any] = []
    scratch = DataReport(source="folder", root=str(root), split="*")
    for path in _metadata_files(root):
        try:
            it = rows if path == meta and not filter_split else iter_rows(path, scratch, BadInputPolicy())
            seen += [x for _, _, r in it for x in _raw_labels(r)]
        except DataError:
            continue  # a non-metadata CSV in root: its problems are not this split's
    label_map = LabelMap.build(root, seen)
    world_multi = _world_multi_label(root)

    samples: List[Sample] = []
    by_key: Dict[str, int] = {}
    for file, line, row in rows:
        image = next((row[k] for k in _IMAGE_KEYS if row.get(k)), None)
        if not isinstance(image, str) or not image.strip():
            policy.handle(report, Problem(file, "row without an image path", line))
            continue
        labels: List[int] = []
        bad = None
        for raw in _raw_labels(row):
            cid = label_map(raw)
            if cid is None:
                bad = raw
                break
            labels.append(cid)
        if bad is not None:
            where = f" (not in {label_map.from_file.name})" if label_map.from_file else ""
            policy.handle(report, Problem(file, f"unknown label {bad!r}{where}", line))
            continue
        raw_caps = _raw_captions(row)
        cap_attrs = row.get("caption_attributes")
        aligned = isinstance(cap_attrs, list) and len(cap_attrs) == len(raw_caps)
        captions: List[str] = []
        kept_attrs: List[Dict[str, Any]] = []
        for j, cap in enumerate(raw_caps):
            # one at a time so caption_attributes stay aligned with the captions kept
            got = clean_captions([cap], file, report, policy, first_line=line)
            if got:
                captions += got
                if aligned:
                    kept_attrs.append(cap_attrs[j])
        image_path = Path(image) if Path(image).is_absolute() else root / image
        key = str(row.get("key") or Path(image).as_posix())
        if key in by_key:  # another row for the same image: merge its captions
            s = samples[by_key[key]]
            if tuple(sorted(set(labels))) != tuple(sorted(set(s.labels))) and labels:
                policy.handle(report, Problem(file, f"{image}: labels {labels} differ from an earlier row's {list(s.labels)}", line))
                continue
            s.captions += captions
            if s.caption_attributes is not None:
                s.caption_attributes += kept_attrs if aligned else [{} for _ in captions]
            continue
        if not captions:
            policy.handle(report, Problem(file, f"{image}: no non-empty caption; image skipped", line))
            continue
        if not check_image(image_path, report, policy, where=file, line=line):
            continue
        attrs = row.get("attributes")
        by_key[key] = len(samples)
        samples.append(
            Sample(
                key=key,
                captions=captions,
                labels=tuple(labels),
                image_path=image_path,
                attributes=attrs if isinstance(attrs, dict) else None,
                caption_attributes=kept_attrs if aligned else None,
            )
        )
    if multi_label is None:
        multi_label = world_multi if world_multi is not None else any(len(set(s.labels)) > 1 for s in samples)
    for s in samples:
        if multi_label:
            s.labels = tuple(sorted(set(s.labels)))
        elif len(s.labels) > 1:
            s.labels = s.labels[:1]
        if max_captions:
            s.captions = s.captions[:max_captions]
            if s.caption_attributes is not None:
                s.caption_attributes = s.caption_attributes[:max_captions]
    return finish_split(samples, label_map.class_names, report, multi_label=multi_label)


def _world_multi_label(root: Path) -> Optional[bool]:
    path = root / "world.json"
    if not path.is_file():
        return None
    try:
        obj = json.loads(read_text(path)[0].lstrip("\ufeff"))
    except json.JSONDecodeError:
        return None  # inspect's synthetic check reports a broken world.json
    value = obj.get("multi_label") if isinstance(obj, dict) else None
    return value if isinstance(value, bool) else None
