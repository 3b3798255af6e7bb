"""WordTokenizer: vocabulary building, encoding, OOV accounting, save/load."""
import json

import pytest
import torch

from imagetext.errors import DataError
from imagetext.tokenizer import PAD, UNK, WordTokenizer, split_words

TRAIN = [
    "A small bird with RED wings.",
    "this bird has red wings, a black beak",
    "a bird: small & yellow",
]


def test_split_lowercases_and_drops_punctuation():
    assert split_words("A red-winged Bird, 2 eggs!") == ["a", "red", "winged", "bird", "2", "eggs"]
    assert split_words("  ...  ") == []


def test_vocab_order_is_count_then_alphabetical_and_deterministic():
    tok = WordTokenizer.build(TRAIN)
    assert tok.id_to_word[:2] == [PAD, UNK] and tok.pad_id == 0 and tok.unk_id == 1
    # a:3 bird:3 red:2 small:2 wings:2, then the singletons alphabetically
    assert tok.id_to_word[2:7] == ["a", "bird", "red", "small", "wings"]
    assert tok.id_to_word[7:] == sorted(tok.id_to_word[7:])
    assert WordTokenizer.build(list(reversed(TRAIN))).id_to_word == tok.id_to_word
    assert tok.vocab_size == len(tok) == 2 + len(set(w for c in TRAIN for w in split_words(c)))


def test_min_count_sends_rare_words_to_unk_and_counts_them():
    tok = WordTokenizer.build(TRAIN, min_count=2)
    assert tok.id_to_word[2:] == ["a", "bird", "red", "small", "wings"]
    ids = tok.encode("A small bird with a BLACK beak")
    assert ids == [2, 5, 3, 1, 2, 1, 1]
    rep = tok.oov_report()
    assert rep["tokens"] == 7 and rep["unknown"] == 3 and rep["distinct_unknown"] == 3
    assert dict(rep["most_common"]) == {"with": 1, "black": 1, "beak": 1}
    assert rep["rate"] == pytest.approx(3 / 7)
    tok.encode("black black")
    assert tok.oov["black"] == 3 and tok.oov_report()["most_common"][0] == ("black", 3)
    tok.reset_oov()
    assert tok.oov_report()["unknown"] == 0 and tok.oov_report()["tokens"] == 0


def test_encode_decode_round_trip_and_truncation():
    tok = WordTokenizer.build(TRAIN)
    text = "this bird has red wings, a black beak"
    assert tok.decode(tok.encode(text)) == "this bird has red wings a black beak"
    assert tok.encode(text, max_len=3) == tok.encode(text)[:3]
    assert tok.decode(tok.encode("a purple bird")) == f"a {UNK} bird"
    with pytest.raises(DataError, match="outside the vocabulary"):
        tok.decode([999])


def test_encode_batch_pads_with_zero_and_reports_lengths():
    tok = WordTokenizer.build(TRAIN)
    tokens, lengths = tok.encode_batch(["a bird", "a small bird with red wings", "!!!"], max_len=4)
    assert tokens.dtype == torch.long and tokens.shape == (3, 4)
    assert lengths.tolist() == [2, 4, 1]
    assert tokens[0, 2:].tolist() == [0, 0]
    # a caption without words becomes one <unk> (recurrent encoders need >= 1 step), and is reported
    assert tokens[2].tolist() == [tok.unk_id, 0, 0, 0]
    assert tok.oov[""] == 1
    with pytest.raises(TypeError):
        tok.encode_batch("a bird")


def test_save_load_round_trip(tmp_path):
    tok = WordTokenizer.build(TRAIN, min_count=1)
    path = tok.save(tmp_path / "sub" / "vocab.json")
    back = WordTokenizer.load(path)
    assert back == tok and back.counts == tok.counts and back.min_count == 1
    assert back.encode_batch(TRAIN)[0].tolist() == tok.encode_batch(TRAIN)[0].tolist()
    data = json.loads(path.read_text())
    assert data["words"][:2] == ["a", "bird"]  # human-readable, pad/unk implicit


def test_load_rejects_bad_files_naming_them(tmp_path):
    with pytest.raises(DataError, match="not found"):
        WordTokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        WordTokenizer.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "imagetext.word_tokenizer", "version": 1, "pattern": r"\w+", "words": ["a", "a"]}))
    with pytest.raises(DataError, match="twice"):
        WordTokenizer.load(wrong)


def test_build_errors():
    with pytest.raises(DataError):
        WordTokenizer.build([], min_count=1)
    with pytest.raises(DataError):
        WordTokenizer.build(TRAIN, min_count=0)
    assert WordTokenizer.build(TRAIN, max_words=2).id_to_word[2:] == ["a", "bird"]
