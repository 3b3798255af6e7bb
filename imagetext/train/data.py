"""What every training script does with its data section before the loop: the training and
held-out splits, and the word vocabulary a word-level text encoder needs."""
from __future__ import annotations

from typing import Any, Optional, Tuple

from ..errors import ConfigError


def load_splits(data: Any, eval_split: str) -> Tuple[Any, Any]:
    """(training split, held-out split) of a :class:`~imagetext.data.config.DataConfig`.

    Raises:
        ConfigError: ``eval_split`` is the training split (held-out scores must come from another one).
    """
    from ..data.config import build_split

    if eval_split == "train":
        raise ConfigError("eval.split=train: held-out scores must come from another split (e.g. test)")
    return build_split(data, "train"), build_split(data, eval_split)


def word_tokenizer(text_encoder: str, split: Any, min_count: int = 1) -> Optional[Any]:
    """A WordTokenizer over ``split``'s captions when ``text_encoder`` needs a word vocabulary, else None."""
    from ..encoders import needs_word_vocab
    from ..tokenizer import WordTokenizer

    if not needs_word_vocab(text_encoder):
        return None
    return WordTokenizer.build([c for s in split.samples for c in s.captions], min_count=min_count)
