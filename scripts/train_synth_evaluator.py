"""Train the ``synth`` evaluator for one world and save it under imagetext/assets/evaluators/.

Seeded and reproducible:
    python scripts/train_synth_evaluator.py --world birds
    python scripts/train_synth_evaluator.py --world scenes
Writes model.safetensors, config.json, and metrics.json (held-out accuracy, sha256, command).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from imagetext.metrics.evaluator_train import evaluate_heads, render_split, train_evaluator
from imagetext.metrics.extractors import ASSETS, sha256_of


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=["birds", "scenes"], required=True)
    p.add_argument("--n-train", type=int, default=24000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--size", type=int, default=64, help="render size; the evaluator resizes any input to this")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--pool", choices=["avg", "avgmax"], default="avg",
                   help="global pooling; avgmax keeps small objects visible (scenes)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    xtr, atr = render_split(a.world, "train", a.n_train, a.world_seed, a.size)
    xte, ate = render_split(a.world, "test", a.n_test, a.world_seed, a.size)
    model = train_evaluator(a.world, xtr, atr, epochs=a.epochs, width=a.width, seed=a.seed, pool=a.pool, lr=a.lr)
    metrics = evaluate_heads(model, xte, ate)
    out = a.out or ASSETS / f"synth_{a.world}"
    model.save_pretrained(out)
    info = {
        "world": a.world, "held_out": metrics, "n_train": a.n_train, "n_test": a.n_test,
        "sha256": sha256_of(out / "model.safetensors"), "seconds": round(time.time() - t0, 1),
        "torch": torch.__version__, "command": "python scripts/train_synth_evaluator.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out / "metrics.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
