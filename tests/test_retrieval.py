"""Retrieval recall: hand-built matrices with ties and uneven caption counts, chunking,
providers, COCO 1K folds, agreement with a VSE++-style reference, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from imagetext.errors import MetricInputError
from imagetext.metrics import (
    BlockSimilarity,
    EmbeddingSimilarity,
    coco_retrieval,
    recall_from_ranks,
    retrieval_ranks,
    retrieval_recall,
    retrieval_recall_from_embeddings,
)


def _brute_ranks(s, c2i, strict):
    """Direct definition, one query at a time."""
    beats = (lambda a, b: a > b) if strict else (lambda a, b: a >= b)
    n_img, n_cap = s.shape
    i2t = []
    for i in range(n_img):
        mine = [c for c in range(n_cap) if c2i[c] == i]
        if not mine:
            continue
        best = max(s[i, c] for c in mine)
        i2t.append(1 + sum(beats(s[i, c], best) for c in range(n_cap) if c2i[c] != i))
    t2i = [1 + sum(beats(s[j, c], s[c2i[c], c]) for j in range(n_img) if j != c2i[c]) for c in range(n_cap)]
    return np.array(i2t), np.array(t2i)


# 3 images with 2, 1 and 3 captions; integer scores with deliberate ties
SIMS = np.array([
    # c0  c1  c2  c3  c4  c5
    [5., 1., 5., 0., 2., 0.],  # image 0: captions 0, 1; caption 2 (image 1) ties its best
    [4., 3., 4., 1., 9., 2.],  # image 1: caption 2 ties caption 0 (negative) -> rank 2 / 1
    [4., 3., 3., 8., 1., 7.],  # image 2: captions 3, 4, 5; best is 8, nothing ties
])
C2I = np.array([0, 0, 1, 2, 2, 2])


def test_hand_built_ties_and_uneven_caption_counts():
    pes = retrieval_ranks(SIMS, C2I)
    opt = retrieval_ranks(SIMS, C2I, tie="optimistic")
    # i2t: image 0 best 5, negatives c2 (5, tie), c3..c5 -> pessimistic 2, optimistic 1
    #      image 1 best 4 (c2), negatives 4 (tie), 3, 1, 9, 2 -> 1 + {9, 4} = 3 / 1 + {9} = 2
    #      image 2 best 8, negatives 4, 3, 3 -> 1
    np.testing.assert_array_equal(pes.i2t, [2, 3, 1])
    np.testing.assert_array_equal(opt.i2t, [1, 2, 1])
    # t2i: c0 pos 5, others 4, 4 -> 1; c1 pos 1, others 3, 3 -> 3; c2 pos 4 vs 5, 3 -> 2
    #      c3 pos 8 -> 1; c4 pos 1 vs 2, 9 -> 3; c5 pos 7 vs 0, 2 -> 1
    np.testing.assert_array_equal(pes.t2i, [1, 3, 2, 1, 3, 1])
    np.testing.assert_array_equal(opt.t2i, [1, 3, 2, 1, 3, 1])
    r = retrieval_recall(SIMS, C2I, ks=(1, 2))
    assert r["i2t_r1"] == pytest.approx(100 / 3) and r["i2t_r2"] == pytest.approx(200 / 3)
    assert r["t2i_r1"] == pytest.approx(50.0) and r["t2i_medr"] == 1.0  # median of 1,1,1,2,3,3 = 1.5 -> 1
    assert r["t2i_meanr"] == pytest.approx(11 / 6)
    assert r["rsum"] == pytest.approx(100 / 3 + 200 / 3 + 50 + 400 / 6)


def test_constant_matrix_is_worst_case_not_perfect():
    r = retrieval_recall(np.zeros((4, 8)), np.repeat(np.arange(4), 2))
    assert r["i2t_r1"] == 0.0 and r["t2i_r1"] == 0.0 and r["t2i_meanr"] == 4.0 and r["i2t_meanr"] == 7.0
    assert retrieval_recall(np.zeros((4, 8)), np.repeat(np.arange(4), 2), tie="optimistic")["rsum"] == 600.0


@pytest.mark.parametrize("tie", ["pessimistic", "optimistic"])
def test_matches_brute_force_chunked_and_order_invariant(tie):
    rng = np.random.default_rng(0)
    n_img, n_cap = 13, 40
    c2i = np.concatenate([np.arange(n_img), rng.integers(0, n_img, n_cap - n_img)])
    rng.shuffle(c2i)
    s = rng.integers(0, 4, (n_img, n_cap)).astype(np.float64)  # many ties
    i2t, t2i = _brute_ranks(s, c2i, strict=tie == "optimistic")
    ref = recall_from_ranks(i2t, t2i)
    for chunk in (1, 3, 7, 64):
        ranks = retrieval_ranks(s, c2i, tie=tie, chunk_size=chunk)
        np.testing.assert_array_equal(ranks.i2t, i2t)
        np.testing.assert_array_equal(ranks.t2i, t2i)
    # permuting images and captions changes nothing
    pi, pc = rng.permutation(n_img), rng.permutation(n_cap)
    inv = np.argsort(pi)
    perm = retrieval_recall(s[pi][:, pc], inv[c2i[pc]], tie=tie, chunk_size=5)
    for k, v in ref.items():
        assert perm[k] == pytest.approx(v)


def test_providers_agree_with_dense():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    img = rng.integers(-2, 3, (30, 6)).astype(np.float32)  # integer products: exact ties
    txt = rng.integers(-2, 3, (75, 6)).astype(np.float32)
    c2i = np.repeat(np.arange(30), [2, 3] * 15)
    dense = retrieval_recall(img.astype(np.float64) @ txt.T.astype(np.float64), c2i)
    assert retrieval_recall(torch.from_numpy(img @ txt.T), c2i) == dense
    for chunk in (4, 11, 4096):
        assert retrieval_recall(EmbeddingSimilarity(img, txt), c2i, chunk_size=chunk) == dense
        assert retrieval_recall(EmbeddingSimilarity(torch.from_numpy(img), torch.from_numpy(txt)), c2i,
                                chunk_size=chunk) == dense
    calls = []

    def fn(rows, cols):
        calls.append((len(rows), len(cols)))
        return img[rows] @ txt[cols].T

    assert retrieval_recall(BlockSimilarity(fn, (30, 75)), c2i, chunk_size=8) == dense
    assert max(a * b for a, b in calls) <= 64  # never more than a chunk x chunk tile
    assert retrieval_recall(BlockSimilarity(fn, (30, 75)), c2i, chunk_size=8, folds=3) == \
        retrieval_recall(img @ txt.T, c2i, folds=3)
    normed = retrieval_recall_from_embeddings(img + 0.1, txt, c2i, normalize=True)
    a = (img + 0.1) / np.linalg.norm(img + 0.1, axis=1, keepdims=True)
    b = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    assert normed == retrieval_recall(a @ b.T, c2i)


def test_vsepp_reference_convention():
    """VSE++'s i2t / t2i (5 captions per image, argsort ranks, floor(median)+1 on 0-based ranks)."""
    rng = np.random.default_rng(2)
    n = 40
    img = rng.standard_normal((n, 8))
    txt = np.repeat(img, 5, axis=0) + 1.5 * rng.standard_normal((5 * n, 8))
    s = img @ txt.T  # continuous: no ties, so the tie rule cannot matter
    ranks_i2t = np.array([min(np.where(np.argsort(s[i])[::-1] == c)[0][0] for c in range(5 * i, 5 * i + 5))
                          for i in range(n)])
    ranks_t2i = np.array([np.where(np.argsort(s[:, c])[::-1] == c // 5)[0][0] for c in range(5 * n)])
    r = retrieval_recall(s, np.repeat(np.arange(n), 5))
    for tag, rk in (("i2t", ranks_i2t), ("t2i", ranks_t2i)):
        for k in (1, 5, 10):
            assert r[f"{tag}_r{k}"] == pytest.approx(100.0 * np.mean(rk < k))
        assert r[f"{tag}_medr"] == np.floor(np.median(rk)) + 1
        assert r[f"{tag}_meanr"] == pytest.approx(rk.mean() + 1)


def test_coco_1k_folds_are_the_mean_of_separate_folds():
    rng = np.random.default_rng(3)
    n, per = 60, 5
    img = rng.standard_normal((n, 6))
    txt = np.repeat(img, per, axis=0) + 2.0 * rng.standard_normal((n * per, 6))
    c2i = np.repeat(np.arange(n), per)
    s = img @ txt.T
    parts = [retrieval_recall(s[f * 20:(f + 1) * 20, f * 100:(f + 1) * 100], np.repeat(np.arange(20), per))
             for f in range(3)]
    out = coco_retrieval(s, c2i, fold_size=20)
    for k in ("i2t_r1", "t2i_r5", "i2t_medr", "t2i_meanr", "rsum"):
        assert out["1k"][k] == pytest.approx(np.mean([p[k] for p in parts]))
    # 3 folds are not the 5K protocol: the whole-split number is labelled by its size
    assert "5k" not in out and out["all_60"] == retrieval_recall(s, c2i) and out["n_images"] == 60
    assert out["1k"]["folds"] == 3 and out["1k"]["rsum"] > out["all_60"]["rsum"]  # fewer distractors
    assert set(coco_retrieval(s, c2i, fold_size=12)) == {"n_images", "1k", "5k"}  # 5 folds
    assert set(coco_retrieval(s[:20, :100], c2i[:100], fold_size=20)) == {"n_images", "1k"}  # one fold only
    with pytest.raises(MetricInputError, match="whole number"):
        coco_retrieval(s, c2i, fold_size=25)


def test_uncaptioned_images_as_distractors():
    s = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 4.0]])  # image 2 has no caption
    with pytest.raises(MetricInputError, match="image 2"):
        retrieval_recall(s, [0, 1])
    ranks = retrieval_ranks(s, [0, 1], allow_uncaptioned=True)
    np.testing.assert_array_equal(ranks.i2t_images, [0, 1])
    np.testing.assert_array_equal(ranks.t2i, [1, 2])  # image 2 beats image 1 for caption 1


