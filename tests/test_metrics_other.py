"""KID, Inception Score, R-precision and CLIPScore on hand-built inputs."""
from __future__ import annotations

import numpy as np
import pytest

from imagetext.errors import MetricInputError
from imagetext.metrics import (
    clip_score,
    format_clip_score,
    inception_score,
    kernel_inception_distance,
    polynomial_mmd2,
    r_precision,
)
from imagetext.metrics.rprecision import sample_mismatched


# ----------------------------------------------------------------- KID
def test_mmd_matches_brute_force_and_torchmetrics():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.5
    k = lambda a, b: (a @ b / 5 + 1.0) ** 3  # noqa: E731
    m = 12
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    torch = pytest.importorskip("torch")
    from torchmetrics.image.kid import poly_mmd

    ref = float(poly_mmd(torch.from_numpy(x), torch.from_numpy(y)))
    assert polynomial_mmd2(x, y) == pytest.approx(ref, rel=1e-10)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((300, 8)), rng.standard_normal((300, 8))
    same = kernel_inception_distance(x, x, subsets=20, subset_size=100, seed=3)
    iid = kernel_inception_distance(x, y, subsets=20, subset_size=100, seed=3)
    far = kernel_inception_distance(x, y + 1.0, subsets=20, subset_size=100, seed=3)
    # unbiased: two samples of one distribution give ~0 within the subset spread
    assert abs(iid["kid"]) < 3 * iid["kid_std"] / np.sqrt(20) + 1e-3
    assert far["kid"] > 10 * (abs(iid["kid"]) + iid["kid_std"])
    # a set against itself: ~0 next to a real difference (subsets of one set overlap, which
    # biases the cross term up by O(overlap/m), so it is slightly negative, not exactly 0)
    assert abs(same["kid"]) < 0.05 * far["kid"]
    # seeded: same seed, same number; subset size capped at the smaller set
    assert kernel_inception_distance(x, y, subsets=5, subset_size=50, seed=7) == \
        kernel_inception_distance(x, y, subsets=5, subset_size=50, seed=7)
    assert kernel_inception_distance(x[:40], y, subsets=2, subset_size=1000)["subset_size"] == 40


def test_kid_and_is_reproduce_torch_fidelity():
    torch = pytest.importorskip("torch")
    tf_kid = pytest.importorskip("torch_fidelity.metric_kid")
    tf_isc = pytest.importorskip("torch_fidelity.metric_isc")
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((60, 6)), rng.standard_normal((50, 6)) + 0.3
    ref = tf_kid.kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=7,
                                        kid_subset_size=20, rng_seed=11, verbose=False)
    ours = kernel_inception_distance(x, y, subsets=7, subset_size=20, seed=11)
    assert ours["kid"] == pytest.approx(ref[tf_kid.KEY_METRIC_KID_MEAN], rel=1e-12)
    assert ours["kid_std"] == pytest.approx(ref[tf_kid.KEY_METRIC_KID_STD], rel=1e-10)
    logits = torch.from_numpy(rng.standard_normal((53, 9)) * 3)
    ref = tf_isc.isc_features_to_metric(logits, splits=5, rng_seed=2020)
    ours = inception_score(logits, splits=5, seed=2020, from_logits=True)
    assert ours["inception_score"] == pytest.approx(ref[tf_isc.KEY_METRIC_ISC_MEAN], rel=1e-12)
    assert ours["inception_score_std"] == pytest.approx(ref[tf_isc.KEY_METRIC_ISC_STD], rel=1e-9)


def test_kid_bad_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 4))
    for args, msg in (((x[:1], x), "at least 2"), ((x, x[:, :3]), "must match"),
                      ((x * np.nan, x), "NaN"), ((x, x, 0), "subsets")):
        with pytest.raises(MetricInputError, match=msg):
            kernel_inception_distance(*args)


# ----------------------------------------------------------------- IS
def test_is_uniform_is_one_and_balanced_one_hot_is_c():
    c = 7
    uniform = np.full((70, c), 1.0 / c)
    r = inception_score(uniform)
    assert r["inception_score"] == pytest.approx(1.0, abs=1e-12) and r["inception_score_std"] < 1e-12
    onehot = np.eye(c)[np.tile(np.arange(c), 10)]  # each in-order split holds every class once
    r = inception_score(onehot, splits=10, shuffle=False)
    assert r["inception_score"] == pytest.approx(c, rel=1e-12) and r["inception_score_std"] < 1e-9
    assert inception_score(onehot, splits=1)["inception_score"] == pytest.approx(c, rel=1e-12)
    # shuffled splits are unbalanced: never above C
    assert inception_score(onehot, splits=10, seed=1)["inception_score"] <= c + 1e-9


def test_is_matches_direct_formula_and_logits():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((40, 6)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for k in range(4):
        part = p[k * 10:(k + 1) * 10]
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(q * np.log(q / py)) for q in part])))
    r = inception_score(p, splits=4, shuffle=False)
    assert r["inception_score"] == pytest.approx(np.mean(scores), rel=1e-12)
    assert r["inception_score_std"] == pytest.approx(np.std(scores), rel=1e-9)
    assert inception_score(logits, splits=4, shuffle=False, from_logits=True)["inception_score"] == \
        pytest.approx(np.mean(scores), rel=1e-10)
    assert inception_score(p, seed=5)["inception_score"] == inception_score(p, seed=5)["inception_score"]


