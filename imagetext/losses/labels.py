"""The two label baselines the paper compares against: UniCL targets and a CE head.

**UniCL** (Yang et al. 2022, "Unified Contrastive Learning in Image-Text-Label Space").
CLIP's target matrix is the identity: only the paired caption is a match. UniCL makes
the target label-aware: T_ij = 1 when i and j share the label (the pair itself always
included), and every row is normalised, T̂_ij = T_ij / Σ_k T_ik. With logits
l_ij = s·cos(u_i, w_j) (s = 1/t, learnable as in CLIP) the loss is the soft
cross-entropy in both directions,

    L_i2t = -1/B Σ_i Σ_j T̂_ij log softmax_j(l_i·),   L_t2i likewise on lᵀ,

i.e. the mean log-likelihood over all positives of an anchor, which is cross-modal
SupCon in both directions with the pair forced positive. This module averages the two
directions (½(L_i2t + L_t2i), so that with unique labels it equals :func:`clip_loss`
exactly; the UniCL paper writes the sum, a factor 2 that the learning rate absorbs).
Labels are class ids (-1 = unknown: only its pair) or multi-hot with the same
``positives`` rules as SupCon (an empty set: only its pair).

**Cross-entropy head.** A linear classifier on an embedding, trained with the labels:
softmax cross-entropy for class ids (samples labelled -1 are ignored), or, for multi-hot
labels, binary cross-entropy with logits averaged over samples and classes (an empty set
is a valid all-negative target there). A batch without any known label returns a zero
that keeps the graph.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._common import (LossInputError, check_labels, compute_dtype, full_precision, label_weights, zero_with_grad)
from .clip import INIT_TEMPERATURE, MAX_LOGIT_SCALE, LogitScale, Scale, clip_logits


def unicl_targets(labels: torch.Tensor, positives: str = "any", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, B) row-normalised label-aware targets: same label or the pair itself."""
    n = labels.shape[0]
    w = label_weights(labels, labels, positives, dtype)
    w = torch.maximum(w, torch.eye(n, dtype=dtype, device=labels.device))
    return w / w.sum(1, keepdim=True)


def unicl_loss(image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, logit_scale: Scale,
               positives: str = "any") -> torch.Tensor:
    """Symmetric soft cross-entropy of B aligned pairs against label-aware targets."""
    if image.shape[0] != text.shape[0]:
        raise LossInputError(f"image has {image.shape[0]} rows, text {text.shape[0]}: pairs must align")
    check_labels(labels, "labels", image.shape[0])
    logits = clip_logits(image, text, logit_scale)
    with full_precision(logits.device):
        target = unicl_targets(labels.to(logits.device), positives, logits.dtype)
        # T is symmetric (same labels on both sides), so the column targets are T̂ᵀ's rows = T̂'s rows
        i2t = -(target * logits.log_softmax(1)).sum(1).mean()
        t2i = -(target * logits.T.log_softmax(1)).sum(1).mean()
    return (i2t + t2i) / 2


class UniClLoss(LogitScale):
    """UniCL loss with a learnable temperature: ``{"unicl_loss", "logit_scale"}``."""

    def __init__(self, init_temperature: float = INIT_TEMPERATURE, learnable: bool = True,
                 max_scale: float = MAX_LOGIT_SCALE, positives: str = "any", weight: float = 1.0,
                 name: str = "unicl") -> None:
        super().__init__(init_temperature, learnable, max_scale)
        label_weights(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), positives)  # checks rule
        self.positives, self.weight, self.name = positives, float(weight), name

    def forward(self, image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        s = self.scale()
        loss = unicl_loss(image, text, labels, s, self.positives)
        return {f"{self.name}_loss": self.weight * loss, "logit_scale": s.detach()}


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE for (B,) class ids (-1 ignored) or BCE-with-logits for (B, C) multi-hot labels."""
    if logits.dim() != 2:
        raise LossInputError(f"logits must be (B, C), got {tuple(logits.shape)}")
    b, c = logits.shape
    check_labels(labels, "labels", b)
    labels = labels.to(logits.device)
    with full_precision(logits.device):
        x = logits.to(compute_dtype(logits))
        if labels.dim() == 2:
            if labels.shape[1] != c:
                raise LossInputError(f"multi-hot labels have {labels.shape[1]} classes, the head {c}")
            if b == 0:
                return zero_with_grad(logits)
            return F.binary_cross_entropy_with_logits(x, labels.to(x.dtype))
        if b and int(labels.max()) >= c:
            raise LossInputError(f"class id {int(labels.max())} out of range for a {c}-class head")
        known = labels >= 0
        if not bool(known.any()):
            return zero_with_grad(logits)
        return F.cross_entropy(x, labels, ignore_index=-1)


class ClassifierHead(nn.Module):
    """Linear classification head on an embedding: ``{f"{name}_loss", f"{name}_accuracy"}``.

    ``multi_label`` picks BCE (multi-hot labels) over softmax CE (class ids). Accuracy is
    top-1 over known labels, or, multi-label, per-class accuracy at logit 0; it is
    detached (for logging, never summed).
    """

    def __init__(self, in_dim: int, num_classes: int, multi_label: bool = False, weight: float = 1.0,
                 name: str = "ce") -> None:
        super().__init__()
        if num_classes < 1 or in_dim < 1:
            raise LossInputError(f"need in_dim >= 1 and num_classes >= 1, got {in_dim}, {num_classes}")
        self.head = nn.Linear(in_dim, num_classes)
        self.multi_label, self.weight, self.name = multi_label, float(weight), name

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        if (labels.dim() == 2) != self.multi_label:
            kind = "(B, C) multi-hot" if self.multi_label else "(B,) class ids"
            raise LossInputError(f"this head expects {kind} labels, got {tuple(labels.shape)}")
        logits = self.head(features)
        loss = classification_loss(logits, labels)
        with torch.no_grad():
            labels = labels.to(logits.device)
            if self.multi_label:
                acc = ((logits > 0) == (labels != 0)).float().mean()
            else:
                known = labels >= 0
                hits = (logits.argmax(1) == labels) & known
                acc = hits.sum().float() / known.sum().clamp(min=1).float()
        return {f"{self.name}_loss": self.weight * loss, f"{self.name}_accuracy": acc}
