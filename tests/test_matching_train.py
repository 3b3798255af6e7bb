"""Matching with DBL on the shared loop: every regime trains, exports and scores; anchors stay frozen; resume is exact."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imagetext.errors import ConfigError, UserError
from matching import EmbeddingMatcher
from matching.train import MatchingConfig, cosine_momentum, main

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs/matching/birds_tiny.yaml")


@pytest.fixture(scope="module")
def anchor_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("anchor")
    res = main(["--config", TINY, f"output_dir={out}", "max_steps=2", "checkpoint_every=0"])
    assert res["regime"] == "anchor" and "anchor" not in res
    return out


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_anchor_export_round_trips(anchor_dir):
    m = EmbeddingMatcher.from_pretrained(anchor_dir)  # the run folder finds final/
    m2 = EmbeddingMatcher.from_pretrained(anchor_dir / "final")
    caps = ["a small red bird", "a bird with a long tail"]
    assert torch.allclose(m.embed_texts(caps), m2.embed_texts(caps))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    e = m.embed_images(x)
    assert e.shape == (2, 16) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("regime", ["offline", "online", "momentum"])
def test_boosted_regimes_train_and_report_anchor_and_target(tmp_path, anchor_dir, regime):
    extra = [f"anchor_path={anchor_dir}"] if regime == "offline" else []
    before = _weights(EmbeddingMatcher.from_pretrained(anchor_dir))
    res = main(["--config", TINY, f"output_dir={tmp_path}", f"regime={regime}", "max_steps=2", "checkpoint_every=0",
                *extra])
    assert res["regime"] == regime and res["steps"] == 2
    for side in ("target", "anchor"):
        assert 0.0 <= res[side]["rsum"] <= 600.0
    logs = res["last_logs"]
    assert any(k.endswith("boost_loss") for k in logs)
    EmbeddingMatcher.from_pretrained(tmp_path / "final")
    after = _weights(EmbeddingMatcher.from_pretrained(anchor_dir))
    assert all(torch.equal(before[k], after[k]) for k in before)  # the frozen anchor's files are untouched


def test_offline_target_starts_from_the_anchor_and_the_anchor_gets_no_gradient(anchor_dir):
    from imagetext.config import load_config
    from matching.train import MatchingTask

    cfg = load_config(MatchingConfig, TINY, ["regime=offline", f"anchor_path={anchor_dir}", "output_dir=/tmp/unused"])
    task = MatchingTask(cfg, None)
    a, t = _weights(task.anchor), _weights(task.models["target"])
    assert all(torch.equal(a[k], t[k]) for k in a)
    from imagetext.data.config import build_split
    from imagetext.data.dataset import ImageTextDataset, collate_fn

    ds = ImageTextDataset(build_split(cfg.data, "train"), image_size=32)
    batch = collate_fn([ds[i] for i in range(8)])
    out = task.training_step(batch, 10)
    sum(v for k, v in out.items() if k.endswith("_loss")).backward()
    assert all(p.grad is None for p in task.anchor.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.models["target"].parameters())


def test_momentum_resume_is_exact(tmp_path):
    common = ["--config", TINY, "regime=momentum", "checkpoint_every=2", "max_steps=4"]
    main(common + [f"output_dir={tmp_path / 'a'}"])
    main(common + [f"output_dir={tmp_path / 'b'}", "max_steps=2"])
    main(common + [f"output_dir={tmp_path / 'b'}", "resume=latest"])
    a = _weights(EmbeddingMatcher.from_pretrained(tmp_path / "a"))
    b = _weights(EmbeddingMatcher.from_pretrained(tmp_path / "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100, 0.99, 0.999) == pytest.approx(0.99)
    assert cosine_momentum(100, 100, 0.99, 0.999) == pytest.approx(0.999)
    assert 0.99 < cosine_momentum(50, 100, 0.99, 0.999) < 0.999


@pytest.mark.parametrize("overrides,error,words", [
    (["regime=offline"], ConfigError, "anchor_path"),
    (["regime=offline", "anchor_path=/nonexistent/x"], UserError, "not a saved matcher"),
    (["regime=online", "branches=1"], ConfigError, "branches"),
    (["momentum.start=0.9", "momentum.end=0.5"], ConfigError, "momentum"),
    (["batch_size=1000"], ConfigError, "larger than"),
    (["regime=anchr"], ConfigError, "regime"),
])
def test_bad_config_is_a_clear_error(tmp_path, overrides, error, words):
    with pytest.raises(error, match=words):
        main(["--config", TINY, f"output_dir={tmp_path}", *overrides])


def test_validation_on_held_out_training_images_exports_the_best_state(tmp_path):
    import json

    res = main(["--config", TINY, f"output_dir={tmp_path}", "max_steps=4", "checkpoint_every=0", "validate_every=2",
                "best_metric=rsum", "eval.val_holdout=8"])
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["metric"] == "rsum" and best["step"] in (2, 4) and res["best_step"] == best["step"]
    with pytest.raises(ConfigError, match="val_holdout"):
        main(["--config", TINY, f"output_dir={tmp_path / 'b'}", "validate_every=2", "best_metric=rsum"])
