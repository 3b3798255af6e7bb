"""scripts/plot_learning_curve.py: reads validation.jsonl (last row per step wins), draws, prints JSON;
a bad row names the file and line."""
from __future__ import annotations

import json

import pytest

from cli_harness import load_script


def _write(run, rows):
    run.mkdir(parents=True, exist_ok=True)
    (run / "validation.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_curve_figure_and_json(tmp_path, capsys):
    mod = load_script("plot_learning_curve")
    _write(tmp_path / "a", [{"step": 100, "images_seen": 3200, "fid": 90.0, "kid": 0.09},
                            {"step": 200, "images_seen": 6400, "fid": 70.0, "kid": 0.07},
                            {"step": 200, "images_seen": 6400, "fid": 65.0, "kid": 0.06}])  # resumed: last wins
    _write(tmp_path / "b", [{"step": 100, "images_seen": 3200, "fid": 80.0, "kid": 0.08}])
    out = tmp_path / "fig" / "curve.png"
    assert mod.main(["--run", f"a={tmp_path / 'a'}", "--run", f"b={tmp_path / 'b'}", "--x", "step",
                     "--out", str(out), "--json"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads(capsys.readouterr().out)
    assert [r["fid"] for r in curves["a"]] == [90.0, 65.0]
    assert [r["step"] for r in curves["b"]] == [100]


@pytest.mark.parametrize("text, words", [("{not json\n", ":1: not JSON"),
                                         ('{"step": 1, "fid": 2}\n', ":1: no kid"),
                                         ("\n[1, 2]\n", ":2: no step, fid, kid")])
def test_bad_rows_name_file_and_line(tmp_path, text, words):
    mod = load_script("plot_learning_curve")
    (tmp_path / "validation.jsonl").write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        mod.main(["--run", f"a={tmp_path}", "--out", str(tmp_path / "x.png")])
    assert "validation.jsonl" in str(e.value) and words in str(e.value)
    assert not (tmp_path / "x.png").exists()
