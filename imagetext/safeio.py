"""One safe way to read the array files users hand the CLI (``.npz`` / ``.npy``).

Every file is type-sniffed from its first bytes before numpy sees it, and read with
``allow_pickle=False``: a pickle, a text file, a truncated or empty file, an ``.npy``
where an ``.npz`` was expected (or the reverse), missing keys, object arrays and
non-finite values all become one :class:`~imagetext.errors.MetricInputError` naming the
file and what to do, never a traceback and never arbitrary code execution.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from .errors import MetricInputError

_MAGIC = (
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "npz"),
    (b"PK\x05\x06", "npz"),  # an empty zip archive
    (b"\x80", "pickle"),
    (b"\x89PNG", "png image"),
    (b"\xff\xd8\xff", "jpeg image"),
    (b"SQLite", "sqlite database"),
    (b"\x1f\x8b", "gzip archive"),
)


def sniff(path: Path) -> str:
    """What ``path`` holds, judged from its first bytes: npy, npz, pickle, text, empty, ... ."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "empty"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary"


def _check_file(path: Path, flag: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise MetricInputError(f"{flag} {path}: no such file")
    if path.is_dir():
        raise MetricInputError(f"{flag} {path}: is a folder, expected a file")
    return path


def _finite(arr: Any, where: str, check_finite: bool) -> Any:
    import numpy as np

    if arr.dtype == object:
        raise MetricInputError(f"{where}: holds Python objects (dtype=object); save plain numeric arrays")
    if check_finite and arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise MetricInputError(f"{where}: {bad} NaN/inf value(s)")
    return arr


def load_npy(path: Path, flag: str = "", mmap: bool = False, check_finite: bool = True) -> Any:
    """A numeric array from an ``.npy`` file, sniffed and read without pickles."""
    import numpy as np

    path = _check_file(path, flag)
    where = f"{flag} {path}".strip()
    kind = sniff(path)
    if kind != "npy":
        hint = " (an .npz archive: pass it where an .npz is expected)" if kind == "npz" else ""
        raise MetricInputError(f"{where}: not an .npy array file (looks like {kind}){hint}")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:  # pickled object arrays refuse to load without allow_pickle
        raise MetricInputError(f"{where}: cannot read ({e})") from None
    except (OSError, EOFError) as e:
        raise MetricInputError(f"{where}: truncated or corrupt .npy ({e})") from None
    return _finite(arr, where, check_finite and not mmap)


def load_npz(path: Path, flag: str = "", required: Iterable[str] = (), check_finite: bool = True) -> Dict[str, Any]:
    """All arrays of an ``.npz`` file as a dict, sniffed and read without pickles.

    Raises:
        MetricInputError: not an npz (naming what it looks like), truncated, a key in
            ``required`` missing (naming those present), an object array, NaN/inf.
    """
    import numpy as np

    path = _check_file(path, flag)
    where = f"{flag} {path}".strip()
    kind = sniff(path)
    if kind != "npz":
        hint = " (a single .npy array)" if kind == "npy" else ""
        raise MetricInputError(f"{where}: not an .npz archive (looks like {kind}){hint}")
    out: Dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                out[k] = z[k]
    except ValueError as e:
        raise MetricInputError(f"{where}: cannot read ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise MetricInputError(f"{where}: truncated or corrupt .npz ({e})") from None
    missing = [k for k in required if k not in out]
    if missing:
        raise MetricInputError(f"{where}: missing key(s) {', '.join(missing)} (has: {', '.join(sorted(out)) or 'nothing'})")
    for k, v in out.items():
        _finite(v, f"{where}[{k}]", check_finite)
    return out


def scalar(z: Dict[str, Any], key: str, where: str, default: Optional[Any] = None) -> Any:
    """A 0-d entry of a loaded npz as a Python value (str, int, float), or ``default``."""
    if key not in z:
        return default
    v = z[key]
    try:
        return v.item()
    except ValueError:
        raise MetricInputError(f"{where}: key {key!r} should be a single value, has shape {v.shape}") from None


def sha256_file(path: "str | os.PathLike[str]", chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
