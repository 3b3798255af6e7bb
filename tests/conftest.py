"""Fixtures shared by several test files."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def subprocess_tmpdir(tmp_path_factory):
    """``TMPDIR`` inside pytest's tmp tree for the child processes the tests start: torch elastic's
    launcher (``accelerate launch``) leaves an empty ``torchelastic_*`` folder in ``$TMPDIR`` per
    launch, which piled up in /tmp run after run. Children inherit it through ``os.environ``."""
    d = tmp_path_factory.mktemp("subprocess_tmp")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old


@pytest.fixture(scope="session")
def tiny_birds_matcher(tmp_path_factory) -> Path:
    """A tiny embedding matcher trained 2 steps on birds (the run folder: config.yaml, final weights).
    Trained once per session; tests copy it rather than write into it."""
    from matching.train import main

    out = tmp_path_factory.mktemp("tiny_matcher") / "model"
    main(["--config", str(REPO / "configs/matching/birds_tiny.yaml"), f"output_dir={out}", "max_steps=2",
          "checkpoint_every=0"])
    return out
