"""R-precision for text-to-image generation (AttnGAN protocol, Xu et al. 2018).

For each generated image, its own caption competes with ``num_mismatched`` (99)
captions drawn at random from the other samples' captions; the image scores a hit
when its caption has the highest cosine similarity (top-1 of 100). The hit rate is
computed on ``folds`` (10) contiguous folds in sample order and reported as mean and
std (ddof 0) over folds, as a fraction in [0, 1] (papers print it in percent).

Choices made explicit:
- mismatched captions are drawn without replacement, with a seeded generator;
- a caption identical to the true one (same ``caption_ids`` entry; CUB repeats test
  captions to reach 30k images) is never drawn as "mismatched";
- ``exclude_same_class=True`` also keeps same-class captions (``labels``) out of the pool;
- ties are misses (pessimistic): the true caption must score strictly higher than all
  99 mismatched ones.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..errors import MetricInputError
from .fid import ArrayLike, to_numpy

_MAX_REJECTION_ROUNDS = 64


def _normalise(x: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise MetricInputError(f"{name}: {int((norms == 0).sum())} embedding(s) have zero norm; cosine undefined")
    return x / norms


def _invalid(cand: np.ndarray, rows: np.ndarray, keys: list) -> np.ndarray:
    """Mask of candidates that may not serve as mismatched captions for their row."""
    bad = cand == rows[:, None]
    for key in keys:
        bad |= key[cand] == key[rows][:, None]
    return bad


def _duplicates(cand: np.ndarray) -> np.ndarray:
    """Mask of every repeat (after the first occurrence) of a value within its row."""
    order = np.argsort(cand, axis=1, kind="stable")
    srt = np.take_along_axis(cand, order, axis=1)
    dup_sorted = np.zeros_like(cand, dtype=bool)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def sample_mismatched(n: int, k: int, rng: np.random.Generator, keys: list) -> np.ndarray:
    """(n, k) indices: for each row i, k distinct j with j != i and key[j] != key[i] for all keys."""
    rows = np.arange(n)
    # pool size per row: n minus the union of the equivalence classes of row i
    if keys:
        excluded = np.zeros(n, dtype=np.int64)
        # inclusion-exclusion over at most two keys
        for key in keys:
            _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
            excluded += cnt[inv]
        if len(keys) == 2:
            pair = np.stack([np.unique(k_, return_inverse=True)[1] for k_ in keys], axis=1)
            _, inv, cnt = np.unique(pair, axis=0, return_inverse=True, return_counts=True)
            excluded -= cnt[inv.ravel()]
    else:
        excluded = np.ones(n, dtype=np.int64)
    pool = n - excluded
    if pool.min() < k:
        i = int(pool.argmin())
        raise MetricInputError(
            f"R-precision needs {k} mismatched captions per image but sample {i} has only {int(pool[i])} eligible "
            f"(of {n} captions, after excluding itself{', same-class and identical captions' if keys else ''})"
        )
    cand = rng.integers(0, n, size=(n, k))
    for _ in range(_MAX_REJECTION_ROUNDS):
        bad = _invalid(cand, rows, keys) | _duplicates(cand)
        if not bad.any():
            return cand
        cand[bad] = rng.integers(0, n, size=int(bad.sum()))
    # small pools: finish the few unlucky rows exactly
    bad_rows = np.flatnonzero((_invalid(cand, rows, keys) | _duplicates(cand)).any(axis=1))
    for i in bad_rows:
        ok = np.ones(n, dtype=bool)
        ok[i] = False
        for key in keys:
            ok &= key != key[i]
        cand[i] = rng.choice(np.flatnonzero(ok), size=k, replace=False)
    return cand


def r_precision(
    image_emb: ArrayLike,
    text_emb: ArrayLike,
    labels: Optional[ArrayLike] = None,
    exclude_same_class: bool = False,
    caption_ids: Optional[ArrayLike] = None,
    num_mismatched: int = 99,
    folds: int = 10,
    seed: int = 0,
    chunk_size: int = 256,
) -> Dict[str, Any]:
    """R-precision (top-1 of the true caption among 1 + ``num_mismatched``).

    Args:
        image_emb: (n, d) embeddings of the generated images (e.g. DAMSM image encoder).
        text_emb: (n, d) embeddings of the caption each image was generated from (row-aligned).
        labels: (n,) class per sample; required with ``exclude_same_class``.
        exclude_same_class: draw mismatched captions only from other classes.
        caption_ids: (n,) id of each caption's text; equal ids are never "mismatched".
        num_mismatched: captions competing with the true one (99 in AttnGAN).
        folds: contiguous folds for mean ± std (needs n >= folds).
        seed: seed of the mismatched-caption sampler.
        chunk_size: images scored at a time (memory ~ chunk_size x k x d floats).

    Returns:
        {"r_precision": mean over folds, "r_precision_std": std (ddof 0), "folds",
         "num_mismatched", "n"}
    """
    img = to_numpy(image_emb, "image embeddings", ndim=2)
    txt = to_numpy(text_emb, "text embeddings", ndim=2)
    if img.shape != txt.shape:
        raise MetricInputError(f"image embeddings {img.shape} and text embeddings {txt.shape} must have the same shape")
    n = img.shape[0]
    if n < 2:
        raise MetricInputError(f"R-precision needs at least 2 images, got {n}")
    if num_mismatched < 1:
        raise MetricInputError(f"num_mismatched must be >= 1, got {num_mismatched}")
    if folds < 1 or folds > n:
        raise MetricInputError(f"folds must be between 1 and the number of images ({n}), got {folds}")
    keys = []
    if exclude_same_class:
        if labels is None:
            raise MetricInputError("exclude_same_class=True needs labels (one class per sample)")
    for name, arr, use in (("labels", labels, exclude_same_class), ("caption_ids", caption_ids, True)):
        if arr is None or not use:
            continue
        a = to_numpy(arr, name, dtype=None, ndim=1, finite=False)
        if a.shape[0] != n:
            raise MetricInputError(f"{name} has {a.shape[0]} entries, expected one per sample ({n})")
        keys.append(a)
    img = _normalise(img, "image embeddings")
    txt = _normalise(txt, "text embeddings")
    mis = sample_mismatched(n, num_mismatched, np.random.default_rng(seed), keys)
    hits = np.empty(n, dtype=bool)
    for s in range(0, n, chunk_size):
        e = min(s + chunk_size, n)
        true = np.einsum("ij,ij->i", img[s:e], txt[s:e])
        other = np.einsum("id,ikd->ik", img[s:e], txt[mis[s:e]])
        hits[s:e] = true > other.max(axis=1)
    per_fold = np.array([hits[f * n // folds:(f + 1) * n // folds].mean() for f in range(folds)])
    return {"r_precision": float(per_fold.mean()), "r_precision_std": float(per_fold.std()),
            "folds": folds, "num_mismatched": num_mismatched, "n": n}
