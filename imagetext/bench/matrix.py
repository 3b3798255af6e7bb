"""A benchmark matrix: YAML cell specs expanded into concrete, deterministically named cells.

A spec names a command template and axes; every combination of axis values is one
cell. The cell id is built from the spec name and the axis values only (fixed params
such as ``steps`` are not in the id, but a cell whose recorded params differ from the
current ones is *stale* and reruns), so ids stay stable when a matrix grows::

    name: pretrain
    cells:
      - name: scenes
        command: ["{python}", scripts/pretrain.py, --config, "configs/pretrain/scenes_{variant}.yaml",
                  "seed={seed}", "max_steps={steps}", "output_dir={output_dir}"]
        axes: {variant: [damsm, supcon], seed: [0, 1, 2]}
        params: {steps: 2000}
    report:
      group_by: [variant]
      metrics: [t2i.R@1, {key: rprecision, label: R-precision, fmt: ".3f"}, {key: anchor.rsum, optional: true}]

gives ``scenes-damsm-seed0`` ... ``scenes-supcon-seed2``. A top-level ``params:`` is shared by every
spec (a spec's own ``params`` win), so one override resizes a whole matrix: ``bench run m.yaml
params.steps=3000`` (with ``runs_root=``/``results_dir=`` elsewhere, so the small cells stay done). ``needs: [id template, ...]`` names
cells that must be done before a cell of the spec starts (rendered like ``id``; checked to exist). String axis values appear as
they are, numbers as ``<axis><value>``; the seed axis always comes last in the id, and
cells run seed-outermost (one seed of every variant first), so ``--max-cells`` fills a
matrix evenly. ``id:`` in a spec overrides the id template.

Placeholders ``{name}`` in the command (and ``id``) are replaced by params and by
``output_dir``, ``cell_id``, ``spec``, ``matrix`` and ``python`` (this interpreter);
an unknown name is a ConfigError. Other braces (``{"a": 1}`` in ``-c`` code) are left alone.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from ..config import apply_overrides, from_dict, load_yaml
from ..errors import ConfigError

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")
RESERVED = ("output_dir", "cell_id", "spec", "matrix", "python")


@dataclass
class MetricSpec:
    """One report column: ``key`` is a dotted path into results.json (``t2i.R@1``)."""

    key: str
    label: Optional[str] = None  # column header; defaults to key
    fmt: str = ".4g"  # format spec for mean and std
    optional: bool = False  # cells without it (e.g. an anchor has no "its anchor" column) show "–", no problem


@dataclass
class ReportSpec:
    """What ``bench report`` tabulates: rows grouped by params, columns = metrics."""

    group_by: List[str] = field(default_factory=list)  # params that make a row; others (seeds) are averaged
    metrics: List[MetricSpec] = field(default_factory=list)  # a plain string is short for {key: ...}
    only: Optional[str] = None  # glob on cell ids to include (default: all)
    title: Optional[str] = None
    wall_time: bool = True  # add a "wall (s)" column


@dataclass
class CellSpec:
    """A command template and the axes whose product gives the cells."""

    name: str
    command: List[str]
    axes: Dict[str, List[Any]] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)  # fixed params, same in every cell
    id: Optional[str] = None  # id template; default: name + axis values, seed last
    timeout_s: Optional[float] = None  # overrides the matrix's timeout_s
    # id templates of cells that must be done before one of this spec's cells starts (an offline
    # regime's anchor: "anchor-{world}-seed{seed}"); `bench run --jobs N` schedules by them
    needs: List[str] = field(default_factory=list)


@dataclass
class MatrixConfig:
    """A matrix file. Paths are relative to the directory the runner is started in."""

    cells: List[CellSpec]
    name: Optional[str] = None  # default: the file's stem
    runs_root: str = "runs/bench"  # scratch: output_dir = <runs_root>/<name>/<cell_id>
    results_dir: str = "docs/results/cells"  # cell JSONs: <results_dir>/<name>/<cell_id>.json
    timeout_s: Optional[float] = None  # per cell; None = no limit
    # True: an unfinished cell's output folder is kept, so a command with ``resume=latest``
    # continues from its last checkpoint on the next run (long training cells); False: wiped.
    resume_partial: bool = False
    seed_key: str = "seed"  # the axis that report averages over and ids put last
    params: Dict[str, Any] = field(default_factory=dict)  # shared by every spec; a spec's own params win
    report: ReportSpec = field(default_factory=ReportSpec)
    description: str = ""


@dataclass
class Cell:
    """One concrete run: params fully resolved, command not yet rendered (output_dir varies)."""

    id: str
    spec: CellSpec
    params: Dict[str, Any]
    matrix: str
    needs: List[str] = field(default_factory=list)  # ids of cells to be done first

    @property
    def seed(self) -> Any:
        return self.params.get("seed")

    def context(self, output_dir: Union[str, Path], python: str) -> Dict[str, Any]:
        return {**self.params, "output_dir": str(output_dir), "cell_id": self.id,
                "spec": self.spec.name, "matrix": self.matrix, "python": python}

    def command(self, output_dir: Union[str, Path], python: str) -> List[str]:
        """The argument list with every ``{name}`` placeholder filled in."""
        ctx = self.context(output_dir, python)
        return [render(a, ctx, f"cell {self.id}: command") for a in self.spec.command]


def render(template: str, ctx: Dict[str, Any], where: str) -> str:
    """Replace ``{name}`` placeholders in ``template`` from ``ctx``; unknown names raise ConfigError."""

    def sub(m: "re.Match[str]") -> str:
        key = m.group(1)
        if key not in ctx:
            raise ConfigError(f"{where}: unknown placeholder {{{key}}}; known: {', '.join(sorted(ctx))}")
        return str(ctx[key])

    return PLACEHOLDER.sub(sub, str(template))


def _id_part(key: str, value: Any) -> str:
    return value if isinstance(value, str) else f"{key}{value}"


@dataclass
class Matrix:
    """A loaded matrix: its config, its name and its expanded cells (in run order)."""

    config: MatrixConfig
    name: str
    path: Optional[Path]
    cells: List[Cell]

    def __iter__(self) -> Iterator[Cell]:
        return iter(self.cells)

    def __len__(self) -> int:
        return len(self.cells)

    def get(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise ConfigError(f"matrix {self.name}: no cell {cell_id!r}")

    def metrics(self) -> List[MetricSpec]:
        return list(self.config.report.metrics)


def expand_spec(spec: CellSpec, matrix: str, seed_key: str, where: str,
                shared: Optional[Dict[str, Any]] = None) -> List[Cell]:
    """All cells of one spec, seed axis outermost; checks placeholders and ids.

    ``shared``: the matrix-level params, under the spec's own; an axis of the spec shadows one
    silently (it varies there), while a spec param that is also an axis is an error.
    """
    clash = sorted(set(spec.axes) & set(spec.params))
    if clash:
        raise ConfigError(f"{where}: {', '.join(clash)} is both an axis and a fixed param")
    reserved = sorted((set(spec.axes) | set(spec.params)) & set(RESERVED))
    if reserved:
        raise ConfigError(f"{where}: param name(s) {', '.join(reserved)} are reserved placeholders")
    for k, values in spec.axes.items():
        if not values:
            raise ConfigError(f"{where}.axes.{k}: empty list")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}.axes.{k}: repeated values {values}")
    if not spec.command:
        raise ConfigError(f"{where}.command: empty")
    keys = list(spec.axes)
    id_keys = [k for k in keys if k != seed_key] + [k for k in keys if k == seed_key]
    run_keys = [k for k in keys if k == seed_key] + [k for k in keys if k != seed_key]
    cells = []
    for combo in itertools.product(*(spec.axes[k] for k in run_keys)):
        axis_vals = dict(zip(run_keys, combo))
        params = {**(shared or {}), **spec.params, **{k: axis_vals[k] for k in keys}}
        if spec.id is not None:
            cid = render(spec.id, {**params, "spec": spec.name, "matrix": matrix}, f"{where}.id")
        else:
            cid = "-".join([spec.name] + [_id_part(k, axis_vals[k]) for k in id_keys])
        if not SAFE_ID.match(cid):
            raise ConfigError(f"{where}: cell id {cid!r} is not a safe file name "
                              "(letters, digits, . _ + = -); rename the value or set id:")
        needs = [render(t, {**params, "spec": spec.name, "matrix": matrix}, f"{where}.needs") for t in spec.needs]
        cell = Cell(id=cid, spec=spec, params=params, matrix=matrix, needs=needs)
        cell.command("OUTPUT_DIR", "python")  # every placeholder known, before anything runs
        cells.append(cell)
    return cells


def build_matrix(cfg: MatrixConfig, name: str, path: Optional[Path] = None) -> Matrix:
    """Expand ``cfg`` into cells and check ids, names and the report spec."""
    where = str(path) if path else "matrix"
    if not SAFE_ID.match(name):
        raise ConfigError(f"{where}: matrix name {name!r} is not a safe folder name")
    if not cfg.cells:
        raise ConfigError(f"{where}.cells: empty; list at least one cell")
    reserved = sorted(set(cfg.params) & set(RESERVED))
    if reserved:
        raise ConfigError(f"{where}.params: {', '.join(reserved)} are reserved placeholders")
    cells: List[Cell] = []
    seen_specs = set()
    for i, spec in enumerate(cfg.cells):
        if spec.name in seen_specs:
            raise ConfigError(f"{where}.cells[{i}]: name {spec.name!r} used twice")
        seen_specs.add(spec.name)
        cells += expand_spec(spec, name, cfg.seed_key, f"{where}.cells[{i}]", cfg.params)
    ids: Dict[str, int] = {}
    for c in cells:
        ids[c.id] = ids.get(c.id, 0) + 1
    dup = sorted(k for k, n in ids.items() if n > 1)
    if dup:
        raise ConfigError(f"{where}: cell id(s) {', '.join(dup)} occur more than once; set id: templates")
    for c in cells:
        for n in c.needs:
            if n not in ids:
                raise ConfigError(f"{where}: cell {c.id} needs {n!r}, which is not a cell of this matrix")
            if n == c.id:
                raise ConfigError(f"{where}: cell {c.id} needs itself")
    known = set().union(*(c.params for c in cells))
    bad = [g for g in cfg.report.group_by if g not in known]
    if bad:
        raise ConfigError(f"{where}.report.group_by: unknown param(s) {', '.join(bad)}; "
                          f"known: {', '.join(sorted(known))}")
    return Matrix(config=cfg, name=name, path=path, cells=cells)


def load_matrix(path: Union[str, Path], overrides: Sequence[str] = ()) -> Matrix:
    """Read a matrix YAML (with ``key=value`` overrides) and expand it.

    Raises:
        ConfigError: a missing file, an unknown key (named, with a suggestion), a bad
            type, an unknown placeholder, or duplicate / unsafe cell ids.
    """
    path = Path(path)
    data = apply_overrides(load_yaml(path), overrides)
    report = data.get("report")
    if isinstance(report, dict) and isinstance(report.get("metrics"), list):
        report["metrics"] = [{"key": m} if isinstance(m, str) else m for m in report["metrics"]]
    cfg = from_dict(MatrixConfig, data, where=str(path))
    return build_matrix(cfg, cfg.name or path.stem, path)
