"""Headless matplotlib for the benchmark and plotting scripts: one backend choice, one way to save."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display on CI or a GPU box); imported lazily
    because the scripts' table and JSON paths must not pay for matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Union[str, Path], dpi: int = 110, rect: Optional[Sequence[float]] = None) -> Path:
    """Tight layout (inside ``rect`` when a figure legend sits below the axes), write ``out``
    (its folder made), close the figure; returns the path."""
    out = Path(out)
    if rect is None:
        fig.tight_layout()
    else:
        fig.tight_layout(rect=tuple(rect))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    pyplot().close(fig)
    return out
