"""The ``t2i`` command: one entry point, subcommand groups contributed by modules.

Each group module exposes ``add_parser(subparsers)`` and sets ``func`` on its parsers;
user mistakes (bad config, bad data, bad input) print one clear line and exit 2,
never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# (group name, module, help). Modules are imported lazily so `t2i --help` stays fast.
GROUPS = [
    ("data", "imagetext.data.cli", "make, inspect and validate data sets"),
    ("eval", "imagetext.metrics.cli", "FID, KID, IS, R-precision, CLIPScore, retrieval, faithfulness"),
    ("index", "matching.cli", "build and search a FAISS gallery with a trained matcher"),
    ("generate", "t2i.cli", "draw images from prompts with a trained GAN"),
    ("demo", "app.cli", "serve the Gradio demo on the bundled checkpoints"),
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="t2i",
        description="Text-to-image GANs with label-guided contrastive learning, and DBL image-text matching.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    for name, module, help_text in GROUPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.add_parser(sub, name, help_text)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 user error)."""
    from .errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # a group without a subcommand: show that group's help
        target = getattr(args, "_group_parser", parser)
        target.print_help()
        return 0 if args.group is None else 2
    try:
        rc = args.func(args)
    except UserError as e:
        print(f"t2i {args.group}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the user named cannot be read or written: say which, no traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"t2i {args.group}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"t2i {args.group}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
