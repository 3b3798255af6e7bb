"""Typed data config (YAML section ``data:``) and the one function that builds a split from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Optional

from ..registry import DATASETS
from .records import BadInputPolicy, LoadedSplit


@dataclass
class SyntheticConfig:
    """Options of the synthetic worlds (used when ``source`` is birds or scenes)."""

    seed: int = 0  # world seed: same seed, same pixels and captions
    n_train: int = 2000
    n_test: int = 500
    class_disjoint: bool = False  # CUB-style class-disjoint split (birds)


@dataclass
class DataConfig:
    """Where the data comes from and how bad items are treated."""

    source: str = "birds"  # a registered data set: birds | scenes | cub | coco | karpathy | folder
    root: Optional[str] = None  # data set root (not used by synthetic worlds)
    image_size: int = 64  # side of the square training images, 32..256
    on_error: Literal["skip", "error"] = "skip"  # bad item: skip and count, or stop naming the file
    check_images: bool = False  # decode every image while indexing (slow, catches corrupt files early)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    options: Dict[str, Any] = field(default_factory=dict)  # loader-specific extras (e.g. json_name)

    def policy(self) -> BadInputPolicy:
        return BadInputPolicy(on_error=self.on_error, check_images=self.check_images)


def build_split(cfg: DataConfig, split: str) -> LoadedSplit:
    """Load ``split`` of the data set described by ``cfg``."""
    from ..errors import ConfigError

    if not 32 <= cfg.image_size <= 256:
        raise ConfigError(f"data.image_size={cfg.image_size}: must be between 32 and 256")
    builder = DATASETS.get(cfg.source)
    if cfg.source in ("birds", "scenes"):
        s = cfg.synthetic
        return builder(
            split=split, seed=s.seed, size=cfg.image_size, class_disjoint=s.class_disjoint,
            n_train=s.n_train, n_test=s.n_test, **cfg.options,
        )
    if cfg.root is None:
        raise ConfigError(f"data.root: required for data.source={cfg.source!r}")
    return builder(root=cfg.root, split=split, policy=cfg.policy(), **cfg.options)
