"""Run a matrix cell by cell, recording each finished cell as one JSON with its provenance.

The contract with a cell's command: it exits 0 after writing ``<output_dir>/results.json``
(a dict of metrics, nested or flat), and optionally its resolved ``config.yaml`` beside
it (copied into the record as ``config``). The runner then writes
``<results_dir>/<matrix>/<cell_id>.json`` atomically with the params, the results and
the provenance (command, commit and dirty flag, seed, wall time, versions, machine).

That file is the only mark of "done": a cell whose JSON exists with the same params is
skipped, so a matrix fills over several runs, here or on a lent GPU machine (commit the
JSONs). A failing or timed-out cell writes nothing there; its stdout/stderr stay in its
cell folder (``bench.stdout.log`` / ``bench.stderr.log`` beside ``run/``, the command's
output_dir, which starts empty so a training script's "output_dir holds another run"
check is satisfied), the tail of stderr is printed and the next cell runs. The cell folder
is the runner's scratch space: it is emptied before a cell (re)runs, so a stale
results.json can never be taken for a new one.
"""
from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

import yaml

from ..errors import UserError
from .matrix import Cell, Matrix

SCHEMA = 1
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.yaml"
FAILURE_FILE = "bench_failure.json"  # in output_dir: why the last attempt failed (never "done")
STDOUT_LOG = "bench.stdout.log"
STDERR_LOG = "bench.stderr.log"


# ----------------------------------------------------------------- paths and status
@dataclass
class Paths:
    """Where a matrix's scratch runs and cell JSONs go."""

    runs_root: Path
    results_dir: Path

    @classmethod
    def for_matrix(cls, matrix: Matrix, runs_root: Optional[str] = None, results_dir: Optional[str] = None) -> "Paths":
        return cls(Path(runs_root or matrix.config.runs_root) / matrix.name,
                   Path(results_dir or matrix.config.results_dir) / matrix.name)

    def cell_dir(self, cell: Cell) -> Path:
        """The cell's scratch folder: logs, the failure note, and the command's output_dir."""
        return self.runs_root / cell.id

    def output_dir(self, cell: Cell) -> Path:
        return self.cell_dir(cell) / "run"

    def record(self, cell: Cell) -> Path:
        return self.results_dir / f"{cell.id}.json"


def read_record(path: Path) -> Optional[Dict[str, Any]]:
    """A cell JSON, or None when it is missing or unreadable (a half-written one cannot exist)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _same(a: Any, b: Any) -> bool:
    # JSON turns tuples into lists and may turn 1.0 into 1; compare through JSON
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def cell_status(cell: Cell, paths: Paths) -> str:
    """``done`` (JSON with the same params), ``stale`` (JSON with other params), ``failed``
    (no JSON; the last attempt here failed) or ``pending``. Only ``done`` is skipped."""
    rec = read_record(paths.record(cell))
    if rec is None:
        return "failed" if (paths.cell_dir(cell) / FAILURE_FILE).is_file() else "pending"
    return "done" if _same(rec.get("params"), cell.params) else "stale"


# ----------------------------------------------------------------- provenance
def _git(args: Sequence[str], cwd: Path) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(cwd: Path) -> Dict[str, Any]:
    """The commit of ``cwd``'s repository and whether tracked files differ from it."""
    commit = _git(["rev-parse", "HEAD"], cwd)
    dirty = None
    if commit is not None:
        status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
        dirty = bool(status) if status is not None else None
    return {"commit": commit, "dirty": dirty}


def _version(pkg: str) -> Optional[str]:
    try:
        return metadata.version(pkg)  # no import: torch takes seconds to import
    except metadata.PackageNotFoundError:
        return None


def gpu_names() -> List[str]:
    """Names of the NVIDIA GPUs ``nvidia-smi`` sees (empty without one); no torch import."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def machine_info() -> Dict[str, Any]:
    """What ran the cell: versions and hardware (read once per run)."""
    gpus = gpu_names()
    return {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and os.replace, so a killed run leaves no half file."""
    from ..cliargs import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


