"""Image-text matching with Deep Boosting Learning (anchor and target branches; offline, online, momentum).

- :mod:`.losses`: DBL relative/absolute, VSE0/VSE++/InfoNCE, the collapse value.
- :mod:`.pooling`: GPO (VSE∞'s generalised pooling).
- :mod:`.models`: embedding matchers (encoder -> projection -> GPO), registered in ``MATCHERS``.
- :mod:`.interaction`: a SCAN-style cross-attention matcher, served as a re-ranker of a shortlist.
- :mod:`.index`: a FAISS search index (exact / HNSW / IVF) with a checksummed manifest.
- :mod:`.train`: the anchor/offline/online/momentum regimes on the shared loop (``scripts/train_matching.py``).

Builds on :mod:`imagetext`; never imports :mod:`t2i`. Names load lazily, so ``t2i index --help``
(which imports :mod:`matching.cli`) never pays for torch or faiss.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SearchIndex": "index", "SearchIndexError": "index",
    "EmbeddingMatcher": "models",
    **{n: "interaction" for n in ("CrossAttentionMatcher", "InteractionInputError", "rerank", "rerank_features",
                                  "reranked_recall", "reranked_ranks", "full_ranking", "interaction_scores",
                                  "encode_caption_words", "encode_image_regions")},
    "GPO": "pooling", "PoolingInputError": "pooling", "positional_encoding": "pooling",
    **{n: "losses" for n in ("DBLLoss", "InfoNCELoss", "MatchingLossError", "VSELoss", "absolute_boost_loss",
                             "collapse_value", "dbl_absolute_loss", "dbl_relative_loss", "hardest_after",
                             "infonce_loss", "relative_boost_loss", "soft_margin", "vse0_loss", "vse_loss",
                             "vse_pp_loss")},
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
