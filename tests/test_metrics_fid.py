"""FID core: closed forms, invariances, streaming statistics, .npz round trips, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from imagetext.errors import MetricInputError
from imagetext.metrics import FeatureStats, fid_from_features, fid_from_stats, frechet_distance


def _rand_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d + 5))
    return a @ a.T / a.shape[1]


def _stats(x):
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _features(rng, n, d, shift=0.0):
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mix + shift


# ----------------------------------------------------------------- closed forms
@pytest.mark.parametrize("method", ["auto", "eigh", "cholesky"])
def test_one_dimensional_closed_form(method):
    # N(m1, s1²) vs N(m2, s2²): (m1-m2)² + (s1-s2)²
    fid = frechet_distance([1.5], [[4.0]], [-0.5], [[9.0]], method=method)
    assert fid == pytest.approx((1.5 + 0.5) ** 2 + (2.0 - 3.0) ** 2, rel=1e-12)


@pytest.mark.parametrize("method", ["auto", "eigh", "cholesky"])
@pytest.mark.parametrize("zeros", [0, 5])
def test_commuting_covariances_closed_form(method, zeros):
    rng = np.random.default_rng(0)
    d = 24
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.random(d) + 0.1, rng.random(d) + 0.1
    a[:zeros] = 0.0  # rank-deficient Σ1 too
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    if zeros and method == "cholesky":
        with pytest.raises(MetricInputError, match="not numerically positive definite"):
            frechet_distance(mu1, s1, mu2, s2, method=method)
        return
    assert frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(mu2, s2, mu1, s1, method=method) == pytest.approx(expected, rel=1e-10)


def test_factorisations_agree_with_each_other():
    rng = np.random.default_rng(15)
    m1, m2 = rng.standard_normal(60), rng.standard_normal(60)
    s1, s2 = _rand_cov(rng, 60), _rand_cov(rng, 60)
    ref = frechet_distance(m1, s1, m2, s2, method="eigh")
    assert frechet_distance(m1, s1, m2, s2, method="cholesky") == pytest.approx(ref, rel=1e-11)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-11)
    with pytest.raises(MetricInputError, match="method must be"):
        frechet_distance(m1, s1, m2, s2, method="sqrtm")


@pytest.mark.parametrize("rank", [None, 10])
def test_identical_statistics_give_zero(rank):
    rng = np.random.default_rng(1)
    mu, sigma = rng.standard_normal(40), _rand_cov(rng, 40, rank)
    fid = frechet_distance(mu, sigma, mu, sigma)
    assert 0.0 <= fid < 1e-9 * np.trace(sigma)


def test_symmetric_in_its_arguments():
    rng = np.random.default_rng(2)
    m1, m2 = rng.standard_normal(30), rng.standard_normal(30)
    s1, s2 = _rand_cov(rng, 30), _rand_cov(rng, 30, 12)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-10)


def test_rotation_translation_invariance_and_scaling():
    rng = np.random.default_rng(3)
    d = 20
    x, y = _features(rng, 200, d), _features(rng, 150, d, shift=0.3)
    base = frechet_distance(*_stats(x), *_stats(y))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    t = rng.standard_normal(d) * 10
    assert frechet_distance(*_stats(x @ q + t), *_stats(y @ q + t)) == pytest.approx(base, rel=1e-9)
    c = 3.7
    assert frechet_distance(*_stats(c * x), *_stats(c * y)) == pytest.approx(c * c * base, rel=1e-9)


def test_agrees_with_torchmetrics():
    torch = pytest.importorskip("torch")
    from torchmetrics.image.fid import _compute_fid  # (mu1, sigma1, mu2, sigma2) -> Tensor

    rng = np.random.default_rng(4)
    d = 128
    for n1, n2 in ((400, 300), (60, 90)):  # full rank and rank-deficient
        x, y = _features(rng, n1, d), _features(rng, n2, d, shift=0.2)
        m1, s1 = _stats(x)
        m2, s2 = _stats(y)
        ref = float(_compute_fid(*(torch.from_numpy(a) for a in (m1, s1, m2, s2))))
        ours = frechet_distance(m1, s1, m2, s2)
        assert abs(ours - ref) / ref < 1e-6
        # torch tensors are accepted as input as well
        assert frechet_distance(*(torch.from_numpy(a) for a in (m1, s1, m2, s2))) == pytest.approx(ours, rel=1e-12)


# ----------------------------------------------------------------- low-rank route
@pytest.mark.parametrize("n1,n2,d", [(30, 45, 80), (120, 90, 40)])
def test_lowrank_route_equals_full_form(n1, n2, d):
    rng = np.random.default_rng(5)
    x, y = _features(rng, n1, d), _features(rng, n2, d, shift=0.5)
    full = fid_from_features(x, y, method="full")
    low = fid_from_features(x, y, method="lowrank")
    assert low == pytest.approx(full, rel=1e-9)
    assert fid_from_features(x, y) == pytest.approx(full, rel=1e-9)


def test_lowrank_and_full_form_at_inception_width():
    # one d=2048 check (rank-deficient, the common case of small evaluation sets)
    rng = np.random.default_rng(6)
    d = 2048
    x = rng.standard_normal((300, d)) * rng.random(d)
    y = rng.standard_normal((250, d)) * rng.random(d) + 0.05
    low = fid_from_features(x, y, method="lowrank")
    full = frechet_distance(*_stats(x), *_stats(y))
    assert full == pytest.approx(low, rel=1e-8)


# ----------------------------------------------------------------- streaming statistics
def test_streaming_equals_batch_for_any_batch_size():
    rng = np.random.default_rng(7)
    x = _features(rng, 103, 12, shift=2.0)
    mu, sigma = _stats(x)
    for bs in (1, 7, 50, 103):
        st = FeatureStats()
        for s in range(0, len(x), bs):
            st.update(x[s:s + bs])
        assert st.n == 103
        np.testing.assert_allclose(st.mu, mu, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(st.sigma, sigma, rtol=1e-10, atol=1e-12)


def test_large_mean_does_not_lose_digits():
    # a naive Σxxᵀ - nμμᵀ would lose ~all digits of a 1e-3 spread around 1e5
    rng = np.random.default_rng(8)
    x = 1e5 + 1e-3 * rng.standard_normal((500, 6))
    st = FeatureStats()
    for s in range(0, 500, 64):
        st.update(x[s:s + 64])
    np.testing.assert_allclose(st.sigma, np.cov(x, rowvar=False), rtol=1e-6)


def test_merge_equals_one_stream_and_torch_input():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = _features(rng, 90, 10, shift=-3.0)
    a = FeatureStats().update(x[:20]).update(torch.from_numpy(x[20:50]).float())
    b = FeatureStats().update(x[50:] + 0.0)
    a.merge(b).merge(FeatureStats())
    whole = FeatureStats().update(x[:20]).update(x[20:50].astype(np.float32)).update(x[50:])
    assert a.n == 90
    np.testing.assert_allclose(a.mu, whole.mu, rtol=1e-12)
    np.testing.assert_allclose(a.sigma, whole.sigma, rtol=1e-10, atol=1e-13)
    empty = FeatureStats().merge(b)
    np.testing.assert_allclose(empty.sigma, b.sigma, rtol=1e-12)


def test_keep_features_and_fid_from_stats():
    rng = np.random.default_rng(10)
    x, y = _features(rng, 80, 8), _features(rng, 70, 8, shift=1.0)
    sx = FeatureStats(keep_features=True).update(x[:30]).update(x[30:])
    sy = FeatureStats().update(y)
    np.testing.assert_array_equal(sx.features, x)
    assert fid_from_stats(sx, sy) == pytest.approx(fid_from_features(x, y, method="full"), rel=1e-10)
    with pytest.raises(MetricInputError, match="keep_features"):
        _ = sy.features


def test_npz_round_trip_and_pytorch_fid_format(tmp_path):
    rng = np.random.default_rng(11)
    x = _features(rng, 60, 6)
    st = FeatureStats(meta={"extractor": "inception-tf", "resize": "bicubic-pil"}).update(x)
    path = st.save_npz(tmp_path / "sub" / "ref")  # no extension: written exactly there
    assert path.exists() and path.name == "ref"
    back = FeatureStats.load_npz(path)
    assert back.n == 60 and back.meta["resize"] == "bicubic-pil"
    np.testing.assert_allclose(back.sigma, st.sigma, rtol=1e-12)
    back.update(x[:5])  # with a count, loaded statistics keep streaming
    np.testing.assert_allclose(back.sigma, np.cov(np.vstack([x, x[:5]]), rowvar=False), rtol=1e-10)

    # pytorch-fid / clean-fid write only mu and sigma
    np.savez_compressed(tmp_path / "pf.npz", mu=st.mu, sigma=st.sigma.astype(np.float32))
    ref = FeatureStats.load_npz(tmp_path / "pf.npz")
    assert fid_from_stats(st, ref) < 1e-5
    with pytest.raises(MetricInputError, match="only mu and sigma"):
        ref.update(x)
    ref.save_npz(tmp_path / "again.npz")
    np.testing.assert_allclose(FeatureStats.load_npz(tmp_path / "again.npz").mu, st.mu)


def test_fid_from_stats_refuses_different_extractors():
    rng = np.random.default_rng(12)
    a = FeatureStats(meta={"extractor": "inception-tf"}).update(rng.standard_normal((10, 3)))
    b = FeatureStats(meta={"extractor": "clip-vit-b32"}).update(rng.standard_normal((10, 3)))
    with pytest.raises(MetricInputError, match="made differently.*extractor"):
        fid_from_stats(a, b)
    assert fid_from_stats(a, b, check_meta=False) > 0


def test_all_reduce_is_noop_without_distributed():
    x = np.arange(12.0).reshape(4, 3) ** 1.5
    st = FeatureStats().update(x)
    st.all_reduce()
    assert st.n == 4


def _dist_worker(rank, world, init_file, parts, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    st = FeatureStats(keep_features=True)
    for p in parts[rank]:
        st.update(p)
    st.all_reduce()
    np.savez(f"{out_dir}/r{rank}.npz", mu=st.mu, sigma=st.sigma, n=st.n, f=st.features)
    dist.destroy_process_group()


def test_all_reduce_across_processes(tmp_path):
    mp = pytest.importorskip("torch.multiprocessing")
    rng = np.random.default_rng(13)
    x = _features(rng, 41, 5, shift=50.0)
    parts = [[x[:10], x[10:25]], [x[25:]], []]  # uneven shards; rank 2 saw no data at all
    # fork: the children reuse the imported torch instead of importing it again
    mp.start_processes(_dist_worker, args=(3, str(tmp_path / "init"), parts, str(tmp_path)), nprocs=3,
                       join=True, start_method="fork")
    for r in range(3):
        z = np.load(tmp_path / f"r{r}.npz")
        assert int(z["n"]) == 41
        np.testing.assert_allclose(z["mu"], x.mean(0), rtol=1e-12)
        np.testing.assert_allclose(z["sigma"], np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(z["f"], x)


# ----------------------------------------------------------------- bad input
def test_bad_input_raises_named_errors(tmp_path):
    rng = np.random.default_rng(14)
    mu, sigma = np.zeros(3), np.eye(3)
    cases = [
        (lambda: frechet_distance(mu, np.eye(4), mu, sigma), "sigma1 has shape"),
        (lambda: frechet_distance(mu, sigma, np.zeros(4), np.eye(4)), "set 1 has 3-d"),
        (lambda: frechet_distance([0.0, np.nan, 0.0], sigma, mu, sigma), "mu1: 1 NaN"),
        (lambda: frechet_distance(mu, sigma, mu, sigma + np.triu(np.ones((3, 3)), 1)), "not symmetric"),
        (lambda: frechet_distance(mu, -np.eye(3), mu, sigma), "negative variance"),
        (lambda: frechet_distance(mu, np.array([[1, 2, 0], [2, 1, 0], [0, 0, 1.0]]), mu, sigma), "sigma1 is not positive semi"),
        (lambda: frechet_distance(np.zeros((3, 1)), sigma, mu, sigma), "1-D"),
        (lambda: fid_from_features(rng.standard_normal((1, 3)), rng.standard_normal((5, 3))), "at least 2"),
        (lambda: fid_from_features(rng.standard_normal((4, 3)), rng.standard_normal((5, 2))), "must match"),
        (lambda: fid_from_features(np.full((4, 3), np.inf), rng.standard_normal((5, 3))), "NaN or inf"),
        (lambda: FeatureStats().update(rng.standard_normal((1, 3))).sigma, "at least 2"),
        (lambda: FeatureStats().update(np.ones((2, 3))).update(np.ones((2, 4))), "4-d but earlier"),
        (lambda: FeatureStats().mu, "at least 1"),
    ]
    for fn, msg in cases:
        with pytest.raises(MetricInputError, match=msg):
            fn()
    np.savez(tmp_path / "nomu.npz", sigma=sigma)
    np.savez(tmp_path / "shape.npz", mu=mu, sigma=np.eye(2))
    (tmp_path / "junk.npz").write_text("not a zip")
    np.savez(tmp_path / "n1.npz", mu=mu, sigma=sigma, n=np.int64(1))
    np.savez(tmp_path / "zero.npz", mu=np.zeros(3), sigma=np.zeros((3, 3)))
    np.save(tmp_path / "arr.npy", mu)
    (tmp_path / "arr.npy").rename(tmp_path / "arr.npz")
    for name, msg in (("nomu.npz", "missing key\\(s\\) mu"), ("shape.npz", "expected \\(3, 3\\)"),
                      ("junk.npz", "not an .npz archive \\(looks like text\\)"), ("absent.npz", "no such file"),
                      ("n1.npz", "n=1 image"), ("zero.npz", "sigma is all zeros"), ("arr.npz", "looks like npy")):
        with pytest.raises(MetricInputError, match=msg):
            FeatureStats.load_npz(tmp_path / name)
