"""Search index: exact kinds equal numpy brute force, HNSW/IVF recall, save/load (mmap),
incremental add, tamper detection and every bad input as a one-line SearchIndexError."""
from __future__ import annotations

import json

import numpy as np
import pytest

from imagetext.errors import UserError
from matching.index import FORMAT_VERSION, SearchIndex, SearchIndexError


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ids(n: int, start: int = 0) -> list:
    return [f"img{i:05d}.jpg" for i in range(start, start + n)]


def _brute(gallery: np.ndarray, queries: np.ndarray, k: int):
    s = queries @ gallery.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


def _check_exact(index: SearchIndex, gallery: np.ndarray, queries: np.ndarray, k: int) -> None:
    ids = index.ids
    order, scores = _brute(gallery, queries, k)
    res = index.search(queries, k)
    assert len(res) == len(queries)
    for row, o, s in zip(res, order, scores):
        got = [h[0] for h in row]
        np.testing.assert_allclose([h[1] for h in row], s, atol=1e-5)
        # same ids in the same order, except within float32 near-ties (|diff| < 1e-5)
        assert sorted(got) == sorted(ids[i] for i in o)
        gap = np.minimum(np.abs(np.diff(s, prepend=np.inf)), np.abs(np.diff(s, append=-np.inf)))
        assert all(g == ids[i] or gap[j] < 1e-5 for j, (g, i) in enumerate(zip(got, o)))
        assert all(a[1] >= b[1] for a, b in zip(row, row[1:]))


