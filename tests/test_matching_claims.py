"""scripts/matching_claims.py: paired comparisons of the matching matrix's records (same world and seed)."""
import json

import pytest
from cli_harness import load_script


def _mod():
    return load_script("matching_claims")


def _rec(folder, cid, regime, mode, seed, target, anchor=None, world="scenes"):
    res = {"target": {"rsum": target}}
    if anchor is not None:
        res["anchor"] = {"rsum": anchor}
    (folder / f"{cid}.json").write_text(json.dumps(
        {"params": {"regime": regime, "mode": mode, "world": world, "seed": seed}, "results": res}))


def test_pairs_by_world_and_seed_with_the_equal_training_control(tmp_path, capsys):
    for s, (a300, a600, off, onl, onl_a) in enumerate([(20, 30, 40, 25, 22), (22, 35, 33, 18, 20)]):
        _rec(tmp_path, f"anchor-scenes-seed{s}", "anchor", "none", s, a300)
        _rec(tmp_path, f"anchor600-scenes-seed{s}", "anchor-600", "none", s, a600)
        _rec(tmp_path, f"offline-relative-scenes-seed{s}", "offline", "relative", s, off, anchor=a300)
        _rec(tmp_path, f"online-relative-scenes-seed{s}", "online", "relative", s, onl, anchor=onl_a)
    (tmp_path / "broken.json").write_text("{not json")
    mod = _mod()
    assert mod.main(["--cells", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr()
    rows = {(r["regime"], r["mode"]): r for r in json.loads(out.out)}
    assert "broken.json" in out.err  # named, not silently dropped
    off = rows[("offline", "relative")]
    assert off["vs_own_anchor"]["per_seed"] == {"0": 20, "1": 11}
    assert off["vs_equal_training"]["per_seed"] == {"0": 10, "1": -2}  # against the 600-step anchor
    assert off["vs_equal_training"]["mean"] == pytest.approx(4.0) and off["vs_equal_training"]["positive"] == 1
    onl = rows[("online", "relative")]
    assert onl["vs_own_anchor"]["per_seed"] == {"0": 3, "1": -2}
    assert onl["vs_equal_training"]["per_seed"] == {"0": 5, "1": -4}  # against the 300-step anchor
    assert set(rows) == {("offline", "relative"), ("online", "relative")}  # anchors are not rows
    fig = tmp_path / "fig" / "claims.png"
    assert mod.main(["--cells", str(tmp_path), "--plot", str(fig)]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = capsys.readouterr().out
    assert "| scenes | offline | relative | +15.5 ± 6.4 (+20.0, +11.0; 2/2 > 0) | +4.0 ± 8.5 (+10.0, -2.0; 1/2 > 0)" in md


def test_missing_folder_is_one_line(tmp_path, capsys):
    assert _mod().main(["--cells", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
