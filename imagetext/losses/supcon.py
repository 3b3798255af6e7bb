"""Supervised contrastive loss (SupCon, Khosla et al. 2020), in-set and cross-modal.

For L2-normalised embeddings z, anchor i, candidates A(i) and positives P(i) ⊆ A(i),

    L_i = -1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/t) / Σ_{a∈A(i)} exp(z_i·z_a/t) ),
    L   = mean of L_i over the anchors with |P(i)| > 0.

This is the "L_out" form of the paper (the mean over positives sits outside the log),
which the paper found to train better than averaging inside the log.

*In-set* (no ``contrast``): candidates are the other rows of ``features``, A(i) = all
but i; P(i) = the others with i's label. *Cross-modal* (``contrast`` given): anchors are
the rows of ``features``, candidates all rows of ``contrast`` (nothing to exclude: the
anchor is not among them), P(i) = the contrast rows with i's label, the paired item
included.

Special cases, tested to 1e-6: with two views per sample and unique labels each anchor
has exactly one positive, its other view, and L is NT-Xent (SimCLR); cross-modal with
unique labels, P(i) = {i} and L is one-way InfoNCE, cross_entropy(z cᵀ/t, arange).

Numerics: the log-probability is computed as logits - logsumexp(logits) (stable for
any t), and self-similarity is removed by setting its logit to -inf, not by multiplying
exp() by 0, so it leaves the normaliser exactly. Positive terms are selected with
``where`` before weighting, so the -inf on the diagonal never meets a 0 weight
(0·-inf = NaN). Anchors without a positive give 0 and are left out of the mean; a batch
where no anchor has one returns 0 attached to the inputs' graph (backward works, zero
gradients), never NaN. Half / bfloat16 inputs are computed in float32 with autocast off:
at t = 0.1 a bfloat16 cosine error of 4e-3 would already move a logit by 0.04.

Labels:
- ``(N,)`` integer class ids. **-1 means unknown**: it matches no label, not even
  another -1, i.e. each unknown sample is its own class (METHODS.md: an image without
  annotation has "only its own pair as positive"). Its own pair / other view is given
  through ``ids`` (below); without ids an unknown anchor has no positive and is skipped.
- ``(N, C)`` 0/1 multi-hot (COCO); METHODS.md leaves the rule open, so ``positives``
  chooses: ``"any"`` (share at least one category), ``"exact"`` (same set), or
  ``"jaccard"`` (every j with a shared category is a positive, its log-term weighted by
  w_ij = |Yi∩Yj| / |Yi∪Yj|, and the weights normalised per anchor:
  L_i = -Σ_j w_ij log p_ij / Σ_j w_ij). An empty set matches nothing (like -1).
  For class ids the three rules coincide.
- ``ids`` / ``contrast_ids`` (optional, keyword): sample ids; rows with the same id are
  views or pairs of one sample and are positives of each other (weight 1) whatever
  their labels. E.g. two captions per image: ``ids = cat(arange(B), arange(B))``.
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
import torch.nn as nn

from ._common import (LossInputError, check_features, check_labels, compute_dtype, full_precision, id_matches,
                      label_weights, masked_mean, normalise, zero_with_grad)

Temperature = Union[float, torch.Tensor]


def supcon_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    temperature: Temperature = 0.1,
    positives: str = "any",
    contrast: Optional[torch.Tensor] = None,
    contrast_labels: Optional[torch.Tensor] = None,
    *,
    ids: Optional[torch.Tensor] = None,
    contrast_ids: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """SupCon loss (scalar) of anchors ``features`` against themselves or against ``contrast``.

    Args:
        features: (N, D) anchor embeddings (normalised here).
        labels: (N,) class ids (-1 = unknown) or (N, C) multi-hot.
        temperature: t > 0 (float or scalar tensor).
        positives: multi-hot rule, ``"any"``, ``"exact"`` or ``"jaccard"``.
        contrast: (M, D) candidates for the cross-modal form; None = in-set form.
        contrast_labels: labels of ``contrast``, same kind as ``labels``.
        ids, contrast_ids: optional (N,) / (M,) sample ids; equal ids are always positives.
    """
    check_features(features, "features")
    n, d = features.shape
    check_labels(labels, "labels", n)
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise LossInputError(f"temperature must be > 0, got {temperature}")
    cross = contrast is not None
    if cross:
        if contrast_labels is None:
            raise LossInputError("contrast needs contrast_labels")
        check_features(contrast, "contrast", dim=d)
        check_labels(contrast_labels, "contrast_labels", contrast.shape[0])
        if (ids is None) != (contrast_ids is None):
            raise LossInputError("give both ids and contrast_ids, or neither")
    elif contrast_labels is not None or contrast_ids is not None:
        raise LossInputError("contrast_labels / contrast_ids given without contrast")
    if ids is not None and ids.shape != (n,):
        raise LossInputError(f"ids must be ({n},), got {tuple(ids.shape)}")
    if n == 0 or (cross and contrast.shape[0] == 0) or (not cross and n < 2):
        return zero_with_grad(features, contrast)

    dev = features.device
    dtype = compute_dtype(features, contrast if cross else features)
    with full_precision(dev):
        z = normalise(features, dtype)
        labels = labels.to(dev)
        if cross:
            c, lab_c = normalise(contrast, dtype), contrast_labels.to(dev)
            ids_c = contrast_ids
        else:
            c, lab_c, ids_c = z, labels, ids
        logits = z @ c.T / temperature
        w = label_weights(labels, lab_c, positives, dtype)
        if ids is not None:
            w = torch.maximum(w, id_matches(ids.to(dev), ids_c.to(dev)).to(dtype))
        if not cross:
            eye = torch.eye(n, dtype=torch.bool, device=dev)
            logits = logits.masked_fill(eye, float("-inf"))
            w = w.masked_fill(eye, 0.0)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        is_pos = w > 0
        pos_log_prob = torch.where(is_pos, log_prob, torch.zeros_like(log_prob)) * w
        w_sum = w.sum(1)
        has_pos = w_sum > 0
        per_anchor = -pos_log_prob.sum(1) / torch.where(has_pos, w_sum, torch.ones_like(w_sum))
        loss, _ = masked_mean(per_anchor, has_pos)
    return loss


class SupConLoss(nn.Module):
    """SupCon as a loss module returning ``{f"{name}_loss": weight * loss}``.

    With ``contrast`` and ``symmetric=True`` (default) the cross-modal term is the mean of
    both directions (features→contrast and contrast→features). ``weight=0`` switches the
    term off (a zero with a graph is returned, nothing is computed).
    """

    def __init__(self, temperature: float = 0.1, positives: str = "any", weight: float = 1.0,
                 symmetric: bool = True, name: str = "supcon") -> None:
        super().__init__()
        if not temperature > 0:
            raise LossInputError(f"temperature must be > 0, got {temperature}")
        label_weights(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), positives)  # checks rule
        self.temperature, self.positives, self.weight = float(temperature), positives, float(weight)
        self.symmetric, self.name = symmetric, name

    def forward(self, features: torch.Tensor, labels: torch.Tensor, contrast: Optional[torch.Tensor] = None,
                contrast_labels: Optional[torch.Tensor] = None, ids: Optional[torch.Tensor] = None,
                contrast_ids: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        key = f"{self.name}_loss"
        if self.weight == 0:
            return {key: zero_with_grad(features, contrast)}
        loss = supcon_loss(features, labels, self.temperature, self.positives, contrast, contrast_labels,
                           ids=ids, contrast_ids=contrast_ids)
        if contrast is not None and self.symmetric:
            back = supcon_loss(contrast, contrast_labels, self.temperature, self.positives, features, labels,
                               ids=contrast_ids, contrast_ids=ids)
            loss = (loss + back) / 2
        return {key: self.weight * loss}

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, positives={self.positives!r}, weight={self.weight}, "
                f"symmetric={self.symmetric}, name={self.name!r}")
