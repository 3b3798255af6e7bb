"""The variant protocol: what one GAN family brings to the one trainer.

A variant is registered in :data:`imagetext.registry.GANS` (timm-style) and bundles its
generator, its discriminator and its loss set; :class:`t2i.gan.task.GanTask` alternates
D and G steps over any of them with no per-variant branch. Adding a variant = one model
file that subclasses :class:`GANVariant` + configs.

Conventions every variant keeps:

* ``generator(noise, cond) -> images`` in [-1, 1] (``cond``: :class:`Condition`): one tensor, or
  for multi-stage variants (AttnGAN-style) a list of tensors coarse to fine; :func:`final_image`
  takes the finest (what is sampled, exported, scored and contrasted);
* ``discriminator(images, sentence, mismatched=None) -> (logits, mismatched_logits)``:
  logits (B,) for (image, sentence) pairs; with ``mismatched`` (K, S) also the logits of
  the first K images against those sentences (one forward through the image trunk);
* :meth:`GANVariant.d_losses` / :meth:`GANVariant.g_losses` return named terms; keys
  ending ``_loss`` are summed by the task. They call the modules given to them (the
  prepared, possibly DDP-wrapped ones), never ``self.generator`` directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .switches import SHARE_IMAGE_ENCODING


def sample_noise(n: int, dim: int, generator: Optional[torch.Generator] = None, truncation: Optional[float] = None,
                 device: Any = "cpu") -> torch.Tensor:
    """(n, dim) standard normal noise drawn on the CPU (so a seed gives the same noise on any device);
    with ``truncation`` t, a normal truncated to [-t, t]."""
    z = torch.empty(n, dim)
    if truncation is None:
        z.normal_(generator=generator)
    else:
        if truncation <= 0:
            raise ValueError(f"truncation must be > 0, got {truncation}")
        nn.init.trunc_normal_(z, 0.0, 1.0, -truncation, truncation, generator=generator)
    return z.to(device)


def final_image(out: Any) -> torch.Tensor:
    """The finest image of a generator's output (the tensor itself, or the last of a coarse-to-fine list)."""
    return out[-1] if isinstance(out, (list, tuple)) else out


# within it, every Condition.encode_image call runs the image encoder anew (the ablation)
separate_image_encodings = SHARE_IMAGE_ENCODING.off


@dataclass
class Condition:
    """What the frozen text encoder says about a batch of captions (and what variants may need besides)."""

    sentence: torch.Tensor                 # (B, S)
    words: Optional[torch.Tensor] = None   # (B, T, D) word features (attention variants)
    word_mask: Optional[torch.Tensor] = None  # (B, T) True for real words
    # the frozen image encoder of the pair (DAMSM / CLIP image side) for variants whose G loss uses it,
    # and the side it was trained at (fakes are resized to it: :func:`resize_for_encoder`)
    image_encoder: Optional[nn.Module] = None
    encoder_size: Optional[int] = None
    # (B,) ids whose equal values are not negatives of each other in matching losses (DAMSM): the
    # class for single-label data, else the sample index (the two branches of one image share it)
    class_ids: Optional[torch.Tensor] = None
    # the last encode_image call: (its images, grad mode, the encoder's output)
    _encoded: Optional[Tuple[torch.Tensor, bool, Any]] = field(default=None, repr=False, compare=False)

    def encode_image(self, images: torch.Tensor) -> Any:
        """``image_encoder`` on ``images`` resized to ``encoder_size`` (its ImageFeatures).

        The G step's terms that embed the same fakes (a variant's DAMSM term and the generation-phase
        SupCon) share one pass: the result is kept for the same tensor object and grad mode, and a
        Condition lives for one training step. Both terms' gradients meet in that pass's backward."""
        grad = torch.is_grad_enabled()
        if SHARE_IMAGE_ENCODING.on and self._encoded is not None and self._encoded[0] is images \
                and self._encoded[1] == grad:
            return self._encoded[2]
        out = self.image_encoder(resize_for_encoder(images, self.encoder_size))
        self._encoded = (images, grad, out)
        return out

    def select(self, idx: Any) -> "Condition":
        return Condition(self.sentence[idx], None if self.words is None else self.words[idx],
                         None if self.word_mask is None else self.word_mask[idx], self.image_encoder,
                         self.encoder_size, None if self.class_ids is None else self.class_ids[idx])


