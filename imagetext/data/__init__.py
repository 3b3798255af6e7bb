"""Data: loaders for published layouts and users' folders, robust images, the torch Dataset.

Names are resolved lazily so importing :mod:`imagetext.data` (e.g. from ``t2i --help``)
does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict

from .records import (
    BadInputPolicy,
    DataReport,
    LoadedSplit,
    Problem,
    Sample,
    clean_captions,
    decode_text,
    finish_split,
    read_text,
)

_LAZY: Dict[str, str] = {
    "open_rgb": "images",
    "crop_to_bbox": "images",
    "check_image": "images",
    "to_rgb": "images",
    "load_cub": "cub",
    "load_coco": "coco",
    "load_karpathy": "karpathy",
    "find_karpathy_json": "karpathy",
    "load_folder": "folder",
    "ImageTextDataset": "dataset",
    "MPerClassSampler": "dataset",
    "collate_fn": "dataset",
    "pil_to_tensor": "dataset",
    "inspect_dataset": "inspect",
    "format_report": "inspect",
    "load_format": "inspect",
    "FORMATS": "inspect",
}

__all__ = [
    "BadInputPolicy",
    "DataReport",
    "LoadedSplit",
    "Problem",
    "Sample",
    "clean_captions",
    "decode_text",
    "finish_split",
    "read_text",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
