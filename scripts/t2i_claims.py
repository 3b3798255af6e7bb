"""The generation-phase claim on the t2i matrix: baseline vs ``_scl``, paired by world and seed.

    python scripts/t2i_claims.py [--cells docs/results/cells/t2i] [--json] [--plot FIG.png]
                                 [--write docs/RESULTS.md --section t2i-claims]

The paper's claim (METHODS.md, section 1): the two-branch contrastive generation phase lowers
FID, on COCO by 30.1 % (AttnGAN), 27.3 % (DM-GAN), 16.2 % (SSA-GAN) and 17.1 % (GALIP); DF-GAN is
not in that list. Every ``<config>-seed<k>`` record of ``configs/bench/t2i.yaml`` whose config
ends in ``_scl`` is paired with the baseline of the same variant, world and seed; per pair the
relative FID change ``(FID_scl - FID_base) / FID_base`` (negative = ``_scl`` better), by the
synth features and by Inception's, and the paired differences of faithfulness and IS.

Verdict, per variant and world (written out so that it can be argued with):

- ``not tested``: no seed has both arms.
- ``1 seed`` / ``2 seeds``: too few for a verdict; the direction is shown.
- ``held``: with 3 or more seeds, ``_scl`` has the lower FID on every seed by both feature sets.
- ``not held``: ``_scl`` has the lower FID on at most half of the seeds by both feature sets.
- ``mixed``: anything in between (e.g. every seed by one feature set, not by the other).

A held verdict says the direction holds at this budget, not that the paper's size does.
``--plot`` draws each cell's FID (one panel per world and feature set, a line per seed from
baseline to ``_scl``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from imagetext.bench.paired import load_cells, lookup, paired_summary, write_table

PROG = "t2i_claims"
VARIANTS = ("dfgan", "galip", "ssagan", "attngan", "dmgan")
NAMES = {"dfgan": "DF-GAN", "galip": "GALIP", "ssagan": "SSA-GAN", "attngan": "AttnGAN", "dmgan": "DM-GAN"}
PAPER_COCO_FID_GAIN = {"attngan": 30.1, "dmgan": 27.3, "ssagan": 16.2, "galip": 17.1}  # percent, METHODS.md
FIDS = (("fid", "test.fid"), ("inception_fid", "test.inception_fid"))
OTHERS = (("faithfulness", "test.faithfulness"), ("is", "test.is"))


def arms(cells: Dict[str, Dict[str, Any]]) -> Dict[tuple, Dict[str, Dict[Any, Dict[str, Any]]]]:
    """(world, variant) -> {"base": {seed: record}, "scl": {seed: record}} from the records' params."""
    out: Dict[tuple, Dict[str, Dict[Any, Dict[str, Any]]]] = {}
    for cid, rec in cells.items():
        p = rec.get("params") or {}
        config, world, variant, seed = p.get("config"), p.get("world"), p.get("variant"), p.get("seed")
        if not isinstance(config, str) or world is None or variant is None or seed is None:
            print(f"{PROG}: skipped {cid}: its params lack config/world/variant/seed", file=sys.stderr)
            continue
        arm = "scl" if config.endswith("_scl") else "base"
        out.setdefault((world, variant), {"base": {}, "scl": {}})[arm][seed] = rec
    return out


def _mean_std(vals: List[float]) -> Dict[str, Optional[float]]:
    return {"n": len(vals), "mean": statistics.mean(vals) if vals else None,
            "std": statistics.stdev(vals) if len(vals) > 1 else None}


def verdict(rel: Dict[str, Dict[str, Any]]) -> str:
    """The rule in the module docstring, from the paired relative FID changes per feature set."""
    scored = [r for r in rel.values() if r["n"]]
    if not scored:
        return "not tested"
    n = min(r["n"] for r in scored)
    if n < 3:
        return f"{n} seed{'s' if n > 1 else ''}"
    if all(r["negative"] == r["n"] for r in scored):
        return "held"
    if all(r["negative"] <= r["n"] / 2 for r in scored):
        return "not held"
    return "mixed"


