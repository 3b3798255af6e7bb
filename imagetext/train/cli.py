"""Command line of every training script: ``--config FILE`` then ``key=value`` overrides.

    python scripts/pretrain.py --config configs/pretrain/birds_tiny.yaml train.max_steps=4 train.resume=latest

The overrides go through :mod:`imagetext.config` (no argparse defaults shadow the YAML), so
a typo is a ConfigError naming the key.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

from ..config import load_config

T = TypeVar("T")


def config_parser(description: Optional[str] = None, prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", type=Path, default=None, help="YAML config file (the script's defaults without it)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides, e.g. max_steps=100 resume=latest (dotted keys reach sections)")
    return p


def parse_config_args(cls: Type[T], argv: Optional[List[str]] = None, description: Optional[str] = None,
                      prog: Optional[str] = None) -> T:
    """``cls`` from ``--config FILE key=value ...`` (``argv`` defaults to ``sys.argv[1:]``)."""
    args = config_parser(description, prog).parse_args(argv)
    return load_config(cls, args.config, args.overrides)


def run_script(main: Callable[[Optional[List[str]]], Dict[str, Any]], prog: str, argv: Optional[List[str]] = None,
               summary: Optional[Callable[[Dict[str, Any]], str]] = None) -> int:
    """A training script's entry point: user mistakes are one line on stderr (exit 2), never a traceback.

    ``main`` returns the results (empty on processes other than the main one); ``summary`` turns
    them into the line printed at the end.
    """
    import sys

    from ..errors import UserError

    try:
        res = main(argv)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    finally:
        end_distributed()
    if res and summary is not None:
        print(summary(res))
    return 0


def end_distributed() -> None:
    """Tear down the default process group (``accelerate launch``) before the interpreter exits.

    Left to interpreter shutdown, a finished 2-process run was seen to lose a rank to SIGABRT
    ("terminate called without an active exception", gloo's threads torn down mid-exit), which
    fails the launch. Local to each process (no collective), and a no-op without a process group.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
