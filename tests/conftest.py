"""Fixtures shared by several test files."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_birds_matcher(tmp_path_factory) -> Path:
    """A tiny embedding matcher trained 2 steps on birds (the run folder: config.yaml, final weights).
    Trained once per session; tests copy it rather than write into it."""
    from matching.train import main

    out = tmp_path_factory.mktemp("tiny_matcher") / "model"
    main(["--config", str(REPO / "configs/matching/birds_tiny.yaml"), f"output_dir={out}", "max_steps=2",
          "checkpoint_every=0"])
    return out
