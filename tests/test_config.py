"""Typed YAML configs: typos, wrong types and missing files fail loudly and name the key."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional

import pytest
import yaml

from imagetext.config import ConfigError, load_config, save_config, to_dict
from imagetext.data.config import DataConfig

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    lr: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.0, 0.9])


@dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    mode: Literal["a", "b"] = "a"
    path: Optional[str] = None
    opt: Inner = field(default_factory=Inner)


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_load_and_override(tmp_path):
    p = write(tmp_path, "name: y\nopt:\n  lr: 2\n")
    cfg = load_config(Outer, p, ["steps=5", "opt.betas=[0.5, 0.99]", "path=/tmp/a"])
    assert cfg.name == "y" and cfg.steps == 5 and cfg.path == "/tmp/a"
    assert cfg.opt.lr == 2.0 and isinstance(cfg.opt.lr, float)
    assert cfg.opt.betas == [0.5, 0.99]


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    p = write(tmp_path, "opt:\n  lrr: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(Outer, p)
    msg = str(e.value)
    assert "lrr" in msg and str(p) in msg and "did you mean 'lr'" in msg


def test_unknown_override_key():
    with pytest.raises(ConfigError, match="stepz"):
        load_config(Outer, None, ["stepz=3"])


@pytest.mark.parametrize("override,key", [("steps=1.5", "steps"), ("steps=true", "steps"), ("mode=c", "mode"),
                                          ("opt.lr=fast", "opt.lr"), ("opt=3", "opt")])
def test_wrong_type_names_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(Outer, None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")
    p = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml line"):
        load_config(Outer, p)


def test_save_roundtrip(tmp_path):
    cfg = load_config(Outer, None, ["opt.lr=0.5"])
    out = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(Outer, out)
    assert to_dict(again) == to_dict(cfg)
    assert yaml.safe_load(out.read_text())["opt"]["lr"] == 0.5


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "data").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_data_presets_load(path):
    cfg = load_config(DataConfig, path)
    assert cfg.source in {"birds", "scenes", "cub", "coco", "karpathy", "folder"}


def test_base_files_merge_section_by_section(tmp_path):
    from imagetext.config import load_yaml

    (tmp_path / "a.yaml").write_text("x: 1\nsec: {p: 1, q: 2}\n")
    (tmp_path / "b.yaml").write_text("sec: {q: 3}\ny: 2\n")
    (tmp_path / "c.yaml").write_text("_base_: [a.yaml, b.yaml]\nsec: {r: 4}\n")
    assert load_yaml(tmp_path / "c.yaml") == {"x": 1, "y": 2, "sec": {"p": 1, "q": 3, "r": 4}}
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_yaml(tmp_path / "loop.yaml")
    (tmp_path / "missing.yaml").write_text("_base_: nope.yaml\n")
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_yaml(tmp_path / "missing.yaml")


def test_exponent_without_dot_is_a_float():
    """PyYAML reads 2e-3 as a string (YAML 1.1); a float field takes it as the number, other strings still fail."""
    from dataclasses import dataclass

    from imagetext.config import ConfigError, from_dict

    @dataclass
    class C:
        lr: float = 0.1

    assert from_dict(C, {"lr": "2e-3"}).lr == 0.002
    assert from_dict(C, {"lr": "1E5"}).lr == 1e5
    with pytest.raises(ConfigError, match="expected float"):
        from_dict(C, {"lr": "fast"})
