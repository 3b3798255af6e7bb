"""Resumable benchmark-matrix runner (library: imagetext/bench/).

    python scripts/bench.py list   MATRIX.yaml
    python scripts/bench.py run    MATRIX.yaml [--only GLOB] [--max-cells N] [--force ID] [--dry-run]
    python scripts/bench.py report MATRIX.yaml [--json] [--write docs/RESULTS.md --section NAME]

Run it from the repository root: the matrix's relative paths (commands, runs/bench,
docs/results/cells) are relative to the current directory.
"""
import sys

from imagetext.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
