"""Phase 1's claims on the pretraining matrix: each variant against plain, and label guidance
against instance contrast, paired by world, encoder pair and seed.

    python scripts/pretrain_claims.py [--cells docs/results/cells/pretrain] [--json] [--plot FIG.png]
                                      [--write docs/RESULTS.md --section pretrain-claims]

The paper's phase-1 claim (METHODS.md, section 1): a supervised contrastive term whose positives
share a class label, added to the matching loss, gives better encoders than the matching loss
alone (``plain``) and than instance-level contrast between two captions of one image
(``instance``). Every record of ``configs/bench/pretrain.yaml`` is paired with the ``plain`` cell
(and, for ``supcon``, with the ``instance`` cell) of the same world, pair (``damsm``, ``clip``)
and seed. Per comparison, the paired differences (variant minus reference; positive = the variant
is higher, which is better for every column) of:

- held-out retrieval: ``rsum`` (t2i and i2t R@1, R@5, R@10 in %, summed; 600 at best) and
  R-precision;
- label structure: the label k-NN score of the text and of the image embeddings.

Each cell is mean ± sample std over seeds, the per-seed values and how many seeds are above
zero; ``--json`` adds the one-sample t-test (``t``, ``p``) for scripts. There is no verdict
column: with 1 seed (birds) or 3 (scenes) the table shows direction and spread, and the prose
that cites it says what held. ``--plot`` draws every cell's rsum and text k-NN by variant (one
panel per world and pair, a line per seed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from imagetext.bench.paired import load_cells, lookup, paired_summary, write_table

PROG = "pretrain_claims"
VARIANTS = ("plain", "instance", "supcon", "unicl", "ce")
PAIRS = ("damsm", "clip")
# (column name, results key, format of a difference)
METRICS = (("rsum", "rsum", "{:+.1f}"), ("r_precision", "r_precision", "{:+.3f}"),
           ("knn_text", "knn_text", "{:+.3f}"), ("knn_image", "knn_image", "{:+.3f}"))
# (variant, reference): every variant against plain; the paper's sharper claim, label vs instance
COMPARISONS = tuple((v, "plain") for v in VARIANTS[1:]) + (("supcon", "instance"),)


def index(cells: Dict[str, Dict[str, Any]]) -> Dict[tuple, Dict[str, Any]]:
    """(world, pair, variant, seed) -> record, from each record's params."""
    out: Dict[tuple, Dict[str, Any]] = {}
    for cid, rec in cells.items():
        p = rec.get("params") or {}
        key = (p.get("world"), p.get("pair"), p.get("variant"), p.get("seed"))
        if None in key:
            print(f"{PROG}: skipped {cid}: its params lack world/pair/variant/seed", file=sys.stderr)
            continue
        out[key] = rec
    return out


