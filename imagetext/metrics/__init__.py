"""Evaluation metrics: pure float64 functions on features, probabilities and similarities.

No model is loaded here (feature extractors live in :mod:`imagetext.metrics.extractors`).

- FID: :func:`frechet_distance`, :func:`fid_from_features`, :class:`FeatureStats`, :func:`fid_from_stats`
- KID: :func:`kernel_inception_distance`
- IS: :func:`inception_score`
- R-precision: :func:`r_precision`
- CLIPScore: :func:`clip_score` (conventions "raw", "x100", "w2.5")
- Retrieval: :func:`retrieval_recall`, :func:`coco_retrieval`, :func:`retrieval_ranks`

Bad input raises :class:`imagetext.errors.MetricInputError`, never a wrong number.
"""
from ..errors import MetricInputError
from .clipscore import CLIPSCORE_CONVENTIONS, clip_score, format_clip_score
from .fid import FeatureStats, fid_from_features, fid_from_stats, frechet_distance
from .inception_score import inception_score
from .kid import kernel_inception_distance, polynomial_mmd2
from .retrieval import (
    BlockSimilarity,
    DenseSimilarity,
    EmbeddingSimilarity,
    RetrievalRanks,
    coco_retrieval,
    recall_from_ranks,
    retrieval_ranks,
    retrieval_recall,
    retrieval_recall_from_embeddings,
)
from .rprecision import r_precision

__all__ = [
    "MetricInputError",
    "frechet_distance", "fid_from_features", "fid_from_stats", "FeatureStats",
    "kernel_inception_distance", "polynomial_mmd2",
    "inception_score",
    "r_precision",
    "clip_score", "format_clip_score", "CLIPSCORE_CONVENTIONS",
    "retrieval_recall", "retrieval_ranks", "recall_from_ranks", "coco_retrieval",
    "retrieval_recall_from_embeddings", "RetrievalRanks",
    "DenseSimilarity", "EmbeddingSimilarity", "BlockSimilarity",
]
