"""`t2i data synth` and `t2i data inspect` end to end, as a user runs them."""
import json
import subprocess
import sys


from imagetext.cli import main


def test_synth_then_inspect(tmp_path, capsys):
    out = tmp_path / "birds"
    assert main(["data", "synth", "--world", "birds", "--out", str(out), "--n-train", "6", "--n-test", "3",
                 "--size", "32", "--seed", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary  # a dict describing what was written
    assert len(list((out / "images" / "train").glob("*.png"))) == 6
    assert main(["data", "inspect", "--format", "synthetic", "--root", str(out), "--split", "test", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["images"] == 3 and rep["captions"] == 30 and rep["skipped"] == 0
    # human output names the counts
    assert main(["data", "inspect", "--format", "folder", "--root", str(out), "--split", "train"]) == 0
    text = capsys.readouterr().out
    assert "6" in text and "images" in text.lower()


def test_inspect_reports_a_broken_image_and_exits_1(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(["data", "synth", "--world", "scenes", "--out", str(out), "--n-train", "4", "--n-test", "2",
                 "--size", "32"]) == 0
    capsys.readouterr()
    victim = sorted((out / "images" / "train").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated PNG
    assert main(["data", "inspect", "--format", "folder", "--root", str(out), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["images"] == 3 and rep["skipped"] == 1
    assert any(victim.name in p["file"] + p["reason"] and p["line"] == 1 for p in rep["problems"])


def test_synth_rejects_bad_size_without_traceback(tmp_path):
    try:
        from cli_harness import check_case
    except ImportError:  # tests/ collected as a package
        from tests.cli_harness import check_case

    check_case(["data", "synth", "--world", "birds", "--out", tmp_path / "x", "--size", "16"], 2,
               ["--size", "16 must be between 32 and 256"])
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "imagetext.cli", "data", "inspect", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--format" in r.stdout and "cub" in r.stdout