def _recall(index: SearchIndex, gallery: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    order, _ = _brute(gallery, queries, k)
    ids = index.ids
    res = index.search(queries, k)
    return float(np.mean([len({h[0] for h in r} & {ids[i] for i in o}) / k for r, o in zip(res, order)]))


G = _unit(2000, 64)
Q = _unit(50, 64, seed=1)


@pytest.fixture(scope="module")
def flat() -> SearchIndex:
    return SearchIndex.build(G, _ids(len(G)), kind="auto", model_info={"name": "test", "dim": 64}, progress=False)


def test_auto_small_is_exact_and_equals_brute_force(flat):
    assert flat.kind == "flat" and len(flat) == 2000 and flat.dim == 64
    _check_exact(flat, G, Q, 10)
    _check_exact(flat, G, Q[:1], 1)
    _check_exact(flat, G, Q[:3], len(G))  # k = gallery size is allowed
    single = flat.search(Q[0], 5)  # a (d,) vector is one query
    assert single == flat.search(Q[:1], 5)


def test_hnsw_and_ivf_recall_at_10():
    g, q = _unit(3000, 256, seed=2), _unit(100, 256, seed=3)
    hnsw = SearchIndex.build(g, _ids(len(g)), kind="hnsw", progress=False)
    assert hnsw.params["M"] == 32 and hnsw.params["ef_search"] == 256
    assert _recall(hnsw, g, q) > 0.9
    res = hnsw.search(q[:5], 10)  # HNSW stores full vectors: scores are exact cosines
    for r, qq in zip(res, q[:5]):
        np.testing.assert_allclose([h[1] for h in r], [float(g[int(h[0][3:8])] @ qq) for h in r], atol=1e-5)
    ivf = SearchIndex.build(g, _ids(len(g)), kind="ivf", progress=False)
    ivf.set_search_params(nprobe=ivf.params["nlist"])  # all lists probed = exact
    assert _recall(ivf, g, q) == 1.0


def test_incremental_add_equals_building_at_once(flat):
    inc = SearchIndex.build(G[:700], _ids(700), kind="flat", progress=False)
    inc.add(G[700:1500], _ids(800, 700))
    inc.add(G[1500:], _ids(500, 1500))
    assert inc.ids == flat.ids
    assert inc.search(Q, 10) == flat.search(Q, 10)


def test_auto_flat_becomes_hnsw_past_threshold(monkeypatch):
    import matching.index as mi

    monkeypatch.setattr(mi, "EXACT_MAX", 500)
    g = _unit(800, 32, seed=4)
    idx = SearchIndex.build(g[:400], _ids(400), progress=False)
    assert idx.kind == "flat"
    idx.add(g[400:], _ids(400, 400))
    assert idx.kind == "hnsw" and len(idx) == 800 and any("rebuilt as HNSW" in n for n in idx.notes)
    assert _recall(idx, g, _unit(20, 32, seed=5)) > 0.95


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip_mmap(tmp_path, kind):
    g = _unit(1200, 32, seed=6)
    idx = SearchIndex.build(g, _ids(len(g)), kind=kind, model_info={"name": "m", "dim": 32}, progress=False)
    before = idx.search(Q[:10, :32], 7)
    idx.save(tmp_path / "ix")
    man = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert man["format_version"] == FORMAT_VERSION and man["count"] == 1200 and man["dimension"] == 32
    assert man["kind"] == kind and man["model"] == {"name": "m", "dim": 32}
    assert set(man["files"]) == {"index.faiss", "ids.json"} and all(len(f["sha256"]) == 64 for f in man["files"].values())
    for mmap in (True, False):
        back = SearchIndex.load(tmp_path / "ix", mmap=mmap)
        assert back.kind == kind and back.ids == idx.ids and back.params == idx.params
        assert back.search(Q[:10, :32], 7) == before
    back = SearchIndex.load(tmp_path / "ix", mmap=True)  # adding to a mapped index reads it in first
    extra = _unit(5, 32, seed=7)
    back.add(extra, _ids(5, 5000))
    assert back.search(extra[:1], 1)[0][0][0] == "img05000.jpg"


def _saved(tmp_path):
    d = tmp_path / "ix"
    SearchIndex.build(G[:300], _ids(300), kind="flat", progress=False).save(d)
    return d


@pytest.mark.parametrize("name", ["index.faiss", "ids.json"])
def test_tampering_one_byte_is_detected(tmp_path, name):
    d = _saved(tmp_path)
    p = d / name
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(SearchIndexError, match=f"{name}: sha256 checksum mismatch"):
        SearchIndex.load(d)


def test_truncated_and_missing_files(tmp_path):
    d = _saved(tmp_path)
    p = d / "index.faiss"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(SearchIndexError, match="index.faiss: .* bytes, the manifest says .*truncated"):
        SearchIndex.load(d)
    p.unlink()
    with pytest.raises(SearchIndexError, match="index.faiss: missing"):
        SearchIndex.load(d)
    (d / "manifest.json").unlink()
    with pytest.raises(SearchIndexError, match="no manifest.json"):
        SearchIndex.load(d)
    with pytest.raises(SearchIndexError, match="no such index folder"):
        SearchIndex.load(tmp_path / "nope")


def test_bad_manifests(tmp_path):
    d = _saved(tmp_path)
    m = d / "manifest.json"
    good = json.loads(m.read_text())
    m.write_text(json.dumps({**good, "format_version": 99}))
    with pytest.raises(SearchIndexError, match="unknown format version 99"):
        SearchIndex.load(d)
    m.write_text("{not json")
    with pytest.raises(SearchIndexError, match="not valid JSON"):
        SearchIndex.load(d)
    m.write_text(json.dumps({**good, "count": 301}))
    with pytest.raises(SearchIndexError, match="ids.json: expected a list of 301 ids"):
        SearchIndex.load(d)


def test_search_bad_input(flat):
    with pytest.raises(SearchIndexError, match=r"dimension 32 but the index holds 64-d .*another model"):
        flat.search(_unit(2, 32), 5)
    with pytest.raises(SearchIndexError, match=r"k=2001 is larger than the gallery \(2000"):
        flat.search(Q, 2001)
    for k in (0, -1, 2.5, True):
        with pytest.raises(SearchIndexError, match="must be a positive integer"):
            flat.search(Q, k)
    with pytest.raises(SearchIndexError, match=r"queries: empty"):
        flat.search(np.zeros((0, 64), np.float32), 5)
    bad = Q[:3].copy()
    bad[1, 0] = np.nan
    with pytest.raises(SearchIndexError, match=r"queries: 1 row\(s\) with NaN/inf \(first: row 1\)"):
        flat.search(bad, 5)
    with pytest.raises(SearchIndexError, match="all-zero"):
        flat.search(np.zeros((1, 64), np.float32), 5)
    with pytest.raises(SearchIndexError, match="numeric array"):
        flat.search(np.array([["a"] * 64]), 5)
    # not unit-norm: normalised (same ranking, cosine scores) with a note
    flat.notes.clear()
    scaled, plain = flat.search(3.0 * Q[:4], 5), flat.search(Q[:4], 5)
    assert [[h[0] for h in r] for r in scaled] == [[h[0] for h in r] for r in plain]
    np.testing.assert_allclose([[h[1] for h in r] for r in scaled], [[h[1] for h in r] for r in plain], atol=1e-5)
    assert len(flat.notes) == 1 and "normalised" in flat.notes[0]


def test_build_and_add_bad_input(flat):
    with pytest.raises(SearchIndexError, match=r"ids: 3 id\(s\) for 4 embedding"):
        SearchIndex.build(G[:4], _ids(3), progress=False)
    with pytest.raises(SearchIndexError, match=r"1 duplicate id\(s\): 'a'"):
        SearchIndex.build(G[:3], ["a", "b", "a"], progress=False)
    with pytest.raises(SearchIndexError, match="already in the index"):
        flat.add(G[:1], ["img00000.jpg"])
    with pytest.raises(SearchIndexError, match="dimension 32 but the index holds 64"):
        flat.add(_unit(1, 32), ["new"])
    assert len(flat) == 2000  # refused adds change nothing
    with pytest.raises(SearchIndexError, match="embeddings: empty"):
        SearchIndex.build(np.zeros((0, 8), np.float32), [], progress=False)
    inf = G[:3].copy()
    inf[2, 5] = np.inf
    with pytest.raises(SearchIndexError, match=r"NaN/inf \(first: row 2\)"):
        SearchIndex.build(inf, _ids(3), progress=False)
    with pytest.raises(SearchIndexError, match="unknown; choose one of"):
        SearchIndex.build(G[:3], _ids(3), kind="lsh", progress=False)
    with pytest.raises(SearchIndexError, match="not non-empty strings"):
        SearchIndex.build(G[:2], ["a", 3], progress=False)
    idx = SearchIndex.build(2 * G[:10], _ids(10), kind="flat", progress=False)
    assert "normalised" in idx.notes[0]
    _check_exact(idx, G[:10], Q[:3], 10)
    assert issubclass(SearchIndexError, UserError)
