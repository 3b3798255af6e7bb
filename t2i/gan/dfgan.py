"""DF-GAN (METHODS.md §3): one stage, deep-fusion up-blocks conditioned on [z; ē], a residual
discriminator with a conditional head, hinge loss with mismatched text and MA-GP.

At the reference configuration (nf=32, z=100, sentence 256) the parameter counts are the
published model's: G 2,431,235 / 4,868,867 / 9,744,131 and D 1,802,563 / 3,506,756 / 6,915,142
at 32 / 64 / 256 px (``tests/test_gan_models.py`` checks them).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from imagetext.registry import GANS

from .blocks import ConditionalDiscriminator, ConditionHead, DownBlock, ToRGB, UpBlock, discriminator_channels, generator_channels
from .variant import Condition, GANVariant


class DFGenerator(nn.Module):
    """z -> FC -> 8nf x 4 x 4 -> up-blocks fused with [z; ē] -> RGB."""

    def __init__(self, nf: int, noise_dim: int, cond_dim: int, imsize: int) -> None:
        super().__init__()
        chans = generator_channels(nf, imsize)
        self.width = chans[0][0]  # 8nf from 32 px up (narrower below: fewer doublings)
        self.fc = nn.Linear(noise_dim, self.width * 4 * 4)
        self.blocks = nn.ModuleList(UpBlock(noise_dim + cond_dim, cin, cout) for cin, cout in chans)
        self.to_rgb = ToRGB(self.blocks[-1].conv2.out_channels)

    def forward(self, noise: torch.Tensor, cond: Condition) -> torch.Tensor:
        c = torch.cat([noise, cond.sentence.to(noise.dtype)], 1)
        h = self.fc(noise).view(noise.shape[0], self.width, 4, 4)
        for block in self.blocks:
            h = block(h, c)
        return self.to_rgb(h)


class DFDiscriminator(ConditionalDiscriminator):
    """RGB -> conv -> residual down-blocks to 8nf x 4 x 4 -> conditional head with the sentence."""

    def __init__(self, nf: int, cond_dim: int, imsize: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, nf, 3, 1, 1)
        self.blocks = nn.Sequential(*(DownBlock(cin, cout) for cin, cout in discriminator_channels(nf, imsize)))
        self.head = ConditionHead(discriminator_channels(nf, imsize)[-1][1], cond_dim, nf * 2)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(images))


@GANS.register("dfgan")
class DFGAN(GANVariant):
    """DF-GAN; ``nf`` sets both widths (the reference uses 32 for G and D)."""

    tiny = {"nf": 4, "imsize": 16, "noise_dim": 8}

    def __init__(self, imsize: int = 256, cond_dim: int = 256, nf: int = 32, noise_dim: int = 100,
                 lr_g: float = 1e-4, lr_d: float = 4e-4, betas: tuple = (0.0, 0.9), ma_gp_k: float = 2.0,
                 ma_gp_p: float = 6.0, gp_norm: str = "joint", image_encoder: Optional[nn.Module] = None) -> None:
        super().__init__(imsize, noise_dim, cond_dim, lr_g, lr_d, betas)
        if gp_norm not in ("joint", "sum"):
            raise ValueError(f"gp_norm must be 'joint' or 'sum', got {gp_norm!r}")
        self.ma_gp_k, self.ma_gp_p, self.gp_norm = float(ma_gp_k), float(ma_gp_p), gp_norm
        self.generator = DFGenerator(nf, noise_dim, cond_dim, imsize)
        self.discriminator = DFDiscriminator(nf, cond_dim, imsize)
