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
Metadata files are UTF-8 (a BOM or UTF-16 is accepted and noted); a line with a byte
that is not UTF-8 is a Problem on that line and is skipped, the other lines are kept.
Hidden files (``.name``) at the top level are not metadata.

Labels, one value at a time:

- **class ids**: non-negative integers, also written as integral JSON numbers (``26.0``
  is the number 26: JSON has one number type) or as digit strings (``"26"``, CSV cells).
- **class names**: any other non-empty string.
- **invalid** (a Problem naming file, line and value; the row is skipped): booleans,
  null, non-integral or negative numbers (``1.5``, ``-1``, also as strings), lists or
  objects as a label, and in CSV the cells ``true``/``false``/``null``/``none``/``nan``.
  An invalid label never changes how the other rows are numbered.

With ``classes.json`` ids index it (an id past its end is a Problem) and names are
looked up in it (a name not in it is a Problem); ids and names may be mixed. Without
it, the labels of *all* metadata files in root decide, so train and test share ids:
all ids -> classes ``"0"..str(max id)``; all names -> the names in sorted order; a mix
of ids and names is a DataError naming a line of each (write classes.json to say what
the ids mean).

Splits: ``<split>.jsonl``/``.csv`` first; else ``metadata.*`` rows whose ``split``
column equals the split (every row when there is no split column). In a split column,
a row without a value, a value that is not text, or a near miss of a known split name
(``"Test"``, ``"tset"``: differs only in case, or is close to train/val/test/restval/
dev/validation/valid or a per-split file's name) is a Problem in every split loaded,
with the closest name suggested; other values are custom split names. A split that
exists nowhere is a DataError listing the splits there are.

This is also the layout ``t2i data synth`` writes (plus ``world.json``).
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import DataError
from .images import check_image
from .records import (
    CONVERT_HINT,
    BadInputPolicy,
    DataReport,
    LoadedSplit,
    Problem,
    Sample,
    clean_captions,
    decode_lines,
    finish_split,
    read_bytes,
    read_text,
    report_decoding,
)

_IMAGE_KEYS = ("image", "file_name", "filename", "path")
_CAPTION_KEYS = ("captions", "caption", "text")
Row = Tuple[str, int, Dict[str, Any]]  # (file, line, fields)
KNOWN_SPLITS = ("train", "val", "test", "restval", "dev", "validation", "valid")
MAX_CLASS_ID = 1_000_000
_BAD_LINE = "\ufdd0bad-line\ufdd0"  # stands in for an undecodable CSV line (already reported)


def _metadata_files(root: Path) -> List[Path]:
    return sorted(
        p for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in (".jsonl", ".csv") and not p.name.startswith(".")
    )


def available_splits(root: Path) -> List[str]:
    """Split names a folder offers: per-split file stems and the values of metadata.*'s split column."""
    out = set()
    for p in _metadata_files(root):
        if p.stem != "metadata":
            out.add(p.stem)
            continue
        scratch = DataReport(source="folder", root=str(root), split="*")
        try:
            for _, _, r in iter_rows(p, scratch, BadInputPolicy()):
                v = r.get("split")
                if isinstance(v, str) and v.strip():
                    out.add(v.strip())
        except DataError:
            continue
    return sorted(out)


def find_metadata(root: Path, split: str) -> Tuple[Path, bool]:
    """The metadata file for ``split`` and whether rows must be filtered by a split column."""
    for name in (f"{split}.jsonl", f"{split}.csv"):
        if (root / name).is_file():
            return root / name, False
    for name in ("metadata.jsonl", "metadata.csv"):
        if (root / name).is_file():
            return root / name, True
    have = available_splits(root)
    listing = f"; splits here: {', '.join(have)}" if have else ""
    raise DataError(
        f"{root}: no metadata for split {split!r}; expected {split}.jsonl, {split}.csv, "
        f"metadata.jsonl or metadata.csv{listing}"
    )


def _split_bar(value: Any) -> List[str]:
    if value is None:
        return []
    return [v for v in str(value).split("|")]


def iter_rows(path: Path, report: DataReport, policy: BadInputPolicy) -> Iterator[Row]:
    """Rows of a JSONL or CSV file as dicts, with 1-based line numbers; bad lines are Problems."""
    decoded = decode_lines(read_bytes(path), str(path))
    if path.suffix.lower() == ".csv":
        bad = {b.line for b in decoded.bad}
        header_line = next((n for n, t in decoded.lines if t.strip()), None)
        if bad and (header_line is None or min(bad) < header_line):
            b = decoded.bad[0]
            shown = " ".join(f"0x{x:02x}" for x in b.bad)
            raise DataError(f"{path}:{b.line}: the header line is not valid UTF-8 (byte {shown} at column "
                            f"{b.column}), so no column can be named; {CONVERT_HINT}")
        report_decoding(decoded, str(path), report, policy)
        n_lines = max([n for n, _ in decoded.lines] + [b.line for b in decoded.bad] + [0])
        by_line = dict(decoded.lines)
        text = "\n".join(by_line.get(n, _BAD_LINE) for n in range(1, n_lines + 1)) + "\n"
        text = text.lstrip("\ufeff")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if not any(k in fields for k in _IMAGE_KEYS):
            raise DataError(f"{path}: no image column (one of {', '.join(_IMAGE_KEYS)}); columns: {fields}")
        for raw in reader:
            values = list(raw.values())
            if any(_BAD_LINE in v for v in values if isinstance(v, str)) or (
                    any(isinstance(v, list) and any(_BAD_LINE in x for x in v) for v in values)):
                continue  # holds an undecodable line, reported above
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
    report_decoding(decoded, str(path), report, policy)
    for lineno, line_text in decoded.lines:
        if lineno == 1:
            line_text = line_text.lstrip("\ufeff")
        if not line_text.strip():
            continue  # blank lines carry no item
        try:
            obj = json.loads(line_text)
        except json.JSONDecodeError as e:
            policy.handle(report, Problem(str(path), f"invalid JSON ({e.msg} at column {e.colno})", lineno))
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
    """The raw label values of a row; a present ``null`` is a value (an invalid one)."""
    for k in ("labels", "label"):
        if k in row:
            v = row[k]
            return list(v) if isinstance(v, (list, tuple)) else [v]
    return []


_ID = re.compile(r"\+?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_CSV_NON_LABELS = {"true", "false", "null", "none", "nan"}


def _show(raw: Any) -> str:
    try:
        return json.dumps(raw, ensure_ascii=False)[:80]
    except (TypeError, ValueError):
        return repr(raw)[:80]


def _numeric_id(value: float) -> Tuple[str, Any]:
    if not math.isfinite(value):
        return "bad", "not a finite number"
    if not value.is_integer():
        return "bad", "a class id must be a whole number"
    if value < 0:
        return "bad", "a class id cannot be negative"
    if value > MAX_CLASS_ID:
        return "bad", f"a class id above {MAX_CLASS_ID:,} (use class names or classes.json)"
    return "id", int(value)


def parse_label(raw: Any, csv_cell: bool = False) -> Tuple[str, Any]:
    """Classify one raw label: ``("id", int)``, ``("name", str)`` or ``("bad", why)``.

    See the module docstring for the rules; ``csv_cell`` marks a CSV value, where the
    words true/false/null/none/nan stand for missing or boolean data, not a class.
    """
    if isinstance(raw, bool):
        return "bad", "a boolean, not a class id or name"
    if isinstance(raw, int):
        return _numeric_id(float(raw)) if raw <= MAX_CLASS_ID else ("bad", f"a class id above {MAX_CLASS_ID:,}")
    if isinstance(raw, float):
        return _numeric_id(raw)
    if raw is None:
        return "bad", "null, not a class id or name"
    if isinstance(raw, str):
        s = raw.strip()
        if not s:
            return "bad", "an empty label"
        if _ID.fullmatch(s):
            return _numeric_id(float(int(s))) if len(s) < 16 else ("bad", f"a class id above {MAX_CLASS_ID:,}")
        if _NUMBER.fullmatch(s):
            return _numeric_id(float(s))
        if csv_cell and s.lower() in _CSV_NON_LABELS:
            return "bad", f"{s!r} is not a class id or name"
        return "name", s
    return "bad", f"a {'list' if isinstance(raw, (list, tuple)) else 'JSON object' if isinstance(raw, dict) else type(raw).__name__}, not a class id or name"


class LabelMap:
    """Maps raw labels (ids or names) to class ids, per the rules in the module docstring."""

    def __init__(self, class_names: List[str], from_file: Optional[Path], ids_only: bool) -> None:
        self.class_names = class_names
        self.from_file = from_file
        self.ids_only = ids_only
        self._index = {n: i for i, n in enumerate(class_names)}

    @classmethod
    def from_classes_json(cls, path: Path) -> "LabelMap":
        text, _ = read_text(path)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
        if isinstance(obj, dict) and isinstance(obj.get("classes"), list):
            obj = obj["classes"]
        if isinstance(obj, list) and all(isinstance(n, str) for n in obj):
            dup = next((n for i, n in enumerate(obj) if n in obj[:i]), None)
            if dup is not None:
                raise DataError(f"{path}: class name {dup!r} is listed twice")
            return cls(list(obj), path, ids_only=False)
        if isinstance(obj, dict) and obj:
            ids: Dict[str, int] = {}
            for name, v in obj.items():
                kind, val = parse_label(v) if not isinstance(v, str) else ("bad", "a string")
                if kind != "id":
                    raise DataError(f"{path}: class {name!r}: id {_show(v)} is not a class id ({val})")
                ids[name] = val
            if sorted(ids.values()) != list(range(len(ids))):
                raise DataError(f"{path}: class ids must be 0..{len(ids) - 1}, each once")
            names = [""] * len(ids)
            for name, i in ids.items():
                names[i] = name
            return cls(names, path, ids_only=False)
        raise DataError(f"{path}: expected a list of class names or a {{name: id}} object")

    @classmethod
    def build(cls, root: Path, seen: Sequence[Tuple[str, int, Any, bool]]) -> "LabelMap":
        """From ``root/classes.json`` if present, else from every ``(file, line, raw, csv)`` label seen.

        Raises:
            DataError: classes.json is unusable, or (without it) ids and names are mixed.
        """
        path = root / "classes.json"
        if path.is_file():
            return cls.from_classes_json(path)
        first_id = first_name = None
        ids: List[int] = []
        names = set()
        for file, line, raw, csv_cell in seen:
            kind, value = parse_label(raw, csv_cell)
            if kind == "id":
                ids.append(value)
                first_id = first_id or (file, line, raw)
            elif kind == "name":
                names.add(value)
                first_name = first_name or (file, line, raw)
        if first_id and first_name:
            (f1, l1, r1), (f2, l2, r2) = first_id, first_name
            raise DataError(
                f"{root}: labels mix class ids and class names ({Path(f1).name}:{l1} has id {_show(r1)}, "
                f"{Path(f2).name}:{l2} has name {_show(r2)}); use one kind, or write classes.json "
                '(["name0", "name1", ...]) to say which name each id means'
            )
        if ids:
            return cls([str(i) for i in range(max(ids) + 1)], None, ids_only=True)
        return cls(sorted(names), None, ids_only=False)

    def __call__(self, raw: Any, csv_cell: bool = False) -> Tuple[Optional[int], Optional[str]]:
        """``(class id, None)``, or ``(None, reason)`` for an invalid or unknown label."""
        if isinstance(raw, str) and self.from_file is not None and raw.strip() in self._index:
            return self._index[raw.strip()], None  # a class literally named "7" in classes.json
        kind, value = parse_label(raw, csv_cell)
        if kind == "bad":
            return None, f"invalid label ({value}): {_show(raw)}"
        if kind == "id":
            if value < len(self.class_names):
                return value, None
            where = f"{self.from_file.name} has ids 0..{len(self.class_names) - 1}" if self.from_file else "out of range"
            return None, f"unknown label {raw!r} (class id; {where})"
        if value in self._index:
            return self._index[value], None
        where = f" (not in {self.from_file.name})" if self.from_file else ""
        return None, f"unknown label {value!r}{where}"


def _split_value(raw: Any) -> Tuple[Optional[str], Optional[str]]:
    """A row's split name, or ``(None, reason)``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, "no split value (other rows of this file have one)"
    if not isinstance(raw, str):
        return None, f"split value {_show(raw)} is not text"
    return raw.strip(), None


def _near_miss(value: str, established: Sequence[str]) -> Optional[str]:
    """The established split ``value`` is probably a misspelling of, else None."""
    if value in established:
        return None
    low = value.lower()
    for name in established:
        if low == name.lower():
            return name
    close = difflib.get_close_matches(low, list(established), n=1, cutoff=0.75)
    return close[0] if close else None


def _filter_split(root: Path, meta: Path, rows: List[Row], split: str, report: DataReport,
                  policy: BadInputPolicy) -> List[Row]:
    """The rows of ``split`` in a metadata.* with a split column; bad split values are Problems."""
    established = list(KNOWN_SPLITS) + [p.stem for p in _metadata_files(root) if p.stem != "metadata"]
    established += [split] if split not in established else []
    kept: List[Row] = []
    present, suggested = set(), set()
    for file, line, row in rows:
        value, why = _split_value(row.get("split"))
        if value is None:
            policy.handle(report, Problem(file, why or "no split value", line))
            continue
        near = _near_miss(value, established)
        if near is not None:
            suggested.add(near)
            policy.handle(report, Problem(file, f"unknown split {value!r} (did you mean {near!r}?)", line))
            continue
        present.add(value)
        if value == split:
            kept.append((file, line, row))
    if split not in present and split not in suggested:
        have = ", ".join(sorted(present)) or "none"
        raise DataError(f"{meta}: no rows of split {split!r}; its split column has: {have}")
    return kept


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

    Raises:
        DataError: root is not a folder, the split exists nowhere, a CSV has no image
            column, classes.json is unusable, or ids and names are mixed without it.
    """
    policy = policy or BadInputPolicy()
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    meta, filter_split = find_metadata(root, split)
    report = DataReport(source="folder", root=str(root), split=split)
    all_rows = list(iter_rows(meta, report, policy))
    rows = all_rows
    if filter_split and any("split" in r for _, _, r in all_rows):
        rows = _filter_split(root, meta, all_rows, split, report, policy)

    # labels seen anywhere in root, so every split numbers labels the same way
    seen: List[Tuple[str, int, Any, bool]] = []
    scratch = DataReport(source="folder", root=str(root), split="*")
    for path in _metadata_files(root):
        is_csv = path.suffix.lower() == ".csv"
        try:
            it = all_rows if path == meta else iter_rows(path, scratch, BadInputPolicy())
            seen += [(f, n, x, is_csv) for f, n, r in it for x in _raw_labels(r)]
        except DataError:
            continue  # a non-metadata CSV in root: its problems are not this split's
    label_map = LabelMap.build(root, seen)
    world_multi = _world_multi_label(root)

    samples: List[Sample] = []
    by_key: Dict[str, int] = {}
    for file, line, row in rows:
        image = next((row[k] for k in _IMAGE_KEYS if row.get(k)), None)
        if not isinstance(image, str) or not image.strip():
            why = "row without an image path" if image is None else f"image path {_show(image)} is not text"
            policy.handle(report, Problem(file, why, line))
            continue
        labels: List[int] = []
        bad = None
        is_csv = file.lower().endswith(".csv")
        for raw in _raw_labels(row):
            cid, why = label_map(raw, is_csv)
            if cid is None:
                bad = why
                break
            labels.append(cid)
        if bad is not None:
            policy.handle(report, Problem(file, bad, line))
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
        obj = json.loads(read_text(path)[0])
    except (json.JSONDecodeError, DataError):
        return None  # inspect's synthetic check reports a broken world.json
    value = obj.get("multi_label") if isinstance(obj, dict) else None
    return value if isinstance(value, bool) else None
