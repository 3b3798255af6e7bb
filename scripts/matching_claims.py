"""DBL's claim on the matching matrix, as paired comparisons (same world and seed), from the cell records.

    python scripts/matching_claims.py [--cells docs/results/cells/matching] [--json] [--plot FIG.png]

For every boosted cell of ``configs/bench/matching.yaml`` two comparisons, each paired by world and seed:

- **vs its own anchor** (``results.anchor``): the offline regime's frozen 300-step anchor, the
  online regime's first branch (trained alongside, same steps), the momentum regime's EMA.
- **at equal training**: offline targets (300 anchor steps + 300 boosted steps) against the
  ``anchor600-*`` cell of the same world and seed (600 plain steps from scratch); online and
  momentum targets (300 steps from scratch) against the ``anchor-*`` cell (300 plain steps).

Prints, per world x regime x mode, the test rSum difference (target minus comparison): mean ±
sample std over seeds, the per-seed values and how many are positive; ``--json`` for scripts;
``--plot`` draws every cell's test rSum (one panel per world: the plain anchors at 300 and 600
steps, then each regime x mode with its own anchor as a hollow marker).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from imagetext.bench.paired import load_cells, lookup, paired_summary

REGIMES = ("offline", "online", "momentum")


def _rsum(rec: Dict[str, Any], key: str = "target") -> Optional[float]:
    return lookup(rec, f"{key}.rsum")


def compare(cells: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows: Dict[tuple, Dict[str, Any]] = {}
    for cid, rec in cells.items():
        p = rec.get("params") or {}
        regime, mode, world, seed = p.get("regime"), p.get("mode"), p.get("world"), p.get("seed")
        if regime not in REGIMES:
            continue
        row = rows.setdefault((world, regime, mode), {"world": world, "regime": regime, "mode": mode,
                                                       "vs_own_anchor": {}, "vs_equal_training": {}})
        t = _rsum(rec)
        a = _rsum(rec, "anchor")
        if t is not None and a is not None:
            row["vs_own_anchor"][seed] = t - a
        ctrl_id = f"{'anchor600' if regime == 'offline' else 'anchor'}-{world}-seed{seed}"
        c = _rsum(cells[ctrl_id]) if ctrl_id in cells else None
        if t is not None and c is not None:
            row["vs_equal_training"][seed] = t - c
            row["equal_training_control"] = "anchor600" if regime == "offline" else "anchor"
    out = []
    for key in sorted(rows, key=lambda k: (str(k[0]), REGIMES.index(k[1]), str(k[2]))):
        row = rows[key]
        for what in ("vs_own_anchor", "vs_equal_training"):
            row[what] = paired_summary(row[what])
        out.append(row)
    return out


def _fmt(c: Dict[str, Any]) -> str:
    if not c["n"]:
        return "–"
    m = f"{c['mean']:+.1f}" + (f" ± {c['std']:.1f}" if c["std"] is not None else "")
    seeds = ", ".join(f"{v:+.1f}" for v in c["per_seed"].values())
    return f"{m} ({seeds}; {c['positive']}/{c['n']} > 0)"


def to_markdown(rows: List[Dict[str, Any]]) -> str:
    lines = ["| world | regime | mode | rSum gain vs its own anchor | rSum gain at equal training (control) |",
             "|---|---|---|---|---|"]
    for r in rows:
        ctrl = {"offline": "600-step anchor", "online": "300-step anchor", "momentum": "300-step anchor"}[r["regime"]]
        lines.append(f"| {r['world']} | {r['regime']} | {r['mode']} | {_fmt(r['vs_own_anchor'])} | "
                     f"{_fmt(r['vs_equal_training'])} ({ctrl}) |")
    return "\n".join(lines)


ORDER = [("anchor", "none"), ("anchor-600", "none")] + [(r, m) for r in REGIMES for m in ("relative", "absolute")]


def plot(cells: Dict[str, Dict[str, Any]], out: Path) -> Path:
    """Test rSum of every cell, per world: filled dots = the cell's model, hollow = its own anchor."""
    from imagetext.bench.figures import pyplot, save_figure

    plt = pyplot()

    worlds = sorted({(r.get("params") or {}).get("world") for r in cells.values()} - {None})
    fig, axes = plt.subplots(1, len(worlds), figsize=(5.5 * len(worlds), 4.2), squeeze=False)
    for ax, world in zip(axes[0], worlds):
        for x, (regime, mode) in enumerate(ORDER):
            recs = [r for r in cells.values() if (r.get("params") or {}).get("world") == world
                    and r["params"].get("regime") == regime and r["params"].get("mode") == mode]
            tv = [v for v in (_rsum(r) for r in recs) if v is not None]
            av = [v for v in (_rsum(r, "anchor") for r in recs) if v is not None]
            ax.scatter([x] * len(tv), tv, color="C0" if regime.startswith("anchor") else "C1", zorder=3,
                       label="the cell's model (one dot per seed; bar: mean)" if x == 2 and tv else None)
            ax.scatter([x + 0.15] * len(av), av, facecolors="none", edgecolors="C7", zorder=3,
                       label="its own anchor (offline: frozen 300-step anchor; online: branch 0; momentum: EMA)"
                       if x == 2 and av else None)
            if tv:
                ax.hlines(statistics.mean(tv), x - 0.25, x + 0.25, color="k", lw=1)
        ax.set_xticks(range(len(ORDER)))
        ax.set_xticklabels(["anchor\n300", "anchor\n600"] + [f"{r}\n{m[:3]}" for r, m in ORDER[2:]], fontsize=8)
        ax.set_title(f"{world}: test rSum (500 images; chance ~6.4)")
        ax.set_ylabel("rSum")
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(bottom=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    return save_figure(fig, out, dpi=110, rect=(0, 0.06, 1, 1))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="matching_claims", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=Path, default=Path("docs/results/cells/matching"),
                   help="the matching matrix's records (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.add_argument("--plot", type=Path, metavar="FIG.png", help="also draw every cell's rSum to this PNG")
    args = p.parse_args(argv)
    if not args.cells.is_dir():
        print(f"matching_claims: error: {args.cells}: no such folder (run scripts/bench.py run "
              "configs/bench/matching.yaml first)", file=sys.stderr)
        return 2
    cells = load_cells(args.cells, "matching_claims")
    rows = compare(cells)
    print(json.dumps(rows, indent=2) if args.json else to_markdown(rows))
    if args.plot:
        print(f"matching_claims: wrote {plot(cells, args.plot)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
