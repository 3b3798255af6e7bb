"""Image-text matching with Deep Boosting Learning (anchor and target branches; offline, online, momentum).

- :mod:`.losses`: DBL relative/absolute, VSE0/VSE++/InfoNCE, the collapse value.
- :mod:`.pooling`: GPO (VSE∞'s generalised pooling).
- :mod:`.models`: embedding matchers (encoder -> projection -> GPO), registered in ``MATCHERS``.
- :mod:`.index`: a FAISS search index (exact / HNSW / IVF) with a checksummed manifest.
- :mod:`.train`: the anchor/offline/online/momentum regimes on the shared loop (``scripts/train_matching.py``).

Builds on :mod:`imagetext`; never imports :mod:`t2i`.
"""
from .losses import (DBLLoss, InfoNCELoss, MatchingLossError, VSELoss, absolute_boost_loss, collapse_value,
                     dbl_absolute_loss, dbl_relative_loss, hardest_after, infonce_loss, relative_boost_loss,
                     soft_margin, vse0_loss, vse_loss, vse_pp_loss)
from .index import SearchIndex, SearchIndexError
from .models import EmbeddingMatcher
from .pooling import GPO, PoolingInputError, positional_encoding

__all__ = [
    "DBLLoss", "EmbeddingMatcher", "GPO", "SearchIndex", "SearchIndexError", "InfoNCELoss", "MatchingLossError", "PoolingInputError", "VSELoss", "absolute_boost_loss",
    "collapse_value", "dbl_absolute_loss", "dbl_relative_loss", "hardest_after", "infonce_loss",
    "positional_encoding", "relative_boost_loss", "soft_margin", "vse0_loss", "vse_loss", "vse_pp_loss",
]