def compare(idx: Dict[tuple, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (world, pair, comparison) that has at least one cell of the variant (``idx``: :func:`index`)."""
    worlds = sorted({k[0] for k in idx}, key=lambda w: (w != "scenes", w))
    rows = []
    for world in worlds:
        for pair in PAIRS:
            for variant, ref in COMPARISONS:
                seeds = sorted(s for (w, pr, v, s) in idx if (w, pr, v) == (world, pair, variant))
                if not seeds:
                    continue
                row: Dict[str, Any] = {"world": world, "pair": pair, "variant": variant, "reference": ref}
                for name, key, _ in METRICS:
                    diffs = {}
                    for s in seeds:
                        a = lookup(idx[(world, pair, variant, s)], key)
                        r = idx.get((world, pair, ref, s))
                        b = lookup(r, key) if r is not None else None
                        if a is not None and b is not None:
                            diffs[s] = a - b
                    row[name] = paired_summary(diffs)
                rows.append(row)
    return rows


def _cell(c: Dict[str, Any], fmt: str) -> str:
    if not c["n"]:
        return "–"
    m = fmt.format(c["mean"]) + (f" ± {fmt.format(c['std']).lstrip('+')}" if c["std"] is not None else "")
    seeds = ", ".join(fmt.format(v) for v in c["per_seed"].values())
    return f"{m} ({seeds}; {c['positive']}/{c['n']} > 0)" if c["n"] > 1 else m


def to_markdown(rows: List[Dict[str, Any]]) -> str:
    lines = ["| world | pair | variant − reference | rsum | R-precision | label k-NN (text) | label k-NN (image) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['world']} | {r['pair']} | {r['variant']} − {r['reference']} | "
                     + " | ".join(_cell(r[name], fmt) for name, _, fmt in METRICS) + " |")
    lines.append("")
    lines.append("Paired by world, pair and seed: variant minus reference, higher = the variant is better "
                 "in every column; mean ± sample std (per-seed values; seeds above zero) where there is "
                 "more than one seed. t and p per comparison: `--json`.")
    return "\n".join(lines)


def plot(idx: Dict[tuple, Dict[str, Any]], out: Path) -> Path:
    """rsum and text k-NN of every cell by variant (``idx``: :func:`index`): one column per world x pair,
    a line per seed."""
    from imagetext.bench.figures import pyplot, save_figure

    plt = pyplot()
    panels = [(w, p) for w in sorted({k[0] for k in idx}, key=lambda w: (w != "scenes", w)) for p in PAIRS
              if any(k[:2] == (w, p) for k in idx)]
    fig, axes = plt.subplots(2, max(len(panels), 1), figsize=(3.6 * max(len(panels), 1), 6.4), squeeze=False)
    for col, (world, pair) in enumerate(panels):
        seeds = sorted({k[3] for k in idx if k[:2] == (world, pair)})
        for row, (key, label) in enumerate((("rsum", "held-out rsum"), ("knn_text", "label k-NN (text)"))):
            ax = axes[row][col]
            for i, s in enumerate(seeds):
                xs, ys = [], []
                for x, v in enumerate(VARIANTS):
                    rec = idx.get((world, pair, v, s))
                    y = lookup(rec, key) if rec is not None else None
                    if y is not None:
                        xs.append(x)
                        ys.append(y)
                ax.plot(xs, ys, "o-", color=f"C{i}", alpha=0.8, label=f"seed {s}")
            if key == "knn_text":
                chance = [lookup(r, "knn_chance") for k, r in idx.items() if k[:2] == (world, pair)]
                chance = [c for c in chance if c is not None]
                if chance:
                    ax.axhline(chance[0], color="k", ls=":", lw=1, label="chance")
            ax.set_xticks(range(len(VARIANTS)))
            ax.set_xticklabels(VARIANTS, fontsize=8)
            ax.set_title(f"{world} / {pair}: {label}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7)
    return save_figure(fig, out, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=Path, default=Path("docs/results/cells/pretrain"),
                   help="the pretraining matrix's records (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="the rows as JSON (with t and p)")
    p.add_argument("--plot", type=Path, metavar="FIG.png", help="also draw every cell's rsum and text k-NN to this PNG")
    p.add_argument("--write", type=Path, metavar="FILE.md",
                   help="replace the section between <!-- bench:SECTION --> and <!-- /bench:SECTION --> with the table")
    p.add_argument("--section", default="pretrain-claims", help="the section name for --write (default: %(default)s)")
    args = p.parse_args(argv)
    if not args.cells.is_dir():
        print(f"{PROG}: error: {args.cells}: no such folder (run scripts/bench.py run configs/bench/pretrain.yaml "
              "first)", file=sys.stderr)
        return 2
    idx = index(load_cells(args.cells, PROG))  # once: a skipped record is named once
    rows = compare(idx)
    if args.write:
        if write_table(PROG, args.write, args.section, to_markdown(rows), cells=args.cells,
                       default_cells=p.get_default("cells"), default_section=p.get_default("section")):
            return 2
    else:
        print(json.dumps(rows, indent=2) if args.json else to_markdown(rows))
    if args.plot:
        print(f"{PROG}: wrote {plot(idx, args.plot)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
