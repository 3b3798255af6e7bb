"""Drawings of the 24 ``scenes`` object categories.

Each function draws one object in its main colour into a square RGBA layer of side
``s`` (coordinates as fractions of ``s``); parts that are not the object's colour
(wheels, trunks, strings) use fixed dark or neutral colours so the named colour
dominates.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

from PIL import ImageDraw

from ._common import RGB, shade

DARK: RGB = (45, 42, 40)
Draw = ImageDraw.ImageDraw


def _p(s: float, pts: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    return [(x * s, y * s) for x, y in pts]


def _box(s: float, x0: float, y0: float, x1: float, y1: float) -> List[float]:
    return [x0 * s, y0 * s, x1 * s, y1 * s]


def ball(d: Draw, s: float, c: RGB) -> None:
    d.ellipse(_box(s, 0.1, 0.1, 0.9, 0.9), fill=c)
    d.ellipse(_box(s, 0.26, 0.24, 0.42, 0.4), fill=shade(c, 1.4))


def box(d: Draw, s: float, c: RGB) -> None:
    d.polygon(_p(s, [(0.12, 0.32), (0.32, 0.12), (0.9, 0.12), (0.7, 0.32)]), fill=shade(c, 1.25))
    d.polygon(_p(s, [(0.7, 0.32), (0.9, 0.12), (0.9, 0.7), (0.7, 0.9)]), fill=shade(c, 0.7))
    d.rectangle(_box(s, 0.12, 0.32, 0.7, 0.9), fill=c)


def star(d: Draw, s: float, c: RGB) -> None:
    pts = []
    for k in range(10):
        r = 0.46 if k % 2 == 0 else 0.19
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((0.5 + r * math.cos(a), 0.53 + r * math.sin(a)))
    d.polygon(_p(s, pts), fill=c)


def heart(d: Draw, s: float, c: RGB) -> None:
    d.ellipse(_box(s, 0.1, 0.15, 0.52, 0.57), fill=c)
    d.ellipse(_box(s, 0.48, 0.15, 0.9, 0.57), fill=c)
    d.polygon(_p(s, [(0.12, 0.44), (0.5, 0.9), (0.88, 0.44), (0.5, 0.3)]), fill=c)


def moon(d: Draw, s: float, c: RGB) -> None:
    d.ellipse(_box(s, 0.1, 0.1, 0.9, 0.9), fill=c)
    d.ellipse(_box(s, 0.32, 0.02, 1.02, 0.72), fill=(0, 0, 0, 0))  # type: ignore[arg-type]


def tree(d: Draw, s: float, c: RGB) -> None:
    d.rectangle(_box(s, 0.43, 0.6, 0.57, 0.95), fill=(110, 76, 46))
    d.polygon(_p(s, [(0.5, 0.05), (0.78, 0.42), (0.22, 0.42)]), fill=c)
    d.polygon(_p(s, [(0.5, 0.25), (0.88, 0.72), (0.12, 0.72)]), fill=c)


def house(d: Draw, s: float, c: RGB) -> None:
    d.rectangle(_box(s, 0.18, 0.45, 0.82, 0.92), fill=c)
    d.polygon(_p(s, [(0.08, 0.47), (0.5, 0.1), (0.92, 0.47)]), fill=shade(c, 0.6))
    d.rectangle(_box(s, 0.42, 0.64, 0.58, 0.92), fill=DARK)
    d.rectangle(_box(s, 0.24, 0.54, 0.36, 0.66), fill=(225, 232, 240))


def car(d: Draw, s: float, c: RGB) -> None:
    d.rounded_rectangle(_box(s, 0.05, 0.45, 0.95, 0.72), radius=0.06 * s, fill=c)
    d.polygon(_p(s, [(0.22, 0.46), (0.32, 0.26), (0.66, 0.26), (0.78, 0.46)]), fill=c)
    d.polygon(_p(s, [(0.3, 0.44), (0.36, 0.31), (0.49, 0.31), (0.49, 0.44)]), fill=(200, 220, 235))
    d.polygon(_p(s, [(0.53, 0.44), (0.53, 0.31), (0.63, 0.31), (0.7, 0.44)]), fill=(200, 220, 235))
    for x in (0.27, 0.73):
        d.ellipse(_box(s, x - 0.11, 0.61, x + 0.11, 0.83), fill=DARK)


def cup(d: Draw, s: float, c: RGB) -> None:
    d.ellipse(_box(s, 0.56, 0.35, 0.9, 0.69), outline=c, width=max(1, int(0.07 * s)))
    d.polygon(_p(s, [(0.12, 0.22), (0.72, 0.22), (0.64, 0.88), (0.2, 0.88)]), fill=c)
    d.ellipse(_box(s, 0.12, 0.17, 0.72, 0.27), fill=shade(c, 0.6))


def umbrella(d: Draw, s: float, c: RGB) -> None:
    w = max(1, int(0.05 * s))
    d.line(_p(s, [(0.5, 0.45), (0.5, 0.86)]), fill=DARK, width=w)
    d.arc(_box(s, 0.34, 0.76, 0.5, 0.94), 0, 180, fill=DARK, width=w)
    d.pieslice(_box(s, 0.05, 0.12, 0.95, 0.82), 180, 360, fill=c)


def kite(d: Draw, s: float, c: RGB) -> None:
    d.line(_p(s, [(0.5, 0.74), (0.42, 0.84), (0.58, 0.9), (0.46, 0.98)]), fill=DARK, width=max(1, int(0.025 * s)))
    d.polygon(_p(s, [(0.5, 0.04), (0.8, 0.34), (0.5, 0.76), (0.2, 0.34)]), fill=c)
    d.line(_p(s, [(0.5, 0.04), (0.5, 0.76)]), fill=shade(c, 0.55), width=max(1, int(0.02 * s)))
    d.line(_p(s, [(0.2, 0.34), (0.8, 0.34)]), fill=shade(c, 0.55), width=max(1, int(0.02 * s)))


def flower(d: Draw, s: float, c: RGB) -> None:
    d.line(_p(s, [(0.5, 0.5), (0.5, 0.97)]), fill=(50, 110, 45), width=max(1, int(0.05 * s)))
    for k in range(6):
        a = k * math.pi / 3
        x, y = 0.5 + 0.22 * math.cos(a), 0.42 + 0.22 * math.sin(a)
        d.ellipse(_box(s, x - 0.15, y - 0.15, x + 0.15, y + 0.15), fill=c)
    d.ellipse(_box(s, 0.39, 0.31, 0.61, 0.53), fill=(238, 200, 60) if sum(c) < 500 else (120, 80, 40))


def fish(d: Draw, s: float, c: RGB) -> None:
    d.polygon(_p(s, [(0.62, 0.5), (0.95, 0.25), (0.95, 0.75)]), fill=c)
    d.ellipse(_box(s, 0.05, 0.28, 0.75, 0.72), fill=c)
    d.ellipse(_box(s, 0.18, 0.4, 0.26, 0.48), fill=DARK)


def arrow(d: Draw, s: float, c: RGB) -> None:
    d.polygon(_p(s, [(0.05, 0.4), (0.55, 0.4), (0.55, 0.2), (0.95, 0.5), (0.55, 0.8), (0.55, 0.6), (0.05, 0.6)]), fill=c)


def cross(d: Draw, s: float, c: RGB) -> None:
    d.rectangle(_box(s, 0.36, 0.08, 0.64, 0.92), fill=c)
    d.rectangle(_box(s, 0.08, 0.36, 0.92, 0.64), fill=c)


def ring(d: Draw, s: float, c: RGB) -> None:
    d.ellipse(_box(s, 0.1, 0.1, 0.9, 0.9), outline=c, width=max(1, int(0.16 * s)))


def boat(d: Draw, s: float, c: RGB) -> None:
    d.line(_p(s, [(0.5, 0.08), (0.5, 0.66)]), fill=DARK, width=max(1, int(0.03 * s)))
    d.polygon(_p(s, [(0.53, 0.1), (0.53, 0.6), (0.86, 0.6)]), fill=(232, 230, 220))
    d.polygon(_p(s, [(0.05, 0.64), (0.95, 0.64), (0.78, 0.88), (0.22, 0.88)]), fill=c)


def mushroom(d: Draw, s: float, c: RGB) -> None:
    d.rectangle(_box(s, 0.38, 0.5, 0.62, 0.92), fill=(232, 220, 196))
    d.pieslice(_box(s, 0.06, 0.12, 0.94, 0.9), 180, 360, fill=c)
    for x, y in ((0.3, 0.36), (0.52, 0.24), (0.7, 0.4)):
        d.ellipse(_box(s, x - 0.05, y - 0.05, x + 0.05, y + 0.05), fill=shade(c, 1.6))


def leaf(d: Draw, s: float, c: RGB) -> None:
    ts = [k / 16 for k in range(17)]
    top = [(0.06 + 0.88 * t, 0.5 - 0.28 * math.sin(math.pi * t)) for t in ts]
    bottom = [(0.06 + 0.88 * t, 0.5 + 0.28 * math.sin(math.pi * t)) for t in reversed(ts)]
    d.polygon(_p(s, top + bottom), fill=c)
    d.line(_p(s, [(0.02, 0.5), (0.88, 0.5)]), fill=shade(c, 0.6), width=max(1, int(0.025 * s)))


def balloon(d: Draw, s: float, c: RGB) -> None:
    d.line(_p(s, [(0.5, 0.7), (0.46, 0.82), (0.54, 0.98)]), fill=DARK, width=max(1, int(0.02 * s)))
    d.polygon(_p(s, [(0.5, 0.66), (0.44, 0.74), (0.56, 0.74)]), fill=c)
    d.ellipse(_box(s, 0.2, 0.04, 0.8, 0.7), fill=c)
    d.ellipse(_box(s, 0.32, 0.14, 0.42, 0.28), fill=shade(c, 1.4))


def hat(d: Draw, s: float, c: RGB) -> None:
    d.ellipse(_box(s, 0.05, 0.64, 0.95, 0.86), fill=shade(c, 0.75))
    d.rectangle(_box(s, 0.25, 0.2, 0.75, 0.75), fill=c)
    d.rectangle(_box(s, 0.25, 0.58, 0.75, 0.68), fill=DARK)


def bell(d: Draw, s: float, c: RGB) -> None:
    d.ellipse(_box(s, 0.42, 0.74, 0.58, 0.9), fill=DARK)
    d.pieslice(_box(s, 0.22, 0.1, 0.78, 0.66), 180, 360, fill=c)
    d.polygon(_p(s, [(0.22, 0.38), (0.78, 0.38), (0.9, 0.8), (0.1, 0.8)]), fill=c)


def tent(d: Draw, s: float, c: RGB) -> None:
    d.polygon(_p(s, [(0.5, 0.08), (0.95, 0.88), (0.05, 0.88)]), fill=c)
    d.polygon(_p(s, [(0.5, 0.4), (0.66, 0.88), (0.34, 0.88)]), fill=DARK)


def bottle(d: Draw, s: float, c: RGB) -> None:
    d.rectangle(_box(s, 0.41, 0.04, 0.59, 0.12), fill=DARK)
    d.rectangle(_box(s, 0.43, 0.1, 0.57, 0.34), fill=c)
    d.rounded_rectangle(_box(s, 0.28, 0.3, 0.72, 0.96), radius=0.1 * s, fill=c)
    d.rectangle(_box(s, 0.28, 0.52, 0.72, 0.7), fill=(236, 232, 220))


ICONS: Dict[str, Callable[[Draw, float, RGB], None]] = {
    f.__name__: f for f in (ball, box, star, heart, moon, tree, house, car, cup, umbrella, kite, flower,
                            fish, arrow, cross, ring, boat, mushroom, leaf, balloon, hat, bell, tent, bottle)
}
