"""``bench run | list | report MATRIX.yaml [key=value ...]``: the command line of the runner.

``scripts/bench.py`` calls :func:`main`; :func:`add_parser` lets a ``t2i bench`` group
reuse the same parser.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from ..cliargs import positive_int
from ..errors import UserError

EPILOG = """\
A matrix YAML lists cell specs (name, command template, axes, fixed params); every
combination of axis values is one cell. A cell's command must exit 0 after writing
<output_dir>/results.json; the runner then records docs/results/cells/<matrix>/<cell>.json
(params, results, provenance). Cells already recorded with the same params are skipped,
so a matrix fills over several runs. Trailing key=value arguments override the matrix
YAML (e.g. timeout_s=600 report.group_by=[variant]).

examples:
  python scripts/bench.py list configs/bench/example.yaml
  python scripts/bench.py run configs/bench/example.yaml --max-cells 2
  python scripts/bench.py run configs/bench/example.yaml --only 'toy-small-*' --force toy-small-seed0
  python scripts/bench.py report configs/bench/example.yaml
  python scripts/bench.py report configs/bench/example.yaml --write docs/RESULTS.md --section example
"""


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{v} must be > 0")
    return v


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("matrix", type=Path, help="matrix YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the matrix YAML")
    p.add_argument("--results-dir", help="root of the cell JSONs (default: the matrix's results_dir, "
                   "docs/results/cells); the matrix name is appended")
    p.add_argument("--runs-root", help="scratch root of the cells' output_dir (default: the matrix's "
                   "runs_root, runs/bench); the matrix name is appended")


def _fill(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_cmd", metavar="{run,list,report}")
    p = sub.add_parser("run", help="run the cells not yet done", description="Run the cells not yet done, "
                       "in order (--jobs N: N at a time); a failing cell is reported and the next one runs (exit 1 at the end).")
    _common(p)
    p.add_argument("--only", action="append", default=[], metavar="GLOB",
                   help="only cells whose id matches (repeatable), e.g. 'pretrain-scenes-*'")
    p.add_argument("--force", action="append", default=[], metavar="ID",
                   help="rerun this cell (a glob; repeatable) even if done")
    p.add_argument("--max-cells", type=positive_int, metavar="N", help="run at most N cells, then stop")
    p.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                   help="per-cell time limit (overrides the matrix's timeout_s)")
    p.add_argument("--jobs", "-j", type=positive_int, default=1, metavar="N",
                   help="run N cells at once (default 1); a cell waits for the cells its spec `needs`. Each "
                        "command gets OMP_NUM_THREADS = cores / N unless set; e.g. 8 small cells sharing one GPU")
    p.add_argument("--order-by", metavar="KEY[,KEY]", type=lambda t: [k for k in t.split(",") if k],
                   default=[], help="run the pending cells sorted by these params (stable), e.g. 'seed': every "
                                    "spec's seed 0 before any seed 1, so a partial run completes whole comparisons")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="cells with their status (done / failed / pending / stale)",
                       description="List the cells, their status and wall time.")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("report", help="Markdown (or JSON) table from the cell JSONs",
                       description="Aggregate the recorded cells as the matrix's report: section says: "
                       "rows grouped by report.group_by, mean ± std over the rest (seeds), n shown.")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the aggregate as JSON")
    p.add_argument("--write", type=Path, metavar="FILE.md",
                   help="replace the text between <!-- bench:NAME --> and <!-- /bench:NAME --> in FILE")
    p.add_argument("--section", metavar="NAME", help="marker name for --write (default: the matrix name)")
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Resumable benchmark-matrix runner.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _fill(parser)
    return parser


def add_parser(sub: "argparse._SubParsersAction", name: str, help_text: str) -> argparse.ArgumentParser:
    """Register ``bench`` as a subcommand group of another CLI (e.g. ``t2i bench``)."""
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _fill(p)
    return p


def _load(args: argparse.Namespace):
    from .matrix import load_matrix
    from .runner import Paths

    matrix = load_matrix(args.matrix, args.overrides)
    return matrix, Paths.for_matrix(matrix, args.runs_root, args.results_dir)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_matrix

    matrix, paths = _load(args)
    summary = run_matrix(matrix, paths, only=args.only, force=args.force, max_cells=args.max_cells,
                         dry_run=args.dry_run, timeout_s=args.timeout, jobs=args.jobs, order_by=args.order_by)
    return 0 if summary.ok else 1


def cmd_list(args: argparse.Namespace) -> int:
    from .runner import list_cells

    matrix, paths = _load(args)
    rows = list_cells(matrix, paths)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["cell_id"]) for r in rows)
    for r in rows:
        extra = f"{r['wall_s']:.1f} s  {r['finished']}" if r["status"] == "done" else ""
        if r["status"] == "failed":
            extra = (r["reason"] or "").splitlines()[0] if r["reason"] else ""
        print(f"{r['cell_id']:<{width}}  {r['status']:<7}  {extra}".rstrip())
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "pending", "stale")}
    print(f"{matrix.name}: {len(rows)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items()),
          f"(records in {paths.results_dir})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report, replace_section, to_markdown

    matrix, paths = _load(args)
    report = build_report(matrix, paths)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    argv = ["python", "scripts/bench.py", "report", str(args.matrix), *args.overrides]
    if args.results_dir:
        argv += ["--results-dir", args.results_dir]
    text = to_markdown(report, matrix, command=shlex.join(argv), source=paths.results_dir)
    if args.write:
        replace_section(args.write, args.section or matrix.name, text)
        print(f"bench: wrote section {args.section or matrix.name!r} of {args.write}")
    else:
        print(text, end="")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; 0 ok, 1 a cell failed, 2 a user error (one line, no traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"bench: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted (cells already recorded are kept)", file=sys.stderr)
        return 130
