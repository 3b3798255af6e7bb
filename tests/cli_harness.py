"""Running ``t2i`` in-process for the bad-input tables, and loading a ``scripts/*.py`` as a module.

``run_cli`` calls :func:`imagetext.cli.main` with captured stdout/stderr. Any exception
that escapes ``main`` (other than argparse's SystemExit) is what a user would see as a
traceback, so it fails the case: every row of a bad-input table asserts the exit code,
words in the message, and no traceback.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import List, Sequence

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module, so a test calls its functions and ``main`` in-process."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    traceback: str = ""


def run_cli(argv: Sequence[str]) -> CliResult:
    """Run ``t2i argv`` in this process; never raises."""
    from imagetext.cli import main

    out, err = io.StringIO(), io.StringIO()
    tb = ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse errors and --help
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        except BaseException:  # noqa: BLE001 - an escaping exception is the failure under test
            code = -1
            tb = traceback.format_exc()
    return CliResult(int(code), out.getvalue(), err.getvalue(), tb)


def check_case(argv: Sequence[str], code: int, words: List[str]) -> CliResult:
    """Assert one bad-input row: exit ``code``, no traceback, every word in stdout+stderr."""
    r = run_cli(argv)
    assert not r.traceback, f"t2i {' '.join(map(str, argv))} raised:\n{r.traceback}"
    assert "Traceback" not in r.err, r.err
    text = (r.out + r.err).lower()
    missing = [w for w in words if w.lower() not in text]
    assert r.code == code and not missing, (
        f"t2i {' '.join(map(str, argv))}: exit {r.code} (want {code}); missing {missing}\n"
        f"stdout: {r.out[-800:]}\nstderr: {r.err[-800:]}")
    return r
