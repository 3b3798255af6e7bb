"""CLIPScore between paired image and caption embeddings, under a stated convention.

Papers report three different numbers under the same name, so the convention is a
required part of the result:

- ``raw``: cos(image, text)
- ``x100``: 100·cos (torchmetrics' CLIPScore clamps at 0, i.e. 100·max(cos, 0); the two
  agree whenever no pair has a negative cosine, as is usual for matched CLIP pairs)
- ``w2.5``: 2.5·max(cos, 0), Hessel et al. 2021 (the paper's CLIP-S, w = 2.5)
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ..errors import MetricInputError
from .fid import ArrayLike, to_numpy

CLIPSCORE_CONVENTIONS: Dict[str, str] = {
    "raw": "cos(image, text)",
    "x100": "100*cos(image, text)",
    "w2.5": "2.5*max(cos(image, text), 0)  [Hessel et al. 2021]",
}


def cosine_pairs(image_emb: ArrayLike, text_emb: ArrayLike) -> np.ndarray:
    """Cosine similarity of each image with its own caption, in float64, shape (n,)."""
    img = to_numpy(image_emb, "image embeddings", ndim=2)
    txt = to_numpy(text_emb, "text embeddings", ndim=2)
    if img.shape != txt.shape:
        raise MetricInputError(f"image embeddings {img.shape} and text embeddings {txt.shape} must have the same shape")
    if img.shape[0] < 1:
        raise MetricInputError("CLIPScore needs at least 1 image-caption pair, got 0")
    ni = np.linalg.norm(img, axis=1)
    nt = np.linalg.norm(txt, axis=1)
    if (ni == 0).any() or (nt == 0).any():
        raise MetricInputError("an embedding has zero norm; its cosine is undefined")
    return np.einsum("ij,ij->i", img, txt) / (ni * nt)


def apply_convention(cos: np.ndarray, convention: str) -> np.ndarray:
    """Map cosines to CLIPScore values under ``convention`` (see CLIPSCORE_CONVENTIONS)."""
    if convention == "raw":
        return cos
    if convention == "x100":
        return 100.0 * cos
    if convention == "w2.5":
        return 2.5 * np.maximum(cos, 0.0)
    raise MetricInputError(f"unknown CLIPScore convention {convention!r}; choose one of {sorted(CLIPSCORE_CONVENTIONS)}")


def clip_score(image_emb: ArrayLike, text_emb: ArrayLike, convention: str = "w2.5") -> Dict[str, Any]:
    """Mean CLIPScore over pairs (row i of each input is one pair).

    Returns:
        {"clip_score": mean, "clip_score_std": std over pairs (ddof 0), "n": pairs,
         "convention": name, "formula": its definition}
    """
    if convention not in CLIPSCORE_CONVENTIONS:
        raise MetricInputError(f"unknown CLIPScore convention {convention!r}; choose one of {sorted(CLIPSCORE_CONVENTIONS)}")
    vals = apply_convention(cosine_pairs(image_emb, text_emb), convention)
    return {
        "clip_score": float(vals.mean()),
        "clip_score_std": float(vals.std()),
        "n": int(vals.shape[0]),
        "convention": convention,
        "formula": CLIPSCORE_CONVENTIONS[convention],
    }


def format_clip_score(result: Dict[str, Any]) -> str:
    """One line stating the value and its convention, e.g. for CLI output."""
    return (f"CLIPScore ({result['convention']}: {result['formula']}) = "
            f"{result['clip_score']:.4f} ± {result['clip_score_std']:.4f} over {result['n']} pairs")
