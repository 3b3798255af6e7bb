"""The one in-memory form every data source produces, and the report of what was skipped.

Every loader (synthetic worlds, CUB, COCO, Karpathy, folder) yields :class:`Sample`s and
fills a :class:`DataReport`. Bad items are handled by a :class:`BadInputPolicy`: converted
where that is right (grayscale -> RGB), otherwise skipped *and counted*, or raised as a
:class:`DataError` naming the file and line. Nothing is dropped silently.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple

from PIL import Image

Policy = Literal["skip", "error"]


from ..errors import DataError


@dataclass
class Problem:
    """One problem found in a data set: where, and why."""

    file: str
    reason: str
    line: Optional[int] = None
    action: str = "skipped"  # skipped | converted | error

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{loc}: {self.reason} ({self.action})"


@dataclass
class DataReport:
    """Counts and problems of one loaded split; printed by ``t2i data inspect``."""

    source: str
    root: str
    split: str
    images: int = 0
    captions: int = 0
    classes: int = 0
    labels: int = 0
    skipped: int = 0
    converted: int = 0
    problems: List[Problem] = field(default_factory=list)
    unknown_words: int = 0

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)
        if problem.action == "skipped":
            self.skipped += 1
        elif problem.action == "converted":
            self.converted += 1

    def as_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["problems"] = [dataclasses.asdict(p) for p in self.problems]
        return d


@dataclass
class BadInputPolicy:
    """What to do with a bad item: ``skip`` (count it) or ``error`` (raise DataError).

    ``check_images`` decodes every image while indexing (slow for big sets, but then no
    bad image can surface mid-epoch); without it, decoding failures at ``__getitem__``
    time are handled by :class:`~imagetext.data.dataset.ImageTextDataset` under the
    same policy.
    """

    on_error: Policy = "skip"
    check_images: bool = False
    min_caption_chars: int = 1

    def handle(self, report: DataReport, problem: Problem) -> None:
        """Record ``problem``; raise if the policy is ``error``."""
        if self.on_error == "error" and problem.action == "skipped":
            problem.action = "error"
            report.problems.append(problem)
            raise DataError(str(problem).replace(" (error)", ""))
        report.add(problem)


@dataclass
class Sample:
    """One image with its captions and labels.

    Attributes:
        key: stable id (file name or synthetic index).
        captions: at least one non-empty caption.
        labels: class ids; one for single-label sets (CUB species), a set for COCO
            categories; empty when unknown (then only its own pair is a positive).
        image_path: the file, for on-disk sets.
        render: a callable producing the image, for synthetic worlds (no file).
        bbox: optional (x, y, w, h) crop box (CUB bounding boxes).
        attributes: ground truth for synthetic worlds (for faithfulness evaluation).
    """

    key: str
    captions: List[str]
    labels: Tuple[int, ...] = ()
    image_path: Optional[Path] = None
    render: Optional[Callable[[], Image.Image]] = None
    bbox: Optional[Tuple[float, float, float, float]] = None
    attributes: Optional[Dict[str, Any]] = None
    caption_attributes: Optional[List[Dict[str, Any]]] = None

    def load_image(self) -> Image.Image:
        """Return the RGB image (cropped to ``bbox`` if set); raises DataError if unreadable."""
        from .images import crop_to_bbox, open_rgb

        if self.render is not None:
            img = self.render()
        elif self.image_path is not None:
            img, _ = open_rgb(self.image_path)
        else:
            raise DataError(f"sample {self.key}: has neither an image file nor a renderer")
        if self.bbox is not None:
            img = crop_to_bbox(img, self.bbox)
        return img


@dataclass
class LoadedSplit:
    """The result of loading one split: samples, class names and the report."""

    samples: List[Sample]
    class_names: List[str]
    report: DataReport
    multi_label: bool = False

    def __len__(self) -> int:
        return len(self.samples)


def clean_captions(
    raw: Sequence[Any],
    file: str,
    report: DataReport,
    policy: BadInputPolicy,
    first_line: Optional[int] = None,
) -> List[str]:
    """Strip captions, dropping (and counting) empty/whitespace-only/non-string ones."""
    out = []
    for i, c in enumerate(raw):
        line = None if first_line is None else first_line + i
        if not isinstance(c, str):
            policy.handle(report, Problem(file, f"caption is not text: {c!r}", line))
            continue
        text = " ".join(c.replace("\ufeff", "").split())
        if len(text) < policy.min_caption_chars:
            policy.handle(report, Problem(file, "empty or whitespace-only caption", line))
            continue
        out.append(text)
    return out


# --- text decoding shared by the on-disk loaders ------------------------------------------
#
# Text files are UTF-8. A BOM (UTF-8, UTF-16) says otherwise and wins; a file that is not
# UTF-8 but has NUL bytes in every other position is read as UTF-16 without BOM. Nothing
# else is guessed: a line with a byte that is not UTF-8 is reported on *that line* (file,
# line, column, the bytes) and skipped, every other line is kept exactly, and the message
# says how to convert the file. A cp1252 file is therefore not silently re-decoded (that
# turned "café" into "cafÃ©" in every caption when only one byte was off).
#
# Line-based readers (JSONL, CSV, CUB text files, classes.txt) use :func:`read_lines` and
# get one Problem per bad line; whole-document readers (JSON) use :func:`read_text`, which
# raises a DataError naming file, line and column.

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8", "UTF-8 with BOM"),
    (b"\xff\xfe", "utf-16-le", "UTF-16 (little-endian BOM)"),
    (b"\xfe\xff", "utf-16-be", "UTF-16 (big-endian BOM)"),
)

CONVERT_HINT = "convert the file to UTF-8, e.g. iconv -f cp1252 -t utf-8 FILE > FILE.utf8"


@dataclass
class BadLine:
    """A line that is not valid UTF-8: where, and which bytes."""

    line: int  # 1-based
    column: int  # 1-based byte column of the first invalid byte
    offset: int  # 0-based byte offset of that byte in the file
    bad: bytes  # the invalid bytes (as Python's decoder delimits them)

    def reason(self) -> str:
        shown = " ".join(f"0x{b:02x}" for b in self.bad)
        return (f"invalid UTF-8 (byte {shown} at column {self.column}, file offset {self.offset}); "
                f"{CONVERT_HINT}")


@dataclass
class DecodedLines:
    """A text file split into lines (on ``\\n``; a trailing ``\\r`` is dropped).

    Attributes:
        lines: ``(line number, text)`` of every decodable line, 1-based, in order.
        bad: the lines that are not valid UTF-8 (absent from ``lines``).
        note: the encoding when it is not plain UTF-8 (a BOM, UTF-16), else None.
    """

    lines: List[Tuple[int, str]]
    bad: List[BadLine]
    note: Optional[str] = None


def _split(text: str) -> List[str]:
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()  # the newline that ends the last line
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def _utf16_without_bom(data: bytes) -> Optional[str]:
    """The codec of a BOM-less UTF-16 file (NULs in every other position), else None."""
    if len(data) < 2 or len(data) % 2 or b"\x00" not in data:
        return None
    even, odd = data[0::2].count(0), data[1::2].count(0)
    if max(even, odd) < len(data) // 8:  # a stray NUL is not UTF-16
        return None
    return "utf-16-le" if odd > even else "utf-16-be"


def _decode_whole(data: bytes, codec: str, name: str, what: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: {what} but not valid {codec.upper()} at byte {e.start}; "
                        f"save it again as UTF-8") from None


def _decode_whole_file(data: bytes, name: str) -> Tuple[Optional[str], int, Optional[str]]:
    """``(text, body start, note)``: the text when the whole file decodes (BOM, UTF-8, UTF-16), else None."""
    start = 0
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            if codec != "utf-8":
                return _decode_whole(data[len(bom):], codec, name, f"starts with a {label}"), len(bom), f"decoded as {label}"
            start = len(bom)
            break
    note = "decoded as UTF-8 with BOM" if start else None
    try:
        return data[start:].decode("utf-8"), start, note
    except UnicodeDecodeError:
        pass
    codec = None if start else _utf16_without_bom(data)
    if codec is not None:
        try:
            return data.decode(codec), 0, f"decoded as {codec.upper()} without BOM"
        except UnicodeDecodeError:
            pass
    return None, start, note


def decode_lines(data: bytes, name: str = "<text>") -> DecodedLines:
    """Decode a text file's bytes line by line (see the rules above).

    Raises:
        DataError: only when a UTF-16 BOM is followed by bytes that are not UTF-16
            (nothing of such a file can be trusted).
    """
    text, start, note = _decode_whole_file(data, name)
    if text is not None:
        return DecodedLines(list(enumerate(_split(text), 1)), [], note)
    lines: List[Tuple[int, str]] = []
    bad: List[BadLine] = []
    raw_lines = data[start:].split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    offset = start
    for lineno, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad.append(BadLine(lineno, e.start + 1, offset + e.start, raw[e.start:e.end]))
        else:
            lines.append((lineno, line[:-1] if line.endswith("\r") else line))
        offset += len(raw) + 1
    return DecodedLines(lines, bad, note)


def decode_text(data: bytes, name: str = "<text>") -> Tuple[str, Optional[str]]:
    """Decode a whole document (a JSON file); returns ``(text, note)`` without a leading BOM.

    ``note`` names a non-plain-UTF-8 encoding (BOM, UTF-16), None for plain UTF-8.

    Raises:
        DataError: a byte is not valid UTF-8; the message names ``name``, line and column.
    """
    text, _, note = _decode_whole_file(data, name)
    if text is not None:
        return text.lstrip("\ufeff"), note
    decoded = decode_lines(data, name)
    b = decoded.bad[0]
    more = f" (and {len(decoded.bad) - 1} more lines)" if len(decoded.bad) > 1 else ""
    shown = " ".join(f"0x{x:02x}" for x in b.bad)
    raise DataError(f"{name}:{b.line}:{b.column}: invalid UTF-8 (byte {shown} at line {b.line}, "
                    f"column {b.column}){more}; {CONVERT_HINT}")


def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_text(path: Path) -> Tuple[str, Optional[str]]:
    """Read a whole document strictly (:func:`decode_text`); DataError if unreadable or not UTF-8."""
    return decode_text(read_bytes(path), str(path))


def report_decoding(decoded: DecodedLines, file: str, report: DataReport, policy: BadInputPolicy) -> None:
    """Record a file's encoding note (``converted``) and each undecodable line (``skipped``)."""
    if decoded.note:
        report.add(Problem(file, decoded.note, action="converted"))
    for b in decoded.bad:
        policy.handle(report, Problem(file, b.reason(), b.line))


