"""ImageTextDataset items, deterministic caption choice, decode failures at __getitem__
time under both policies, and the m-per-class batch sampler."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

try:
    from fixtures_data import build_synthetic, write_image
except ImportError:  # tests/ collected as a package
    from tests.fixtures_data import build_synthetic, write_image

from imagetext.data.dataset import ImageTextDataset, MPerClassSampler, collate_fn
from imagetext.data.folder import load_folder
from imagetext.data.records import BadInputPolicy, DataReport, LoadedSplit, Sample, finish_split
from imagetext.errors import DataError


def _split(tmp_path: Path, n: int = 6, captions: int = 4, multi: bool = False, kinds=None) -> LoadedSplit:
    samples = []
    for i in range(n):
        path = write_image(tmp_path / f"{i}.png", (kinds or {}).get(i, "png"), size=(20, 16), seed=i)
        labels = (i % 3,) if not multi else tuple(sorted({i % 3, (i + 1) % 3}))
        samples.append(Sample(key=f"{i}", captions=[f"img {i} cap {k}" for k in range(captions)], labels=labels, image_path=path))
    return finish_split(samples, ["a", "b", "c"], DataReport("test", str(tmp_path), "train"), multi_label=multi)


class WordTokenizer:
    """Duck-typed tokenizer: one id per word, 0 pads."""

    pad_id = 0

    def encode(self, text: str, max_len: int) -> list[int]:
        return [len(w) + 1 for w in text.split()][:max_len]


def test_item_contents_single_label(tmp_path):
    ds = ImageTextDataset(_split(tmp_path), image_size=8, tokenizer=WordTokenizer(), max_words=5)
    item = ds[4]
    assert item["image"].shape == (3, 8, 8) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0 and item["image"].std() > 0.1
    assert item["caption"] == f"img 4 cap {item['caption_index']}"
    assert item["caption2"] == f"img 4 cap {item['caption2_index']}"
    assert item["caption_index"] != item["caption2_index"]
    assert item["labels"].dtype == torch.long and int(item["labels"]) == 1
    assert item["label_set"].tolist() == [0.0, 1.0, 0.0]
    assert item["index"] == 4
    assert item["tokens"].tolist() == [4, 2, 4, 2, 0] and item["lengths"] == 4
    assert item["tokens2"].shape == (5,) and item["lengths2"] == 4


def test_multi_label_and_unlabelled_items(tmp_path):
    ds = ImageTextDataset(_split(tmp_path, multi=True), image_size=8)
    assert ds[2]["labels"].tolist() == [1.0, 0.0, 1.0] == ds[2]["label_set"].tolist()
    split = _split(tmp_path / "u", n=2)
    split.samples[0].labels = ()
    assert int(ImageTextDataset(split, image_size=8)[0]["labels"]) == -1


def test_caption_choice_is_deterministic_per_seed_epoch_index(tmp_path):
    split = _split(tmp_path, n=6, captions=5)
    a, b = ImageTextDataset(split, image_size=8, seed=3), ImageTextDataset(split, image_size=8, seed=3)
    pick = lambda ds: [ds.choose_captions(i) for i in range(len(ds))]  # noqa: E731
    assert pick(a) == pick(b)
    assert torch.equal(a[2]["image"], b[2]["image"])  # augmentation too
    first = pick(a)
    a.set_epoch(1)
    assert pick(a) != first  # a new epoch draws new captions
    assert pick(ImageTextDataset(split, image_size=8, seed=4)) != first
    for ds in (a, b):
        assert all(i != j for i, j in pick(ds))
    # every caption gets used over epochs (uniform choice)
    used = set()
    for e in range(40):
        a.set_epoch(e)
        used.add(a.choose_captions(0)[0])
    assert used == set(range(5))
    one = ImageTextDataset(_split(tmp_path / "one", n=2, captions=1), image_size=8)
    assert one[0]["caption"] == one[0]["caption2"]
    same = ImageTextDataset(split, image_size=8, two_captions=False)
    assert all(i == j for i, j in pick(same))


def test_eval_transform_is_centre_crop_and_custom_transform(tmp_path):
    split = _split(tmp_path, n=2)
    ev = ImageTextDataset(split, image_size=16, train=False)
    ev2 = ImageTextDataset(split, image_size=16, train=False, seed=9)
    ev2.set_epoch(5)
    assert torch.equal(ev[0]["image"], ev2[0]["image"])
    tr = ImageTextDataset(split, image_size=16, train=True)
    imgs = set()
    for e in range(6):
        tr.set_epoch(e)
        imgs.add(tr[0]["image"].sum().item())
    assert len(imgs) > 1  # random crop / flip
    custom = ImageTextDataset(split, transform=lambda im: im.resize((4, 4)))
    assert custom[0]["image"].shape == (3, 4, 4)


def test_rendered_samples(tmp_path):
    samples = [Sample(key=str(i), captions=["a", "b"], labels=(i,), render=lambda i=i: Image.new("L", (12, 12), 40 * i)) for i in range(3)]
    ds = ImageTextDataset(finish_split(samples, ["x", "y", "z"], DataReport("s", "", "train")), image_size=8, train=False)
    assert ds[2]["image"].shape == (3, 8, 8)
    assert torch.allclose(ds[2]["image"], torch.full((3, 8, 8), 80 / 127.5 - 1))


def test_decode_failure_skip_policy_uses_next_and_counts(tmp_path, caplog):
    split = _split(tmp_path, n=4, kinds={1: "truncated", 2: "notimage"})  # not decoded at load time
    ds = ImageTextDataset(split, image_size=8, policy=BadInputPolicy(on_error="skip"))
    with caplog.at_level(logging.WARNING, logger="imagetext.data.dataset"):
        item = ds[1]
        assert item["index"] == 3  # 1 and 2 are broken
        assert ds[2]["index"] == 3
        assert ds[1]["index"] == 3
    assert ds.failed == 2 and ds.failed_indices == {1, 2}
    files = [p.file for p in ds.report.problems if p.action == "skipped"]
    assert files == [str(tmp_path / "1.png"), str(tmp_path / "2.png")]
    assert ds.report.skipped == 2
    assert len([r for r in caplog.records if "skipping undecodable image" in r.message]) == 1


def test_decode_failure_error_policy_names_the_file(tmp_path):
    split = _split(tmp_path, n=3, kinds={1: "truncated"})
    ds = ImageTextDataset(split, image_size=8, policy=BadInputPolicy(on_error="error"))
    assert ds[0]["index"] == 0
    with pytest.raises(DataError, match=r"1\.png: cannot decode image"):
        ds[1]


def test_all_images_broken_is_an_error_not_a_hang(tmp_path):
    split = _split(tmp_path, n=2, kinds={0: "notimage", 1: "empty"})
    ds = ImageTextDataset(split, image_size=8)
    with pytest.raises(DataError, match="no sample"):
        ds[0]
    with pytest.raises(DataError, match="no usable samples"):
        ImageTextDataset(finish_split([], [], DataReport("x", "r", "train")))


def test_converted_images_counted_once_across_epochs(tmp_path):
    ds = ImageTextDataset(_split(tmp_path, n=2, kinds={0: "gray"}), image_size=8)
    for e in range(3):
        ds.set_epoch(e)
        ds[0]
    assert ds.report.converted == 1 and "grayscale" in ds.report.problems[0].reason
    # a conversion the loader already reported (check_images=True) is not counted again
    build_synthetic(tmp_path / "w")
    write_image(tmp_path / "w" / "images" / "train" / "train_00000.png", "gray", size=(16, 16))
    split = load_folder(tmp_path / "w", "train", BadInputPolicy(check_images=True))
    assert split.report.converted == 1
    ImageTextDataset(split, image_size=8)[0]
    assert split.report.converted == 1


def test_dataloader_with_sampler_and_collate(tmp_path):
    build_synthetic(tmp_path)
    ds = ImageTextDataset(load_folder(tmp_path, "train"), image_size=8, tokenizer=WordTokenizer(), max_words=6)
    sampler = MPerClassSampler(ds.sample_labels, m=2, batch_size=2, seed=0, drop_last=False)
    batches = list(DataLoader(ds, batch_sampler=sampler, collate_fn=collate_fn))
    assert sum(len(b["index"]) for b in batches) == 4
    b = batches[0]
    assert b["image"].shape == (2, 3, 8, 8) and b["tokens"].shape == (2, 6) and b["label_set"].shape == (2, 3)
    assert isinstance(b["caption"], list) and b["labels"].dtype == torch.long


# --- MPerClassSampler ----------------------------------------------------------------------
def _labels(n_classes: int, sizes, unlabelled: int = 0):
    labels = [(c,) for c in range(n_classes) for _ in range(sizes[c])]
    return labels + [()] * unlabelled


def test_sampler_covers_each_index_once_and_gives_positives():
    labels = _labels(7, [5, 4, 3, 2, 6, 1, 9], unlabelled=3)
    sampler = MPerClassSampler(labels, m=4, batch_size=8, seed=1, drop_last=False)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(labels)))
    assert all(len(b) == 8 for b in batches[:-1]) and len(batches) == len(sampler)
    # a class present in a batch has a partner, except singletons of size-1 classes and
    # the rare split group
    lonely = 0
    for b in batches:
        counts = Counter(labels[i][0] for i in b if labels[i])
        lonely += sum(1 for c, k in counts.items() if k == 1 and c != 5)
    assert lonely <= 2


def test_sampler_is_deterministic_and_changes_with_epoch():
    labels = _labels(5, [6] * 5)
    a = MPerClassSampler(labels, m=2, batch_size=6, seed=0)
    b = MPerClassSampler(labels, m=2, batch_size=6, seed=0)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert len(a) == 5 and all(len(x) == 6 for x in a)
    for batch in first:  # m=2 divides everything here: every class comes in pairs
        assert all(k % 2 == 0 for k in Counter(labels[i][0] for i in batch).values())


def test_sampler_accepts_ints_and_multilabel_and_validates():
    assert sorted(i for b in MPerClassSampler([0, 0, 1, 1, -1], m=2, batch_size=2, drop_last=False) for i in b) == list(range(5))
    assert len(list(MPerClassSampler([(0, 2), (0,), (1,), (1, 0)], m=2, batch_size=2))) == 2
    with pytest.raises(ValueError):
        MPerClassSampler([0, 1], m=4, batch_size=2)


def test_caption_without_words_tokenises_to_one_unk(tmp_path):
    """A punctuation-only caption must not reach a recurrent encoder as length 0."""
    from imagetext.tokenizer import WordTokenizer as RealTokenizer

    split = _split(tmp_path, n=2, captions=2)
    for s in split.samples:
        s.captions = ["...", "!!"]
    tok = RealTokenizer.build(["a bird"])
    item = ImageTextDataset(split, image_size=8, tokenizer=tok, max_words=4)[0]
    assert item["lengths"] == 1 and item["tokens"].tolist() == [tok.unk_id, 0, 0, 0]
