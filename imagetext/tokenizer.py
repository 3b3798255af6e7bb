"""Word tokenizer and vocabulary built from training captions (AttnGAN/DAMSM style).

Captions are lower-cased and split into runs of word characters (``\\w+``, the same
rule as AttnGAN's ``RegexpTokenizer(r'\\w+')``), so punctuation and spaces separate
words and are dropped. The vocabulary is built from *training* captions only; words
seen fewer than ``min_count`` times, and every word met later that is not in the
vocabulary, map to ``<unk>``. Unknown words are never dropped silently: each one is
counted and :meth:`WordTokenizer.oov_report` says how many and which.

Ids: ``0 = <pad>``, ``1 = <unk>``, then words by decreasing training count (ties in
alphabetical order), so the same captions always give the same vocabulary. The
vocabulary is saved as JSON next to every model that uses it.

Example:
    >>> tok = WordTokenizer.build(["A small bird.", "a red bird"])
    >>> tok.encode("a small, RED bird!")  # a=2 bird=3 red=4 small=5
    [2, 5, 4, 3]
    >>> tok.decode(tok.encode("a blue bird"))
    'a <unk> bird'
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from .errors import DataError

PAD = "<pad>"
UNK = "<unk>"
_FORMAT = "imagetext.word_tokenizer"
_VERSION = 1
_WORD = re.compile(r"\w+")


def split_words(text: str) -> List[str]:
    """Lower-case ``text`` and return its runs of word characters (letters, digits, ``_``)."""
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Caption -> word ids with a fixed vocabulary; counts out-of-vocabulary words.

    Args:
        words: the vocabulary in id order, *excluding* ``<pad>`` and ``<unk>`` (ids 0, 1).
        counts: optional training counts of the words (kept for reports and saving).
        min_count: the threshold the vocabulary was built with (recorded, not re-applied).
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, words: Sequence[str], counts: Optional[Dict[str, int]] = None, min_count: int = 1) -> None:
        self.id_to_word: List[str] = [PAD, UNK]
        self.word_to_id: Dict[str, int] = {PAD: 0, UNK: 1}
        for w in words:
            if w in self.word_to_id:
                raise DataError(f"vocabulary has the word {w!r} twice (or it clashes with {PAD}/{UNK})")
            if split_words(w) != [w]:
                raise DataError(f"vocabulary word {w!r} is not one lower-case token")
            self.word_to_id[w] = len(self.id_to_word)
            self.id_to_word.append(w)
        self.counts: Dict[str, int] = dict(counts or {})
        self.min_count = int(min_count)
        self.oov: Counter = Counter()  # unknown word -> times seen by encode()
        self.tokens_seen = 0

    # ----------------------------------------------------------------- building
    @classmethod
    def build(
        cls, captions: Iterable[str], min_count: int = 1, max_words: Optional[int] = None
    ) -> "WordTokenizer":
        """Build the vocabulary from training captions.

        Args:
            captions: training captions (never validation/test ones).
            min_count: keep words seen at least this many times; rarer ones become ``<unk>``.
            max_words: keep at most this many of the most frequent words (``None`` = all).
        """
        if min_count < 1:
            raise DataError(f"min_count must be >= 1, got {min_count}")
        counts: Counter = Counter()
        for cap in captions:
            counts.update(split_words(cap))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_words is not None:
            kept = kept[:max_words]
        if not kept:
            raise DataError(f"no word occurs at least {min_count} time(s) in the training captions")
        return cls(kept, counts={w: counts[w] for w in kept}, min_count=min_count)

    # ----------------------------------------------------------------- encoding
    def __len__(self) -> int:
        return len(self.id_to_word)

    @property
    def vocab_size(self) -> int:
        """Number of ids, ``<pad>`` and ``<unk>`` included (the embedding table size)."""
        return len(self.id_to_word)

    def tokenize(self, text: str) -> List[str]:
        """The words of ``text`` (lower-cased, punctuation dropped)."""
        return split_words(text)

    def encode(self, text: str, max_len: Optional[int] = None) -> List[int]:
        """Word ids of ``text``, truncated to ``max_len`` words; unknown words -> ``<unk>`` (counted).

        Only the words kept after truncation are counted in the OOV report.
        """
        words = split_words(text)
        if max_len is not None:
            words = words[:max_len]
        ids = []
        for w in words:
            i = self.word_to_id.get(w)
            if i is None or i < 2:  # "<pad>" typed in a caption is just an unknown word
                self.oov[w] += 1
                i = self.unk_id
            ids.append(i)
        self.tokens_seen += len(ids)
        return ids

    def encode_batch(self, texts: Sequence[str], max_len: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode and pad a batch.

        Returns:
            ``(tokens, lengths)``: LongTensor ``B x T`` padded with 0 (T = the longest
            caption, at most ``max_len``) and LongTensor ``B`` of lengths. A caption with
            no words at all is encoded as one ``<unk>`` (length 1) so recurrent encoders
            always get a non-empty sequence; it is counted in the OOV report as ``""``.
        """
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of captions, got one string")
        seqs = []
        for t in texts:
            ids = self.encode(t, max_len)
            if not ids:
                self.oov[""] += 1
                ids = [self.unk_id]
            seqs.append(ids)
        width = max((len(s) for s in seqs), default=0)
        tokens = torch.zeros(len(seqs), width, dtype=torch.long)
        for b, s in enumerate(seqs):
            tokens[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        return tokens, lengths

    def decode(self, ids: Union[Sequence[int], torch.Tensor]) -> str:
        """Words of ``ids`` joined by spaces; padding is skipped, unknown ids raise DataError."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if i == self.pad_id:
                continue
            if not 0 <= i < len(self.id_to_word):
                raise DataError(f"token id {i} is outside the vocabulary (size {len(self.id_to_word)})")
            out.append(self.id_to_word[i])
        return " ".join(out)

    # ------------------------------------------------------------------- report
    def oov_report(self, top: int = 20) -> Dict[str, Any]:
        """What :meth:`encode` could not map since construction (or :meth:`reset_oov`).

        Returns:
            ``{"tokens": all words encoded, "unknown": unknown occurrences,
            "distinct_unknown": distinct unknown words, "rate": unknown / tokens,
            "most_common": [(word, count), ...]}`` (``""`` = captions with no words).
        """
        unknown = sum(self.oov.values())
        return {
            "tokens": self.tokens_seen,
            "unknown": unknown,
            "distinct_unknown": len(self.oov),
            "rate": unknown / self.tokens_seen if self.tokens_seen else 0.0,
            "most_common": self.oov.most_common(top),
        }

    def reset_oov(self) -> None:
        """Forget the OOV counts (e.g. between the validation and the test split)."""
        self.oov.clear()
        self.tokens_seen = 0

    # ---------------------------------------------------------------- save/load
    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "lowercase": True,
            "pattern": _WORD.pattern,
            "pad": PAD,
            "unk": UNK,
            "min_count": self.min_count,
            "words": self.id_to_word[2:],
            "counts": [self.counts.get(w, 0) for w in self.id_to_word[2:]],
        }

    def save(self, path: Union[str, Path]) -> Path:
        """Write the vocabulary as JSON (``vocab.json`` beside a model)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=0), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "WordTokenizer":
        """Read a vocabulary written by :meth:`save`; a missing or malformed file raises DataError."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"vocabulary file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not a valid JSON vocabulary ({e})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise DataError(f"{path}: not a word-tokenizer vocabulary (missing format {_FORMAT!r})")
        if data.get("version") != _VERSION or data.get("pattern") != _WORD.pattern:
            raise DataError(
                f"{path}: vocabulary version {data.get('version')!r} / pattern {data.get('pattern')!r} "
                f"not supported (expected {_VERSION} / {_WORD.pattern!r})"
            )
        words = data.get("words")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DataError(f"{path}: key 'words' must be a list of strings")
        counts_list = data.get("counts") or [0] * len(words)
        if len(counts_list) != len(words):
            raise DataError(f"{path}: 'counts' has {len(counts_list)} entries for {len(words)} words")
        try:
            return cls(words, counts=dict(zip(words, counts_list)), min_count=int(data.get("min_count", 1)))
        except DataError as e:
            raise DataError(f"{path}: {e}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self.id_to_word == other.id_to_word

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, min_count={self.min_count})"