# ----------------------------------------------------------------- one cell
@dataclass
class CellOutcome:
    """What happened to one cell in a run."""

    cell_id: str
    status: str  # done | skipped | failed | dry-run
    wall_s: float = 0.0
    message: str = ""
    record: Optional[Path] = None


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _kill(proc: "subprocess.Popen[bytes]") -> None:
    """Stop the command and everything it started (accelerate launch spawns workers)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGTERM)
        else:  # pragma: no cover - Windows
            proc.terminate()
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        if hasattr(os, "killpg"):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # recorded with every cell


def run_cell(cell: Cell, paths: Paths, *, timeout_s: Optional[float], git: Dict[str, Any],
             machine: Dict[str, Any], matrix_file: Optional[str], cwd: Path,
             python: str = sys.executable, tail_lines: int = 20, resume_partial: bool = False,
             env_extra: Optional[Dict[str, str]] = None,
             on_start: Optional[Callable[["subprocess.Popen[bytes]"], None]] = None) -> CellOutcome:
    """Run one cell's command and, on success, write its record. Never raises for a failing command.

    ``resume_partial``: keep what an interrupted earlier attempt left in the output folder (the
    command continues it with ``resume=latest``); the stale results.json is still removed.
    ``env_extra``: more environment for the command; ``on_start`` receives the started process
    (the parallel runner keeps them, to stop them all on Ctrl-C).
    """
    cell_dir, out_dir = paths.cell_dir(cell), paths.output_dir(cell)
    if cell_dir.exists() and not resume_partial:
        shutil.rmtree(cell_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS_FILE).unlink(missing_ok=True)
    cmd = cell.command(out_dir, python)
    env = {**os.environ, **(env_extra or {}), "BENCH_CELL_ID": cell.id, "BENCH_OUTPUT_DIR": str(out_dir)}
    started = _now()
    t0 = time.perf_counter()
    timed_out = False
    with open(cell_dir / STDOUT_LOG, "wb") as so, open(cell_dir / STDERR_LOG, "wb") as se:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=so, stderr=se, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=hasattr(os, "killpg"))
        except OSError as e:
            why = f"cannot start {cmd[0]!r}: {e.strerror or e}"
            write_json_atomic(cell_dir / FAILURE_FILE, {"cell_id": cell.id, "reason": why, "command": cmd})
            return CellOutcome(cell.id, "failed", 0.0, why)
        if on_start is not None:
            on_start(proc)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc, timed_out = proc.returncode, True
        except KeyboardInterrupt:
            _kill(proc)
            raise
    wall = time.perf_counter() - t0
    finished = _now()

    def failed(why: str) -> CellOutcome:
        write_json_atomic(cell_dir / FAILURE_FILE, {"cell_id": cell.id, "reason": why, "returncode": rc,
                                                   "wall_s": round(wall, 3), "started": started,
                                                   "finished": finished, "command": cmd})
        tail = _tail(cell_dir / STDERR_LOG, tail_lines) or _tail(cell_dir / STDOUT_LOG, tail_lines)
        msg = why + (f"\n--- last lines of {cell_dir / STDERR_LOG} ---\n{tail}" if tail else "")
        return CellOutcome(cell.id, "failed", wall, msg)

    if timed_out:
        return failed(f"timed out after {timeout_s:g} s")
    if rc != 0:
        return failed(f"exited with code {rc}")
    res_path = out_dir / RESULTS_FILE
    if not res_path.is_file():
        return failed(f"exited 0 but wrote no {res_path}")
    try:
        results = json.loads(res_path.read_text(encoding="utf-8"))
    except ValueError as e:
        return failed(f"{res_path}: not valid JSON ({e})")
    if not isinstance(results, dict):
        return failed(f"{res_path}: expected a JSON object of metrics, got {type(results).__name__}")
    record = {
        "schema": SCHEMA,
        "matrix": cell.matrix,
        "matrix_file": matrix_file,
        "cell_id": cell.id,
        "spec": cell.spec.name,
        "params": cell.params,
        "results": results,
        "provenance": {
            "command": cmd,
            "command_line": shlex.join(cmd),
            "cwd": str(cwd),
            "output_dir": str(out_dir),
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "seed": cell.seed,
            "wall_s": round(wall, 3),
            "started": started,
            "finished": finished,
            **machine,
            **({"env": dict(env_extra)} if env_extra else {}),
            # the thread counts the command ran with (None: unset, so torch used every core): on a
            # CPU they change the float summation order, and a seeded training run's weights with it
            "thread_env": {k: env.get(k) for k in THREAD_VARS},
        },
    }
    cfg_path = out_dir / CONFIG_FILE
    if cfg_path.is_file():  # a command that saves its resolved config gets it into the record
        try:
            record["config"] = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            record["config"] = None
    path = paths.record(cell)
    write_json_atomic(path, record)
    return CellOutcome(cell.id, "done", wall, "", path)


# ----------------------------------------------------------------- a matrix
@dataclass
class RunSummary:
    """Counts of one ``bench run``; ``ok`` is False when any cell failed."""

    outcomes: List[CellOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0


def select_cells(matrix: Matrix, only: Sequence[str] = ()) -> List[Cell]:
    """Cells whose id matches any glob in ``only`` (all when empty); a glob matching none is an error."""
    if not only:
        return list(matrix.cells)
    for pat in only:
        if not any(fnmatch.fnmatchcase(c.id, pat) for c in matrix.cells):
            raise UserError(f"--only {pat!r} matches no cell of {matrix.name}; see `bench list`")
    return [c for c in matrix.cells if any(fnmatch.fnmatchcase(c.id, p) for p in only)]


def order_cells(cells: Sequence[Cell], keys: Sequence[str], matrix_name: str = "matrix") -> List[Cell]:
    """``cells`` stably sorted by the values of the param ``keys`` (cells lacking a key go last)."""
    for key in keys:
        if not any(key in c.params for c in cells):
            known = sorted({k for c in cells for k in c.params})
            raise UserError(f"--order-by {key!r}: no cell of {matrix_name} has that param; known: {', '.join(known)}")

    def rank(c: Cell) -> tuple:
        # (missing, type, value): values of one key may mix types across specs (2 vs "2")
        return tuple((0, type(c.params[k]).__name__, c.params[k]) if k in c.params else (1, "", 0) for k in keys)

    return sorted(cells, key=rank)


def run_matrix(matrix: Matrix, paths: Paths, *, only: Sequence[str] = (), force: Sequence[str] = (),
               max_cells: Optional[int] = None, dry_run: bool = False, timeout_s: Optional[float] = None,
               cwd: Optional[Path] = None, python: str = sys.executable,
               log: Optional[TextIO] = None, jobs: int = 1, order_by: Sequence[str] = ()) -> RunSummary:
    """Run the pending cells of ``matrix`` in order, ``jobs`` at a time.

    Args:
        only: globs on cell ids; only matching cells are considered.
        force: globs on cell ids to rerun even when done.
        max_cells: run at most this many cells (skipped ones do not count).
        dry_run: print what would run, run nothing.
        timeout_s: per-cell limit, overriding the matrix's and the spec's.
        jobs: cells run at once. A cell starts only when the cells it ``needs`` are done (before
            this run or in it); one whose needs failed, or are neither done nor selected, fails
            without running. With ``jobs > 1`` each command gets ``OMP_NUM_THREADS`` = cores /
            jobs unless the environment sets it, and its record says how many cells shared the machine.
        order_by: param keys (e.g. ``seed``) the pending cells are sorted by, stably, before ``max_cells``
            and scheduling: ``["seed"]`` runs every spec's seed 0 before any seed 1, so a matrix filled
            over several sessions completes whole comparisons first. A key no cell has is an error.
    Returns:
        A summary; failed cells are in it, never raised.
    """
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    cwd = Path(cwd or Path.cwd())
    log = log or sys.stdout
    for pat in force:
        if not any(fnmatch.fnmatchcase(c.id, pat) for c in matrix.cells):
            raise UserError(f"--force {pat!r} matches no cell of {matrix.name}; see `bench list`")
    cells = select_cells(matrix, only)
    done_before = {c.id for c in matrix.cells if cell_status(c, paths) == "done"}  # read once: selection and needs
    todo: List[Cell] = []
    summary = RunSummary()
    for c in cells:
        forced = any(fnmatch.fnmatchcase(c.id, p) for p in force)
        if c.id in done_before and not forced:
            summary.outcomes.append(CellOutcome(c.id, "skipped", message="done"))
        else:
            todo.append(c)
    if order_by:
        todo = order_cells(todo, order_by, matrix.name)
    if max_cells is not None:
        todo = todo[:max_cells]
    n_skip = summary.count("skipped")
    print(f"bench {matrix.name}: {len(cells)} cells selected, {n_skip} done (skipped), {len(todo)} to run"
          + (f", {jobs} at a time" if jobs > 1 and not dry_run else "") + (" [dry run]" if dry_run else ""),
          file=log, flush=True)
    if not todo:
        return summary
    if dry_run:
        for i, c in enumerate(todo, 1):
            after = f"  (after {', '.join(c.needs)})" if c.needs else ""
            print(f"[{i}/{len(todo)}] {c.id}: {shlex.join(c.command(paths.output_dir(c), python))}{after}",
                  file=log, flush=True)
            summary.outcomes.append(CellOutcome(c.id, "dry-run"))
        return summary
    git = git_state(cwd)
    machine = machine_info()
    if git.get("dirty"):
        print("bench: warning: the working tree has uncommitted changes; records will say git_dirty: true",
              file=log, flush=True)
    env_extra: Dict[str, str] = {}
    if jobs > 1:
        machine = {**machine, "concurrent_cells": jobs}
        if "OMP_NUM_THREADS" not in os.environ:
            env_extra["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    mfile = str(matrix.path) if matrix.path else None
    position = {c.id: i for i, c in enumerate(todo, 1)}
    # forced cells are redone: what needs them waits for the new run
    status = {cid: "done" for cid in done_before - set(position)}
    waiting = list(todo)
    procs: Dict[str, "subprocess.Popen[bytes]"] = {}

    def head(c: Cell) -> str:
        return f"[{position[c.id]}/{len(todo)}] {c.id}"

    def blocked(c: Cell) -> Optional[str]:
        """Why ``c`` can never start in this run (None: it can, now or later)."""
        for n in c.needs:
            if status.get(n) == "failed":
                return f"needs {n}, which failed"
            if status.get(n) != "done" and n not in position:
                return f"needs {n}, which is not done (run it first, or select it too)"
        return None

    def start(c: Cell) -> CellOutcome:
        limit = timeout_s if timeout_s is not None else (
            c.spec.timeout_s if c.spec.timeout_s is not None else matrix.config.timeout_s)
        print(f"{head(c)} ...", file=log, flush=True)
        return run_cell(c, paths, timeout_s=limit, git=git, machine=machine, matrix_file=mfile, cwd=cwd,
                        python=python, resume_partial=matrix.config.resume_partial, env_extra=env_extra,
                        on_start=lambda p, cid=c.id: procs.__setitem__(cid, p))

    def finish(c: Cell, out: CellOutcome) -> None:
        procs.pop(c.id, None)
        summary.outcomes.append(out)
        status[c.id] = "done" if out.status == "done" else "failed"
        if out.status == "done":
            print(f"{head(c)}: done in {out.wall_s:.1f} s -> {out.record}", file=log, flush=True)
        else:
            print(f"{head(c)}: FAILED: {out.message}", file=log, flush=True)

    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    running: Dict["Future[CellOutcome]", Cell] = {}
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        while waiting or running:
            for c in list(waiting):  # never-startable cells fail at once, in order
                why = blocked(c)
                if why is not None:
                    waiting.remove(c)
                    finish(c, CellOutcome(c.id, "failed", 0.0, f"not run: {why}"))
            ready = [c for c in waiting if all(status.get(n) == "done" for n in c.needs)]
            for c in ready[:jobs - len(running)]:
                waiting.remove(c)
                running[pool.submit(start, c)] = c
            if not running:
                for c in waiting:  # what is left waits on cells that wait on it (a cycle)
                    finish(c, CellOutcome(c.id, "failed", 0.0, f"not run: needs {', '.join(c.needs)}, "
                                                                "which never became done (a cycle?)"))
                waiting.clear()
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in done:
                finish(running.pop(f), f.result())
    except KeyboardInterrupt:
        for p in list(procs.values()):
            _kill(p)
        raise
    finally:
        pool.shutdown(wait=True)
    done_n, failed = summary.count("done"), summary.count("failed")
    print(f"bench {matrix.name}: {done_n} done, {failed} failed, {n_skip} skipped"
          + (f"; failed: {', '.join(o.cell_id for o in summary.outcomes if o.status == 'failed')}" if failed else ""),
          file=log, flush=True)
    return summary


def list_cells(matrix: Matrix, paths: Paths) -> List[Dict[str, Any]]:
    """Each cell's id, status and (when recorded) wall time and finish time."""
    rows = []
    for c in matrix.cells:
        st = cell_status(c, paths)
        rec = read_record(paths.record(c)) if st in ("done", "stale") else None
        prov = (rec or {}).get("provenance", {}) if st == "done" else {}
        fail = read_record(paths.cell_dir(c) / FAILURE_FILE) if st == "failed" else None
        rows.append({"cell_id": c.id, "status": st, "wall_s": prov.get("wall_s"),
                     "finished": prov.get("finished"), "params": c.params,
                     "reason": (fail or {}).get("reason")})
    return rows
