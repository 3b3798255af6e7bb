"""Feature containers and the save/load base class shared by every encoder.

See :mod:`imagetext.encoders` for the interface contract.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import torch
from torch import nn

from ..errors import ConfigError, UserError

E = TypeVar("E", bound="PretrainedEncoder")
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.json"
_FORMAT = "imagetext.encoder"


@dataclass
class TextFeatures:
    """What a text encoder returns for a batch of B captions.

    Attributes:
        words: ``B x D x T`` per-token features (T = longest caption in the batch), or None.
        sentence: ``B x D`` one vector per caption.
        mask: ``B x T`` bool, **True where the token is real** (False = padding), or None.
    """

    words: Optional[torch.Tensor]
    sentence: torch.Tensor
    mask: Optional[torch.Tensor]

    def __post_init__(self) -> None:
        if self.sentence.dim() != 2:
            raise ValueError(f"sentence must be B x D, got {tuple(self.sentence.shape)}")
        b, d = self.sentence.shape
        if self.words is not None and (self.words.dim() != 3 or self.words.shape[:2] != (b, d)):
            raise ValueError(f"words must be {b} x {d} x T, got {tuple(self.words.shape)}")
        if self.mask is not None:
            t = self.words.shape[2] if self.words is not None else self.mask.shape[1]
            if self.mask.dtype != torch.bool or tuple(self.mask.shape) != (b, t):
                raise ValueError(f"mask must be bool {b} x {t}, got {self.mask.dtype} {tuple(self.mask.shape)}")


@dataclass
class ImageFeatures:
    """What an image encoder returns for a batch of B images.

    Attributes:
        regions: ``B x D x H x W`` grid of region features, or None.
        global_: ``B x D`` one vector per image.
    """

    regions: Optional[torch.Tensor]
    global_: torch.Tensor

    def __post_init__(self) -> None:
        if self.global_.dim() != 2:
            raise ValueError(f"global_ must be B x D, got {tuple(self.global_.shape)}")
        if self.regions is not None and (self.regions.dim() != 4 or self.regions.shape[:2] != self.global_.shape):
            raise ValueError(f"regions must be {tuple(self.global_.shape)} x H x W, got {tuple(self.regions.shape)}")


_CLASSES: Dict[str, Type["PretrainedEncoder"]] = {}


class PretrainedEncoder(nn.Module):
    """An ``nn.Module`` saved diffusers-style: ``config.json`` + ``model.safetensors``.

    Subclasses call :meth:`_record_config` in ``__init__`` with their JSON-serialisable
    constructor arguments; :meth:`from_pretrained` rebuilds the class with them (after
    :meth:`_reload_kwargs` adjusts them, e.g. "do not load the pretrained file again")
    and loads the saved tensors strictly.
    """

    kind: ClassVar[str] = "encoder"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.__name__] = cls

    def __init__(self) -> None:
        super().__init__()
        self._config: Dict[str, Any] = {}
        self.registered_name: Optional[str] = None
        self.dim: int = 0  # the D of the returned features

    def _record_config(self, **kwargs: Any) -> None:
        try:
            json.dumps(kwargs)
        except TypeError as e:
            raise TypeError(f"{type(self).__name__} config must be JSON-serialisable: {e}") from None
        self._config = dict(kwargs)

    @property
    def config(self) -> Dict[str, Any]:
        """The constructor arguments (a copy), as written to ``config.json``."""
        return json.loads(json.dumps(self._config))

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    # ----------------------------------------------------------------- saving
    def save_pretrained(self, directory: Union[str, Path]) -> Path:
        """Write ``config.json``, ``model.safetensors`` and any extra files to ``directory``."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = encoder_meta(self)
        self._save_extra(directory)
        save_model(self, str(directory / WEIGHTS_NAME))
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return directory

    def _save_extra(self, directory: Path) -> None:
        """Hook: write files besides the weights (vocabulary, tokenizer)."""

    @classmethod
    def _reload_kwargs(cls, args: Dict[str, Any], directory: Path) -> Dict[str, Any]:
        """Hook: constructor kwargs for rebuilding from ``directory`` (weights come after)."""
        return args

    @classmethod
    def from_pretrained(cls: Type[E], directory: Union[str, Path]) -> E:
        """Rebuild a saved encoder (in eval mode). On the base class any saved encoder loads."""
        from safetensors.torch import load_model

        from ..registry import _import_builtin_modules

        _import_builtin_modules()
        directory = Path(directory)
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            raise UserError(f"{directory}: not a saved encoder ({CONFIG_NAME} missing)")
        try:
            meta = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cfg_path}: invalid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ConfigError(f"{cfg_path}: not an imagetext encoder config (format != {_FORMAT!r})")
        target = _CLASSES.get(meta.get("class", ""))
        if target is None:
            raise ConfigError(f"{cfg_path}: unknown encoder class {meta.get('class')!r}")
        if not issubclass(target, cls):
            raise ConfigError(f"{cfg_path}: holds a {target.__name__}, not a {cls.__name__}")
        if not (directory / WEIGHTS_NAME).is_file():
            raise UserError(f"{directory}: {WEIGHTS_NAME} missing")
        model = encoder_from_config(meta, directory)
        missing, unexpected = load_model(model, str(directory / WEIGHTS_NAME), strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"{directory / WEIGHTS_NAME}: does not match {target.__name__}{meta.get('args')} "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
        return model.eval()

    def extra_repr(self) -> str:
        return f"name={self.registered_name!r}, dim={self.dim}"


class TextEncoder(PretrainedEncoder):
    """Captions -> :class:`TextFeatures`.

    ``tokenize(captions)`` returns ``(tokens B x T, lengths B)`` in the encoder's own
    vocabulary; ``forward(tokens, lengths)`` encodes them; ``encode_text(captions)``
    does both (on the module's device).
    """

    kind: ClassVar[str] = "text"
    uses_word_vocab: ClassVar[bool] = False  # True: needs a WordTokenizer built from captions

    def tokenize(self, captions: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> TextFeatures:  # type: ignore[override]
        raise NotImplementedError

    def encode_text(self, captions: Sequence[str]) -> TextFeatures:
        """Tokenize ``captions`` (a list of strings) and encode them."""
        if isinstance(captions, str):
            raise TypeError("encode_text expects a list of captions, got one string")
        tokens, lengths = self.tokenize(list(captions))
        return self(tokens.to(self.device), lengths.to(self.device))


class ImageEncoder(PretrainedEncoder):
    """Images ``B x 3 x H x W`` in **[-1, 1]** -> :class:`ImageFeatures`.

    Each encoder converts to the normalisation its weights expect exactly once, inside
    ``forward`` (never normalise before calling it).
    """

    kind: ClassVar[str] = "image"

    def forward(self, images: torch.Tensor) -> ImageFeatures:  # type: ignore[override]
        raise NotImplementedError

    @staticmethod
    def _check_images(images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be B x 3 x H x W, got {tuple(images.shape)}")


def encoder_from_config(meta: Dict[str, Any], directory: Optional[Path] = None) -> "PretrainedEncoder":
    """A saved encoder's architecture from its ``config.json`` content (``class``, ``args``, ``name``), untrained.

    Models that embed an encoder (e.g. a GAN generator holding a frozen CLIP tower) save its
    config and rebuild it with this; their own weights file then fills it.
    """
    from ..registry import _import_builtin_modules

    _import_builtin_modules()
    target = _CLASSES.get(meta.get("class", ""))
    if target is None:
        raise ConfigError(f"unknown encoder class {meta.get('class')!r}")
    args = dict(meta.get("args") or {})
    model = target(**target._reload_kwargs(dict(args), directory or Path(".")))
    model._config = args  # keep the original args (paths, tags) on resave
    model.registered_name = meta.get("name")
    return model


def encoder_meta(model: "PretrainedEncoder") -> Dict[str, Any]:
    """What :func:`encoder_from_config` needs to rebuild ``model``'s architecture."""
    return {"format": _FORMAT, "kind": model.kind, "class": type(model).__name__, "name": model.registered_name,
            "args": model.config}


def lengths_to_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``B x width`` bool mask, True for positions < length."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def encoder_classes() -> List[str]:
    """Names of all encoder classes that :meth:`PretrainedEncoder.from_pretrained` can rebuild."""
    return sorted(_CLASSES)