def test_is_bad_input():
    p = np.full((20, 4), 0.25)
    bad_sum = p.copy()
    bad_sum[3] = 0.5
    neg = p.copy()
    neg[2] = [1.5, -0.5, 0, 0]
    for arr, kw, msg in ((bad_sum, {}, "row 3 sums to 2"), (neg, {}, "negative"), (p[:1], {}, "at least 2"),
                         (p * np.nan, {}, "NaN"), (p, {"splits": 21}, "splits"), (p[:, :, None], {}, "2-D")):
        with pytest.raises(MetricInputError, match=msg):
            inception_score(arr, **kw)


# ----------------------------------------------------------------- R-precision
def test_r_precision_perfect_and_random():
    rng = np.random.default_rng(4)
    emb = rng.standard_normal((500, 16))
    r = r_precision(emb * 3.0, emb, folds=10)
    assert r["r_precision"] == 1.0 and r["r_precision_std"] == 0.0
    rand = r_precision(rng.standard_normal((3000, 16)), rng.standard_normal((3000, 16)), seed=1)
    assert 0.005 < rand["r_precision"] < 0.016  # chance = 1/100
    assert rand["folds"] == 10 and rand["num_mismatched"] == 99


def test_r_precision_same_class_and_repeated_captions():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(50), 4)  # 200 samples, 4 per class
    proto = rng.standard_normal((50, 8))
    emb = proto[labels]  # same-class captions tie with the true one
    default = r_precision(emb, emb, labels=labels, folds=5)
    assert default["r_precision"] < 0.2  # ties are misses: most rows draw a same-class caption
    excl = r_precision(emb, emb, labels=labels, exclude_same_class=True, folds=5)
    assert excl["r_precision"] == 1.0
    # the same texts under shared caption ids are never drawn as "mismatched"
    assert r_precision(emb, emb, caption_ids=labels, folds=5)["r_precision"] == 1.0


def test_mismatched_sampler_respects_exclusions():
    rng = np.random.default_rng(6)
    n, k = 150, 99
    labels = rng.integers(0, 30, n)
    ids = rng.integers(0, 100, n)
    cand = sample_mismatched(n, k, np.random.default_rng(0), [labels, ids])
    rows = np.arange(n)[:, None]
    assert cand.shape == (n, k)
    assert (cand != rows).all()
    assert (labels[cand] != labels[rows]).all() and (ids[cand] != ids[rows]).all()
    assert all(len(set(r)) == k for r in cand)
    again = sample_mismatched(n, k, np.random.default_rng(0), [labels, ids])
    np.testing.assert_array_equal(cand, again)
    # a pool of exactly k (n = k + 1, no keys) must still be found
    tight = sample_mismatched(k + 1, k, np.random.default_rng(1), [])
    assert all(set(r) == set(range(k + 1)) - {i} for i, r in enumerate(tight))


def test_r_precision_bad_input():
    rng = np.random.default_rng(7)
    e = rng.standard_normal((50, 4))
    for args, kw, msg in (((e, e[:, :3]), {}, "same shape"), ((e[:1], e[:1]), {}, "at least 2"),
                          ((e, e), {}, "only 49 eligible"), ((e, e), {"exclude_same_class": True}, "needs labels"),
                          ((e, e), {"num_mismatched": 5, "labels": np.zeros(3), "exclude_same_class": True},
                           "3 entries"), ((e * 0, e), {"num_mismatched": 5}, "zero norm"),
                          ((e, e), {"num_mismatched": 5, "folds": 60}, "folds")):
        with pytest.raises(MetricInputError, match=msg):
            r_precision(*args, **kw)


# ----------------------------------------------------------------- CLIPScore
def test_clip_score_conventions():
    img = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    txt = np.array([[2.0, 0.0], [0.5, 0.5 * np.sqrt(3)], [-0.5, 0.5 * np.sqrt(3)]])  # cos 1, 0.5, -0.5
    raw = clip_score(img, txt, "raw")
    assert raw["clip_score"] == pytest.approx(1.0 / 3)
    assert clip_score(img, txt, "x100")["clip_score"] == pytest.approx(100.0 / 3)
    w = clip_score(img, txt, "w2.5")
    assert w["clip_score"] == pytest.approx(2.5 * 1.5 / 3)  # the negative cosine is clamped to 0
    assert w["convention"] == "w2.5" and "max(cos" in w["formula"]
    assert "w2.5" in format_clip_score(w) and "2.5*max" in format_clip_score(w)
    with pytest.raises(MetricInputError, match="unknown CLIPScore convention"):
        clip_score(img, txt, "x2.5")
    with pytest.raises(MetricInputError, match="zero norm"):
        clip_score(img * 0, txt)
    with pytest.raises(MetricInputError, match="same shape"):
        clip_score(img, txt[:2])