def read_lines(path: Path, report: DataReport, policy: BadInputPolicy) -> List[Tuple[int, str]]:
    """The decodable ``(line number, text)`` lines of a text file; the rest are Problems.

    Raises:
        DataError: the file cannot be read, or (``error`` policy) a line is not UTF-8.
    """
    decoded = decode_lines(read_bytes(path), str(path))
    report_decoding(decoded, str(path), report, policy)
    return decoded.lines


def finish_split(
    samples: List[Sample], class_names: List[str], report: DataReport, multi_label: bool = False
) -> LoadedSplit:
    """Fill the report's counts from ``samples`` and bundle them into a :class:`LoadedSplit`.

    ``report.labels`` counts images with at least one label.
    """
    report.images = len(samples)
    report.captions = sum(len(s.captions) for s in samples)
    report.classes = len(class_names)
    report.labels = sum(1 for s in samples if s.labels)
    return LoadedSplit(samples=samples, class_names=list(class_names), report=report, multi_label=multi_label)


def unknown_split(source: str, split: str, valid: Sequence[str]) -> DataError:
    """The DataError for a split that ``source`` does not have, with the closest valid name."""
    import difflib

    close = difflib.get_close_matches(str(split).lower(), list(valid), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return DataError(f"{source}: unknown split {split!r}{hint}; available splits: {', '.join(valid)}")
