"""``t2i data synth`` and ``t2i data inspect``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FORMATS = ["cub", "coco", "karpathy", "folder", "synthetic"]


def add_parser(subparsers: Any, name: str, help_text: str) -> None:
    group = subparsers.add_parser(name, help=help_text, description=help_text)
    group.set_defaults(_group_parser=group)
    sub = group.add_subparsers(dest="data_cmd", metavar="SUBCOMMAND")

    p = sub.add_parser(
        "synth",
        help="write a synthetic world (birds or scenes) to disk in the generic folder format",
        description=(
            "Render a deterministic synthetic world into DIR: images/<split>/*.png, train.jsonl, "
            "test.jsonl, classes.json, world.json. The same seed always gives the same pixels and captions."
        ),
    )
    p.add_argument("--world", choices=["birds", "scenes"], required=True, help="birds: CUB-like species; scenes: COCO-like multi-object")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--n-train", type=int, default=2000, help="training images (default 2000)")
    p.add_argument("--n-test", type=int, default=500, help="test images (default 500)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels, 32..256 (default 64)")
    p.add_argument("--class-disjoint", action="store_true", help="train and test species do not overlap (CUB's standard split)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_synth)

    q = sub.add_parser(
        "inspect",
        help="validate a data set and print counts and every problem found",
        description=(
            "Load a data set in one of the published layouts, decode every image and report images, captions, "
            "classes/labels, skipped and converted items, and each problem with its file and line. "
            "Exit code 0 if nothing was skipped, 1 if items were skipped."
        ),
    )
    q.add_argument("--format", choices=FORMATS, required=True, help="layout of the data set")
    q.add_argument("--root", type=Path, required=True, metavar="DIR", help="data set root folder")
    q.add_argument("--split", default="train", help="split to inspect (train|test; val for COCO) (default train)")
    q.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster, misses corrupt files)")
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    q.set_defaults(func=_inspect)


def _synth(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from .synthetic import write_world

    if not 32 <= args.size <= 256:
        raise DataError(f"--size {args.size}: must be between 32 and 256")
    if args.n_train < 0 or args.n_test < 0 or args.n_train + args.n_test == 0:
        raise DataError(f"--n-train {args.n_train} / --n-test {args.n_test}: need at least one image")
    summary = write_world(
        args.world, args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
        size=args.size, class_disjoint=args.class_disjoint, progress=not args.json,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"wrote {args.world} world to {args.out}: " + ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list))))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .inspect import format_report, inspect_dataset
    from .records import BadInputPolicy

    if not args.root.exists():
        raise FileNotFoundError(f"--root {args.root}: no such folder")
    policy = BadInputPolicy(on_error="skip", check_images=not args.no_decode)
    report = inspect_dataset(args.format, args.root, args.split, policy)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(format_report(report))
    return 1 if report.skipped else 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["data", *sys.argv[1:]]))

