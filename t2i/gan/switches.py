"""On/off switches of the GAN step's optimisations that keep the maths: the benchmarks' ablations.

Each switch is on. ``with SWITCH.off():`` makes every caller take the direct computation instead
and turns the switch back on at exit (an exception included), so a benchmark can time both ways
of the same step side by side (``scripts/benchmark_gan_variants.py --ablations``,
``scripts/benchmark_train_speed.py``'s ``ours-unfolded-upconv``).
"""
from __future__ import annotations

import contextlib
from typing import Iterator


class Switch:
    """One optimisation: ``on`` unless inside :meth:`off`."""

    def __init__(self, what: str) -> None:
        self.what, self.on = what, True

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        before, self.on = self.on, False
        try:
            yield
        finally:
            self.on = before

    def __repr__(self) -> str:
        return f"Switch({self.what!r}, on={self.on})"


FOLD_UPSAMPLE_CONV = Switch("an up-block's first 3x3 conv of the nearest-x2 map as one stride-2 transposed conv "
                            "of the low-resolution map (blocks.upsample_conv3x3)")
SHARE_TOWER_PASS = Switch("GALIP's G step: one pass through the frozen tower for D and the CLIP term")
SHARE_IMAGE_ENCODING = Switch("one image encoding of the fakes for a DAMSM term and the generation-phase SupCon "
                              "(variant.Condition.encode_image)")
