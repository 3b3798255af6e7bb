"""Text and image encoders shared by :mod:`t2i` and :mod:`matching`.

Interface contract
------------------
**Text encoders** (registry :data:`~imagetext.registry.TEXT_ENCODERS`) are
:class:`TextEncoder` modules:

- ``encode_text(captions: list[str]) -> TextFeatures`` tokenizes internally (on the
  module's device);
- ``tokenize(captions) -> (tokens LongTensor B x T, lengths LongTensor B)`` and
  ``forward(tokens, lengths) -> TextFeatures`` split the two steps (e.g. tokenizing in
  a data loader);
- :class:`TextFeatures`: ``words`` ``B x D x T`` (or None), ``sentence`` ``B x D``,
  ``mask`` ``B x T`` bool, **True = real token**, False = padding (or None). T is the
  longest caption of the batch; ``words`` and ``sentence`` share D = ``encoder.dim``.

**Image encoders** (registry :data:`~imagetext.registry.IMAGE_ENCODERS`) are
:class:`ImageEncoder` modules: ``forward(images) -> ImageFeatures`` with images
``B x 3 x H x W`` **in [-1, 1]**; the encoder applies its own normalisation once.
:class:`ImageFeatures`: ``regions`` ``B x D x H' x W'`` (or None), ``global_`` ``B x D``.

**Saving** (diffusers-style): ``enc.save_pretrained(dir)`` writes ``config.json``
(class, registered name, constructor args), ``model.safetensors`` and, for
word-vocabulary encoders, ``vocab.json`` (HF encoders add ``hf/`` with their config
and tokenizer). ``load_encoder(dir)`` (or ``SomeEncoder.from_pretrained(dir)``)
rebuilds it in eval mode with identical outputs, without the original weight files.

Building: ``build_text_encoder("bilstm", tokenizer=WordTokenizer.build(train_captions), dim=256)``,
``build_image_encoder("damsm_cnn", dim=256)``. Every builder takes ``dim``; text builders
also take ``tokenizer`` (required where :func:`needs_word_vocab` is True, ignored
otherwise). Pretrained weights are never downloaded unless allowed (see
:mod:`imagetext.encoders.weights`).

Registered:

=========================  =====================================================
text                       image
=========================  =====================================================
``bilstm`` (DAMSM, D=256)  ``damsm_cnn`` (small CNN or Inception trunk, D=256)
``bilstm_tiny``            ``damsm_cnn_tiny``
``hf`` (all-MiniLM-L6-v2)  ``inception_v3`` (torchvision, local weights only)
``openclip_text``          ``openclip_vision``
``openclip_text_tiny``     ``openclip_vision_tiny``
=========================  =====================================================
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from .base import ImageEncoder, ImageFeatures, PretrainedEncoder, TextEncoder, TextFeatures, lengths_to_mask

__all__ = [
    "TextFeatures",
    "ImageFeatures",
    "PretrainedEncoder",
    "TextEncoder",
    "ImageEncoder",
    "lengths_to_mask",
    "build_text_encoder",
    "build_image_encoder",
    "load_encoder",
    "load_pretrained_encoder",
    "needs_word_vocab",
]


def build_text_encoder(name: str, **kwargs: Any) -> TextEncoder:
    """Build the text encoder registered as ``name`` (see the table above)."""
    from ..registry import TEXT_ENCODERS

    return TEXT_ENCODERS.build(name, **kwargs)


def build_image_encoder(name: str, **kwargs: Any) -> ImageEncoder:
    """Build the image encoder registered as ``name``."""
    from ..registry import IMAGE_ENCODERS

    return IMAGE_ENCODERS.build(name, **kwargs)


def load_encoder(directory: Union[str, Path]) -> PretrainedEncoder:
    """Load any encoder saved with ``save_pretrained`` (text or image), in eval mode."""
    return PretrainedEncoder.from_pretrained(directory)


load_pretrained_encoder = load_encoder  # alias used by the eval CLI


def needs_word_vocab(name: str) -> bool:
    """True if text encoder ``name`` needs a WordTokenizer built from training captions."""
    from .text import needs_word_vocab as _needs

    return _needs(name)
