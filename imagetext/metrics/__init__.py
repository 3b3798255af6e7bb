"""Evaluation metrics: pure float64 functions on features, probabilities and similarities.

No model is loaded here (feature extractors live in :mod:`imagetext.metrics.extractors`).

- FID: :func:`frechet_distance`, :func:`fid_from_features`, :class:`FeatureStats`, :func:`fid_from_stats`
- KID: :func:`kernel_inception_distance`
- IS: :func:`inception_score`
- R-precision: :func:`r_precision`
- CLIPScore: :func:`clip_score` (conventions "raw", "x100", "w2.5")
- Retrieval: :func:`retrieval_recall`, :func:`coco_retrieval`, :func:`retrieval_ranks`

Bad input raises :class:`imagetext.errors.MetricInputError`, never a wrong number.
Names load lazily, so ``t2i --help`` (which imports :mod:`imagetext.metrics.cli`) never
pays for numpy, scipy or torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from ..errors import MetricInputError

_LAZY = {
    "CLIPSCORE_CONVENTIONS": "clipscore", "clip_score": "clipscore", "format_clip_score": "clipscore",
    "FeatureStats": "fid", "fid_from_features": "fid", "fid_from_stats": "fid", "frechet_distance": "fid",
    "inception_score": "isc",
    "kernel_inception_distance": "kid", "polynomial_mmd2": "kid",
    "BlockSimilarity": "retrieval", "DenseSimilarity": "retrieval", "EmbeddingSimilarity": "retrieval",
    "RetrievalRanks": "retrieval", "coco_retrieval": "retrieval", "recall_from_ranks": "retrieval",
    "retrieval_ranks": "retrieval", "retrieval_recall": "retrieval", "retrieval_recall_from_embeddings": "retrieval",
    "r_precision": "rprecision",
}

__all__ = ["MetricInputError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