def compare(by_arm: Dict[tuple, Dict[str, Dict[Any, Dict[str, Any]]]]) -> List[Dict[str, Any]]:
    """One row per (world, variant) of ``by_arm`` (:func:`arms`): both arms' means, the paired changes, the verdict."""
    rows = []
    order = {v: i for i, v in enumerate(VARIANTS)}
    for (world, variant), a in sorted(by_arm.items(), key=lambda kv: (str(kv[0][0]) != "scenes", str(kv[0][0]),
                                                                        order.get(kv[0][1], 99), str(kv[0][1]))):
        seeds = sorted(set(a["base"]) & set(a["scl"]), key=str)
        row: Dict[str, Any] = {"world": world, "variant": variant, "paired_seeds": seeds,
                               "paper_coco_fid_gain_percent": PAPER_COCO_FID_GAIN.get(variant)}
        for name, key in FIDS + OTHERS:
            row[name] = {arm: _mean_std([v for v in (lookup(r, key) for r in a[arm].values()) if v is not None])
                         for arm in ("base", "scl")}
        row["relative_fid_change_percent"] = {}
        for name, key in FIDS:
            d = {}
            for s in seeds:
                b, c = lookup(a["base"][s], key), lookup(a["scl"][s], key)
                if b is not None and c is not None and b > 0:
                    d[s] = 100.0 * (c - b) / b
            row["relative_fid_change_percent"][name] = paired_summary(d)
        row["paired_difference"] = {}
        for name, key in OTHERS:
            d = {s: lookup(a["scl"][s], key) - lookup(a["base"][s], key) for s in seeds
                 if lookup(a["scl"][s], key) is not None and lookup(a["base"][s], key) is not None}
            row["paired_difference"][name] = paired_summary(d)
        row["verdict"] = verdict(row["relative_fid_change_percent"])
        rows.append(row)
    return rows


def _ms(x: Dict[str, Any], fmt: str) -> str:
    if not x["n"]:
        return "–"
    return format(x["mean"], fmt) + (f" ± {format(x['std'], fmt)}" if x["std"] is not None else "")


def _rel(r: Dict[str, Any]) -> str:
    if not r["n"]:
        return "–"
    m = f"{r['mean']:+.1f} %" + (f" ± {r['std']:.1f}" if r["std"] is not None else "")
    return f"{m} ({', '.join(f'{v:+.1f}' for v in r['per_seed'].values())}; lower on {r['negative']}/{r['n']})"


def _diff(r: Dict[str, Any], fmt: str) -> str:
    if not r["n"]:
        return "–"
    return f"{format(r['mean'], '+' + fmt)} (higher on {r['positive']}/{r['n']})"


