"""Resumable benchmark matrices: expand a YAML matrix into cells, run the pending ones,
record one JSON per cell with its provenance, and tabulate them (mean ± std over seeds).

    python scripts/bench.py run configs/bench/example.yaml
    python scripts/bench.py report configs/bench/example.yaml

See :mod:`imagetext.bench.matrix` for the YAML schema and :mod:`imagetext.bench.runner`
for the contract with a cell's command (exit 0 after writing ``<output_dir>/results.json``).
"""
from .matrix import Cell, CellSpec, Matrix, MatrixConfig, MetricSpec, ReportSpec, load_matrix
from .report import build_report, replace_section, to_markdown
from .runner import Paths, RunSummary, cell_status, list_cells, run_matrix

__all__ = [
    "Cell", "CellSpec", "Matrix", "MatrixConfig", "MetricSpec", "ReportSpec", "load_matrix",
    "build_report", "replace_section", "to_markdown",
    "Paths", "RunSummary", "cell_status", "list_cells", "run_matrix",
]
