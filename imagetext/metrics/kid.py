"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD² with a cubic kernel.

k(x, y) = (γ xᵀy + coef)^degree with γ = 1/d, coef = 1, degree = 3 (the KID defaults of
the paper, torch-fidelity, clean-fid and torchmetrics). The estimate is averaged over
``subsets`` random subsets of ``subset_size`` samples drawn without replacement from
each set with a seeded generator; the spread is the std over subsets (ddof 0).
The subsets are drawn exactly as torch-fidelity draws them (``np.random.RandomState(seed)``,
``choice`` for set 1 then set 2), so with float64 features and the same seed (its
default is 2020) the two give the same number.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from ..errors import MetricInputError
from .fid import ArrayLike, features_2d


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: Optional[float] = None,
                    coef0: float = 1.0) -> float:
    """Unbiased MMD² between two equal-size samples under the polynomial kernel (float64).

    MMD² = Σ_{i≠j} k(x_i,x_j)/(m(m-1)) + Σ_{i≠j} k(y_i,y_j)/(m(m-1)) - 2 Σ_{i,j} k(x_i,y_j)/m².
    """
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise MetricInputError(f"MMD needs two samples of equal size >= 2, got {x.shape[0]} and {y.shape[0]}")
    g = 1.0 / x.shape[1] if gamma is None else gamma
    kxx = (x @ x.T * g + coef0) ** degree
    kyy = (y @ y.T * g + coef0) ** degree
    kxy = (x @ y.T * g + coef0) ** degree
    off_xx = kxx.sum() - np.trace(kxx)
    off_yy = kyy.sum() - np.trace(kyy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(
    features1: ArrayLike,
    features2: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: Optional[float] = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> Dict[str, Any]:
    """KID between two feature sets (n1, d) and (n2, d).

    Args:
        features1, features2: raw features (numpy or torch), at least 2 samples each.
        subsets: number of random subsets.
        subset_size: samples per subset from each set; capped at min(n1, n2) (as
            clean-fid does) and the value used is returned.
        degree, gamma, coef0: kernel (γ = 1/d when None).
        seed: seed of the subset sampler (``np.random.RandomState``, as torch-fidelity).

    Returns:
        {"kid": mean over subsets, "kid_std": std over subsets (ddof 0),
         "subsets": ..., "subset_size": ..., "n1": ..., "n2": ...}
    """
    x = features_2d(features1, "features 1")
    y = features_2d(features2, "features 2")
    if x.shape[1] != y.shape[1]:
        raise MetricInputError(f"features 1 are {x.shape[1]}-d, features 2 are {y.shape[1]}-d; they must match")
    if subsets < 1:
        raise MetricInputError(f"subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise MetricInputError(f"subset_size must be >= 2, got {subset_size}")
    m = min(subset_size, x.shape[0], y.shape[0])
    rng = np.random.RandomState(seed)
    vals = np.empty(subsets)
    for i in range(subsets):
        xi = x[rng.choice(x.shape[0], m, replace=False)]
        yi = y[rng.choice(y.shape[0], m, replace=False)]
        vals[i] = polynomial_mmd2(xi, yi, degree, gamma, coef0)
    return {
        "kid": float(vals.mean()),
        "kid_std": float(vals.std()),
        "subsets": subsets,
        "subset_size": m,
        "n1": x.shape[0],
        "n2": y.shape[0],
    }