def test_bad_input():
    s = np.eye(3)
    nan = s.copy()
    nan[0, 2] = np.nan
    nan_pos = s.copy()
    nan_pos[1, 1] = np.inf
    for args, kw, msg in (
        ((np.zeros((0, 3)), []), {}, "empty similarity"),
        ((s, [0, 1, 3]), {}, r"caption_to_image\[2\] = 3 is out of range"),
        ((s, [0, -1, 2]), {}, "out of range"),
        ((s, [0, 1]), {}, "2 entries but the matrix has 3"),
        ((s, [0, 1.5, 2]), {}, "integer"),
        ((nan, [0, 1, 2]), {}, "NaN or inf in rows 0..2"),
        ((nan_pos, [0, 1, 2]), {}, "positive"),
        ((s, [0, 1, 2]), {"tie": "random"}, "tie must be"),
        ((s, [0, 1, 2]), {"folds": 4}, "folds"),
        ((s, [0, 1, 2]), {"ks": (0,)}, "ks"),
        ((np.ones(3), [0]), {}, "2-D"),
    ):
        with pytest.raises(MetricInputError, match=msg):
            retrieval_recall(*args, **kw)
    with pytest.raises(MetricInputError, match="BlockSimilarity"):
        retrieval_recall(lambda r, c: s[np.ix_(r, c)], [0, 1, 2])
    with pytest.raises(MetricInputError, match="returned shape"):
        retrieval_recall(BlockSimilarity(lambda r, c: s, (3, 3)), [0, 1, 2], chunk_size=2)
