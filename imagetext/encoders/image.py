"""Image encoders: DAMSM's CNN, torchvision Inception-v3, and the open_clip vision tower.

All take images ``B x 3 x H x W`` in **[-1, 1]** (a GAN's output range) and convert
internally, once, to what their weights expect. Every builder registered in
:data:`~imagetext.registry.IMAGE_ENCODERS` accepts ``dim`` (the feature size D).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import IMAGE_ENCODERS
from .base import ImageEncoder, ImageFeatures
from .weights import build_open_clip, load_state_dict, resolve_torchvision_inception

INCEPTION_MIN_SIZE = 75  # smaller inputs vanish in Inception-v3's stride-2 stem


def _named(model: ImageEncoder, name: str) -> ImageEncoder:
    model.registered_name = name
    return model


def _resize(images: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


# --------------------------------------------------------------- Inception-v3
class InceptionTrunk(nn.Module):
    """torchvision's Inception-v3 up to Mixed_6e (768 x 17 x 17 at 299 px) and the 2048-d pool.

    Args:
        weights: None (random init), ``"imagenet"`` (torchvision's ImageNet file, found by
            :func:`~imagetext.encoders.weights.resolve_torchvision_inception`) or a file path.
        allow_download: allow fetching the ImageNet file if it is not cached.
        reinit: with ``weights=None``, He-initialise the convs (False when weights follow anyway).
    """

    def __init__(self, weights: Optional[str] = None, allow_download: bool = False, reinit: bool = True) -> None:
        super().__init__()
        from torchvision.models.inception import Inception3

        net = Inception3(num_classes=1000, aux_logits=False, transform_input=False, init_weights=False)
        if weights is None and reinit:
            # PyTorch's default conv init shrinks activations layer after layer, and eval-mode
            # BatchNorm does not renormalise them, so an untrained trunk would map every image
            # to the same vector. He init keeps the signal (torchvision's own init is slower).
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif weights is not None:
            path = resolve_torchvision_inception(None if weights == "imagenet" else weights, allow_download)
            sd = {k: v for k, v in load_state_dict(path).items() if not k.startswith("AuxLogits.")}
            missing, unexpected = net.load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise ConfigError(
                    f"{path}: not torchvision Inception-v3 weights (missing {sorted(missing)[:5]}, "
                    f"unexpected {sorted(unexpected)[:5]})"
                )
        self.stem = nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1,
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2,
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e,
        )
        self.top = nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``x`` in [-1, 1] (Google's Inception weights expect exactly this range)."""
        if min(x.shape[-2:]) < INCEPTION_MIN_SIZE:
            raise ValueError(f"Inception-v3 needs inputs >= {INCEPTION_MIN_SIZE} px, got {tuple(x.shape[-2:])}; set resize_to")
        mixed6e = self.stem(x)
        return mixed6e, self.top(mixed6e)


class _FrozenTrunkMixin:
    """Keeps a frozen trunk in eval mode (fixed BatchNorm statistics) whatever ``train()`` says."""

    freeze_trunk: bool
    trunk: nn.Module

    def train(self, mode: bool = True):  # type: ignore[override]
        super().train(mode)  # type: ignore[misc]
        if self.freeze_trunk:
            self.trunk.eval()
        return self


class InceptionV3Encoder(_FrozenTrunkMixin, ImageEncoder):
    """Inception-v3 features: regions = Mixed_6e projected to ``dim``; global = 2048-d pool.

    With ``dim=None`` the global feature is the raw 2048-d pool and ``regions`` is None
    (no common D); otherwise both are linear projections to ``dim``.

    Args:
        dim: output size, or None for the raw pool features.
        weights: None (random), ``"imagenet"`` or a local file (never downloaded unless allowed).
        resize_to: resize inputs to this square size first (299 = Inception's native size).
        freeze_trunk: no gradients into the trunk, and it stays in eval mode.
    """

    def __init__(
        self,
        dim: Optional[int] = None,
        weights: Optional[str] = None,
        resize_to: Optional[int] = 299,
        freeze_trunk: bool = True,
        load_weights: bool = True,
        allow_download: bool = False,
    ) -> None:
        super().__init__()
        self._record_config(dim=dim, weights=weights, resize_to=resize_to, freeze_trunk=freeze_trunk)
        self.trunk = InceptionTrunk(weights if load_weights else None, allow_download, reinit=load_weights)
        self.freeze_trunk = freeze_trunk
        self.trunk.requires_grad_(not freeze_trunk)
        self.resize_to = resize_to
        self.region_proj = nn.Conv2d(768, dim, 1) if dim is not None else None
        self.global_proj = nn.Linear(2048, dim) if dim is not None else None
        self.dim = dim if dim is not None else 2048
        self.train()

    def forward(self, images: torch.Tensor) -> ImageFeatures:  # type: ignore[override]
        self._check_images(images)
        mixed6e, pooled = self.trunk(_resize(images, self.resize_to))
        if self.global_proj is None:
            return ImageFeatures(regions=None, global_=pooled)
        return ImageFeatures(regions=self.region_proj(mixed6e), global_=self.global_proj(pooled))

    @classmethod
    def _reload_kwargs(cls, args: Dict[str, Any], directory: Path) -> Dict[str, Any]:
        return {**args, "load_weights": False}


