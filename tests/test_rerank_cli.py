"""`t2i eval retrieval --model EMB --rerank INTER` (retrieve-then-re-rank, issue 10) and the interaction
model's training config: JSON keys, equality with the interaction model's full ranking when the
shortlist is the whole gallery, and every bad input as a one-line message."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

try:
    from cli_harness import check_case, run_cli
except ImportError:  # tests/ collected as a package
    from tests.cli_harness import check_case, run_cli

REPO = Path(__file__).resolve().parents[1]
DATA = "dataset:birds:test:12"  # 12 images, 120 captions


@pytest.fixture(scope="module")
def W(tmp_path_factory) -> Path:
    from matching.train import main

    w = tmp_path_factory.mktemp("rerank")
    for cfg, out in (("birds_tiny", "emb"), ("birds_interaction_tiny", "inter")):
        res = main(["--config", str(REPO / f"configs/matching/{cfg}.yaml"), f"output_dir={w / out}", "max_steps=1",
                    "checkpoint_every=0", "data.synthetic.n_test=12"])
        assert 0.0 <= res["target"]["rsum"] <= 600.0
    (w / "notes.txt").write_text("not a model")
    return w


def _json(argv) -> dict:
    r = run_cli(argv)
    assert r.code == 0, r.err + r.traceback
    return json.loads(r.out)


def test_interaction_config_trains_and_exports_a_reranker(W):
    from imagetext.registry import load_saved_model
    from matching import CrossAttentionMatcher

    model = load_saved_model(W / "inter")
    assert isinstance(model, CrossAttentionMatcher) and callable(model.rerank_retrieval)
    res = json.loads((W / "inter" / "results.json").read_text())
    assert res["steps"] == 1 and set(res["target"]) >= {"i2t_r1", "t2i_r10", "rsum"}


def test_rerank_cli_reports_reranked_and_embedding_only_recall(W):
    base = ["eval", "retrieval", "--model", W / "emb", "--data", DATA, "--size", "32", "--json", "--no-progress"]
    res = _json(base + ["--rerank", W / "inter"])
    keys = {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "i2t_medr", "t2i_meanr", "rsum"}
    assert keys <= set(res) and keys <= set(res["embedding_only"])
    assert res["n_images"] == 12 and res["n_captions"] == 120
    assert res["rerank"]["k"] == 20 and (res["k_t2i"], res["k_i2t"]) == (12, 20)
    # default shortlist of 20 > 12 images: cut, with a note
    assert any("--rerank-k 20 is larger than the t2i (images) gallery of 12" in w for w in res["warnings"])
    # the embedding-only numbers are exactly what the command reports without --rerank
    plain = _json(base)
    assert {k: plain[k] for k in keys} == {k: res["embedding_only"][k] for k in keys}
    # a shortlist of 1 re-ranks nothing: the final lists are the embedding order (t2i: 12 distinct images, no
    # tied scores, so the tie rule does not matter; i2t galleries can hold duplicate captions, which tie)
    one = _json(base + ["--rerank", W / "inter", "--rerank-k", "1"])
    assert one["rerank"]["k"] == 1 and "warnings" not in one
    for key in ("t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "t2i_meanr"):
        assert one[key] == pytest.approx(plain[key]), key


def test_rerank_whole_gallery_equals_full_ranking_of_the_interaction_model(W, tmp_path):
    import torch

    from imagetext.metrics.engine import EmbeddingExtractor, extract
    from imagetext.metrics.inputs import resolve_input
    from imagetext.metrics.retrieval import retrieval_recall
    from imagetext.registry import load_saved_model
    from matching import encode_caption_words

    res = _json(["eval", "retrieval", "--model", W / "emb", "--rerank", W / "inter", "--rerank-k", "1000",
                 "--data", DATA, "--size", "32", "--json", "--no-progress"])
    assert (res["k_t2i"], res["k_i2t"]) == (12, 120)
    # the interaction model alone: every pair scored, ranked by the shared retrieval_recall
    model = load_saved_model(W / "inter").eval()

    class A:  # the options resolve_input reads
        data_root, size, no_progress = None, 32, True

    images = resolve_input(DATA, A(), what="--data")
    r = extract(EmbeddingExtractor(model, 32, method="encode_images"), images.source(), keep_features=True,
                stats=False, progress=False)
    captions = [(i, c) for i, s in enumerate(images.split.samples) for c in s.captions]
    with torch.no_grad():
        words, mask = encode_caption_words(model, [c for _, c in captions])
        full = model.score_features(torch.from_numpy(r.features), words, mask).numpy()
    want = retrieval_recall(full, np.array([i for i, _ in captions]))
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "i2t_medr", "t2i_medr", "rsum"):
        assert res[key] == pytest.approx(want[key], abs=1e-6), key
    assert res["t2i_meanr"] == pytest.approx(want["t2i_meanr"], abs=1e-6)


@pytest.mark.parametrize("argv,words", [
    (["--model", "{W}/emb", "--rerank", "{W}/emb"], ["--rerank", "not an interaction (re-ranking) model",
                                                     "rerank_retrieval", "birds_interaction_tiny.yaml"]),
    (["--model", "{W}/inter", "--rerank", "{W}/inter"], ["--model", "not an embedding matcher", "embed_images",
                                                         "as --rerank"]),
    (["--model", "{W}/inter"], ["--model", "crossattentionmatcher", "not an embedding matcher"]),
    (["--model", "{W}/emb", "--rerank", "{W}/inter", "--rerank-k", "0"], ["--rerank-k", "positive integer"]),
    (["--model", "{W}/emb", "--rerank", "{W}/inter", "--rerank-k", "-3"], ["--rerank-k"]),
    (["--model", "{W}/emb", "--rerank", "{W}/nope"], ["--rerank", "nope", "not a folder"]),
    (["--model", "{W}/emb", "--rerank", "{W}/notes.txt"], ["notes.txt", "not a folder"]),
    (["--embeddings", "{W}/x.npz", "--rerank", "{W}/inter"], ["--rerank needs --model"]),
    (["--model", "{W}/emb", "--rerank", "{W}/inter", "--protocol", "coco"], ["whole number of 1000-image folds"]),
])
def test_rerank_bad_input(W, argv, words):
    argv = ["eval", "retrieval", *[a.format(W=W) for a in argv], "--size", "32", "--no-progress"]
    if "--embeddings" not in argv:
        argv += ["--data", DATA]
    check_case(argv, 2, words)
