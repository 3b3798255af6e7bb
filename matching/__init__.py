"""Image-text matching with Deep Boosting Learning (anchor and target branches; offline, online, momentum).

Builds on :mod:`imagetext`; never imports :mod:`t2i`. Filled by later issues.
"""
from .losses import (DBLLoss, InfoNCELoss, MatchingLossError, VSELoss, absolute_boost_loss, collapse_value,
                     dbl_absolute_loss, dbl_relative_loss, hardest_after, infonce_loss, relative_boost_loss,
                     soft_margin, vse0_loss, vse_loss, vse_pp_loss)
from .pooling import GPO, PoolingInputError, positional_encoding

__all__ = [
    "DBLLoss", "GPO", "InfoNCELoss", "MatchingLossError", "PoolingInputError", "VSELoss", "absolute_boost_loss",
    "collapse_value", "dbl_absolute_loss", "dbl_relative_loss", "hardest_after", "infonce_loss",
    "positional_encoding", "relative_boost_loss", "soft_margin", "vse0_loss", "vse_loss", "vse_pp_loss",
]
