"""SSA-GAN (METHODS.md §3): DF-GAN's one-stage generator with semantic-aware batch norm,
DF-GAN's discriminator and losses, plus ``damsm_weight`` x DAMSM in the generator loss.

Written from the formula, not from the reference code. One up-block keeps DF-GAN's residual
shape, ``up(skip(x)) + conv(SSBN(conv(up(SSBN(x)))))``, where each SSBN stage is two stacked
*semantic-aware batch norms*, each followed by LeakyReLU(0.2):

    SSBN(h) = BN(h) · (1 + γ(c) · m) + β(c) · m

* ``BN``: ``BatchNorm2d(affine=False)`` (running statistics are buffers: the task's EMA copies them);
* ``γ(c), β(c)``: per-channel, from two-layer MLPs of the condition ``c`` (the sentence ē by
  default, as the method states; ``[z; ē]`` with ``noise_in_affine=True``, as DF-GAN does).
  The MLPs are :class:`~t2i.gan.blocks.ConditionalAffine`'s, with γ's last layer started at 0
  (weight and bias) and β's at 0, so every SSBN starts as a plain BN;
* ``m`` (B, 1, H, W) in [0, 1]: one spatial mask per up-block, predicted from the block's input
  features by a small head (conv3x3 -> BN -> ReLU -> conv1x1 -> sigmoid) and shared by the
  block's four SSBN layers (nearest-upsampled for the two at the output resolution). It says
  *where* the text modulates the features; γ, β say *how*.

As in DF-GAN's up-block the first SSBN stage and the skip run before the nearest x2
upsampling: every operation there is per pixel (BN's batch mean and biased variance are those
of the upsampled map, which repeats each pixel 4 times), so the output is the same at 4x fewer
pixels; only the unbiased running variance differs, by the factor (n-1)/n vs (4n-1)/(4n).

Generator loss: the adversarial term + ``damsm_weight`` x (DAMSM word + sentence loss) between
the fakes, resized to the frozen image encoder's side and encoded by it, and the caption's word
and sentence features. Gradients flow through the frozen encoder to G only.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from imagetext.losses.damsm import DamsmLoss
from imagetext.registry import GANS

from .blocks import ConditionalAffine, ToRGB, generator_channels, upsample_conv3x3
from .dfgan import DFDiscriminator
from .variant import Condition, GANVariant


class SemanticBatchNorm(nn.Module):
    """``BN(h) · (1 + γ(c) · m) + β(c) · m``: BN without affine, text-predicted γ, β, spatial mask ``m``."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.affine = ConditionalAffine(cond_dim, channels)  # its two MLPs: γ(c) and β(c)
        nn.init.zeros_(self.affine.gamma[2].bias)  # γ starts at 0: the modulation 1 + γ·m starts at 1

    def forward(self, h: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gamma = self.affine.gamma(cond)[:, :, None, None]
        beta = self.affine.beta(cond)[:, :, None, None]
        return self.bn(h) * (1.0 + gamma * mask) + beta * mask


class SemanticFusion(nn.Module):
    """Two stacked semantic-aware BNs, each followed by LeakyReLU(0.2) (DF-GAN's fusion block, masked)."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.norm1 = SemanticBatchNorm(cond_dim, channels)
        self.norm2 = SemanticBatchNorm(cond_dim, channels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm1(h, cond, mask), 0.2)
        return F.leaky_relu(self.norm2(h, cond, mask), 0.2)


class MaskHead(nn.Module):
    """Block input features (B, C, H, W) -> mask (B, 1, H, W) in [0, 1]: conv3x3 -> BN -> ReLU -> conv1x1 -> sigmoid."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, 1, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


class SSAUpBlock(nn.Module):
    """``up(skip(x)) + conv(SSBN(conv(up(SSBN(x, m)))), up(m))`` with ``m = mask_head(x)``; 1x1 skip when widths differ."""

    def __init__(self, cond_dim: int, cin: int, cout: int, mask_hidden: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.mask_head = MaskHead(cin, mask_hidden)
        self.fuse1 = SemanticFusion(cond_dim, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.fuse2 = SemanticFusion(cond_dim, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(output, the block's mask at the output resolution)."""
        m = self.mask_head(x)
        h, s = self.fuse1(x, cond, m), self.skip(x)
        if self.upsample:  # conv1 of the upsampled map runs at the low resolution (blocks.upsample_conv3x3)
            s, m = (F.interpolate(t, scale_factor=2.0, mode="nearest") for t in (s, m))
            h = upsample_conv3x3(h, self.conv1)
        else:
            h = self.conv1(h)
        return s + self.conv2(self.fuse2(h, cond, m)), m


class SSAGenerator(nn.Module):
    """z -> FC -> 8nf x 4 x 4 -> up-blocks with semantic-aware BN (γ, β from ē or [z; ē]; masks per block) -> RGB."""

    def __init__(self, nf: int, noise_dim: int, cond_dim: int, imsize: int, mask_hidden: int = 100,
                 noise_in_affine: bool = False) -> None:
        super().__init__()
        chans = generator_channels(nf, imsize)
        self.width = chans[0][0]
        self.noise_in_affine = bool(noise_in_affine)
        c_dim = cond_dim + (noise_dim if self.noise_in_affine else 0)
        self.fc = nn.Linear(noise_dim, self.width * 4 * 4)
        self.blocks = nn.ModuleList(SSAUpBlock(c_dim, cin, cout, min(int(mask_hidden), cin)) for cin, cout in chans)
        self.to_rgb = ToRGB(self.blocks[-1].conv2.out_channels)

    def forward(self, noise: torch.Tensor, cond: Condition,
                return_masks: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Images in [-1, 1]; with ``return_masks`` also each block's mask (B, 1, H, W) at its output side."""
        s = cond.sentence.to(noise.dtype)
        c = torch.cat([noise, s], 1) if self.noise_in_affine else s
        h = self.fc(noise).view(noise.shape[0], self.width, 4, 4)
        masks = []
        for block in self.blocks:
            h, m = block(h, c)
            masks.append(m)
        img = self.to_rgb(h)
        return (img, masks) if return_masks else img


@GANS.register("ssagan")
class SSAGAN(GANVariant):
    """SSA-GAN; ``nf`` sets both widths (32 in the reference). ``image_encoder`` is not held: the DAMSM
    term reads the frozen encoder from the :class:`Condition` (``cond.image_encoder``), so the exported
    generator is rebuilt without it."""

    tiny = {"nf": 4, "imsize": 16, "noise_dim": 8}
    needs_words = True          # the DAMSM word term reads the caption's word features
    needs_image_encoder = True  # ... and the frozen image encoder's regions and global code

    def __init__(self, imsize: int = 256, cond_dim: int = 256, nf: int = 32, noise_dim: int = 100,
                 lr_g: float = 1e-4, lr_d: float = 4e-4, betas: tuple = (0.0, 0.9), ma_gp_k: float = 2.0,
                 ma_gp_p: float = 6.0, gp_norm: str = "joint", damsm_weight: float = 0.05,
                 damsm_gammas: Sequence[float] = (4.0, 5.0, 10.0), damsm_lse_root: bool = True,
                 mask_hidden: int = 100, noise_in_affine: bool = False,
                 image_encoder: Optional[nn.Module] = None) -> None:
        super().__init__(imsize, noise_dim, cond_dim, lr_g, lr_d, betas)
        if gp_norm not in ("joint", "sum"):
            raise ValueError(f"gp_norm must be 'joint' or 'sum', got {gp_norm!r}")
        if damsm_weight < 0:
            raise ValueError(f"damsm_weight must be >= 0, got {damsm_weight}")
        if len(tuple(damsm_gammas)) != 3:
            raise ValueError(f"damsm_gammas must be (gamma1, gamma2, gamma3), got {damsm_gammas!r}")
        if int(mask_hidden) < 1:
            raise ValueError(f"mask_hidden must be >= 1, got {mask_hidden}")
        enc_dim = getattr(image_encoder, "dim", None)
        if damsm_weight > 0 and enc_dim is not None and int(enc_dim) != int(cond_dim):
            raise ValueError(f"ssagan: the image encoder gives {enc_dim}-d features but the text side is "
                             f"{cond_dim}-d; DAMSM needs the two sides of one phase-1 pair")
        self.ma_gp_k, self.ma_gp_p, self.gp_norm = float(ma_gp_k), float(ma_gp_p), gp_norm
        self.damsm_weight = float(damsm_weight)
        g1, g2, g3 = (float(g) for g in damsm_gammas)
        self.damsm = DamsmLoss(g1, g2, g3, lse_root=bool(damsm_lse_root), prefix="g_damsm")
        self.generator = SSAGenerator(nf, noise_dim, cond_dim, imsize, mask_hidden, noise_in_affine)
        self.discriminator = DFDiscriminator(nf, cond_dim, imsize)

    def g_losses(self, D: nn.Module, fake: torch.Tensor, cond: Condition) -> Dict[str, torch.Tensor]:
        """Adversarial term + ``damsm_weight`` x DAMSM(word + sentence) of (fakes, caption)."""
        out = super().g_losses(D, fake, cond)
        if self.damsm_weight <= 0:
            return out
        if cond.image_encoder is None:
            raise ValueError("ssagan: the DAMSM term (damsm_weight > 0) needs the frozen image encoder of the "
                             "phase-1 pair in the Condition (cond.image_encoder); set damsm_weight=0 to train without it")
        if cond.words is None:
            raise ValueError("ssagan: the DAMSM term (damsm_weight > 0) needs the caption's word features "
                             "(cond.words, B x D x T); the text encoder gave none")
        feats = cond.encode_image(fake)  # shared with the generation-phase SupCon on these fakes
        if feats.regions is None:
            raise ValueError("ssagan: the DAMSM term needs region features from the image encoder, "
                             f"{type(cond.image_encoder).__name__} gives none")
        terms = self.damsm(feats.regions, cond.words, cond.sentence, feats.global_, words_mask=cond.word_mask,
                           class_ids=cond.class_ids)
        for k, t in terms.items():
            out[k] = self.damsm_weight * t
        return out
