"""Benchmark: wall time of `t2i --help`, `t2i eval --help` and `t2i data --help`.

Each command runs as a fresh subprocess (as a user types it), N times; prints the median,
min and max in seconds. Uses the console script next to this interpreter (`.venv/bin/t2i`)
when it exists, else `python -m imagetext.cli`.

    python scripts/bench_cli_help.py            # N=10
    python scripts/bench_cli_help.py -n 20 --json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["--help"], ["eval", "--help"], ["data", "--help"]]


def t2i_command() -> List[str]:
    """The console script beside this interpreter, else on PATH, else `python -m imagetext.cli`."""
    for cand in (Path(sys.executable).parent / "t2i", ROOT / ".venv" / "bin" / "t2i"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)]
    found = shutil.which("t2i")
    if found:
        return [found]
    return [sys.executable, "-m", "imagetext.cli"]


def time_once(cmd: List[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr}")
    return dt


def bench(n: int, warmup: int) -> Dict[str, Dict[str, float]]:
    base = t2i_command()
    out: Dict[str, Dict[str, float]] = {}
    for args in COMMANDS:
        cmd = base + args
        for _ in range(warmup):  # page cache, .pyc files
            time_once(cmd)
        times = [time_once(cmd) for _ in range(n)]
        out["t2i " + " ".join(args)] = {
            "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": n,
        }
    return out


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description="time `t2i --help`, `t2i eval --help`, `t2i data --help` (subprocesses)")
    ap.add_argument("-n", "--repeats", type=int, default=10, help="timed runs per command (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first, per command (default 1)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        ap.error("--repeats must be >= 1 and --warmup >= 0")
    results = bench(args.repeats, args.warmup)
    meta = {"runner": " ".join(t2i_command()), "python": platform.python_version(), "cpus": os.cpu_count(),
            "warmup": args.warmup}
    if args.json:
        print(json.dumps({"results": results, **meta}, indent=2))
        return 0
    print(f"runner: {meta['runner']}  (python {meta['python']}, {meta['cpus']} CPUs, N={args.repeats}, warmup={args.warmup})")
    print(f"{'command':<20} {'median s':>9} {'min s':>8} {'max s':>8}")
    for name, r in results.items():
        print(f"{name:<20} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['max_s']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