def to_markdown(rows: List[Dict[str, Any]]) -> str:
    lines = ["| world | variant | FID base / `_scl` | FID change, paired | Inception FID base / `_scl` | "
             "Inception FID change, paired | faithfulness `_scl` - base | IS `_scl` - base | "
             "paper (COCO FID) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = f"-{r['paper_coco_fid_gain_percent']} %" if r["paper_coco_fid_gain_percent"] else "not stated"
        rel, dif = r["relative_fid_change_percent"], r["paired_difference"]
        lines.append(
            f"| {r['world']} | {NAMES.get(r['variant'], r['variant'])} | {_ms(r['fid']['base'], '.1f')} / "
            f"{_ms(r['fid']['scl'], '.1f')} | {_rel(rel['fid'])} | {_ms(r['inception_fid']['base'], '.1f')} / "
            f"{_ms(r['inception_fid']['scl'], '.1f')} | {_rel(rel['inception_fid'])} | "
            f"{_diff(dif['faithfulness'], '.3f')} | {_diff(dif['is'], '.2f')} | {paper} | **{r['verdict']}** |")
    lines.append("")
    lines.append("Paired by world and seed; change = (`_scl` - baseline) / baseline, negative = `_scl` better, "
                 "mean ± sample std (per-seed values; seeds where `_scl` is lower). Verdict rule: "
                 "`scripts/t2i_claims.py --help`.")
    return "\n".join(lines)


def plot(by_arm: Dict[tuple, Dict[str, Dict[Any, Dict[str, Any]]]], out: Path) -> Path:
    """Each cell's test FID: one panel per world x feature set, baseline and `_scl` of a seed joined."""
    from imagetext.bench.figures import pyplot, save_figure

    plt = pyplot()
    worlds = sorted({w for w, _ in by_arm}, key=lambda w: (w != "scenes", str(w)))
    fig, axes = plt.subplots(len(worlds), len(FIDS), figsize=(11, 3.8 * len(worlds)), squeeze=False)
    for i, world in enumerate(worlds):
        variants = [v for v in VARIANTS if (world, v) in by_arm] + sorted(v for w, v in by_arm
                                                                         if w == world and v not in VARIANTS)
        for j, (name, key) in enumerate(FIDS):
            ax = axes[i][j]
            for x, v in enumerate(variants):
                arm = by_arm[(world, v)]
                for s in sorted(set(arm["base"]) | set(arm["scl"]), key=str):
                    b = lookup(arm["base"][s], key) if s in arm["base"] else None
                    c = lookup(arm["scl"][s], key) if s in arm["scl"] else None
                    if b is not None:
                        ax.scatter([x - 0.15], [b], color="C0", zorder=3)
                    if c is not None:
                        ax.scatter([x + 0.15], [c], color="C1", zorder=3)
                    if b is not None and c is not None:
                        ax.plot([x - 0.15, x + 0.15], [b, c], color="C2" if c < b else "C3", lw=1, zorder=2)
            ax.set_xlim(-0.6, len(variants) - 0.4)
            ax.set_ylabel("FID (lower is better)")
            ax.set_xticks(range(len(variants)))
            ax.set_xticklabels([NAMES.get(v, v) for v in variants])
            ax.set_title(f"{world}: test {'FID (synth features)' if name == 'fid' else 'FID (Inception)'}")
            ax.grid(axis="y", alpha=0.3)
    handles = [plt.Line2D([], [], color="C0", marker="o", ls="", label="baseline (one dot per seed)"),
               plt.Line2D([], [], color="C1", marker="o", ls="", label="_scl"),
               plt.Line2D([], [], color="C2", label="same seed, _scl lower"),
               plt.Line2D([], [], color="C3", label="same seed, _scl higher")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    return save_figure(fig, out, dpi=110, rect=(0, 0.05, 1, 1))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=Path, default=Path("docs/results/cells/t2i"),
                   help="the t2i matrix's records (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.add_argument("--plot", type=Path, metavar="FIG.png", help="also draw every cell's FID to this PNG")
    p.add_argument("--write", type=Path, metavar="FILE.md",
                   help="replace the section between <!-- bench:SECTION --> and <!-- /bench:SECTION --> with the table")
    p.add_argument("--section", default="t2i-claims", help="the section name for --write (default: %(default)s)")
    args = p.parse_args(argv)
    if not args.cells.is_dir():
        print(f"{PROG}: error: {args.cells}: no such folder (run scripts/bench.py run configs/bench/t2i.yaml first)",
              file=sys.stderr)
        return 2
    by_arm = arms(load_cells(args.cells, PROG))  # once: a skipped record is named once
    rows = compare(by_arm)
    text = json.dumps(rows, indent=2) if args.json else to_markdown(rows)
    if args.write:
        if write_table(PROG, args.write, args.section, to_markdown(rows), cells=args.cells,
                       default_cells=p.get_default("cells"), default_section=p.get_default("section")):
            return 2
    else:
        print(text)
    if args.plot:
        print(f"{PROG}: wrote {plot(by_arm, args.plot)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