def resize_for_encoder(images: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    """``images`` at the side the image encoder was trained at (bilinear, antialiased when shrinking)."""
    if size is None or images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > size)


class GANVariant(nn.Module):
    """Base class: holds ``generator`` and ``discriminator`` and the variant's losses.

    Class attributes:
        tiny: builder kwargs of a tiny model (tests, ``*_tiny`` configs).
        needs_words: the generator reads word features (AttnGAN-style attention).
        needs_image_encoder: the variant reads the frozen image encoder (DAMSM / CLIP loss terms, GALIP's D).
        generator_holds_image_encoder: the generator itself contains it (GALIP's CLIP bridge), so the
            export saves its architecture and ``T2IGenerator`` rebuilds it on load.
    """

    tiny: ClassVar[Dict[str, Any]] = {}
    needs_words: ClassVar[bool] = False
    needs_image_encoder: ClassVar[bool] = False
    generator_holds_image_encoder: ClassVar[bool] = False

    generator: nn.Module
    discriminator: nn.Module

    def __init__(self, imsize: int, noise_dim: int, cond_dim: int, lr_g: float, lr_d: float,
                 betas: tuple = (0.0, 0.9)) -> None:
        super().__init__()
        self.imsize, self.noise_dim, self.cond_dim = int(imsize), int(noise_dim), int(cond_dim)
        self.lr_g, self.lr_d, self.betas = float(lr_g), float(lr_d), tuple(betas)

    # -- noise ---------------------------------------------------------------------------

    def sample_noise(self, n: int, generator: Optional[torch.Generator] = None, truncation: Optional[float] = None,
                     device: Any = "cpu") -> torch.Tensor:
        """(n, noise_dim) noise: :func:`sample_noise`."""
        return sample_noise(n, self.noise_dim, generator, truncation, device)

    # -- losses (hinge + matching-aware gradient penalty: DF-GAN's set, shared by the one-stage variants) --

    ma_gp_k: float = 2.0
    ma_gp_p: float = 6.0
    gp_norm: str = "joint"  # "joint": ‖[∇x; ∇ē]‖ (the reference code); "sum": ‖∇x‖ + ‖∇ē‖ (the paper's formula)

    def d_losses(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: Condition) -> Dict[str, torch.Tensor]:
        """Hinge with a mismatched-text term, plus MA-GP on (real image, its sentence)."""
        real = real.detach().requires_grad_(self.ma_gp_k > 0)
        sent = cond.sentence.detach().requires_grad_(self.ma_gp_k > 0)
        mismatched = sent.roll(1, dims=0)  # every image paired with another image's caption
        # Two D calls, not one over [real; fake]: MA-GP's double backward then covers the real half
        # only (less compute and memory; the merged step: scripts/benchmark_train_speed.py, docs/RESULTS.md).
        real_logit, mis = D(real, sent, mismatched)
        fake_logit, _ = D(fake.detach(), sent.detach())
        out = {
            "d_real_loss": F.relu(1.0 - real_logit).mean(),
            "d_fake_loss": 0.5 * F.relu(1.0 + fake_logit).mean(),
            "d_mismatch_loss": 0.5 * F.relu(1.0 + mis).mean(),
        }
        if self.ma_gp_k > 0:
            gx, gs = torch.autograd.grad(real_logit.sum(), (real, sent), create_graph=True)
            gx, gs = gx.flatten(1).float(), gs.flatten(1).float()
            if self.gp_norm == "joint":
                norm = torch.cat([gx, gs], 1).norm(dim=1)
            else:
                norm = gx.norm(dim=1) + gs.norm(dim=1)
            out["d_ma_gp_loss"] = self.ma_gp_k * norm.pow(self.ma_gp_p).mean()
        out["d_real_score"] = real_logit.detach().mean()
        out["d_fake_score"] = fake_logit.detach().mean()
        return out

    def g_losses(self, D: nn.Module, fake: torch.Tensor, cond: Condition) -> Dict[str, torch.Tensor]:
        """The generator's adversarial term; variants add their own (DAMSM, CLIP similarity)."""
        logits, _ = D(fake, cond.sentence)
        return {"g_adv_loss": -logits.mean()}
