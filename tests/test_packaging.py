"""Packaging: installable on the Pythons users have, with library-style bounds in
pyproject.toml and the exact pins of the tested machine in constraints.txt."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUPPORTED = ["3.11", "3.12", "3.13"]


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _requirement_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _constraints() -> dict:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+\-]+)", line)
        assert m, f"constraints.txt: {line!r} is not an exact NAME==VERSION pin"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


@pytest.mark.parametrize("version", SUPPORTED)
def test_requires_python_admits_supported_versions(version):
    spec = _project()["requires-python"]
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # pragma: no cover - packaging is installed alongside pip/setuptools
        assert spec == ">=3.11,<3.14"
        return
    assert SpecifierSet(spec).contains(version + ".0"), f"requires-python {spec!r} shuts out Python {version}"
    assert not SpecifierSet(spec).contains("3.10.0"), f"requires-python {spec!r} admits Python 3.10 (not supported)"


def test_classifiers_name_supported_versions():
    classifiers = _project().get("classifiers", [])
    for v in SUPPORTED:
        assert f"Programming Language :: Python :: {v}" in classifiers


def test_dependencies_have_no_exact_pins():
    project = _project()
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    pinned = [r for r in reqs if "==" in r or "===" in r]
    assert not pinned, f"exact pins belong in constraints.txt, not pyproject.toml: {pinned}"
    names = {_requirement_name(r) for r in project["dependencies"]}
    assert {"torch", "torchvision"} <= names


def test_constraints_pin_torch_and_torchvision():
    pins = _constraints()
    assert "torch" in pins and "torchvision" in pins, pins


def test_constraints_only_pin_declared_packages():
    project = _project()
    reqs = list(project["dependencies"]) + [r for e in project.get("optional-dependencies", {}).values() for r in e]
    declared = {_requirement_name(r) for r in reqs}
    assert set(_constraints()) <= declared | {"pip", "setuptools"}


def test_makefile_installs_with_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert "constraints.txt" in makefile
    # the pip install line passes it (directly or through a variable) ...
    install_lines = [ln for ln in makefile.splitlines() if "pip install" in ln and "-e" in ln]
    assert install_lines and all(re.search(r"-c\s+\S+", ln) for ln in install_lines), install_lines
    # ... and the install stamp re-runs when it changes
    stamp_rule = next(ln for ln in makefile.splitlines() if ln.startswith("$(STAMP):"))
    assert "constraints.txt" in stamp_rule or "$(CONSTRAINTS)" in stamp_rule, stamp_rule


def test_ci_runs_make_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*make test\b", ci, re.M)
