"""Validation of what a command line is given, before any work starts.

Every ``t2i`` subcommand (and every later entry point: training, generation, the demo)
declares its numeric options through these typed argparse converters and checks its
output paths with :func:`check_output_file` / :func:`prepare_output_dir` while parsing,
so a typo costs nothing: no metric is computed, no image rendered, before the command
knows it can use every input and write every output.

This module imports nothing heavy (no torch, no numpy): ``t2i --help`` builds every
parser, and must stay fast.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Optional

from .errors import UserError


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be a positive integer (>= 1)")
    return v


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} must be >= 0")
    return v


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: an integer in ``[lo, hi]``."""

    def conv(text: str) -> int:
        v = _int(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} must be between {lo} and {hi}")
        return v

    conv.__name__ = f"int in [{lo}, {hi}]"
    return conv


def seed_int(text: str) -> int:
    """argparse type: a seed, 0 <= seed < 2**32 (what numpy and torch both accept)."""
    v = _int(text)
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"{v} must be between 0 and 2**32-1")
    return v


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable_parent(path: Path, flag: str) -> None:
    anc = _nearest_existing(path.parent)
    if not anc.is_dir():
        raise UserError(f"{flag} {path}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {anc} is not writable")


def check_output_file(path: Path, flag: str, suffix: Optional[str] = None) -> Path:
    """Check that ``path`` can be written as a file (without writing it).

    Raises:
        UserError: ``path`` is a folder, its parent is a file or not writable, or it lacks ``suffix``.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name, e.g. {path / ('result' + (suffix or '.json'))}")
    if suffix and path.suffix.lower() != suffix:
        raise UserError(f"{flag} {path}: must end in {suffix}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: exists and is not writable")
    _writable_parent(path, flag)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: concurrent writers never share one
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def prepare_output_dir(path: Path, flag: str, overwrite: bool, owned: Iterable[str] = ()) -> Path:
    """Make ``path`` ready for a writer that must not mix old and new output.

    A missing or empty folder is fine. A non-empty one is refused unless ``overwrite``;
    then the entries this command owns (names or globs in ``owned``) are removed, and
    anything else in the folder is left alone and named in the error if it would be
    mixed in. Without ``owned`` the whole folder's content is the command's.

    Raises:
        UserError: ``path`` is a file, not writable, or non-empty without ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file, not a folder")
    if not path.exists():
        _writable_parent(path, flag)
        return path
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: folder is not writable")
    entries = sorted(path.iterdir())
    if not entries:
        return path
    if not overwrite:
        shown = ", ".join(e.name for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise UserError(f"{flag} {path}: folder is not empty ({len(entries)} entries: {shown}); "
                        "choose a new folder or pass --overwrite to replace its content")
    patterns = list(owned)
    doomed = entries if not patterns else sorted({p for pat in patterns for p in path.glob(pat)})
    for e in doomed:
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e)
        else:
            e.unlink()
    return path
