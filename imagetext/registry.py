"""Name -> builder registries (timm-style), one per kind of component.

Tests parametrize over ``list_*()`` so every registered variant is exercised.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, TypeVar

from .errors import RegistryError

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """A named table of builders.

    Example:
        >>> DATASETS = Registry("dataset")
        >>> @DATASETS.register("birds")
        ... def build_birds(**kw): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: Dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name``; a duplicate name is an error."""

        def deco(fn: F) -> F:
            if name in self._builders:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._builders[name] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        """Return the builder for ``name`` or raise a KeyError listing the known names."""
        _import_builtin_modules()
        try:
            return self._builders[name]
        except KeyError:
            known = ", ".join(sorted(self._builders)) or "(none)"
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build the component registered under ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self) -> List[str]:
        _import_builtin_modules()
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        _import_builtin_modules()
        return name in self._builders


DATASETS = Registry("dataset")
TEXT_ENCODERS = Registry("text encoder")
IMAGE_ENCODERS = Registry("image encoder")
FEATURE_EXTRACTORS = Registry("feature extractor")
GANS = Registry("GAN variant")
MATCHERS = Registry("matcher")
# Saved-model formats (the "format" field of a model folder's config) -> loader(directory).
MODEL_LOADERS = Registry("saved model format")


def list_datasets() -> List[str]:
    return DATASETS.names()


def list_text_encoders() -> List[str]:
    return TEXT_ENCODERS.names()


def list_image_encoders() -> List[str]:
    return IMAGE_ENCODERS.names()


def list_feature_extractors() -> List[str]:
    return FEATURE_EXTRACTORS.names()


def list_gans() -> List[str]:
    return GANS.names()


def list_matchers() -> List[str]:
    return MATCHERS.names()


_BUILTINS = (
    "imagetext.data.sources",
    "imagetext.encoders.text",
    "imagetext.encoders.image",
    "imagetext.metrics.extractors",
)
_imported = False


def _import_builtin_modules() -> None:
    """Import the modules whose decorators fill the registries (lazily, to avoid cycles)."""
    global _imported
    if _imported:
        return
    _imported = True
    import importlib

    for mod in _BUILTINS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a module not yet written must not hide the others
            if e.name != mod:
                raise
    # Packages built on the core (matching, t2i, third-party ones) register themselves through
    # the "imagetext.plugins" entry point, so the core never names them in an import.
    from importlib.metadata import entry_points

    for ep in entry_points(group="imagetext.plugins"):
        try:
            ep.load()
        except ModuleNotFoundError as e:
            if e.name is None or not ep.value.startswith(e.name):
                raise


# Config files a saved model folder may carry, each with a "format" field naming its loader
# (matchers: matcher.json; text-to-image pipelines: pipeline.json; others: config.json).
_MODEL_CONFIGS = ("matcher.json", "pipeline.json", "config.json")


def load_saved_model(directory: Any) -> Any:
    """Load a saved model folder (or a run folder holding ``final/``) through :data:`MODEL_LOADERS`.

    Raises:
        UserError: not a folder, no config with a known ``format`` (the message lists the known ones).
    """
    import json
    from pathlib import Path

    from .errors import UserError

    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (give the folder a model's save_pretrained wrote)")
    for folder in (root, root / "final"):
        for name in _MODEL_CONFIGS:
            path = folder / name
            if not path.is_file():
                continue
            try:
                fmt = json.loads(path.read_text(encoding="utf-8")).get("format")
            except (ValueError, AttributeError):
                continue
            if fmt in MODEL_LOADERS:
                return MODEL_LOADERS.get(fmt)(folder)
    raise UserError(f"{root}: no saved model of a known format here or in {root / 'final'} "
                    f"(known: {', '.join(MODEL_LOADERS.names()) or 'none installed'})")


def load_saved_model_with(directory: Any, methods: Any, flag: str, role: str, hint: str = "") -> Any:
    """:func:`load_saved_model`, then check the model can do what the caller needs.

    Args:
        methods: names of the methods the caller will call (e.g. ``("embed_images", "embed_texts")``).
        flag: the command-line option that named ``directory`` (for the message).
        role: what the caller needs, in words ("an embedding matcher").
        hint: what to give instead, appended to the message.

    Raises:
        UserError: the folder holds another kind of model, naming its class, its name and the missing methods.
    """
    from .errors import UserError

    try:
        model = load_saved_model(directory)
    except UserError as e:
        raise UserError(f"{flag} {e}") from None
    missing = [m for m in methods if not callable(getattr(model, m, None))]
    if missing:
        name = getattr(model, "name", None)
        what = type(model).__name__ + (f" ({name!r})" if name else "")
        raise UserError(f"{flag} {directory}: holds a {what}, not {role} (it has no {', '.join(missing)})"
                        + (f"; {hint}" if hint else ""))
    return model
