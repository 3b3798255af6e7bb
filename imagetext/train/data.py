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


def class_labels(split: Any) -> list:
    """Each sample's label as a sampler reads it: a tuple of classes (multi-label) or one id (-1: none)."""
    if split.multi_label:
        return [tuple(s.labels) for s in split.samples]
    return [s.labels[0] if s.labels else -1 for s in split.samples]


def build_train_loader(dataset: Any, split: Any, batch_size: int, sampler: str = "random", m: int = 4, seed: int = 0,
                       num_workers: int = 0) -> Any:
    """The training DataLoader: ``random`` batches (drop_last) or ``m_per_class`` batches (every anchor has positives).

    Raises:
        ConfigError: ``batch_size`` larger than the training set.
    """
    from torch.utils.data import DataLoader

    from ..data.dataset import MPerClassSampler, collate_fn

    if sampler == "m_per_class":
        batches = MPerClassSampler(class_labels(split), m, batch_size, seed=seed)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn, num_workers=num_workers)
    if len(dataset) < batch_size:
        raise ConfigError(f"batch_size={batch_size} is larger than the {len(dataset)} training images")
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collate_fn,
                      num_workers=num_workers)


def validation_split(data: Any, train_split: Any, val_split: Optional[str], val_holdout: int, test_split: str,
                     batch_size: int) -> Tuple[Any, Optional[Any]]:
    """(training split, validation split or None): a named split, or the last ``val_holdout`` training images.

    The held-out images leave the training split. Never the test split.

    Raises:
        ConfigError: the validation split is the test or training split, both ways are asked, or the
            hold-out leaves too few training images for a batch.
    """
    import copy

    from ..data.config import build_split

    if val_split is not None:
        if val_split in (test_split, "train") or val_holdout:
            raise ConfigError(f"eval.val_split={val_split}: must differ from the test split and the training "
                              "split, and not be combined with eval.val_holdout")
        return train_split, build_split(data, val_split)
    if not val_holdout:
        return train_split, None
    n = val_holdout
    if not 2 <= n < len(train_split.samples) - batch_size:
        raise ConfigError(f"eval.val_holdout={n}: need 2 <= n and enough training images left for a batch "
                          f"({len(train_split.samples)} in the split, batch_size={batch_size})")
    val = copy.copy(train_split)
    val.samples = train_split.samples[-n:]
    train = copy.copy(train_split)
    train.samples = train_split.samples[:-n]
    return train, val
