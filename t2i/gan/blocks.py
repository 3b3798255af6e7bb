"""Building blocks shared by the one-stage GANs (DF-GAN, GALIP's up-blocks, SSA-GAN).

Written from the formulas in METHODS.md §3 (DF-GAN): a deep-fusion block is two stacked
conditional affine layers, each ``γ(c) · h + β(c)`` with per-channel γ, β from a two-layer
MLP of the condition ``c = [z; ē]`` (γ's last layer starts at weight 0 / bias 1, β's at 0 / 0,
so every block starts as the identity), each followed by LeakyReLU(0.2).
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .switches import FOLD_UPSAMPLE_CONV


def generator_channels(nf: int, imsize: int) -> List[Tuple[int, int]]:
    """(in, out) channels of the up-blocks taking 4x4 to ``imsize`` (widest first, capped at 8·nf)."""
    _check_size(imsize)
    widths = [nf * min(2 ** i, 8) for i in range(int(math.log2(imsize)) - 1)][::-1]
    return list(zip(widths[:-1], widths[1:]))


def discriminator_channels(nf: int, imsize: int) -> List[Tuple[int, int]]:
    """(in, out) channels of the down-blocks taking ``imsize`` to 4x4 (narrowest first)."""
    _check_size(imsize)
    widths = [nf * min(2 ** i, 8) for i in range(int(math.log2(imsize)) - 1)]
    return list(zip(widths[:-1], widths[1:]))


def _check_size(imsize: int) -> None:
    if imsize < 8 or imsize & (imsize - 1):
        raise ValueError(f"image size must be a power of two >= 8, got {imsize}")


def _fold_nearest_x2(w: torch.Tensor) -> torch.Tensor:
    """The (in, out, 4, 4) kernel of the stride-2 transposed convolution equal to "nearest x2, then the
    3x3 convolution ``w``" (out, in, 3, 3): per axis, taps (w2, w1 + w2, w0 + w1, w0)."""
    w0, w1, w2 = w.unbind(2)
    rows = torch.stack([w2, w1 + w2, w0 + w1, w0], 2)
    c0, c1, c2 = rows.unbind(3)
    return torch.stack([c2, c1 + c2, c0 + c1, c0], 3).transpose(0, 1)


# within it, upsample_conv3x3 computes conv(nearest_x2(x)) directly, for every variant: the fold's ablation
direct_upsample_conv = FOLD_UPSAMPLE_CONV.off


def upsample_conv3x3(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(nearest_x2(x))`` for a 3x3, stride-1, padding-1 ``conv``, computed from the low resolution.

    A nearest-x2 image repeats each pixel in a 2x2 patch, so an even output row reads input rows
    (i-1, i) with taps (w0, w1 + w2) and an odd one rows (i, i+1) with (w0 + w1, w2); likewise for
    columns. That is a transposed convolution with stride 2, padding 1 and a 4x4 kernel folded from
    the 3x3 one: 16 instead of 36 multiply-adds per output pixel and input channel, and no upsampled
    copy of ``x``. The kernel is folded from ``conv.weight`` on every training call, so gradients
    reach the 3x3 weight as usual; without autograd (generation) it is cached until the weight
    changes in place (an EMA update bumps its version). The output equals the direct computation up
    to float rounding (tests/test_gan_blocks.py) and keeps ``x``'s memory format.
    """
    w = conv.weight
    if w.shape[-2:] != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.dilation != (1, 1) \
            or conv.groups != 1:
        raise ValueError("upsample_conv3x3 needs a plain 3x3 conv with stride 1 and padding 1")
    if not FOLD_UPSAMPLE_CONV.on:
        return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
    if (torch.is_grad_enabled() and w.requires_grad) or w.is_inference():
        # training folds afresh (the gradient must reach w); inference tensors have no version
        # counter to tell an in-place change, so they are not cached either
        kernel = _fold_nearest_x2(w)
    else:
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        cached = getattr(conv, "_nearest_x2_kernel", None)
        if cached is None or cached[0] != key:
            # a normal tensor even when called under inference_mode, so a later call with autograd
            # on (a frozen G, gradients wrt the noise) may save it for backward
            with torch.inference_mode(False), torch.no_grad():
                cached = (key, _fold_nearest_x2(w))
            conv._nearest_x2_kernel = cached  # a plain attribute: not a buffer, never saved
        kernel = cached[1]
    return F.conv_transpose2d(x, kernel, conv.bias, stride=2, padding=1)


class ConditionalAffine(nn.Module):
    """``γ(c) ⊙ h + β(c)`` with channel-wise γ, β from two-layer MLPs of the condition."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(), nn.Linear(channels, channels))
        self.beta = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(), nn.Linear(channels, channels))
        nn.init.zeros_(self.gamma[2].weight)
        nn.init.ones_(self.gamma[2].bias)
        nn.init.zeros_(self.beta[2].weight)
        nn.init.zeros_(self.beta[2].bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta(cond)[:, :, None, None], self.gamma(cond)[:, :, None, None], h)


