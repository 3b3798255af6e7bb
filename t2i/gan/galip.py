"""GALIP (METHODS.md §3): a frozen CLIP vision tower used twice, by G and by D.

* **Generator**: the CLIP "bridge". ``z`` is mapped to a grid of tokens of the ViT's width,
  given the ViT's positional embedding and a class token, and passed through the first frozen
  ViT blocks; before each selected block, ``P`` prompt tokens (a linear map of ``[z; ē]``) are
  appended and dropped again after it. The grid tokens then become a ``width x g x g`` map ->
  conv to ``8nf`` -> DF-GAN up-blocks fused with ``[z; ē]`` from ``g`` to ``imsize`` -> RGB.
* **Discriminator**: images -> the same frozen tower (normalised once, by the encoder's own
  :meth:`~imagetext.encoders.image.OpenCLIPVisionEncoder.normalise`) -> grid tokens of a few
  blocks stacked along channels -> a small trainable conv trunk -> ``8nf x 4 x 4`` ->
  DF-GAN's conditional head.
* **Losses**: DF-GAN's hinge + mismatched text + MA-GP for D (inherited); for G the adversarial
  term plus ``-w · cos(CLIP_img(fake), ē)``, ``w = clip_weight`` (4 in the paper).

The tower is one module shared by G and D (one copy of the weights), frozen (no gradients,
``requires_grad`` False) and always in eval mode; gradients still flow *through* it, to G's
token/prompt maps and to the images. Written from the method description, not the reference code.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from imagetext.encoders.image import OpenCLIPVisionEncoder
from imagetext.registry import GANS

from .blocks import ConditionalDiscriminator, ConditionHead, ToRGB, UpBlock
from .switches import SHARE_TOWER_PASS
from .variant import Condition, GANVariant


def _check_tower(image_encoder: Optional[nn.Module]) -> OpenCLIPVisionEncoder:
    """The image encoder if it is an open_clip ViT tower, else a ValueError saying what GALIP needs."""
    if image_encoder is None:
        raise ValueError("galip needs image_encoder: the frozen open_clip ViT vision tower of the CLIP pair "
                         "(e.g. build_image_encoder('openclip_vision')); got None")
    if not isinstance(image_encoder, OpenCLIPVisionEncoder) or not image_encoder.is_vit:
        kind = type(image_encoder).__name__
        if isinstance(image_encoder, OpenCLIPVisionEncoder):
            kind += f" with a {type(image_encoder.visual).__name__} tower"
        raise ValueError(f"galip needs an open_clip ViT vision tower (OpenCLIPVisionEncoder over a "
                         f"VisionTransformer) as image_encoder; got {kind}")
    gh, gw = image_encoder.visual.grid_size
    if gh != gw:
        raise ValueError(f"galip needs a square ViT patch grid, got {gh} x {gw}")
    return image_encoder


def _resolve_layers(layers: Optional[Sequence[int]], n: int, default: List[int], what: str) -> List[int]:
    """Sorted distinct block indices in [0, n) (negative ones count from the end)."""
    if layers is None:
        return default
    out = sorted({int(i) % n if -n <= int(i) < n else -1 for i in layers})
    if not out or out[0] < 0:
        raise ValueError(f"{what} must be a non-empty list of block indices in [-{n}, {n}), got {list(layers)}")
    return out


# within it, GALIP's G step runs D's tower pass and the CLIP term's tower forward apart (the ablation)
direct_tower_passes = SHARE_TOWER_PASS.off


def _vit_width(tower: OpenCLIPVisionEncoder) -> int:
    return int(tower.visual.positional_embedding.shape[-1])


def _run_block(tower: OpenCLIPVisionEncoder, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One frozen resblock on (B, N, width) tokens, whatever layout the tower's transformer uses."""
    # open_clip versions without the attribute ran their blocks sequence-first
    if getattr(tower.visual.transformer, "batch_first", False):
        return block(x)
    return block(x.transpose(0, 1)).transpose(0, 1)


