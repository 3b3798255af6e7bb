"""CLIP's symmetric InfoNCE with a learnable temperature (Radford et al. 2021).

For L2-normalised image embeddings u and text embeddings w of B pairs, and a logit scale
s = 1/t, logits_ij = s·u_i·w_j. The pairs are on the diagonal, so the loss is the mean
of the two cross-entropies with targets arange(B) (image→text over rows, text→image over
columns): L = ½ [CE(logits, arange) + CE(logitsᵀ, arange)].

The temperature is learned in log space (``logit_scale`` = log s, initialised at
log(1/0.07), CLIP's value) so it stays positive and its steps are relative. CLIP clips s
at 100 to keep training stable: the module uses min(exp(logit_scale), 100) in the
forward pass and :meth:`ClipLoss.clamp_` clamps the parameter itself to [0, log 100],
to be called after each optimiser step (as open_clip does). The plain function takes
the scale s itself (not its log), like open_clip's loss.

Inputs are normalised here (a no-op for unit vectors) and, when half / bfloat16, the
logits are computed in float32 with autocast off: at s = 100 a bfloat16 cosine error of
4e-3 would move a logit by 0.4.
"""
from __future__ import annotations

import math
from typing import Dict, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._common import LossInputError, check_features, compute_dtype, full_precision, normalise

INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0

Scale = Union[float, torch.Tensor]


def clip_logits(image: torch.Tensor, text: torch.Tensor, logit_scale: Scale) -> torch.Tensor:
    """(B_img, B_txt) logits s·cos(u_i, w_j), in float32 (float64 if an input is)."""
    check_features(image, "image")
    check_features(text, "text", dim=image.shape[1])
    dtype = compute_dtype(image, text)
    with full_precision(image.device):
        return logit_scale * normalise(image, dtype) @ normalise(text, dtype).T


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: Scale) -> torch.Tensor:
    """Symmetric InfoNCE of B aligned pairs; ``logit_scale`` is s = 1/temperature (not its log)."""
    if image.shape[0] != text.shape[0]:
        raise LossInputError(f"image has {image.shape[0]} rows, text {text.shape[0]}: pairs must align")
    logits = clip_logits(image, text, logit_scale)
    target = torch.arange(logits.shape[0], device=logits.device)
    with full_precision(logits.device):
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class LogitScale(nn.Module):
    """A logit scale s = min(exp(logit_scale), max_scale), learnable or fixed."""

    def __init__(self, init_temperature: float = INIT_TEMPERATURE, learnable: bool = True,
                 max_scale: float = MAX_LOGIT_SCALE) -> None:
        super().__init__()
        if not (init_temperature > 0 and 1 / init_temperature <= max_scale):
            raise LossInputError(f"init_temperature must be in [1/{max_scale}, inf), got {init_temperature}")
        value = torch.tensor(math.log(1.0 / init_temperature))
        if learnable:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)
        self.max_scale = float(max_scale)

    def scale(self) -> torch.Tensor:
        """The current multiplier s (clamped at ``max_scale`` in the forward pass)."""
        return self.logit_scale.exp().clamp(max=self.max_scale)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the parameter to [0, log max_scale]; call after each optimiser step."""
        self.logit_scale.clamp_(0, math.log(self.max_scale))


class ClipLoss(LogitScale):
    """CLIP loss with its own learnable temperature: ``{"clip_loss", "logit_scale"}``."""

    def __init__(self, init_temperature: float = INIT_TEMPERATURE, learnable: bool = True,
                 max_scale: float = MAX_LOGIT_SCALE, weight: float = 1.0, name: str = "clip") -> None:
        super().__init__(init_temperature, learnable, max_scale)
        self.weight, self.name = float(weight), name

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> Dict[str, torch.Tensor]:
        s = self.scale()
        return {f"{self.name}_loss": self.weight * clip_loss(image, text, s), "logit_scale": s.detach()}
