"""Validation FID and KID against training images, one line per GAN run (its ``validation.jsonl``).

    python scripts/plot_learning_curve.py \
        --run dfgan=runs/calib/dfgan_scenes --out docs/figures/dfgan_scenes_learning_curve.png
    python scripts/plot_learning_curve.py --glob 'runs/bench/t2i/dfgan_scenes*-seed*/run' --out fig.png --json

``scripts/train_t2i.py`` appends one row per validation (``validate_every`` steps) to
``OUTPUT_DIR/validation.jsonl``; a resumed run may repeat a step (the last row wins). With
``--json`` the curves are also printed, so the numbers beside the figure come from this script.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import Dict, List


def read_curve(run: Path) -> List[Dict[str, float]]:
    """The rows of ``run/validation.jsonl`` by step (last row per step), or a clear error."""
    path = run / "validation.jsonl"
    if not path.is_file():
        raise SystemExit(f"plot_learning_curve: {path}: missing (train with validate_every > 0)")
    rows: Dict[int, Dict[str, float]] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise SystemExit(f"plot_learning_curve: {path}:{i}: not JSON") from None
        missing = [k for k in ("step", "fid", "kid") if not isinstance(row, dict) or k not in row]
        if missing:
            raise SystemExit(f"plot_learning_curve: {path}:{i}: no {', '.join(missing)} in this row")
        rows[int(row["step"])] = row
    return [rows[k] for k in sorted(rows)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", default=[], metavar="NAME=DIR", help="a run folder (repeat)")
    p.add_argument("--glob", default=None, help="run folders matching this pattern (named by their folder)")
    p.add_argument("--x", choices=["images_seen", "step"], default="images_seen", help="x axis (default images_seen)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--json", action="store_true", help="also print the curves as JSON")
    a = p.parse_args(argv)
    runs = [tuple(r.split("=", 1)) if "=" in r else (Path(r).name, r) for r in a.run]
    if a.glob:
        runs += [(Path(d).parent.name if Path(d).name == "run" else Path(d).name, d) for d in sorted(glob.glob(a.glob))]
    if not runs:
        p.error("give --run NAME=DIR or --glob PATTERN")
    curves = {name: read_curve(Path(d)) for name, d in runs}

    from imagetext.bench.figures import pyplot, save_figure

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, rows in curves.items():
        x = [r[a.x] for r in rows]
        axes[0].plot(x, [r["fid"] for r in rows], marker="o", ms=3, label=name)
        axes[1].plot(x, [r["kid"] for r in rows], marker="o", ms=3, label=name)
    for ax, what in zip(axes, ("validation FID", "validation KID")):
        ax.set_xlabel("training images seen" if a.x == "images_seen" else "steps")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, a.out, dpi=120)
    if a.json:
        print(json.dumps({k: [{kk: r[kk] for kk in ("step", "images_seen", "fid", "kid") if kk in r} for r in v]
                          for k, v in curves.items()}, indent=1))
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
