"""`t2i ... --help` is fast and complete, checked without timing anything.

Fast: building the parser and printing help must not import torch (importing torch alone
takes seconds on a cold machine), so each `--help` runs in a fresh interpreter and we
check which modules it loaded. Complete: every subcommand has a help line and every
option a non-empty help string. (`scripts/bench_cli_help.py` measures the actual time.)
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every command path of the CLI; test_command_list_is_complete keeps this in step with
# the parser, so a new subcommand gets its help checked here automatically.
COMMANDS: List[Tuple[str, ...]] = [
    (),
    ("data",),
    ("data", "synth"),
    ("data", "inspect"),
    ("eval",),
    ("eval", "fid"),
    ("eval", "kid"),
    ("eval", "is"),
    ("eval", "rprecision"),
    ("eval", "clipscore"),
    ("eval", "retrieval"),
    ("eval", "faithfulness"),
    ("eval", "stats"),
    ("eval", "all"),
    ("index",),
    ("index", "build"),
    ("index", "search"),
    ("generate",),
    ("demo",),
]

# Modules whose import costs seconds; none may be loaded to print help.
HEAVY = ["torch", "torchvision", "transformers", "open_clip", "diffusers", "accelerate", "scipy"]

_PROBE = """\
import sys
from imagetext.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print('torch' in sys.modules)
print('MODULES', ' '.join(m for m in {heavy!r} if m in sys.modules))
print('NUMPY', 'numpy' in sys.modules)
"""


def _label(path: Tuple[str, ...]) -> str:
    return " ".join(("t2i",) + path)


def _walk(parser: argparse.ArgumentParser, path: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + (name,))


def _tree() -> Dict[Tuple[str, ...], argparse.ArgumentParser]:
    from imagetext.cli import build_parser

    return dict(_walk(build_parser()))


# --------------------------------------------------------------------------- no torch


@pytest.mark.parametrize("path", COMMANDS, ids=_label)
def test_help_does_not_import_torch(path):
    argv = list(path) + ["--help"]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv, heavy=HEAVY)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "usage:" in proc.stdout, proc.stdout
    lines = proc.stdout.splitlines()
    heavy = next(ln for ln in lines if ln.startswith("MODULES")).split()[1:]
    assert "False" in lines, f"`{_label(path)} --help` imported torch (and: {heavy})"
    assert not heavy, f"`{_label(path)} --help` imported {heavy}"


# --------------------------------------------------------------------------- help text


def test_command_list_is_complete():
    assert sorted(_tree()) == sorted(COMMANDS)


def test_every_subcommand_has_help():
    missing = []
    for path, parser in _tree().items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest: a.help for a in action._choices_actions}
                for name in action.choices:
                    if not (helped.get(name) or "").strip():
                        missing.append(_label(path + (name,)))
    assert not missing, f"subcommands without a help line: {missing}"


def _options_without_help(parser: argparse.ArgumentParser) -> List[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:  # deliberately hidden
            continue
        if not (action.help or "").strip():
            out.append("/".join(action.option_strings) or action.dest)
    return out


@pytest.mark.parametrize("path", COMMANDS, ids=_label)
def test_every_option_has_help(path):
    tree = _tree()
    assert path in tree, f"{_label(path)}: no such command"
    missing = _options_without_help(tree[path])
    assert not missing, f"`{_label(path)}`: options without help: {missing}"
