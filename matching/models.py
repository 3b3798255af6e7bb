"""VSE∞-style embedding matchers: encoder -> projection -> GPO -> L2-normalised embedding.

    image -> image encoder (shared ``imagetext`` registry) -> region grid (B, D, H, W)
          -> K = H·W region vectors -> Linear(D -> E) -> GPO -> ‖·‖ = 1
    text  -> text encoder (BiLSTM / transformers / open_clip) -> words (B, D, T)
          -> Linear(D -> E) -> GPO over the real words -> ‖·‖ = 1

Similarity is the cosine ``image_emb @ text_emb.T``, so a gallery can be embedded once
and searched with an inner-product index (:mod:`matching.index`). An encoder without a
region grid (``regions=None``) contributes its global vector as a set of one.

Saved diffusers-style: ``matcher.json`` (format, name, arguments), ``text_encoder/`` and
``image_encoder/`` in the shared encoder format, ``heads.safetensors`` (projections, GPOs).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from imagetext.errors import ConfigError, UserError
from imagetext.registry import MATCHERS, MODEL_LOADERS

from .pooling import GPO

FORMAT = "matching.embedding/1"
CONFIG_NAME = "matcher.json"
HEADS_NAME = "heads.safetensors"


class EncoderPairModel(nn.Module):
    """A text and an image encoder plus trainable heads, saved diffusers-style.

    ``matcher.json`` (format, name, constructor arguments), ``text_encoder/`` and
    ``image_encoder/`` in the shared encoder format, ``heads.safetensors`` (everything
    else). Subclasses set :attr:`FORMAT`, keep their constructor arguments in ``self.args``
    and take ``(text_encoder, image_encoder, name=..., **args)``.
    """

    FORMAT = ""

    def __init__(self, text_encoder: nn.Module, image_encoder: nn.Module, name: Optional[str] = None) -> None:
        super().__init__()
        self.text_encoder, self.image_encoder, self.name = text_encoder, image_encoder, name
        self.args: Dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_pretrained(self, directory: Union[str, Path]) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.text_encoder.save_pretrained(directory / "text_encoder")
        self.image_encoder.save_pretrained(directory / "image_encoder")
        heads = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                 if not k.startswith(("text_encoder.", "image_encoder."))}
        save_file(heads, str(directory / HEADS_NAME))
        meta = {"format": self.FORMAT, "name": self.name, "args": self.args}
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def from_pretrained(cls, directory: Union[str, Path]) -> Any:
        """Rebuild a saved model in eval mode (a run folder's ``final/`` too); a clear error for anything else."""
        from safetensors.torch import load_file

        from imagetext.encoders import load_encoder

        directory = Path(directory)
        cfg = directory / CONFIG_NAME
        if not cfg.is_file():
            if (directory / "final" / CONFIG_NAME).is_file():
                return cls.from_pretrained(directory / "final")
            raise UserError(f"{directory}: not a saved matcher ({CONFIG_NAME} missing)")
        try:
            meta = json.loads(cfg.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cfg}: invalid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != cls.FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else None
            raise ConfigError(f"{cfg}: holds format {got!r}, not {cls.FORMAT!r} ({cls.__name__})")
        model = cls(load_encoder(directory / "text_encoder"), load_encoder(directory / "image_encoder"),
                    name=meta.get("name"), **(meta.get("args") or {}))
        heads = load_file(str(directory / HEADS_NAME))
        missing, unexpected = model.load_state_dict(heads, strict=False)
        missing = [k for k in missing if not k.startswith(("text_encoder.", "image_encoder."))]
        if missing or unexpected:
            raise ConfigError(f"{directory / HEADS_NAME}: does not match (missing {missing[:5]}, unexpected {unexpected[:5]})")
        return model.eval()


class EmbeddingMatcher(EncoderPairModel):
    """Image and text towers with GPO pooling; ``embed_images`` / ``embed_texts`` give unit vectors.

    Args:
        text_encoder, image_encoder: built ``imagetext.encoders`` modules.
        embed_dim: E, the joint embedding size.
        name: the registered name (recorded on save).
    """

    FORMAT = FORMAT

    def __init__(self, text_encoder: nn.Module, image_encoder: nn.Module, embed_dim: int = 256,
                 name: Optional[str] = None, d_pe: int = 32, d_hidden: int = 32) -> None:
        super().__init__(text_encoder, image_encoder, name)
        self.embed_dim = int(embed_dim)
        self.args = {"embed_dim": self.embed_dim, "d_pe": d_pe, "d_hidden": d_hidden}
        self.image_proj = nn.Linear(image_encoder.dim, self.embed_dim)
        self.text_proj = nn.Linear(text_encoder.dim, self.embed_dim)
        self.image_gpo = GPO(d_pe, d_hidden)
        self.text_gpo = GPO(d_pe, d_hidden)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, E) unit vectors."""
        feats = self.image_encoder(images)
        if feats.regions is not None:
            sets = feats.regions.flatten(2).transpose(1, 2)  # (B, K, D)
        else:
            sets = feats.global_[:, None, :]
        return F.normalize(self.image_gpo(self.image_proj(sets)).float(), dim=-1)

    def embed_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Tokenised captions -> (B, E) unit vectors (GPO over the real words only)."""
        txt = self.text_encoder(tokens, lengths)
        words = txt.words.transpose(1, 2)  # (B, T, D)
        lengths = lengths.to(words.device).clamp(min=1, max=words.shape[1])
        return F.normalize(self.text_gpo(self.text_proj(words), lengths=lengths).float(), dim=-1)

    def tokenize(self, captions: Sequence[str]) -> tuple:
        return self.text_encoder.tokenize(list(captions))

    def embed_texts(self, captions: Sequence[str]) -> torch.Tensor:
        """A list of captions -> (B, E) unit vectors."""
        if isinstance(captions, str):
            raise TypeError("embed_texts expects a list of captions, got one string")
        tokens, lengths = self.tokenize(captions)
        return self.embed_tokens(tokens.to(self.device), lengths.to(self.device))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The B x B similarity matrix of a batch (matching pairs on the diagonal)."""
        return self.embed_images(images) @ self.embed_tokens(tokens, lengths).T


MODEL_LOADERS.register(FORMAT)(lambda directory: EmbeddingMatcher.from_pretrained(directory))


def _build(name: str, text: str, image: str, tokenizer: Any, embed_dim: int, text_kwargs: Optional[Dict[str, Any]],
           image_kwargs: Optional[Dict[str, Any]]) -> EmbeddingMatcher:
    from imagetext.encoders import build_image_encoder, build_text_encoder

    t = build_text_encoder(text, tokenizer=tokenizer, **(text_kwargs or {}))
    i = build_image_encoder(image, **(image_kwargs or {}))
    return EmbeddingMatcher(t, i, embed_dim=embed_dim, name=name)


@MATCHERS.register("vse_gpo")
def vse_gpo(tokenizer: Any = None, embed_dim: int = 256, text_encoder: str = "bilstm", image_encoder: str = "damsm_cnn",
            text_kwargs: Optional[Dict[str, Any]] = None, image_kwargs: Optional[Dict[str, Any]] = None) -> EmbeddingMatcher:
    """VSE∞-style: BiLSTM words and the shared CNN's region grid, projected and GPO-pooled."""
    return _build("vse_gpo", text_encoder, image_encoder, tokenizer, embed_dim, text_kwargs, image_kwargs)


@MATCHERS.register("vse_gpo_tiny")
def vse_gpo_tiny(tokenizer: Any = None, embed_dim: int = 16, **kw: Any) -> EmbeddingMatcher:
    """A 16-d matcher on the tiny encoders, for tests."""
    kw.setdefault("text_encoder", "bilstm_tiny")
    kw.setdefault("image_encoder", "damsm_cnn_tiny")
    return vse_gpo(tokenizer=tokenizer, embed_dim=embed_dim, **kw)


def list_embedding_matchers() -> List[str]:
    return [n for n in MATCHERS.names() if n.startswith("vse")]
