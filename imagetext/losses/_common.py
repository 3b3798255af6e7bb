"""Shared helpers of the losses: input checks, precision, label-match weights, safe zeros."""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

POSITIVE_RULES = ("any", "exact", "jaccard")


class LossInputError(ValueError):
    """Inputs a loss cannot be computed from (shape, dtype or value), named in the message."""


def check_features(x: torch.Tensor, name: str, n: Optional[int] = None, dim: Optional[int] = None) -> None:
    """Raise :class:`LossInputError` unless ``x`` is a floating (n, dim) tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise LossInputError(f"{name} must be a floating (N, D) tensor, got {got}")
    if n is not None and x.shape[0] != n:
        raise LossInputError(f"{name} has {x.shape[0]} rows, expected {n}")
    if dim is not None and x.shape[1] != dim:
        raise LossInputError(f"{name} has dimension {x.shape[1]}, expected {dim}")


def check_labels(labels: torch.Tensor, name: str, n: int) -> None:
    """Validate (n,) integer class ids (>= -1; -1 = unknown) or (n, C) 0/1 multi-hot."""
    if not isinstance(labels, torch.Tensor):
        raise LossInputError(f"{name} must be a tensor, got {type(labels).__name__}")
    if labels.dim() not in (1, 2) or labels.shape[0] != n:
        raise LossInputError(f"{name} must be ({n},) class ids or ({n}, C) multi-hot, got {tuple(labels.shape)}")
    if labels.dim() == 1:
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise LossInputError(f"{name}: 1-D labels must be integer class ids, got {labels.dtype}")
        if labels.numel() and bool((labels < -1).any()):
            raise LossInputError(f"{name}: class ids must be >= 0, or -1 for unknown; got {int(labels.min())}")
    elif labels.numel() and labels.dtype != torch.bool and not bool(((labels == 0) | (labels == 1)).all()):
        raise LossInputError(f"{name}: multi-hot labels must be 0/1")


def label_weights(a: torch.Tensor, b: torch.Tensor, rule: str = "any",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, M) positive weights in [0, 1] between label rows ``a`` (N, ...) and ``b`` (M, ...).

    Class ids: 1 where equal and known (-1 never matches, not even another -1).
    Multi-hot: ``any`` 1 where the sets intersect; ``exact`` 1 where equal; ``jaccard``
    |a∩b| / |a∪b|. An empty set matches nothing (it carries no label information).
    """
    if rule not in POSITIVE_RULES:
        raise LossInputError(f"positives must be one of {POSITIVE_RULES}, got {rule!r}")
    if a.dim() != b.dim() or (a.dim() == 2 and a.shape[1] != b.shape[1]):
        raise LossInputError(f"labels {tuple(a.shape)} and contrast_labels {tuple(b.shape)} are not the same kind")
    if a.dim() == 1:
        return ((a[:, None] == b[None, :]) & (a[:, None] >= 0)).to(dtype)
    # counts are small integers: exact in float32 up to 2**24 categories
    fa, fb = (a != 0).to(dtype), (b != 0).to(dtype)
    inter = fa @ fb.T
    size_a, size_b = fa.sum(1)[:, None], fb.sum(1)[None, :]
    if rule == "any":
        return (inter > 0).to(dtype)
    if rule == "exact":
        return ((inter == size_a) & (inter == size_b) & (size_a > 0)).to(dtype)
    union = size_a + size_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def id_matches(ids: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """(N, M) bool: entries that share a sample id (views or pairs of one sample)."""
    if ids.dim() != 1 or other.dim() != 1:
        raise LossInputError(f"ids must be 1-D, got {tuple(ids.shape)} and {tuple(other.shape)}")
    return ids[:, None] == other[None, :]


def compute_dtype(*xs: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half / bfloat16 are widened)."""
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Switch autocast off, so logits divided by a small temperature are not rounded to 16 bits."""
    if torch.is_autocast_enabled(device.type):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:
        yield


def normalise(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rows scaled to unit L2 norm (a zero row stays zero), in ``dtype``."""
    return F.normalize(x.to(dtype), dim=-1)


def zero_with_grad(*xs: Optional[torch.Tensor]) -> torch.Tensor:
    """A scalar 0 connected to every input's graph: backward works and gives zero gradients."""
    total: Optional[torch.Tensor] = None
    for x in xs:
        if x is not None:
            term = x.sum() * 0
            total = term if total is None else total + term
    assert total is not None
    return total


def masked_mean(values: torch.Tensor, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` where ``keep``; 0 (with a graph) when nothing is kept. Returns (mean, count)."""
    count = keep.sum()
    total = torch.where(keep, values, torch.zeros_like(values)).sum()
    return total / count.clamp(min=1).to(values.dtype), count
