"""`t2i eval retrieval --model` and `t2i index build|search` with a trained tiny matcher."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

try:
    from cli_harness import check_case, run_cli
except ImportError:  # tests/ collected as a package
    from tests.cli_harness import check_case, run_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def W(tmp_path_factory, tiny_birds_matcher) -> Path:
    import shutil

    w = tmp_path_factory.mktemp("idx")
    shutil.copytree(tiny_birds_matcher, w / "model")
    r = run_cli(["index", "build", "--model", w / "model", "--images", "dataset:birds:test:20", "--size", "32",
                 "--out", w / "gallery", "--no-progress", "--json"])
    assert r.code == 0, r.err + r.traceback
    assert json.loads(r.out)["images"] == 20
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(w / "query.png")
    (w / "notes.txt").write_text("not an image")
    return w


def test_search_by_text_and_image_agrees_with_brute_force(W):
    import numpy as np
    import torch

    from matching import EmbeddingMatcher, SearchIndex

    r = run_cli(["index", "search", "--index", W / "gallery", "--text", "a small red bird", "-k", "5", "--json"])
    assert r.code == 0, r.err
    res = json.loads(r.out)["results"]
    assert len(res) == 5 and all(a["score"] >= b["score"] for a, b in zip(res, res[1:]))
    index = SearchIndex.load(W / "gallery")
    model = EmbeddingMatcher.from_pretrained(W / "model")
    with torch.no_grad():
        q = model.embed_texts(["a small red bird"]).numpy()
    # brute force over the stored vectors
    vecs = np.stack([index._index.reconstruct(i) for i in range(len(index))])
    order = np.argsort(-(vecs @ q[0]), kind="stable")[:5]
    assert [index.ids[i] for i in order] == [x["image"] for x in res]
    r = run_cli(["index", "search", "--index", W / "gallery", "--image", W / "query.png", "-k", "3"])
    assert r.code == 0 and len(r.out.strip().splitlines()) == 3


def test_eval_retrieval_with_model(W):
    r = run_cli(["eval", "retrieval", "--model", W / "model", "--data", "dataset:birds:test:20", "--size", "32",
                 "--json", "--no-progress"])
    assert r.code == 0, r.err + r.traceback
    res = json.loads(r.out)
    assert res["n_images"] == 20 and res["n_captions"] == 200 and 0.0 <= res["rsum"] <= 600.0


@pytest.mark.parametrize("argv,code,words", [
    (["index", "search", "--index", "{W}/gallery", "--text", "   "], 2, ["--text is empty"]),
    (["index", "search", "--index", "{W}/gallery", "--text", "bird", "-k", "50"], 2, ["larger than the gallery"]),
    (["index", "search", "--index", "{W}/gallery", "--image", "{W}/notes.txt"], 2, ["notes.txt"]),
    (["index", "search", "--index", "{W}/nope", "--text", "bird"], 2, ["nope"]),
    (["index", "search", "--index", "{W}/gallery"], 2, ["one of the arguments --text --image is required"]),
    (["index", "build", "--model", "{W}/model", "--images", "dataset:birds:test:5", "--out", "{W}/gallery"], 2,
     ["not empty", "--overwrite"]),
    (["index", "build", "--model", "{W}/notes.txt", "--images", "dataset:birds:test:5", "--out", "{W}/g2"], 2,
     ["not a folder"]),
])
def test_index_bad_input(W, argv, code, words):
    check_case([a.format(W=W) if isinstance(a, str) else a for a in argv], code, words)


def _other_model(W: Path, name: str, embed_dim: int) -> Path:
    """An untrained tiny embedding matcher saved beside the index (not the one that built it)."""
    import torch

    from imagetext.registry import MATCHERS
    from imagetext.tokenizer import WordTokenizer

    out = W / name
    if not out.is_dir():
        torch.manual_seed(3)
        MATCHERS.build("vse_gpo_tiny", tokenizer=WordTokenizer.build(["a small red bird"]),
                       embed_dim=embed_dim).save_pretrained(out)
    return out


def _interaction_model(W: Path) -> Path:
    import torch

    from imagetext.registry import MATCHERS
    from imagetext.tokenizer import WordTokenizer

    out = W / "inter"
    if not out.is_dir():
        torch.manual_seed(4)
        MATCHERS.build("scan_tiny", tokenizer=WordTokenizer.build(["a small red bird"])).save_pretrained(out)
    return out


def test_index_built_by_another_model(W):
    # another dimension: refused, naming both dimensions
    other = _other_model(W, "other8", 8)
    check_case(["index", "search", "--index", W / "gallery", "--model", other, "--text", "bird"], 2,
               ["--model", "8-d embeddings", "16-d", "built by another model"])
    # same dimension, other weights: searched, with a warning that the spaces may differ
    same = _other_model(W, "other16", 16)
    r = check_case(["index", "search", "--index", W / "gallery", "--model", same, "--text", "bird", "-k", "3"], 0,
                   ["warning", "not the model that built the index"])
    assert len(r.out.strip().splitlines()) == 3
    # the model that built it: no warning
    r = run_cli(["index", "search", "--index", W / "gallery", "--model", W / "model", "--text", "bird", "-k", "3"])
    assert r.code == 0 and "warning" not in r.err


@pytest.mark.parametrize("argv,words", [
    (["index", "build", "--model", "{inter}", "--images", "dataset:birds:test:5", "--out", "{W}/g3"],
     ["--model", "not an embedding matcher", "cannot be indexed", "--rerank"]),
    (["index", "search", "--index", "{W}/gallery", "--model", "{inter}", "--text", "bird"],
     ["--model", "not an embedding matcher"]),
])
def test_interaction_model_cannot_index(W, argv, words):
    inter = _interaction_model(W)
    check_case([a.format(W=W, inter=inter) for a in argv], 2, words)
    assert not (W / "g3").exists()


@pytest.mark.parametrize("make,words", [
    (lambda p: p.write_bytes(b""), ["query.png", "not an image"]),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), ["query.png", "not an image"]),  # broken PNG
    (lambda p: None, ["query.png", "not found"]),
])
def test_unreadable_query_image(W, tmp_path, make, words):
    p = tmp_path / "query.png"
    make(p)
    check_case(["index", "search", "--index", W / "gallery", "--image", p], 2, words)


def test_truncated_index_is_detected(W, tmp_path):
    import shutil

    g = tmp_path / "g"
    shutil.copytree(W / "gallery", g)
    p = g / "index.faiss"
    p.write_bytes(p.read_bytes()[:-64])
    check_case(["index", "search", "--index", g, "--text", "bird"], 2, ["index.faiss", "truncated"])
    # the same size with one id altered: caught by the sha256 of ids.json
    shutil.rmtree(g)
    shutil.copytree(W / "gallery", g)
    ids = (g / "ids.json").read_text()
    (g / "ids.json").write_text(ids.replace("0", "1", 1))
    check_case(["index", "search", "--index", g, "--text", "bird"], 2, ["ids.json", "sha256"])


def test_tampered_index_is_detected(W, tmp_path):
    import shutil

    g = tmp_path / "g"
    shutil.copytree(W / "gallery", g)
    data = bytearray((g / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (g / "index.faiss").write_bytes(bytes(data))
    check_case(["index", "search", "--index", g, "--text", "bird"], 2, ["index.faiss", "sha256"])
