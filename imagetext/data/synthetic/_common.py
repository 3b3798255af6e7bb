"""Shared pieces of the synthetic worlds: seeding, colours, backgrounds, anti-aliased output.

Determinism across Python/NumPy versions matters (a world written today must be
re-generated bit-for-bit later), so randomness comes only from
``random.Random.random()`` (whose stream Python guarantees for integer seeds) and the
legacy ``numpy.random.RandomState`` (whose streams NumPy freezes); the helpers below
build choice/shuffle/normal on top of those instead of using version-dependent methods.
"""
from __future__ import annotations

import colorsys
import hashlib
import math
import random
from typing import Any, Callable, Dict, List, Sequence, Tuple, TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ...errors import ConfigError

T = TypeVar("T")
RGB = Tuple[int, int, int]

#: Images are drawn this many times larger, then downsampled with LANCZOS (anti-aliasing).
SUPERSAMPLE = 4
MIN_SIZE, MAX_SIZE = 32, 256
SPLITS = ("train", "test")


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts (stable across runs and platforms)."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def image_seed(world: str, seed: int, split: str, index: int) -> int:
    """The seed of image ``index`` of ``split``; train and test draw from disjoint streams."""
    return derive_seed("imagetext-synthetic", world, int(seed), split, int(index))


class Rng:
    """A seeded generator whose every draw goes through ``random.Random.random()``."""

    def __init__(self, *seed_parts: Any) -> None:
        self._r = random.Random(derive_seed(*seed_parts))

    def random(self) -> float:
        return self._r.random()

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self._r.random()

    def randint(self, a: int, b: int) -> int:
        """Uniform integer in ``[a, b]`` (inclusive)."""
        return min(b, a + int(self._r.random() * (b - a + 1)))

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.randint(0, len(seq) - 1)]

    def weighted(self, seq: Sequence[T], weights: Sequence[float]) -> T:
        x = self._r.random() * sum(weights)
        for item, w in zip(seq, weights):
            x -= w
            if x < 0:
                return item
        return seq[-1]

    def shuffle(self, items: List[T]) -> List[T]:
        """Fisher-Yates shuffle in place; returns ``items`` for chaining."""
        for i in range(len(items) - 1, 0, -1):
            j = self.randint(0, i)
            items[i], items[j] = items[j], items[i]
        return items

    def sample(self, seq: Sequence[T], k: int) -> List[T]:
        return self.shuffle(list(seq))[:k]

    def normal(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        """Box-Muller; ``1 - random()`` keeps the log argument in (0, 1]."""
        u1, u2 = 1.0 - self._r.random(), self._r.random()
        return mu + sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)


def check_size(size: int) -> int:
    """Validate an output image size (pixels per side)."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"synthetic image size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    return size


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"synthetic split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


# ----------------------------------------------------------------------------- colours


def jitter_colour(rgb: Sequence[int], rng: Rng, hue: float = 0.03, sat: float = 0.12, val: float = 0.12) -> RGB:
    """Vary a named colour per image (hue, saturation, brightness) so names cover a range."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    h = (h + rng.uniform(-hue, hue)) % 1.0
    s = min(1.0, max(0.0, s + rng.uniform(-sat, sat) * s))  # greys stay grey
    v = min(1.0, max(0.0, v + rng.uniform(-val, val)))
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def shade(rgb: Sequence[int], factor: float) -> RGB:
    """Darken (factor < 1) or lighten (factor > 1, towards white) a colour."""
    if factor <= 1:
        return tuple(int(c * factor) for c in rgb)  # type: ignore[return-value]
    t = min(1.0, factor - 1.0)
    return tuple(int(c + (255 - c) * t) for c in rgb)  # type: ignore[return-value]


