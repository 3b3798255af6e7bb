"""The README's commands run verbatim, in order, on a fresh clone.

Every command in a ```bash block of README.md runs as written, in README order, in one
fresh temporary folder (standing in for a fresh clone: the repo's `configs/` is linked
into it, nothing else), with the repo's `.venv/bin` first on PATH so `t2i` and
`accelerate` resolve as after `source .venv/bin/activate`, and an empty weights cache.
Each must exit 0 with no traceback. Blocks tagged ```bash skip-test are not run (they
need `make` itself, the user's shell, or the user's own data, weights or encoders); the
`t2i` options they use are still checked against the parser, so they cannot rot silently.

Takes about 45 s on a 2-core machine (each command starts torch); it stays in the fast
suite because it is the one test that catches a README that no longer works.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP_TAG = "skip-test"
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# The README must keep at least this many runnable commands: a renamed tag or a parser
# bug cannot make this test pass by running nothing.
MIN_COMMANDS = 10
# Paths of the clone that README commands read (everything else they make themselves).
CLONE_PATHS = ["configs", "scripts"]


def readme_blocks(text: str) -> List[Tuple[str, List[str], List[str]]]:
    """(language, tags, commands) of every fenced code block, in order.

    Commands: non-blank, non-comment lines, with backslash continuations joined.
    """
    blocks = []
    # CommonMark: up to 3 spaces of indent; a backtick fence's info string has no backtick;
    # the closing fence is the same character, at least as long, and nothing else.
    fence = re.compile(r"^ {0,3}(`{3,}(?=[^`]*$)|~{3,})\s*(.*)$")
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = fence.match(lines[i])
        if not m:
            i += 1
            continue
        marker, info = m.group(1), m.group(2).split()
        close = re.compile(r"^ {0,3}" + re.escape(marker[0]) + "{" + str(len(marker)) + r",}\s*$")
        body = []
        i += 1
        while i < len(lines) and not close.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        cmds: List[str] = []
        pending = ""
        for line in body:
            line = line.rstrip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = (pending + line).strip()
            pending = ""
            if line and not line.startswith("#"):
                cmds.append(line)
        blocks.append(((info[0] if info else "").lower(), info[1:], cmds))
    return blocks


def _commands() -> Tuple[List[str], List[str]]:
    run, skipped = [], []
    for lang, tags, cmds in readme_blocks(README.read_text(encoding="utf-8")):
        if lang in SHELL_LANGS:
            (skipped if SKIP_TAG in tags else run).extend(cmds)
    return run, skipped


RUN, SKIPPED = _commands()


def _bin_dir() -> Path:
    venv_bin = ROOT / ".venv" / "bin"
    return venv_bin if venv_bin.is_dir() else Path(sys.executable).parent


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Dict[str, object]:
    work = tmp_path_factory.mktemp("readme")
    for rel in CLONE_PATHS:
        (work / rel).symlink_to(ROOT / rel, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(_bin_dir().parent)
    env["T2I_CACHE"] = str(tmp_path_factory.mktemp("t2i_cache"))  # a fresh machine's empty cache
    env.pop("T2I_ALLOW_DOWNLOAD", None)
    return {"cwd": work, "env": env, "ran": []}


def test_readme_tags_are_known():
    """Only ```bash and ```bash skip-test; a misspelt tag would silently run or skip a block."""
    for lang, tags, cmds in readme_blocks(README.read_text(encoding="utf-8")):
        if lang in SHELL_LANGS:
            assert set(tags) <= {SKIP_TAG}, f"unknown tag(s) {tags} on a ```{lang} block: {cmds[:1]}"


def test_readme_has_enough_runnable_commands():
    assert len(RUN) >= MIN_COMMANDS, f"README has {len(RUN)} runnable commands, fewer than {MIN_COMMANDS}: {RUN}"
    assert RUN and RUN[0].split()[0] == "t2i"
    assert any(c.startswith("make test") for c in SKIPPED), "the README explains `make test` first"


@pytest.mark.parametrize("index", range(len(RUN)), ids=[f"{i:02d}:{c[:60]}" for i, c in enumerate(RUN)])
def test_readme_command(clone, index):
    cmd = RUN[index]
    proc = subprocess.run(["bash", "-c", cmd], cwd=clone["cwd"], env=clone["env"], capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)
    clone["ran"].append(cmd)
    assert "Traceback" not in proc.stderr, f"`{cmd}` printed a traceback:\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stdout, f"`{cmd}` printed a traceback:\n{proc.stdout[-4000:]}"
    assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}:\n{proc.stderr[-4000:]}"


def test_readme_ran_every_command(clone, capsys):
    """Runs after the commands (pytest keeps file order): report the count, enforce the floor."""
    with capsys.disabled():
        print(f"\n[test_readme] ran {len(clone['ran'])} README commands, skipped {len(SKIPPED)} (tagged {SKIP_TAG})")
    assert len(clone["ran"]) == len(RUN) and len(RUN) >= MIN_COMMANDS, (
        f"ran {len(clone['ran'])} of {len(RUN)} README commands (floor {MIN_COMMANDS})")


# --------------------------------------------------------------------------- skipped blocks


def _subparser(parser: argparse.ArgumentParser, words: List[str]) -> Tuple[argparse.ArgumentParser, List[str]]:
    """Descend the subcommands named at the start of ``words``; return the parser and the rest."""
    while words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or words[0] not in subs[0].choices:
            break
        parser, words = subs[0].choices[words[0]], words[1:]
    return parser, words


@pytest.mark.parametrize("cmd", [c for c in SKIPPED if c.startswith("t2i ")], ids=lambda c: c[:60])
def test_skipped_t2i_commands_name_real_options(cmd):
    from imagetext.cli import build_parser

    words = shlex.split(cmd, comments=True)[1:]
    parser, rest = _subparser(build_parser(), words)
    assert parser.prog != "t2i", f"`{cmd}`: no such subcommand"
    known = {s for a in parser._actions for s in a.option_strings}
    used = {w.split("=", 1)[0] for w in rest if w.startswith("--")}
    assert used <= known, f"`{cmd}`: unknown option(s) {sorted(used - known)} for `{parser.prog}`"
