"""Paired comparisons over a matrix's cell records: the pieces the claim scripts share.

A claim such as "the contrastive phase lowers FID" or "DBL beats its anchor" is tested per seed
(same world, same seed, the arms differ in one thing), so the machine's and the seed's variation
cancel; :func:`paired_summary` turns the per-seed differences into mean, spread and a count.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional


def load_cells(folder: Path, prog: str) -> Dict[str, Dict[str, Any]]:
    """Cell id -> record for every readable ``*.json`` in ``folder``; an unreadable one is named on
    stderr (as ``prog: skipped FILE: why``), never silently dropped."""
    cells = {}
    for f in sorted(Path(folder).glob("*.json")):
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            print(f"{prog}: skipped {f}: {e}", file=sys.stderr)
            continue
        if not isinstance(rec, dict):
            print(f"{prog}: skipped {f}: not a JSON object", file=sys.stderr)
            continue
        cells[f.stem] = rec
    return cells


def lookup(rec: Mapping[str, Any], dotted: str) -> Optional[float]:
    """The number at ``results.<dotted>`` of a record (``test.fid``), or None when absent or not a number."""
    v: Any = rec.get("results") or {}
    for part in dotted.split("."):
        if not isinstance(v, Mapping) or part not in v:
            return None
        v = v[part]
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def paired_summary(diffs: Mapping[Any, float]) -> Dict[str, Any]:
    """Per-seed differences -> ``per_seed`` (seed order), ``n``, ``mean``, ``std`` (sample, ddof 1; None
    below 2), ``positive`` and ``negative`` counts, and the one-sample t-test of mean 0: ``t`` and its
    two-sided ``p`` (None below 2 seeds or with no spread). With 3 seeds p is a rough guide: it
    assumes normal per-seed differences, which 3 values cannot check."""
    keys = sorted(diffs, key=lambda s: (str(type(s)), s))
    vals = [diffs[k] for k in keys]
    mean = statistics.mean(vals) if vals else None
    std = statistics.stdev(vals) if len(vals) > 1 else None
    t = p = None
    if std:  # None or 0: no t
        from scipy import stats

        t = mean / (std / math.sqrt(len(vals)))
        p = float(2 * stats.t.sf(abs(t), df=len(vals) - 1))
    return {"per_seed": {str(k): diffs[k] for k in keys}, "n": len(vals), "mean": mean, "std": std,
            "positive": sum(v > 0 for v in vals), "negative": sum(v < 0 for v in vals), "t": t, "p": p}
