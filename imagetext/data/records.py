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


# --- helpers shared by the on-disk loaders -------------------------------------------

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig", "UTF-8 with BOM"),
    (b"\xff\xfe", "utf-16", "UTF-16 (little-endian BOM)"),
    (b"\xfe\xff", "utf-16", "UTF-16 (big-endian BOM)"),
)


def decode_text(data: bytes) -> Tuple[str, Optional[str]]:
    """Decode a text file's bytes; returns ``(text, note)``, ``note`` naming a non-UTF-8 encoding.

    The chain: a BOM (UTF-8 / UTF-16) wins; then strict UTF-8 (no note); then UTF-16
    without BOM when NUL bytes sit in every other position; then cp1252 and finally
    latin-1, which decodes any byte string (so this never fails, but says so).
    """
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), f"decoded as {name}"
            except UnicodeDecodeError:
                break  # a BOM followed by garbage: fall through to the byte-level guesses
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    if len(data) >= 2 and len(data) % 2 == 0 and b"\x00" in data:
        even, odd = data[0::2].count(0), data[1::2].count(0)
        codec = "utf-16-le" if odd > even else "utf-16-be"
        try:
            return data.decode(codec), f"decoded as {codec.upper()} without BOM"
        except UnicodeDecodeError:
            pass
    try:
        # cp1252 equals latin-1 on every printable latin-1 byte and also maps the
        # typographic quotes Windows editors write in 0x80-0x9F
        return data.decode("cp1252"), "decoded as latin-1/cp1252 (not UTF-8)"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "decoded as latin-1/cp1252 (not UTF-8)"


def read_text(path: Path) -> Tuple[str, Optional[str]]:
    """Read a text file with :func:`decode_text`'s fallback chain; DataError if unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_text(data)


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
