"""scripts/gpu_session.sh, the prepared run for a lent GPU machine, in its CPU smoke mode (slow: ~1 min)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_session_smoke_runs_every_step_and_writes_its_files(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_SESSION_SMOKE": "1", "OUT": str(out), "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_session.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    log = (out / "gpu_session.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    for name in ("environment", "cuda-tests", "speed-16px", "train-dfgan_tiny", "train-galip_tiny_scl", "generate"):
        assert f"=== {name}: exit 0" in log, name
    assert "0 step(s) failed or skipped" in log
    speed = json.loads((out / "dfgan_16_cpu.json").read_text())
    assert set(speed["modes"]) == {"reference", "reference-bf16", "ours"} and speed["reference_best"]
    assert (out / "tiny_dfgan_grid.png").stat().st_size > 0
    assert not list(tmp_path.glob("gpu_session.*"))  # its scratch folder is removed


@pytest.mark.slow
def test_gpu_session_budget_skips_the_remaining_steps(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_SESSION_SMOKE": "1", "OUT": str(out), "PYTHON": sys.executable,
           "GPU_SESSION_BUDGET_S": "5", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_session.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    log = (out / "gpu_session.log").read_text()
    assert proc.returncode != 0
    assert "=== generate: skipped, the session's budget (5s) is spent" in log


def test_gpu_session_help_and_a_stray_argument():
    script = str(REPO / "scripts/gpu_session.sh")
    shown = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "make gpu-wheels" in shown.stdout and "GPU_SESSION_SMOKE=1" in shown.stdout
    stray = subprocess.run(["bash", script, "--smoke"], capture_output=True, text=True, timeout=30)
    assert stray.returncode == 2 and "unexpected argument '--smoke'" in stray.stderr and not stray.stdout
