"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) ‖ p(y))), in float64.

Protocol (torch-fidelity's, which follows the original OpenAI code): the predictions are
shuffled with ``np.random.RandomState(seed).permutation`` (torch-fidelity's default seed
is 2020; ``shuffle=False`` keeps the original in-order split), cut into ``splits``
contiguous parts at i·n//splits, the score is computed on each part with p(y) the part's
mean prediction, and mean and std (ddof 0, ``np.std`` as in the original) over parts are
returned. torchmetrics differs: ``torch.chunk`` parts and an unbiased (ddof 1) std.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import scipy.special

from ..errors import MetricInputError
from .fid import ArrayLike, to_numpy

# float32 softmax outputs sum to 1 within ~1e-6; 1e-3 also admits float16 outputs
_SUM_ATOL = 1e-3


def inception_score(
    probs: ArrayLike,
    splits: int = 10,
    seed: int = 0,
    shuffle: bool = True,
    from_logits: bool = False,
) -> Dict[str, Any]:
    """Inception Score of class predictions (n, C).

    Args:
        probs: class probabilities per image (rows sum to 1, non-negative), or logits
            with ``from_logits=True`` (softmax taken in float64).
        splits: number of parts (needs n >= splits).
        seed: seed of the shuffle.
        shuffle: shuffle before splitting.

    Returns:
        {"inception_score": mean over splits, "inception_score_std": std (ddof 0),
         "splits": ..., "n": ...}
    """
    p = to_numpy(probs, "IS probabilities" if not from_logits else "IS logits", ndim=2)
    n, c = p.shape
    if n < 2:
        raise MetricInputError(f"Inception Score needs at least 2 images, got {n}")
    if c < 1:
        raise MetricInputError("IS probabilities have 0 classes")
    if splits < 1 or splits > n:
        raise MetricInputError(f"splits must be between 1 and the number of images ({n}), got {splits}")
    if from_logits:
        p = scipy.special.softmax(p, axis=1)
    else:
        if (p < 0).any():
            rows = np.flatnonzero((p < 0).any(axis=1))
            raise MetricInputError(f"IS probabilities: {len(rows)} row(s) have negative entries (first: row {rows[0]}); "
                                   "pass from_logits=True for logits")
        sums = p.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_ATOL)
        if len(bad):
            raise MetricInputError(
                f"IS probabilities: {len(bad)} row(s) do not sum to 1 (row {bad[0]} sums to {sums[bad[0]]:.6g}); "
                "pass from_logits=True for logits"
            )
    if shuffle:
        p = p[np.random.RandomState(seed).permutation(n)]
    scores = np.empty(splits)
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        # xlogy gives 0·log 0 = 0; where p > 0 the marginal py >= p/len(part) > 0
        kl = (scipy.special.xlogy(part, part) - scipy.special.xlogy(part, py)).sum(axis=1)
        scores[k] = np.exp(kl.mean())
    return {"inception_score": float(scores.mean()), "inception_score_std": float(scores.std()),
            "splits": splits, "n": n}


def inception_score_of_logits(logits: ArrayLike, multi_label: bool = False, splits: int = 10,
                              seed: int = 0) -> Dict[str, Any]:
    """IS of an extractor's class logits: softmax over classes, or, for a multi-label head
    (the ``scenes`` evaluator's per-category sigmoids), the sigmoids renormalised into a
    distribution over categories."""
    if not multi_label:
        return inception_score(logits, splits=splits, seed=seed, from_logits=True)
    p = scipy.special.expit(to_numpy(logits, "IS logits", ndim=2))
    return inception_score(p / p.sum(1, keepdims=True), splits=splits, seed=seed)
