"""``t2i data synth`` and ``t2i data inspect``.

Everything the commands are given is checked before any work: numbers by the typed
converters of :mod:`imagetext.cliargs` while parsing, ``synth``'s output folder before
the first image is rendered, ``inspect``'s root and format before loading. This module
imports nothing heavy at import time (``t2i --help`` builds this parser).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..cliargs import int_range, nonneg_int, seed_int

FORMATS = ["cub", "coco", "karpathy", "folder", "synthetic"]
SPLITS_HELP = "cub: train|test|val|all; coco: train|val|test; karpathy: train|val|test|restval|all; folder/synthetic: a split file or split-column value"


def add_parser(subparsers: Any, name: str, help_text: str) -> None:
    group = subparsers.add_parser(name, help=help_text, description=help_text)
    group.set_defaults(_group_parser=group)
    sub = group.add_subparsers(dest="data_cmd", metavar="SUBCOMMAND")

    p = sub.add_parser(
        "synth",
        help="write a synthetic world (birds or scenes) to disk in the generic folder format",
        description=(
            "Render a deterministic synthetic world into DIR: images/<split>/*.png, train.jsonl, "
            "test.jsonl, classes.json, world.json. The same seed always gives the same pixels and captions. "
            "DIR must be new or empty; --overwrite replaces an earlier world there (and nothing else)."
        ),
    )
    p.add_argument("--world", choices=["birds", "scenes"], required=True,
                   help="birds: CUB-like species; scenes: COCO-like multi-object")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="output folder; created if missing, refused if not empty (see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="DIR may be non-empty: first remove what a world consists of (images/, train.jsonl, "
                        "test.jsonl, classes.json, world.json, *.tmp); other files are kept")
    p.add_argument("--n-train", type=nonneg_int, default=2000, metavar="N", help="training images, >= 0 (default 2000)")
    p.add_argument("--n-test", type=nonneg_int, default=500, metavar="N", help="test images, >= 0 (default 500)")
    p.add_argument("--seed", type=seed_int, default=0, help="world seed, 0..2**32-1 (default 0)")
    p.add_argument("--size", type=int_range(32, 256), default=64, metavar="PX",
                   help="image side in pixels, 32..256 (default 64)")
    p.add_argument("--class-disjoint", action="store_true",
                   help="birds only: train and test species do not overlap (CUB's standard split)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (and no progress bar)")
    p.set_defaults(func=_synth)

    q = sub.add_parser(
        "inspect",
        help="validate a data set and print counts and every problem found",
        description=(
            "Load a data set in one of the published layouts, decode every image and report images, captions, "
            "classes/labels, skipped and converted items, and each problem with its file and line. "
            "Exit code 0 if nothing was skipped, 1 if items were skipped, 2 if the data set cannot be read "
            "or has no usable image."
        ),
    )
    q.add_argument("--format", choices=FORMATS, required=True, help="layout of the data set")
    q.add_argument("--root", type=Path, required=True, metavar="DIR", help="data set root folder")
    q.add_argument("--split", default="train", help=f"split to inspect (default train); {SPLITS_HELP}")
    q.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster, misses corrupt files)")
    q.add_argument("--json", action="store_true", help="print the report as JSON, with every problem")
    q.set_defaults(func=_inspect)


def _synth(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from .synthetic import write_world

    if args.n_train + args.n_test == 0:
        raise UserError("--n-train 0 --n-test 0: nothing to write; ask for at least one image")
    if args.class_disjoint and args.world != "birds":
        raise UserError("--class-disjoint: only defined for --world birds")
    # write_world checks --out (file? not empty? writable?) before it renders anything
    summary = write_world(
        args.world, args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
        size=args.size, class_disjoint=args.class_disjoint, progress=not args.json,
        overwrite=args.overwrite, out_flag="--out",
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"wrote {args.world} world to {args.out}: " + ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list))))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from .inspect import format_report, inspect_dataset
    from .records import BadInputPolicy

    if not args.root.exists():
        raise UserError(f"--root {args.root}: no such folder")
    if not args.root.is_dir():
        raise UserError(f"--root {args.root}: is a file, not a folder; give the data set's root folder")
    policy = BadInputPolicy(on_error="skip", check_images=not args.no_decode)
    report = inspect_dataset(args.format, args.root, args.split, policy)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(format_report(report))
    where = "see the problems list" if args.json else "listed above"
    if report.images == 0:
        why = f"{report.skipped} item(s) skipped, {where}" if report.skipped else "its metadata lists none"
        print(f"t2i data inspect: error: split {args.split!r} of {args.root} has no usable image ({why})",
              file=sys.stderr)
        return 2
    if report.skipped:
        print(f"t2i data inspect: {report.skipped} input(s) skipped (rows, images or captions); "
              f"{report.images} image(s) usable ({where})",
              file=sys.stderr)
    return 1 if report.skipped else 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["data", *sys.argv[1:]]))
