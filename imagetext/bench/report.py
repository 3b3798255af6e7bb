"""Tables from cell JSONs: rows grouped by params, mean ± std over the rest (seeds).

std is the sample standard deviation (ddof 1) and every row shows ``n`` as
done/expected, so a row averaged over fewer seeds than planned says so; a column
whose metric is missing from some cells shows its own ``(n=k)``. Cells not done (or
recorded with other params) are listed under the table, never silently dropped.
"""
from __future__ import annotations

import fnmatch
import math
import re
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import UserError
from .matrix import Matrix, MetricSpec
from .runner import Paths, cell_status, read_record


def lookup(results: Dict[str, Any], key: str) -> Optional[float]:
    """``results[key]`` for a flat key, else the dotted path (``t2i.R@1``); None when absent."""
    if key in results:
        node: Any = results[key]
    else:
        node = results
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def summarize(values: Sequence[float]) -> Dict[str, Any]:
    """mean, std (ddof 1; None for one value) and n of ``values``."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = statistics.stdev(vals) if len(vals) > 1 else None
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals), "values": vals}


def fmt_stat(s: Dict[str, Any], fmt: str, row_n: int) -> str:
    """``mean ± std`` (just the value for one), ``–`` for none; ``(n=k)`` when k differs from the row's n."""
    if not s["n"]:
        return "–"
    def f(x: float) -> str:  # an integer format ("d") shows a mean rounded
        return format(round(x) if fmt.endswith("d") else x, fmt)

    mean = s["mean"]
    text = f(mean) if math.isfinite(mean) else str(mean)
    if s["std"] is not None:
        text += f" ± {f(s['std'])}"
    if s["n"] != row_n:
        text += f" (n={s['n']})"
    return text


def build_report(matrix: Matrix, paths: Paths) -> Dict[str, Any]:
    """Aggregate the matrix's cell JSONs per its ``report`` spec.

    Returns:
        ``{"matrix", "group_by", "metrics", "rows": [{"group", "n", "expected", "cells",
        "metrics": {label: {mean, std, n, values}}, "wall_s": {...}}], "missing",
        "stale", "problems", "commits", "machines"}``.
    """
    spec = matrix.config.report
    metrics: List[MetricSpec] = matrix.metrics()
    cells = [c for c in matrix.cells if spec.only is None or fnmatch.fnmatchcase(c.id, spec.only)]
    rows: Dict[str, Dict[str, Any]] = {}
    missing, stale, problems = [], [], []
    commits, machines = set(), set()
    for c in cells:
        group = {g: c.params.get(g) for g in spec.group_by}
        key = repr(sorted(group.items(), key=lambda kv: kv[0]))
        row = rows.setdefault(key, {"group": group, "expected": 0, "records": []})
        row["expected"] += 1
        st = cell_status(c, paths)
        if st in ("pending", "failed"):
            missing.append(c.id)
            continue
        if st == "stale":
            stale.append(c.id)
            continue
        rec = read_record(paths.record(c)) or {}
        row["records"].append(rec)
        prov = rec.get("provenance", {})
        commits.add((prov.get("git_commit") or "unknown")[:10] + ("+dirty" if prov.get("git_dirty") else ""))
        machines.add(prov.get("gpu") or f"{prov.get('cpu_count')} CPU")
        for m in metrics:
            if lookup(rec.get("results", {}), m.key) is None and not m.optional:
                problems.append(f"{c.id}: no numeric metric {m.key!r} in its results")
    out_rows = []
    for row in rows.values():
        recs = row.pop("records")
        r: Dict[str, Any] = {"group": row["group"], "n": len(recs), "expected": row["expected"],
                             "cells": [rec.get("cell_id") for rec in recs], "metrics": {}}
        for m in metrics:
            vals = [v for v in (lookup(rec.get("results", {}), m.key) for rec in recs) if v is not None]
            r["metrics"][m.label or m.key] = summarize(vals)
        walls = [rec.get("provenance", {}).get("wall_s") for rec in recs]
        r["wall_s"] = summarize([w for w in walls if isinstance(w, (int, float))])
        out_rows.append(r)
    return {"matrix": matrix.name, "matrix_file": str(matrix.path) if matrix.path else None,
            "group_by": list(spec.group_by), "metrics": [m.label or m.key for m in metrics],
            "rows": out_rows, "missing": missing, "stale": stale, "problems": problems,
            "commits": sorted(commits), "machines": sorted(machines)}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Dict[str, Any], matrix: Matrix, command: Optional[str] = None,
                source: Optional[Path] = None) -> str:
    """A Markdown table of ``report`` with n, the missing cells and where the numbers come from."""
    spec = matrix.config.report
    metrics = matrix.metrics()
    head = [*report["group_by"], "n", *(m.label or m.key for m in metrics)]
    if spec.wall_time:
        head.append("wall (s)")
    lines = []
    if spec.title:
        lines += [f"**{spec.title}**", ""]
    lines += ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        cells = [str(r["group"][g]) for g in report["group_by"]]
        cells.append(f"{r['n']}/{r['expected']}")
        cells += [fmt_stat(r["metrics"][m.label or m.key], m.fmt, r["n"]) for m in metrics]
        if spec.wall_time:
            cells.append(fmt_stat(r["wall_s"], ".1f", r["n"]))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    lines.append("Mean ± sample std (ddof 1) over the cells of a row; n = cells done / planned.")
    if report["missing"]:
        lines.append(f"Missing ({len(report['missing'])}): " + ", ".join(f"`{c}`" for c in report["missing"]) + ".")
    if report["stale"]:
        lines.append(f"Stale, recorded with other params, not counted ({len(report['stale'])}): "
                     + ", ".join(f"`{c}`" for c in report["stale"]) + ".")
    for p in report["problems"]:
        lines.append(f"Problem: {p}.")
    if report["commits"]:
        lines.append(f"Commits: {', '.join(report['commits'])}; machines: {', '.join(report['machines'])}.")
    if command:
        lines.append(f"Generated by `{command}`" + (f" from `{source}/`." if source else "."))
    return "\n".join(lines) + "\n"


def replace_section(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in ``path``.

    Raises:
        UserError: the file or either marker is missing (the message shows the markers to add).
    """
    from ..cliargs import write_text_atomic

    path = Path(path)
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if not path.is_file():
        raise UserError(f"--write {path}: no such file; create it with the lines {start} and {end}")
    doc = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    found = pattern.findall(doc)
    if len(found) != 1:
        what = "not found" if not found else f"found {len(found)} times"
        raise UserError(f"--write {path}: markers {start} ... {end} {what}; add them once where the table goes")
    new = pattern.sub(lambda _: f"{start}\n{text.rstrip()}\n{end}", doc)
    write_text_atomic(path, new)
