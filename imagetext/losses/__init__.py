"""Losses shared by the generation and matching sides.

Every loss is a plain function returning a scalar tensor and an ``nn.Module`` returning
a dict of named terms; keys ending in ``_loss`` are summed by the caller (open_clip
style), other keys (``logit_scale``, ``*_accuracy``) are detached values for logging.

- :mod:`.supcon`: supervised contrastive loss (in-set and cross-modal; class ids or
  multi-hot labels).
- :mod:`.damsm`: AttnGAN's DAMSM word and sentence losses.
- :mod:`.clip`: CLIP's symmetric InfoNCE with a learnable temperature.
- :mod:`.labels`: the label baselines, UniCL targets and a cross-entropy head.

All take features as they come out of the encoders (normalised inside where a cosine is
meant); half-precision inputs are computed in float32. None gathers across processes:
pass embeddings already gathered (with gradients) to span the global batch.
"""
from ._common import LossInputError, label_weights
from .clip import ClipLoss, LogitScale, clip_logits, clip_loss
from .damsm import (DamsmLoss, damsm_sentence_loss, damsm_sentence_scores, damsm_word_loss, damsm_word_scores,
                    matching_loss)
from .labels import ClassifierHead, UniClLoss, classification_loss, unicl_loss, unicl_targets
from .supcon import SupConLoss, supcon_loss

__all__ = [
    "ClassifierHead", "ClipLoss", "DamsmLoss", "LogitScale", "LossInputError", "SupConLoss", "UniClLoss",
    "classification_loss", "clip_logits", "clip_loss", "damsm_sentence_loss", "damsm_sentence_scores",
    "damsm_word_loss", "damsm_word_scores", "label_weights", "matching_loss", "supcon_loss", "unicl_loss",
    "unicl_targets",
]