class FusionBlock(nn.Module):
    """Deep fusion: affine -> LeakyReLU -> affine -> LeakyReLU."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.affine1 = ConditionalAffine(cond_dim, channels)
        self.affine2 = ConditionalAffine(cond_dim, channels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.affine1(h, cond), 0.2)
        return F.leaky_relu(self.affine2(h, cond), 0.2)


class UpBlock(nn.Module):
    """``up(skip(x)) + conv(fuse(conv(up(fuse(x)))))`` with nearest x2 ``up`` (optional); 1x1 skip when widths differ.

    Mathematically the published ``skip(up(x)) + conv(fuse(conv(fuse(up(x)))))``: ``up`` commutes
    with the first fusion and the skip, which this order runs at the lower resolution.
    """

    def __init__(self, cond_dim: int, cin: int, cout: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.fuse1 = FusionBlock(cond_dim, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.fuse2 = FusionBlock(cond_dim, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # Nearest x2 commutes with the per-channel affine + LeakyReLU and with the 1x1 skip, so
        # both run at the low resolution (4x fewer pixels; the same output, bit for bit), and
        # conv1 of the upsampled map is one stride-2 transposed convolution of the low-resolution map.
        h, s = self.fuse1(x, cond), self.skip(x)
        if self.upsample:
            s = F.interpolate(s, scale_factor=2.0, mode="nearest")
            h = upsample_conv3x3(h, self.conv1)
        else:
            h = self.conv1(h)
        return s + self.conv2(self.fuse2(h, cond))


class DownBlock(nn.Module):
    """Residual down-block: ``avgpool(skip(x)) + g · [conv4x4/2 -> lrelu -> conv3x3 -> lrelu](x)``, g starts at 0.

    The 1x1 skip exists even when the widths agree (it is then unused), as in the published
    model, so parameter counts compare one to one.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.LeakyReLU(0.2),
        )
        self.skip = nn.Conv2d(cin, cout, 1)
        self.use_skip = cin != cout
        self.gain = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool2d(x, 2)  # 2x2 mean commutes with the 1x1 skip: pool first, 4x fewer pixels
        return (self.skip(s) if self.use_skip else s) + self.gain * self.residual(x)


class ConditionHead(nn.Module):
    """The conditional logit: image features (B, C, 4, 4) + sentence tiled to 4x4 -> conv -> conv4x4 -> (B,)."""

    def __init__(self, channels: int, cond_dim: int, hidden: int) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.net = nn.Sequential(
            nn.Conv2d(channels + cond_dim, hidden, 3, 1, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 1, 4, 1, 0, bias=False),
        )

    def forward(self, features: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        s = sentence[:, :, None, None].expand(-1, -1, features.shape[2], features.shape[3])
        return self.net(torch.cat([features, s.to(features.dtype)], 1)).flatten(1).mean(1)


class ToRGB(nn.Sequential):
    def __init__(self, channels: int) -> None:
        super().__init__(nn.LeakyReLU(0.2), nn.Conv2d(channels, 3, 3, 1, 1), nn.Tanh())


class ConditionalDiscriminator(nn.Module):
    """The discriminator contract of the one-stage variants: ``features(images)`` -> (B, C, 4, 4) and a
    :class:`ConditionHead` ``head``; ``forward`` gives the (image, sentence) logits and, with
    ``mismatched`` (K, S), the logits of the first K images against those sentences from the same
    features (one trunk forward)."""

    head: ConditionHead

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor, sentence: torch.Tensor,
                mismatched: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        f = self.features(images)
        logits = self.head(f, sentence)
        mis = self.head(f[: mismatched.shape[0]], mismatched) if mismatched is not None else None
        return logits, mis
