"""Registered data sources: name -> loader returning a :class:`LoadedSplit`.

Published layouts (``cub``, ``coco``, ``karpathy``), users' own ``folder`` data, and the
two synthetic worlds (``birds``, ``scenes``) that are the embedded default.
All loaders share one signature: ``(root, split, policy, **options) -> LoadedSplit``
(the synthetic worlds take no root; they are generated from a seed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..registry import DATASETS
from .records import BadInputPolicy, LoadedSplit


@DATASETS.register("cub")
def build_cub(root: str | Path, split: str = "train", policy: Optional[BadInputPolicy] = None, **kw: Any) -> LoadedSplit:
    """CUB-200-2011 with the AttnGAN/StackGAN caption metadata."""
    from .cub import load_cub

    return load_cub(Path(root), split, policy or BadInputPolicy(), **kw)


@DATASETS.register("coco")
def build_coco(root: str | Path, split: str = "train", policy: Optional[BadInputPolicy] = None, **kw: Any) -> LoadedSplit:
    """COCO 2014 captions with multi-labels from instances_*.json."""
    from .coco import load_coco

    return load_coco(Path(root), split, policy or BadInputPolicy(), **kw)


@DATASETS.register("karpathy")
def build_karpathy(root: str | Path, split: str = "train", policy: Optional[BadInputPolicy] = None, **kw: Any) -> LoadedSplit:
    """Karpathy split JSON (dataset_coco.json / dataset_flickr30k.json)."""
    from .karpathy import load_karpathy

    return load_karpathy(Path(root), split, policy or BadInputPolicy(), **kw)


@DATASETS.register("folder")
def build_folder(root: str | Path, split: str = "train", policy: Optional[BadInputPolicy] = None, **kw: Any) -> LoadedSplit:
    """A folder of images plus JSONL/CSV metadata (also what ``t2i data synth`` writes)."""
    from .folder import load_folder

    return load_folder(Path(root), split, policy or BadInputPolicy(), **kw)


@DATASETS.register("birds")
def build_birds(split: str = "train", **kw: Any) -> LoadedSplit:
    """Synthetic CUB-like world: single bird, fine-grained species, 10 captions."""
    from .synthetic import load_synthetic

    return load_synthetic("birds", split=split, **kw)


@DATASETS.register("scenes")
def build_scenes(split: str = "train", **kw: Any) -> LoadedSplit:
    """Synthetic COCO-like world: 1-4 objects, multi-label, 5 captions."""
    from .synthetic import load_synthetic

    return load_synthetic("scenes", split=split, **kw)
