"""``t2i data inspect``: load a data set in a published layout, decode everything, report.

The report counts images, captions, classes and labelled images, what was skipped and
what was converted, and lists every problem as ``file:line: reason (action)``.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import DataError
from .records import BadInputPolicy, DataReport, LoadedSplit, Problem, read_text

FORMATS = ("cub", "coco", "karpathy", "folder", "synthetic")


def load_format(fmt: str, root: Path, split: str, policy: BadInputPolicy, **kw: Any) -> LoadedSplit:
    """Load ``split`` of the data set at ``root`` in layout ``fmt`` (see :data:`FORMATS`)."""
    root = Path(root)
    if fmt == "cub":
        from .cub import load_cub

        return load_cub(root, split, policy, **kw)
    if fmt == "coco":
        from .coco import load_coco

        return load_coco(root, split, policy, **kw)
    if fmt == "karpathy":
        from .karpathy import load_karpathy

        return load_karpathy(root, split, policy, **kw)
    if fmt in ("folder", "synthetic"):
        from .folder import load_folder

        world = _check_world(root) if fmt == "synthetic" else None
        loaded = load_folder(root, split, policy, **kw)
        loaded.report.source = fmt
        if world is not None:
            _compare_classes(root, world, loaded)
        return loaded
    raise DataError(f"unknown data format {fmt!r}; use one of {', '.join(FORMATS)}")


def _check_world(root: Path) -> Dict[str, Any]:
    """A synthetic world folder must carry a readable ``world.json`` object."""
    path = root / "world.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; a folder written by `t2i data synth` has one (use --format folder otherwise)")
    try:
        obj = json.loads(read_text(path)[0])
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object")
    return obj


def _compare_classes(root: Path, world: Dict[str, Any], loaded: LoadedSplit) -> None:
    """Note a mismatch between the world's classes (a name list or a count) and classes.json."""
    names = world.get("classes", world.get("class_names"))
    if isinstance(names, list):
        n, same = len(names), list(names) == list(loaded.class_names)
    elif isinstance(names, int) and not isinstance(names, bool):
        n, same = names, names == len(loaded.class_names)
    else:
        return
    if not same:
        loaded.report.problems.append(
            Problem(str(root / "world.json"), f"world has {n} classes, classes.json {len(loaded.class_names)}", action="error")
        )


def inspect_dataset(fmt: str, root: Path, split: str = "train", policy: Optional[BadInputPolicy] = None, **kw: Any) -> DataReport:
    """Load one split and return its :class:`DataReport`.

    Without a ``policy`` every image is decoded (``check_images=True``, skip and count),
    so the report lists every file that would fail during training; a given policy is
    used as is (``t2i data inspect --no-decode`` passes ``check_images=False``).
    """
    policy = policy if policy is not None else BadInputPolicy(on_error="skip", check_images=True)
    return load_format(fmt, Path(root), split, policy, **kw).report


def format_report(report: DataReport, max_problems: Optional[int] = None) -> str:
    """The report for humans: counts, problem reasons by frequency, then each problem."""
    lines = [
        f"{report.source} data at {report.root} (split {report.split})",
        f"  images:          {report.images}",
        f"  captions:        {report.captions}",
        f"  classes:         {report.classes}",
        f"  labelled images: {report.labels}",
        f"  skipped:         {report.skipped}",
        f"  converted:       {report.converted}",
    ]
    if report.unknown_words:
        lines.append(f"  unknown words:   {report.unknown_words}")
    errors = sum(1 for p in report.problems if p.action == "error")
    if errors:
        lines.append(f"  errors:          {errors}")
    if not report.problems:
        lines.append("no problems found")
        return "\n".join(lines)
    kinds = Counter((_kind(p.reason), p.action) for p in report.problems)
    if len(report.problems) > 1:
        lines.append("problem kinds:")
        for (kind, action), n in kinds.most_common():
            lines.append(f"  {n:6d}  {kind} ({action})")
    shown = report.problems if max_problems is None else report.problems[:max_problems]
    lines.append(f"problems ({len(report.problems)}):")
    lines += [f"  {p}" for p in shown]
    if len(shown) < len(report.problems):
        lines.append(f"  ... and {len(report.problems) - len(shown)} more (--json lists all)")
    return "\n".join(lines)


def _kind(reason: str) -> str:
    """A reason without the file-specific part, for grouping ("image x.jpg: not found" -> "not found")."""
    tail = reason.split(": ", 1)[1] if reason.startswith("image ") and ": " in reason else reason
    return tail.split(" (", 1)[0].split(": ", 1)[0]