def luminance(rgb: Sequence[int]) -> float:
    r, g, b = (c / 255.0 for c in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


def contrast_colour(rgb: Sequence[int]) -> RGB:
    """Near-black on light colours, near-white on dark ones (markings stay visible)."""
    return (35, 32, 30) if luminance(rgb) > 0.5 else (238, 236, 228)


def random_muted_colour(rng: Rng, sat: Tuple[float, float] = (0.08, 0.45), val: Tuple[float, float] = (0.35, 0.95)) -> RGB:
    """A background-ish colour: any hue, limited saturation."""
    h, s, v = rng.random(), rng.uniform(*sat), rng.uniform(*val)
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- backgrounds

TEXTURES = ("gradient", "blobs", "stripes", "horizon", "speckle")


def draw_background(canvas: int, texture: str, base: Sequence[int], rng: Rng) -> Image.Image:
    """An RGB background of side ``canvas`` with a low-contrast texture around ``base``."""
    base = tuple(base)
    img = Image.new("RGB", (canvas, canvas), base)  # type: ignore[arg-type]
    d = ImageDraw.Draw(img)
    if texture == "gradient":
        top, bottom = shade(base, rng.uniform(1.1, 1.35)), shade(base, rng.uniform(0.7, 0.9))
        for y in range(canvas):
            t = y / max(1, canvas - 1)
            d.line([(0, y), (canvas, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    elif texture == "blobs":  # foliage-like soft patches
        for _ in range(rng.randint(8, 18)):
            r = rng.uniform(0.06, 0.22) * canvas
            x, y = rng.uniform(0, canvas), rng.uniform(0, canvas)
            d.ellipse([x - r, y - r, x + r, y + r], fill=jitter_colour(base, rng, 0.06, 0.3, 0.25))
        img = img.filter(ImageFilter.GaussianBlur(canvas * 0.02))
    elif texture == "stripes":
        other = shade(base, rng.uniform(0.75, 0.9))
        step = rng.uniform(0.06, 0.16) * canvas
        angle = rng.uniform(0, math.pi)
        dx, dy = math.cos(angle), math.sin(angle)
        k = -2 * canvas
        while k < 2 * canvas:
            cx, cy = canvas / 2 + dx * k, canvas / 2 + dy * k
            w = step / 2
            pts = [(cx - dy * 2 * canvas + dx * w * s1, cy + dx * 2 * canvas + dy * w * s1) for s1 in (0, 1)]
            pts += [(cx + dy * 2 * canvas + dx * w * s1, cy - dx * 2 * canvas + dy * w * s1) for s1 in (1, 0)]
            d.polygon(pts, fill=other)
            k += step
    elif texture == "horizon":  # sky over ground
        ground = random_muted_colour(rng)
        hy = rng.uniform(0.5, 0.8) * canvas
        d.rectangle([0, hy, canvas, canvas], fill=ground)
    elif texture == "speckle":
        for _ in range(rng.randint(60, 140)):
            r = rng.uniform(0.004, 0.015) * canvas
            x, y = rng.uniform(0, canvas), rng.uniform(0, canvas)
            d.ellipse([x - r, y - r, x + r, y + r], fill=jitter_colour(base, rng, 0.1, 0.4, 0.35))
    return img


def draw_clutter(img: Image.Image, rng: Rng, count: int, max_frac: float = 0.05) -> None:
    """Small distractor marks in arbitrary colours (lines and dots) drawn onto ``img``."""
    canvas = img.size[0]
    d = ImageDraw.Draw(img)
    for _ in range(count):
        col = random_muted_colour(rng, sat=(0.1, 0.9), val=(0.2, 1.0))
        x, y = rng.uniform(0, canvas), rng.uniform(0, canvas)
        r = rng.uniform(0.01, max_frac) * canvas
        if rng.chance(0.5):
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
        else:
            a = rng.uniform(0, math.pi)
            d.line([(x, y), (x + r * 2 * math.cos(a), y + r * 2 * math.sin(a))], fill=col, width=max(1, int(r / 3)))


def finish(img: Image.Image, size: int, noise_std: float, seed: int) -> Image.Image:
    """Downsample the supersampled canvas with LANCZOS, then add Gaussian pixel noise."""
    out = img.convert("RGB").resize((size, size), Image.LANCZOS)
    if noise_std > 0:
        arr = np.asarray(out, dtype=np.float32)
        noise = np.random.RandomState(seed % (2**32)).normal(0.0, noise_std, size=arr.shape)
        out = Image.fromarray(np.clip(arr + noise, 0, 255).round().astype(np.uint8), "RGB")
    return out


def paste_layer(canvas: Image.Image, layer: Image.Image, cx: float, cy: float, angle: float) -> None:
    """Rotate an RGBA ``layer`` by ``angle`` degrees and alpha-composite it centred at (cx, cy)."""
    if angle:
        layer = layer.rotate(angle, resample=Image.BILINEAR, expand=True)  # supersampled: bilinear is enough
    x0, y0 = int(round(cx - layer.size[0] / 2)), int(round(cy - layer.size[1] / 2))
    # alpha_composite cannot take negative offsets: crop the layer to the canvas first
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1 = min(layer.size[0], canvas.size[0] - x0)
    sy1 = min(layer.size[1], canvas.size[1] - y0)
    if sx1 <= sx0 or sy1 <= sy0:
        return
    canvas.alpha_composite(layer.crop((sx0, sy0, sx1, sy1)), dest=(x0 + sx0, y0 + sy0))


def article(word: str) -> str:
    """'a' or 'an' for the following word."""
    return "an" if word[:1] in "aeiou" else "a"


def join_list(items: Sequence[str], rng: Rng) -> str:
    """'x', 'x and y', 'x, y and z' (sometimes with an Oxford comma)."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    comma = "," if rng.chance(0.3) else ""
    return ", ".join(items[:-1]) + f"{comma} and {items[-1]}"


def round_floats(x: float, nd: int = 4) -> float:
    return float(round(x, nd))


def caption_set(tag: str, gt: Dict[str, Any], n: int,
                one: Callable[[Rng, Dict[str, Any]], Tuple[str, Any]]) -> Tuple[List[str], List[Any]]:
    """``n`` captions from ``one(rng, gt)`` and, aligned, what each mentions (seeded by the image)."""
    rng = Rng(tag, gt["image_seed"])
    pairs = [one(rng, gt) for _ in range(n)]
    return [c for c, _ in pairs], [a for _, a in pairs]