class _SharesFrozenTower(nn.Module):
    """Holds the shared frozen tower as ``clip``; ``train()`` / ``requires_grad_()`` never unfreeze it."""

    clip: OpenCLIPVisionEncoder

    def train(self, mode: bool = True) -> "_SharesFrozenTower":
        super().train(mode)
        self.clip.eval()  # fixed behaviour (no patch/attention dropout) whatever the trainer switches
        return self

    def requires_grad_(self, requires_grad: bool = True) -> "_SharesFrozenTower":
        # trainers that toggle D's gradients around the G step must not unfreeze CLIP
        super().requires_grad_(requires_grad)
        self.clip.requires_grad_(False)
        return self


class GALIPGenerator(_SharesFrozenTower):
    """z -> CLIP bridge (frozen ViT blocks with [z; ē] prompts) -> 8nf x g x g -> up-blocks -> RGB."""

    def __init__(self, tower: OpenCLIPVisionEncoder, nf: int, noise_dim: int, cond_dim: int, imsize: int,
                 prompt_layers: List[int], bridge_depth: int, n_prompts: int) -> None:
        super().__init__()
        self.clip = tower
        self.grid = int(tower.visual.grid_size[0])
        self.width = _vit_width(tower)
        ratio = imsize // self.grid
        if imsize % self.grid or ratio & (ratio - 1):
            raise ValueError(f"galip: imsize / ViT grid must be a power of two, got {imsize} / {self.grid}")
        self.bridge_depth, self.n_prompts = int(bridge_depth), int(n_prompts)
        self.to_tokens = nn.Linear(noise_dim, self.grid * self.grid * self.width)
        # one map per prompted block; keys are block indices (ModuleDict keys must be strings)
        self.prompts = nn.ModuleDict({str(i): nn.Linear(noise_dim + cond_dim, self.n_prompts * self.width)
                                      for i in prompt_layers})
        # the residual stream's scale grows with depth in CLIP; normalise before the trainable convs
        self.norm = nn.LayerNorm(self.width)
        self.stem = nn.Conv2d(self.width, nf * 8, 3, 1, 1)
        n_up = int(math.log2(ratio))
        # 8nf at the grid, then DF-GAN's widths of the last n_up resolutions (..., 4nf, 2nf, nf at imsize)
        widths = [nf * 8] + [nf * min(2 ** k, 8) for k in range(n_up - 1, -1, -1)]
        self.blocks = nn.ModuleList(UpBlock(noise_dim + cond_dim, cin, cout) for cin, cout in zip(widths[:-1], widths[1:]))
        self.to_rgb = ToRGB(widths[-1])

    def bridge(self, noise: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """(B, width, g, g): z's token grid after the frozen blocks, with the prompts of ``c`` = [z; ē]."""
        b, g, w = noise.shape[0], self.grid, self.width
        v = self.clip.visual
        pos = v.positional_embedding.to(noise.dtype)
        grid = self.to_tokens(noise).view(b, g * g, w) + pos[1:]
        cls = (v.class_embedding.to(noise.dtype) + pos[0]).expand(b, 1, w)
        x = v.ln_pre(torch.cat([cls, grid], 1))  # the blocks were trained on ln_pre'd embeddings
        n = x.shape[1]
        for i, block in enumerate(v.transformer.resblocks[: self.bridge_depth]):
            key = str(i)
            if key in self.prompts:
                p = self.prompts[key](c).view(b, self.n_prompts, w).to(x.dtype)
                x = _run_block(self.clip, block, torch.cat([x, p], 1))[:, :n]  # prompts live for one block
            else:
                x = _run_block(self.clip, block, x)
        return self.norm(x[:, 1:]).transpose(1, 2).reshape(b, w, g, g)

    def forward(self, noise: torch.Tensor, cond: Condition) -> torch.Tensor:
        c = torch.cat([noise, cond.sentence.to(noise.dtype)], 1)
        h = self.stem(self.bridge(noise, c))
        for block in self.blocks:
            h = block(h, c)
        return self.to_rgb(h)


class GALIPDiscriminator(_SharesFrozenTower, ConditionalDiscriminator):
    """Images -> frozen CLIP grid tokens of ``d_layers`` -> conv trunk -> 8nf x 4 x 4 -> conditional head."""

    def __init__(self, tower: OpenCLIPVisionEncoder, nf: int, cond_dim: int, d_layers: List[int]) -> None:
        super().__init__()
        self.clip = tower
        self.d_layers = list(d_layers)
        self.grid = int(tower.visual.grid_size[0])
        width = _vit_width(tower)
        # per-block LayerNorms: blocks at different depths have very different token scales
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in self.d_layers)
        self.trunk = nn.Sequential(
            nn.Conv2d(width * len(self.d_layers), nf * 8, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(nf * 8, nf * 8, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(nf * 8, nf * 8, 3, 1, 1), nn.LeakyReLU(0.2),
        )
        self.head = ConditionHead(nf * 8, cond_dim, nf * 2)

    def clip_tokens(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Grid tokens (B, width, g, g) of each of ``d_layers`` for images in [-1, 1]."""
        return self._tower(images, self.d_layers[-1] + 1)[0]

    def features_and_embedding(self, images: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """:meth:`features` and the tower's global embedding of the same images from one pass through
        every block (GALIP's G step needs both; the embedding is None where the tower cannot pool
        tokens it did not run itself, see ``OpenCLIPVisionEncoder.embed_tokens``)."""
        tokens, last = self._tower(images, len(self.clip.visual.transformer.resblocks))
        return self._trunk_features(tokens), self.clip.embed_tokens(last)

    def _tower(self, images: torch.Tensor, depth: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """(grid tokens of ``d_layers``, all tokens after block ``depth - 1``)."""
        v = self.clip.visual
        x = self.clip.normalise(images)  # the encoder's own resize + normalisation, done once
        x = v.conv1(x.to(v.conv1.weight.dtype))
        b, w, g = x.shape[0], x.shape[1], x.shape[2]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([v.class_embedding.to(x.dtype).expand(b, 1, w), x], 1) + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)  # no patch dropout: the tower is always in eval mode
        out: List[torch.Tensor] = []
        # MA-GP differentiates D's output w.r.t. the images twice; fused attention kernels
        # (flash / memory-efficient) have no double backward, the math one does
        with sdpa_kernel(SDPBackend.MATH):
            for i, block in enumerate(v.transformer.resblocks[:depth]):
                x = _run_block(self.clip, block, x)
                if i in self.d_layers:
                    out.append(x[:, 1:])
        return [norm(t).transpose(1, 2).reshape(b, w, g, g) for norm, t in zip(self.norms, out)], x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._trunk_features(self.clip_tokens(images))

    def forward(self, images: torch.Tensor, sentence: torch.Tensor, mismatched: Optional[torch.Tensor] = None,
                embed: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """As every conditional D; with ``embed``: (logits, the tower's global embedding of ``images``)
        from one pass (:meth:`features_and_embedding`; through ``forward`` so that the trainer's
        wrappers, DDP and mixed-precision autocast, apply)."""
        if not embed:
            return super().forward(images, sentence, mismatched)
        feats, emb = self.features_and_embedding(images)
        return self.head(feats, sentence), emb

    def _trunk_features(self, tokens: List[torch.Tensor]) -> torch.Tensor:
        h = self.trunk(torch.cat(tokens, 1))
        return h if h.shape[-1] == 4 else F.adaptive_avg_pool2d(h, 4)


@GANS.register("galip")
class GALIP(GANVariant):
    """GALIP over a frozen open_clip ViT (the CLIP pair's image tower, given as ``image_encoder``).

    Args:
        imsize: output size; ``imsize / grid`` must be a power of two (ViT-B/32 at 224: grid 7).
        cond_dim: the sentence embedding size; must equal the tower's output size (for the CLIP loss).
        nf: base width of G's up-blocks and D's trunk (8nf at the grid).
        image_encoder: the frozen :class:`OpenCLIPVisionEncoder` (ViT); it is frozen here if it was not.
        clip_weight: ``w`` of G's ``-w · cos(CLIP_img(fake), ē)`` term.
        prompt_layers: blocks that get G's prompts (default: the first two thirds of the blocks).
        bridge_depth: blocks G's tokens pass through (default: up to the last prompted block).
        n_prompts: prompt tokens per prompted block.
        d_layers: blocks whose grid tokens D reads (default: up to three, evenly spaced, ending at the last).
    """

    tiny = {"nf": 4, "imsize": 16, "noise_dim": 8, "n_prompts": 2}
    needs_image_encoder = True
    generator_holds_image_encoder = True

    def __init__(self, imsize: int = 224, cond_dim: int = 512, nf: int = 64, noise_dim: int = 100,
                 lr_g: float = 1e-4, lr_d: float = 4e-4, betas: tuple = (0.0, 0.9), ma_gp_k: float = 2.0,
                 ma_gp_p: float = 6.0, gp_norm: str = "joint", image_encoder: Optional[nn.Module] = None,
                 clip_weight: float = 4.0, prompt_layers: Optional[Sequence[int]] = None,
                 bridge_depth: Optional[int] = None, n_prompts: int = 8,
                 d_layers: Optional[Sequence[int]] = None) -> None:
        super().__init__(imsize, noise_dim, cond_dim, lr_g, lr_d, betas)
        if gp_norm not in ("joint", "sum"):
            raise ValueError(f"gp_norm must be 'joint' or 'sum', got {gp_norm!r}")
        tower = _check_tower(image_encoder)
        if tower.dim != cond_dim:
            raise ValueError(f"galip: the image tower gives {tower.dim}-d embeddings but cond_dim is {cond_dim}; "
                             "the CLIP loss compares them with the sentence embedding, so they must agree")
        if n_prompts < 1:
            raise ValueError(f"galip: n_prompts must be >= 1, got {n_prompts}")
        self.ma_gp_k, self.ma_gp_p, self.gp_norm = float(ma_gp_k), float(ma_gp_p), gp_norm
        self.clip_weight = float(clip_weight)
        tower.requires_grad_(False).eval()
        n = len(tower.visual.transformer.resblocks)
        self.prompt_layers = _resolve_layers(prompt_layers, n, list(range(math.ceil(2 * n / 3))), "prompt_layers")
        k = min(3, n)
        self.d_layers = _resolve_layers(d_layers, n, sorted({round((j + 1) * n / k) - 1 for j in range(k)}), "d_layers")
        depth = self.prompt_layers[-1] + 1 if bridge_depth is None else int(bridge_depth)
        if not self.prompt_layers[-1] < depth <= n:
            raise ValueError(f"galip: bridge_depth must be in ({self.prompt_layers[-1]}, {n}] "
                             f"(past the last prompted block, within the tower), got {bridge_depth}")
        self.generator = GALIPGenerator(tower, nf, noise_dim, cond_dim, imsize, self.prompt_layers, depth, n_prompts)
        self.discriminator = GALIPDiscriminator(tower, nf, cond_dim, self.d_layers)

    @property
    def image_encoder(self) -> OpenCLIPVisionEncoder:
        """The frozen tower (the same object in G and D)."""
        return self.generator.clip

    def g_losses(self, D: nn.Module, fake: torch.Tensor, cond: Condition) -> Dict[str, torch.Tensor]:
        """Adversarial term + ``-clip_weight · cos(CLIP_img(fake), ē)`` (the tower normalises once).

        D reads the fakes through the frozen tower and the CLIP term embeds them with the same tower:
        one pass through its blocks serves both (the same maths as D's forward plus the tower's own
        forward, which :func:`direct_tower_passes` restores for comparison). Under bf16 mixed
        precision the embedding now comes from D's autocast pass, where the separate forward ran the
        frozen tower outside it, in fp32."""
        d = getattr(D, "module", D)  # D itself under DDP (called through the wrapper all the same)
        emb = None
        if SHARE_TOWER_PASS.on and isinstance(d, GALIPDiscriminator) and d.clip is self.image_encoder:
            logits, emb = D(fake, cond.sentence, embed=True)
            out = {"g_adv_loss": -logits.mean()}
        else:
            out = super().g_losses(D, fake, cond)
        if emb is None:
            # the variant's own tower, not cond.image_encoder: it is the one G and D share, frozen
            emb = self.image_encoder(fake).global_
        cos = F.cosine_similarity(emb.float(), cond.sentence.float(), dim=1)
        out["g_clip_loss"] = -self.clip_weight * cos.mean()
        out["g_clip_cos"] = cos.detach().mean()
        return out
