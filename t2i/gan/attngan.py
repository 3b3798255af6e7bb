"""AttnGAN (METHODS.md §3): conditioning augmentation, a first stage and word-attentive refinement
stages (coarse to fine), one discriminator per scale with an unconditional and a conditional logit,
non-saturating BCE losses, KL and ``damsm_weight`` x DAMSM in the generator loss.

Written from the method description, not from the reference code.

Generator (``base_size`` b, ``imsize`` s = b·2^k: k refinement stages, k + 1 images):

* **conditioning augmentation**: ē -> FC -> (μ, log σ²); c = μ + σ·ε. ε is the last ``ca_dim``
  columns of the generator's noise input (:meth:`AttnGAN.sample_noise` draws ``[z; ε]`` from
  torch's RNG in one go), so a seed fixes the whole sample (exported ``generate --seed``) and the
  two contrastive branches, which share the noise, share ε too. KL(N(μ, σ²) ‖ N(0, I)) =
  ½·mean(μ² + σ² − 1 − log σ²) is the G term ``g_kl_loss`` (weight ``kl_weight``, 1 as in AttnGAN).
* **stage 0**: [z; c] -> FC -> BN -> GLU -> (ngf·b/4) x 4 x 4 -> up-blocks (nearest x2, conv3x3,
  BN, GLU; each halves the width) to ngf x b x b.
* **refinement stage** (x2): a *fusion* of the hidden map h (ngf x H x W) with the words, then
  ``n_res`` residual blocks (x + BN(conv(GLU(BN(conv x))))) and an up-block back to ngf channels.
  AttnGAN's fusion is :class:`WordAttention`: words (B, D, T) -> 1x1 projection to ngf -> e';
  per pixel j, β_j = softmax over real words of (h_jᵀ e'_i) (padded words get exactly 0);
  context c_j = Σ_i β_ij e'_i; fused = [h; c] (2·ngf channels). DM-GAN swaps the fusion
  (:mod:`t2i.gan.dmgan`); everything else is shared.
* **to-RGB** per stage: conv3x3 -> tanh.

Discriminator (:class:`AttnDiscriminator`): one :class:`ScaleDiscriminator` per generated scale,
each a conv4x4/2 trunk (ndf, 2ndf, 4ndf, ... : BN + LeakyReLU(0.2) after all but the first) to
4 x 4, then conv3x3 blocks halving the width back to 8·ndf when the trunk went wider (AttnGAN's
128/256 discriminators); an unconditional logit (conv4x4) and a conditional one ([features;
sentence tiled] -> conv3x3 -> BN -> LeakyReLU -> conv4x4).

Losses (per scale, summed over scales; BCE on logits):

* D: ½(BCE(u_real, 1) + BCE(c_real, 1)) + ⅓(BCE(u_fake, 0) + BCE(c_fake, 0) + BCE(c_mismatched, 0)),
  reported as ``d_real_loss``, ``d_fake_loss`` and ``d_mismatch_loss`` (mismatched: every real
  image with the previous caption of the batch). The real image is box-downsampled (avg-pool)
  to each scale. Real and fake sets go through each trunk separately (their own BN batch
  statistics, as AttnGAN's separate D calls) but within one D forward;
* G: BCE(u_fake, 1) + BCE(c_fake, 1) (``g_adv_loss``), + ``g_kl_loss``, + ``damsm_weight`` x
  DAMSM(word + sentence) of the final image (``g_damsm_word_loss``, ``g_damsm_sent_loss``).

Optimisers: Adam (0.5, 0.999), lr 2e-4 for both; no MA-GP.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from imagetext.losses.damsm import DamsmLoss
from imagetext.registry import GANS

from .blocks import upsample_conv3x3
from .variant import Condition, GANVariant

# ------------------------------------------------------------------------------- helpers


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """½·mean(μ² + σ² − 1 − log σ²): KL(N(μ, σ²) ‖ N(0, I)) averaged over batch and dimensions (AttnGAN's)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def stage_sizes(imsize: int, base_size: int) -> List[int]:
    """The side of every stage's image: ``base_size``, x2, ... up to ``imsize``."""
    for name, v in (("imsize", imsize), ("base_size", base_size)):
        if v < 8 or v & (v - 1):
            raise ValueError(f"{name} must be a power of two >= 8, got {v}")
    if base_size > imsize:
        raise ValueError(f"base_size ({base_size}) must be <= imsize ({imsize})")
    return [base_size * 2 ** i for i in range(int(math.log2(imsize // base_size)) + 1)]


def image_pyramid(image: torch.Tensor, sizes: Sequence[int]) -> List[torch.Tensor]:
    """``image`` box-downsampled (avg-pool) to each side in ``sizes`` (the full size itself is kept)."""
    out = []
    for s in sizes:
        f = image.shape[-1] // s
        if f < 1 or image.shape[-1] != s * f or image.shape[-2] != image.shape[-1]:
            raise ValueError(f"cannot box-downsample a {tuple(image.shape[-2:])} image to {s} x {s}")
        out.append(image if f == 1 else F.avg_pool2d(image, f))
    return out


def as_stages(images: Union[torch.Tensor, Sequence[torch.Tensor]]) -> List[torch.Tensor]:
    """A generator's output as a list of stage images (a single tensor is one stage)."""
    return [images] if isinstance(images, torch.Tensor) else list(images)


def masked_softmax_over_words(scores: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Softmax over dim 1 (words) of ``scores`` (B, T, L); ``mask`` (B, T) True on real words.

    Padded words are set to the dtype's lowest value, so they get exactly 0 weight; a caption with
    no real word at all (never given by the text encoders) gets uniform weights instead of NaN.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask.to(scores.device, torch.bool)[:, :, None], torch.finfo(scores.dtype).min)
    return scores.softmax(dim=1)


# ------------------------------------------------------------------------------- generator pieces


class ConditioningAugmentation(nn.Module):
    """ē -> FC -> (μ, log σ²); ``forward(ē, ε)`` = μ + σ·ε."""

    def __init__(self, cond_dim: int, ca_dim: int) -> None:
        super().__init__()
        self.ca_dim = int(ca_dim)
        self.fc = nn.Linear(cond_dim, 2 * self.ca_dim)

    def stats(self, sentence: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc(sentence).chunk(2, dim=1)
        return mu, logvar

    def kl(self, sentence: torch.Tensor) -> torch.Tensor:
        return kl_divergence(*self.stats(sentence))

    def forward(self, sentence: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.stats(sentence)
        return mu + torch.exp(0.5 * logvar) * eps.to(mu.dtype)


class UpBlock(nn.Module):
    """nearest x2 -> conv3x3 (to 2·cout) -> BN -> GLU (to cout)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.bn(upsample_conv3x3(x, self.conv)), dim=1)  # = conv(nearest_x2(x)), at low resolution


class ResBlock(nn.Module):
    """x + BN(conv3x3(GLU(BN(conv3x3(x)))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 2 * channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(F.glu(self.bn1(self.conv1(x)), dim=1)))


class InitStage(nn.Module):
    """[z; c] -> FC -> BN -> GLU -> (ngf·b/4) x 4 x 4 -> up-blocks (halving the width) -> ngf x b x b."""

    def __init__(self, in_dim: int, ngf: int, base_size: int) -> None:
        super().__init__()
        n_up = int(math.log2(base_size // 4))
        self.width = ngf * 2 ** n_up
        self.fc = nn.Linear(in_dim, 2 * self.width * 16, bias=False)
        self.bn = nn.BatchNorm1d(2 * self.width * 16)
        self.ups = nn.Sequential(*(UpBlock(self.width // 2 ** i, self.width // 2 ** (i + 1)) for i in range(n_up)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.glu(self.bn(self.fc(x)), dim=1).view(x.shape[0], self.width, 4, 4)
        return self.ups(h)


class WordAttention(nn.Module):
    """AttnGAN's fusion: the hidden map attends over the projected words; output [h; context] (2·C channels).

    ``forward(h, words, mask) -> (fused, {"attention": (B, T, H, W)})``; words (B, D, T), mask (B, T).
    """

    def __init__(self, word_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(word_dim, channels, 1, bias=False)
        self.out_channels = 2 * channels

    def forward(self, h: torch.Tensor, words: torch.Tensor,
                mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        b, c, hh, ww = h.shape
        e = self.proj(words.to(h.dtype))                                  # (B, C, T)
        q = h.flatten(2)                                                  # (B, C, L)
        attn = masked_softmax_over_words(torch.bmm(e.transpose(1, 2), q), mask)  # (B, T, L)
        context = torch.bmm(e, attn).view(b, c, hh, ww)                   # (B, C, H, W)
        return torch.cat([h, context], 1), {"attention": attn.view(b, -1, hh, ww)}


class RefineStage(nn.Module):
    """fusion(h, words) -> residual blocks -> up-block (x2, back to ``channels``)."""

    def __init__(self, fusion: nn.Module, channels: int, n_res: int) -> None:
        super().__init__()
        self.fusion = fusion
        width = int(fusion.out_channels)
        self.res = nn.Sequential(*(ResBlock(width) for _ in range(n_res)))
        self.up = UpBlock(width, channels)

    def forward(self, h: torch.Tensor, words: torch.Tensor,
                mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        fused, maps = self.fusion(h, words, mask)
        return self.up(self.res(fused)), maps


class StageRGB(nn.Sequential):
    """conv3x3 -> tanh."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv2d(channels, 3, 3, 1, 1), nn.Tanh())


FusionFactory = Callable[[int, int], nn.Module]  # (word_dim, channels) -> a fusion module with ``out_channels``


class MultiStageGenerator(nn.Module):
    """CA -> stage 0 -> refinement stages (each with ``fusion``) -> one image per stage, coarse to fine.

    ``forward(noise, cond)``: noise is ``[z; ε]`` (B, noise_dim + ca_dim); returns the list of images.
    With ``return_maps`` also each refinement stage's fusion maps (attention, gates) as a list of dicts.
    """

    def __init__(self, ngf: int, noise_dim: int, ca_dim: int, cond_dim: int, imsize: int, base_size: int,
                 n_res: int, fusion: FusionFactory) -> None:
        super().__init__()
        self.sizes = stage_sizes(imsize, base_size)
        self.noise_dim, self.ca_dim = int(noise_dim), int(ca_dim)
        self.ca = ConditioningAugmentation(cond_dim, ca_dim)
        self.init = InitStage(self.noise_dim + self.ca_dim, ngf, base_size)
        self.stages = nn.ModuleList(RefineStage(fusion(cond_dim, ngf), ngf, n_res) for _ in self.sizes[1:])
        self.to_rgb = nn.ModuleList(StageRGB(ngf) for _ in self.sizes)

    def forward(self, noise: torch.Tensor, cond: Condition,
                return_maps: bool = False) -> Union[List[torch.Tensor], Tuple[List[torch.Tensor], List[Dict]]]:
        if noise.dim() != 2 or noise.shape[1] != self.noise_dim + self.ca_dim:
            raise ValueError(f"noise must be (B, {self.noise_dim + self.ca_dim}): z ({self.noise_dim}) and the "
                             f"conditioning-augmentation ε ({self.ca_dim}); got {tuple(noise.shape)}")
        if self.stages and cond.words is None:
            raise ValueError("the refinement stages attend over word features: the Condition has none "
                             "(cond.words, B x D x T)")
        z, eps = noise.split([self.noise_dim, self.ca_dim], dim=1)
        c = self.ca(cond.sentence.to(noise.dtype), eps)
        h = self.init(torch.cat([z, c], 1))
        images, maps = [self.to_rgb[0](h)], []
        for stage, rgb in zip(self.stages, self.to_rgb[1:]):
            h, m = stage(h, cond.words, cond.word_mask)
            images.append(rgb(h))
            maps.append(m)
        return (images, maps) if return_maps else images


# ------------------------------------------------------------------------------- discriminator


def _down(cin: int, cout: int, bn: bool = True) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), *([nn.BatchNorm2d(cout)] if bn else []), nn.LeakyReLU(0.2)]


def _conv3x3(cin: int, cout: int) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]


class ScaleDiscriminator(nn.Module):
    """One scale: conv4x4/2 trunk to 4 x 4 (width ndf·2^i, then conv3x3 back to 8·ndf if wider), two heads."""

    def __init__(self, ndf: int, cond_dim: int, size: int) -> None:
        super().__init__()
        n_down = int(math.log2(size // 4))
        layers = _down(3, ndf, bn=False)
        for i in range(1, n_down):
            layers += _down(ndf * 2 ** (i - 1), ndf * 2 ** i)
        width = ndf * 2 ** (n_down - 1)
        while width > 8 * ndf:
            layers += _conv3x3(width, width // 2)
            width //= 2
        self.trunk = nn.Sequential(*layers)
        self.width, self.cond_dim = width, cond_dim
        self.uncond = nn.Conv2d(width, 1, 4, 4)
        self.cond = nn.Sequential(*_conv3x3(width + cond_dim, width), nn.Conv2d(width, 1, 4, 4))

    def cond_logits(self, features: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        s = sentence.to(features.dtype)[:, :, None, None].expand(-1, -1, *features.shape[2:])
        return self.cond(torch.cat([features, s], 1)).flatten()

    def forward(self, images: torch.Tensor, sentence: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(features (B, C, 4, 4), logits (2, B): unconditional, conditional)."""
        f = self.trunk(images)
        return f, torch.stack([self.uncond(f).flatten(), self.cond_logits(f, sentence)])


class AttnDiscriminator(nn.Module):
    """One discriminator per scale (``sizes``, coarse to fine), called once per loss.

    ``forward(images, sentence, mismatched=None, fake=None) -> (logits, mismatched_logits, fake_logits)``:

    * ``images``: a list of per-scale batches (coarse to fine, as the generator gives them) or one
      full-size batch (box-downsampled to every scale); ``logits`` (S, 2, B): per scale the
      unconditional ([:, 0]) and conditional ([:, 1]) logits against ``sentence``;
    * ``mismatched`` (K, D): ``mismatched_logits`` (S, K), the conditional logits of the first K
      ``images`` against those sentences (from the same trunk features), else None;
    * ``fake``: a second set of images (same forms), run through each trunk *separately* (its own
      BN batch statistics): ``fake_logits`` (S, 2, B'), else None.
    """

    def __init__(self, ndf: int, cond_dim: int, sizes: Sequence[int]) -> None:
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.scales = nn.ModuleList(ScaleDiscriminator(ndf, cond_dim, s) for s in self.sizes)

    def _per_scale(self, images: Union[torch.Tensor, Sequence[torch.Tensor]]) -> List[torch.Tensor]:
        imgs = image_pyramid(images, self.sizes) if isinstance(images, torch.Tensor) else list(images)
        got = [int(x.shape[-1]) for x in imgs]
        if got != self.sizes:
            raise ValueError(f"the discriminator judges images of sides {self.sizes} (coarse to fine), got {got}")
        return imgs

    def forward(self, images: Union[torch.Tensor, Sequence[torch.Tensor]], sentence: torch.Tensor,
                mismatched: Optional[torch.Tensor] = None,
                fake: Optional[Union[torch.Tensor, Sequence[torch.Tensor]]] = None,
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        logits, mis, fake_logits = [], [], []
        fakes = self._per_scale(fake) if fake is not None else None
        for i, (d, x) in enumerate(zip(self.scales, self._per_scale(images))):
            f, lg = d(x, sentence)
            logits.append(lg)
            if mismatched is not None:
                mis.append(d.cond_logits(f[: mismatched.shape[0]], mismatched))
            if fakes is not None:
                fake_logits.append(d(fakes[i], sentence)[1])
        return (torch.stack(logits), torch.stack(mis) if mis else None,
                torch.stack(fake_logits) if fake_logits else None)


# ------------------------------------------------------------------------------- the variant


def damsm_terms(damsm: DamsmLoss, weight: float, image: torch.Tensor, cond: Condition,
                name: str) -> Dict[str, torch.Tensor]:
    """``weight`` x DAMSM(word + sentence) between ``image`` (through the frozen encoder) and the caption."""
    if cond.image_encoder is None:
        raise ValueError(f"{name}: the DAMSM term (damsm_weight > 0) needs the frozen image encoder of the "
                         "phase-1 pair in the Condition (cond.image_encoder); set damsm_weight=0 to train without it")
    if cond.words is None:
        raise ValueError(f"{name}: the DAMSM term (damsm_weight > 0) needs the caption's word features "
                         "(cond.words, B x D x T); the text encoder gave none")
    feats = cond.encode_image(image)  # shared with the generation-phase SupCon on these fakes
    if feats.regions is None:
        raise ValueError(f"{name}: the DAMSM term needs region features from the image encoder, "
                         f"{type(cond.image_encoder).__name__} gives none")
    terms = damsm(feats.regions, cond.words, cond.sentence, feats.global_, words_mask=cond.word_mask,
                  class_ids=cond.class_ids)
    return {k: weight * t for k, t in terms.items()}


@GANS.register("attngan")
class AttnGAN(GANVariant):
    """AttnGAN. ``ngf``/``ndf``/``n_res``: AttnGAN's GF_DIM/DF_DIM/R_NUM (32/64/2 CUB, 48/96/3 COCO);
    ``noise_dim``/``ca_dim``: Z_DIM/CONDITION_DIM (100/100); ``base_size``: the first stage's side
    (64 in the paper: 64 -> 128 -> 256). The generator's noise input is ``[z; ε]`` (``self.noise_dim``
    = ``noise_dim + ca_dim``). ``image_encoder`` is not held (the DAMSM term reads ``cond.image_encoder``),
    so the exported generator is rebuilt without it."""

    tiny = {"imsize": 32, "base_size": 16, "ngf": 4, "ndf": 4, "noise_dim": 8, "ca_dim": 4, "n_res": 1}
    needs_words = True          # the refinement stages and the DAMSM word term read the word features
    needs_image_encoder = True  # the DAMSM term reads the frozen image encoder
    ma_gp_k = 0.0               # no matching-aware gradient penalty (BCE losses, AttnGAN's)

    def __init__(self, imsize: int = 256, cond_dim: int = 256, ngf: int = 32, ndf: int = 64, noise_dim: int = 100,
                 ca_dim: int = 100, base_size: int = 64, n_res: int = 2, lr_g: float = 2e-4, lr_d: float = 2e-4,
                 betas: tuple = (0.5, 0.999), kl_weight: float = 1.0, damsm_weight: float = 5.0,
                 damsm_gammas: Sequence[float] = (4.0, 5.0, 10.0), damsm_lse_root: bool = True,
                 image_encoder: Optional[nn.Module] = None) -> None:
        sizes = stage_sizes(int(imsize), int(base_size))
        for k, v in (("ngf", ngf), ("ndf", ndf), ("noise_dim", noise_dim), ("ca_dim", ca_dim)):
            if int(v) < 1:
                raise ValueError(f"{k} must be >= 1, got {v}")
        if int(n_res) < 0:
            raise ValueError(f"n_res must be >= 0, got {n_res}")
        if kl_weight < 0 or damsm_weight < 0:
            raise ValueError(f"kl_weight and damsm_weight must be >= 0, got {kl_weight}, {damsm_weight}")
        if len(tuple(damsm_gammas)) != 3:
            raise ValueError(f"damsm_gammas must be (gamma1, gamma2, gamma3), got {damsm_gammas!r}")
        enc_dim = getattr(image_encoder, "dim", None)
        name = type(self).__name__.lower()
        if damsm_weight > 0 and enc_dim is not None and int(enc_dim) != int(cond_dim):
            raise ValueError(f"{name}: the image encoder gives {enc_dim}-d features but the text side is "
                             f"{cond_dim}-d; DAMSM needs the two sides of one phase-1 pair")
        # the generator's noise input is [z; ε]: GANVariant.sample_noise draws both
        super().__init__(imsize, int(noise_dim) + int(ca_dim), cond_dim, lr_g, lr_d, betas)
        self.z_dim, self.ca_dim, self.base_size = int(noise_dim), int(ca_dim), int(base_size)
        self.kl_weight, self.damsm_weight = float(kl_weight), float(damsm_weight)
        g1, g2, g3 = (float(g) for g in damsm_gammas)
        self.damsm = DamsmLoss(g1, g2, g3, lse_root=bool(damsm_lse_root), prefix="g_damsm")
        self.generator = MultiStageGenerator(int(ngf), self.z_dim, self.ca_dim, int(cond_dim), int(imsize),
                                             self.base_size, int(n_res), self.make_fusion)
        self.discriminator = AttnDiscriminator(int(ndf), int(cond_dim), sizes)

    def make_fusion(self, word_dim: int, channels: int) -> nn.Module:
        """The refinement stages' word fusion (DM-GAN overrides it)."""
        return WordAttention(word_dim, channels)

    def _stages(self, fake: Union[torch.Tensor, Sequence[torch.Tensor]]) -> List[torch.Tensor]:
        stages = as_stages(fake)
        if len(stages) != len(self.discriminator.sizes):
            raise ValueError(f"{type(self).__name__.lower()}: expected {len(self.discriminator.sizes)} stage images "
                             f"(sides {self.discriminator.sizes}), got {len(stages)}")
        return stages

    def d_losses(self, D: nn.Module, real: torch.Tensor, fake: Union[torch.Tensor, Sequence[torch.Tensor]],
                 cond: Condition) -> Dict[str, torch.Tensor]:
        """Per scale ½(BCE real uncond + cond) + ⅓(BCE fake uncond + cond + mismatched cond), summed over scales."""
        fakes = [f.detach() for f in self._stages(fake)]
        sent = cond.sentence.detach()
        real_l, mis, fake_l = D(image_pyramid(real.detach(), [f.shape[-1] for f in fakes]), sent,
                                sent.roll(1, dims=0), fake=fakes)
        bce = F.binary_cross_entropy_with_logits
        real_l, mis, fake_l = real_l.float(), mis.float(), fake_l.float()
        per_scale = lambda x, y: bce(x, torch.full_like(x, y), reduction="none").flatten(1).mean(1)  # noqa: E731
        return {
            "d_real_loss": per_scale(real_l, 1.0).sum(),                       # Σ_s ½(u + c)
            "d_fake_loss": per_scale(fake_l, 0.0).sum() * (2.0 / 3.0),         # Σ_s ⅓(u + c)
            "d_mismatch_loss": per_scale(mis, 0.0).sum() / 3.0,                # Σ_s ⅓ c_mismatched
            "d_real_score": real_l[-1, 1].detach().mean(),
            "d_fake_score": fake_l[-1, 1].detach().mean(),
        }

    def g_losses(self, D: nn.Module, fake: Union[torch.Tensor, Sequence[torch.Tensor]],
                 cond: Condition) -> Dict[str, torch.Tensor]:
        """Σ_s BCE(uncond, 1) + BCE(cond, 1), + kl_weight x KL, + damsm_weight x DAMSM of the final image."""
        stages = self._stages(fake)
        logits, _, _ = D(stages, cond.sentence)
        logits = logits.float()
        out = {"g_adv_loss": 2.0 * F.binary_cross_entropy_with_logits(
            logits, torch.ones_like(logits), reduction="none").flatten(1).mean(1).sum()}
        if self.kl_weight > 0:
            # The KL reads only ē and G's CA layer: recomputed from them (one small linear map) rather than
            # carried out of G's forward, whose output is the list of images. It reaches G's CA weights
            # in the same backward as the rest of the G loss.
            out["g_kl_loss"] = self.kl_weight * self.generator.ca.kl(cond.sentence)
        if self.damsm_weight > 0:
            out.update(damsm_terms(self.damsm, self.damsm_weight, stages[-1], cond, type(self).__name__.lower()))
        return out
