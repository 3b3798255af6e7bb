"""Robust image loading: every file becomes an 8-bit RGB image or a DataError naming it.

Odd but usable images (grayscale, CMYK, RGBA, palette, 16-bit) are converted and the
conversion is reported; missing, truncated or undecodable files raise
:class:`~imagetext.errors.DataError`. Truncated files are *not* silently padded:
``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default (False) and ``img.load()``
forces the full decode while the file is open.

EXIF orientation is deliberately not applied: published boxes (CUB) are given in the
stored pixel frame, and the reference pipelines read pixels as stored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .records import BadInputPolicy, DataReport, Problem

# mode -> note for the conversions that need no special arithmetic
_SIMPLE_NOTES = {
    "L": "grayscale",
    "1": "grayscale",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "LAB": "LAB",
    "HSV": "HSV",
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _composite_on_white(img: Image.Image) -> Image.Image:
    """Flatten an image with alpha onto white (transparent pixels would otherwise turn black)."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale a 16-bit (or 32-bit int / float) single-channel image to 8-bit gray.

    ``Image.convert("L")`` clips such images at 255 (nearly all white), so scale instead:
    values in 0..65535 map by /257 (65535 -> 255); wider integer or float ranges are
    min-max scaled.
    """
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if 0.0 <= lo and hi <= 1.0:
            out = arr * 255.0
        else:
            out = (arr - lo) * (255.0 / max(hi - lo, 1e-12))
        out = np.nan_to_num(out)
    else:
        arr = arr.astype(np.int64)
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 65535:
            out = arr / 257.0
        else:
            out = (arr - lo) * (255.0 / max(hi - lo, 1))
    gray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def to_rgb(img: Image.Image) -> Tuple[Image.Image, Optional[str]]:
    """Convert a decoded image to 8-bit RGB; returns ``(image, note)``, note None if it was RGB."""
    mode = img.mode
    if mode == "RGB":
        return img, None
    if mode in ("RGBA", "RGBa"):
        return _composite_on_white(img), "RGBA"
    if mode in ("LA", "La"):
        return _composite_on_white(img), "grayscale"
    if mode in ("P", "PA"):
        if mode == "PA" or "transparency" in img.info:
            return _composite_on_white(img), "palette"
        return img.convert("RGB"), "palette"
    if mode in _SIXTEEN_BIT:
        return _to_8bit(img), "16-bit"
    if mode == "F":
        return _to_8bit(img), "32-bit float"
    if mode in _SIMPLE_NOTES:
        return img.convert("RGB"), _SIMPLE_NOTES[mode]
    try:
        return img.convert("RGB"), mode
    except (ValueError, OSError) as e:
        raise DataError(f"unsupported image mode {mode!r}: {e}") from None


def open_rgb(path: str | Path) -> Tuple[Image.Image, Optional[str]]:
    """Open ``path`` as an 8-bit RGB image, fully decoded.

    Returns:
        ``(image, note)``: ``note`` names the conversion made ("grayscale", "CMYK",
        "RGBA", "16-bit", "palette", ...), None for a plain RGB file.

    Raises:
        DataError: the file is missing, truncated, not an image, or cannot be decoded;
            the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im.load()  # forces the whole decode: truncation surfaces here, not mid-epoch
            img, note = to_rgb(im)
            if img is im:
                img = im.copy()  # detach from the file handle closed by `with`
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file (unknown format or not an image)") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError, ...
        reason = str(e) or type(e).__name__
        raise DataError(f"{path}: cannot decode image ({reason})") from None
    return img, note


def crop_to_bbox(img: Image.Image, bbox: Tuple[float, float, float, float]) -> Image.Image:
    """Crop a square around a box ``(x, y, w, h)``, as StackGAN/AttnGAN do for CUB.

    The square has half-side ``r = int(max(w, h) * 0.75)`` around the box centre and is
    clamped to the image (so it can come out non-square at the borders). A degenerate
    box (empty crop) returns the image unchanged.
    """
    x, y, w, h = bbox
    width, height = img.size
    r = int(max(w, h) * 0.75)
    cx = int((2 * x + w) / 2)
    cy = int((2 * y + h) / 2)
    x1, x2 = max(0, cx - r), min(width, cx + r)
    y1, y2 = max(0, cy - r), min(height, cy + r)
    if x2 <= x1 or y2 <= y1:
        return img
    return img.crop((x1, y1, x2, y2))


def check_image(
    path: Path,
    report: DataReport,
    policy: BadInputPolicy,
    where: Optional[str] = None,
    line: Optional[int] = None,
) -> bool:
    """Index-time check of one image: exists, and (with ``policy.check_images``) decodes.

    A missing or undecodable image is a skipped Problem (or a DataError under the
    ``error`` policy); a converted image is a ``converted`` Problem. ``where``/``line``
    name the metadata entry that points at the image, when there is one.

    Returns:
        True if the item should be kept.
    """
    file = where or str(path)
    prefix = f"image {path}: " if where else ""
    if not path.is_file():
        policy.handle(report, Problem(file, f"{prefix}image file not found", line))
        return False
    if not policy.check_images:
        return True
    try:
        _, note = open_rgb(path)
    except DataError as e:
        reason = str(e)
        if reason.startswith(f"{path}: "):
            reason = reason[len(f"{path}: "):]
        policy.handle(report, Problem(file, f"{prefix}{reason}", line))
        return False
    if note is not None:
        report.add(Problem(str(path), f"{note} image converted to RGB", None, action="converted"))
    return True