@IMAGE_ENCODERS.register("inception_v3")
def inception_v3(**kw: Any) -> ImageEncoder:
    """torchvision Inception-v3 (random init unless ``weights="imagenet"`` or a file); raw 2048-d by default."""
    return _named(InceptionV3Encoder(**kw), "inception_v3")


# -------------------------------------------------------------------- DAMSM
def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True))


class SmallCNNTrunk(nn.Module):
    """A plain conv net: ``n_down`` stride-2 blocks to the region grid, a conv + average pool for the global code.

    The grid is ``H / 2**n_down`` (2 x 2 at 32 px, 16 x 16 at 256 px with ``n_down=4``).
    """

    def __init__(self, width: int = 64, n_down: int = 4) -> None:
        super().__init__()
        chans = [min(width * 2**i, width * 8) for i in range(n_down + 1)]
        layers: List[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        layers += [_down(chans[i], chans[i + 1]) for i in range(n_down)]
        self.body = nn.Sequential(*layers)
        self.region_channels = chans[-1]
        self.global_channels = min(chans[-1] * 2, width * 8)
        # stride 1 so that even a 1 x 1 region grid (16 px, 4 blocks) has a global code
        self.top = nn.Sequential(
            nn.Conv2d(self.region_channels, self.global_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(self.global_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.min_size = 2**n_down

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"DAMSM CNN with {len(self.body) - 2} down blocks needs inputs >= {self.min_size} px")
        feats = self.body(x)
        return feats, self.top(feats)


class DamsmCNN(_FrozenTrunkMixin, ImageEncoder):
    """DAMSM image encoder: a trunk's region grid projected to ``dim`` (1x1 conv) and a global code.

    Args:
        dim: D of region and global features (256 in AttnGAN).
        trunk: ``"small"`` (a plain CNN trained from scratch, any input 16-256 px) or
            ``"inception"`` (Inception-v3 up to Mixed_6e: 17 x 17 regions at 299 px, AttnGAN's choice).
        width, n_down: channels and stride-2 blocks of the small trunk.
        resize_to: resize inputs to this square size first (AttnGAN: 299 with the Inception trunk).
        weights: Inception trunk only: None, ``"imagenet"`` or a file.
        freeze_trunk: Inception trunk only: keep it fixed (AttnGAN trains only the projections).
    """

    def __init__(
        self,
        dim: int = 256,
        trunk: str = "small",
        width: int = 64,
        n_down: int = 4,
        resize_to: Optional[int] = None,
        weights: Optional[str] = None,
        freeze_trunk: bool = True,
        load_weights: bool = True,
        allow_download: bool = False,
    ) -> None:
        super().__init__()
        if trunk not in ("small", "inception"):
            raise ConfigError(f"damsm_cnn: trunk must be 'small' or 'inception', got {trunk!r}")
        if trunk == "small" and weights is not None:
            raise ConfigError("damsm_cnn: weights only apply to trunk='inception' (the small CNN trains from scratch)")
        self._record_config(
            dim=dim, trunk=trunk, width=width, n_down=n_down, resize_to=resize_to, weights=weights, freeze_trunk=freeze_trunk
        )
        self.freeze_trunk = trunk == "inception" and freeze_trunk
        if trunk == "small":
            self.trunk: nn.Module = SmallCNNTrunk(width, n_down)
            c_reg, c_glob = self.trunk.region_channels, self.trunk.global_channels
        else:
            self.trunk = InceptionTrunk(weights if load_weights else None, allow_download, reinit=load_weights)
            self.trunk.requires_grad_(not self.freeze_trunk)
            c_reg, c_glob = 768, 2048
        self.resize_to = resize_to
        self.region_proj = nn.Conv2d(c_reg, dim, 1)
        self.global_proj = nn.Linear(c_glob, dim)
        self.dim = dim
        self.train()

    def forward(self, images: torch.Tensor) -> ImageFeatures:  # type: ignore[override]
        self._check_images(images)
        feats, pooled = self.trunk(_resize(images, self.resize_to))
        return ImageFeatures(regions=self.region_proj(feats), global_=self.global_proj(pooled))

    @classmethod
    def _reload_kwargs(cls, args: Dict[str, Any], directory: Path) -> Dict[str, Any]:
        return {**args, "load_weights": False}


@IMAGE_ENCODERS.register("damsm_cnn")
def damsm_cnn(**kw: Any) -> ImageEncoder:
    """DAMSM CNN, D=256, width 64, 4 down blocks; ``trunk="inception", resize_to=299`` for AttnGAN's."""
    return _named(DamsmCNN(**kw), "damsm_cnn")


@IMAGE_ENCODERS.register("damsm_cnn_tiny")
def damsm_cnn_tiny(**kw: Any) -> ImageEncoder:
    """A width-8, 3-block, 16-d DAMSM CNN for tests (2 x 2 regions at 16 px)."""
    return _named(DamsmCNN(**{"dim": 16, "width": 8, "n_down": 3, **kw}), "damsm_cnn_tiny")


# --------------------------------------------------------- open_clip vision
class OpenCLIPVisionEncoder(ImageEncoder):
    """The vision tower of an open_clip model.

    ``global_`` is the image embedding. For ViT towers ``regions`` are the final patch
    tokens passed through the same output projection, as a ``gh x gw`` grid; other
    towers (ResNet, timm) give ``regions=None``. Inputs are resized to the tower's
    ``image_size`` and normalised with ``mean``/``std`` once, here.

    Args:
        model_name, pretrained, model_cfg, allow_download: as in
            :class:`~imagetext.encoders.text.OpenCLIPTextEncoder`.
        dim: output size; None keeps ``embed_dim``.
        mean, std: pixel statistics (default: the tag's, else OpenAI CLIP's).
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: Optional[str] = None,
        model_cfg: Optional[Dict[str, Any]] = None,
        dim: Optional[int] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        load_weights: bool = True,
        allow_download: bool = False,
    ) -> None:
        super().__init__()
        import open_clip
        from open_clip.transformer import VisionTransformer

        clip, cfg = build_open_clip(model_name, model_cfg, pretrained if load_weights else None, allow_download)
        tag = open_clip.get_pretrained_cfg(model_name, pretrained) if pretrained else {}
        mean = list(mean or tag.get("mean") or open_clip.OPENAI_DATASET_MEAN)
        std = list(std or tag.get("std") or open_clip.OPENAI_DATASET_STD)
        self._record_config(model_name=model_name, pretrained=pretrained, model_cfg=cfg, dim=dim, mean=mean, std=std)
        self.visual = clip.visual
        del clip
        self.is_vit = isinstance(self.visual, VisionTransformer)
        if self.is_vit:
            self.visual.output_tokens = True
        size = cfg["vision_cfg"].get("image_size", 224)
        self.image_size: Tuple[int, int] = (
            (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))
        )
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        embed = int(cfg["embed_dim"])
        self.proj = nn.Linear(embed, dim) if dim is not None and dim != embed else None
        self.dim = dim if dim is not None else embed

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the tower's input: resized to ``image_size``, standardised with ``mean``/``std``.

        The one place this conversion happens: ``forward`` and models that feed the tower's
        blocks themselves (GALIP's discriminator) both call it, so nothing normalises twice.
        """
        self._check_images(images)
        x = (images + 1) / 2
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> ImageFeatures:  # type: ignore[override]
        x = self.normalise(images)
        if not self.is_vit:
            pooled = self.visual(x)
            return ImageFeatures(regions=None, global_=self.proj(pooled) if self.proj is not None else pooled)
        pooled, tokens = self.visual(x)
        gh, gw = self.visual.grid_size
        regions = None
        if tokens.dim() == 3 and tokens.shape[1] == gh * gw:
            if self.visual.proj is not None:
                tokens = tokens @ self.visual.proj
            if self.proj is not None:
                tokens = self.proj(tokens)
            regions = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, gh, gw)
        if self.proj is not None:
            pooled = self.proj(pooled)
        return ImageFeatures(regions=regions, global_=pooled)

    def embed_tokens(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The global embedding from the ViT's last-block tokens ``x`` (B, 1 + g*g, width): the rest of
        :meth:`forward` after the transformer (open_clip's pooling and ``ln_post``, its projection, then
        ours). For models that run the blocks themselves (GALIP's discriminator) and want the embedding
        of the same pass; None where this open_clip has no ``_pool`` (then call :meth:`forward`)."""
        if not self.is_vit or not hasattr(self.visual, "_pool"):
            return None
        pooled, _ = self.visual._pool(x)
        if self.visual.proj is not None:
            pooled = pooled @ self.visual.proj
        return self.proj(pooled) if self.proj is not None else pooled

    @classmethod
    def _reload_kwargs(cls, args: Dict[str, Any], directory: Path) -> Dict[str, Any]:
        return {**args, "load_weights": False}


@IMAGE_ENCODERS.register("openclip_vision")
def openclip_vision(**kw: Any) -> ImageEncoder:
    """open_clip vision tower (default ViT-B-32, random init unless ``pretrained``)."""
    return _named(OpenCLIPVisionEncoder(**kw), "openclip_vision")


@IMAGE_ENCODERS.register("openclip_vision_tiny")
def openclip_vision_tiny(**kw: Any) -> ImageEncoder:
    """A one-layer 32-wide ViT (16 px, 4 px patches, 16-d output) for tests."""
    from .weights import TINY_OPEN_CLIP_CFG

    kw.setdefault("model_cfg", TINY_OPEN_CLIP_CFG)
    return _named(OpenCLIPVisionEncoder(model_name="tiny", **kw), "openclip_vision_tiny")
