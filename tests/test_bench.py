"""The benchmark-matrix runner: expansion, resumable runs, failures, reports, markers, typos."""
import json
import statistics
from pathlib import Path

import pytest
import yaml

from imagetext.bench import Paths, build_report, cell_status, load_matrix, replace_section, run_matrix, to_markdown
from imagetext.bench.cli import main
from imagetext.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parents[1]

# metric = seed-dependent; variant "bad" fails with a message on stderr; "slow" sleeps
TOY = (
    "import json, sys, time\n"
    "variant, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
    "if variant == 'bad':\n"
    "    print('loss went NaN at step 3', file=sys.stderr); sys.exit(3)\n"
    "if variant == 'slow':\n"
    "    time.sleep(30)\n"
    "acc = {'a': 0.5, 'b': 0.7}[variant] + 0.1 * seed\n"
    "json.dump({'retrieval': {'R@1': acc}, 'loss': 1 - acc}, open(out + '/results.json', 'w'))\n"
)


def write_matrix(tmp_path, variants=("a", "b"), seeds=(0, 1, 2), **extra):
    data = {
        "name": "toy",
        "runs_root": str(tmp_path / "runs"),
        "results_dir": str(tmp_path / "cells"),
        "cells": [{
            "name": "pre",
            "command": ["{python}", "-c", TOY, "{variant}", "{seed}", "{output_dir}"],
            "axes": {"variant": list(variants), "seed": list(seeds)},
            "params": {"steps": 4},
        }],
        "report": {"group_by": ["variant"], "metrics": [{"key": "retrieval.R@1", "label": "R@1", "fmt": ".3f"},
                                                        "loss"]},
    }
    data.update(extra)
    p = tmp_path / "matrix.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def load(path, *ov):
    m = load_matrix(path, ov)
    return m, Paths.for_matrix(m)


def test_expansion_ids_and_order(tmp_path):
    m, paths = load(write_matrix(tmp_path))
    ids = [c.id for c in m]
    # seed outermost in run order, last in the id; fixed params in every cell, not in ids
    assert ids == ["pre-a-seed0", "pre-b-seed0", "pre-a-seed1", "pre-b-seed1", "pre-a-seed2", "pre-b-seed2"]
    c = m.get("pre-b-seed1")
    assert c.params == {"steps": 4, "variant": "b", "seed": 1}
    cmd = c.command(paths.output_dir(c), "py")
    assert cmd[0] == "py" and cmd[-3:] == ["b", "1", str(tmp_path / "runs" / "toy" / "pre-b-seed1" / "run")]
    assert cmd[2] == TOY  # braces of non-placeholders ({'a': 0.5}) are left alone
    assert [c.id for c in load_matrix(write_matrix(tmp_path), ["name=other"])] == ids


def test_matrix_level_params_are_shared_and_one_override_resizes_every_cell(tmp_path):
    path = write_matrix(tmp_path, seeds=(0,), params={"steps": 9, "width": 3})
    m, _ = load(path)
    # the spec's own steps (4) win over the shared 9; the shared width reaches every cell
    assert [c.params for c in m] == [{"steps": 4, "width": 3, "variant": "a", "seed": 0},
                                     {"steps": 4, "width": 3, "variant": "b", "seed": 0}]
    data = yaml.safe_load(path.read_text())
    del data["cells"][0]["params"]["steps"]
    path.write_text(yaml.safe_dump(data))
    m, _ = load(path, "params.steps=30")
    assert {c.params["steps"] for c in m} == {30}
    with pytest.raises(ConfigError, match="params: output_dir are reserved"):
        load(write_matrix(tmp_path, params={"output_dir": "x"}))


def test_run_records_provenance_then_skips_then_force(tmp_path, capsys):
    m, paths = load(write_matrix(tmp_path))
    s = run_matrix(m, paths, max_cells=4)
    assert s.ok and s.count("done") == 4
    rec = json.loads((tmp_path / "cells" / "toy" / "pre-a-seed1.json").read_text())
    assert rec["params"] == {"steps": 4, "variant": "a", "seed": 1}
    assert rec["results"]["retrieval"]["R@1"] == pytest.approx(0.6)
    prov = rec["provenance"]
    for key in ("command", "git_commit", "git_dirty", "seed", "wall_s", "python", "torch", "cpu_count",
                "platform", "gpu", "started", "finished"):
        assert key in prov, key
    assert prov["seed"] == 1 and prov["wall_s"] > 0 and prov["command"][-1].endswith("pre-a-seed1/run")
    assert not list((tmp_path / "cells" / "toy").glob("*.tmp"))

    s = run_matrix(m, paths)  # resumes: only the two left run
    assert s.count("skipped") == 4 and s.count("done") == 2
    s = run_matrix(m, paths)
    assert s.count("skipped") == 6 and s.count("done") == 0
    before = json.loads(paths.record(m.get("pre-b-seed0")).read_text())["provenance"]["started"]
    s = run_matrix(m, paths, force=["pre-b-seed0"])
    assert s.count("done") == 1 and s.outcomes[-1].cell_id == "pre-b-seed0"
    assert json.loads(paths.record(m.get("pre-b-seed0")).read_text())["provenance"]["started"] >= before
    s = run_matrix(m, paths, only=["pre-a-*"], force=["*"], dry_run=True)
    assert s.count("dry-run") == 3
    with pytest.raises(UserError, match="matches no cell"):
        run_matrix(m, paths, only=["nope*"])

    # changed fixed params make the records stale: they rerun
    data = yaml.safe_load((tmp_path / "matrix.yaml").read_text())
    data["cells"][0]["params"]["steps"] = 8
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(data))
    m2, paths2 = load(tmp_path / "matrix.yaml")
    assert {cell_status(c, paths2) for c in m2} == {"stale"}


def test_order_by_seed_runs_every_specs_seed_before_the_next(tmp_path, capsys):
    path = write_matrix(tmp_path, variants=("a",), seeds=(0, 1))
    data = yaml.safe_load(path.read_text())
    data["cells"].append({**data["cells"][0], "name": "post"})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    m, paths = load(path)
    assert [c.id for c in m] == ["pre-a-seed0", "pre-a-seed1", "post-a-seed0", "post-a-seed1"]
    s = run_matrix(m, paths, dry_run=True, order_by=["seed"])
    assert [o.cell_id for o in s.outcomes] == ["pre-a-seed0", "post-a-seed0", "pre-a-seed1", "post-a-seed1"]
    s = run_matrix(m, paths, order_by=["seed"], max_cells=2)  # max_cells counts after the ordering
    assert [o.cell_id for o in s.outcomes if o.status == "done"] == ["pre-a-seed0", "post-a-seed0"]
    with pytest.raises(UserError, match=r"--order-by 'sed'.*known: seed, steps, variant"):
        run_matrix(m, paths, order_by=["sed"])
    capsys.readouterr()
    assert main(["run", str(path), "--order-by", "seed", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.index("[1/2] pre-a-seed1") < out.index("[2/2] post-a-seed1")


def test_failing_cell_recorded_as_failed_and_runner_continues(tmp_path, capsys):
    m, paths = load(write_matrix(tmp_path, variants=("bad", "a"), seeds=(0,)))
    s = run_matrix(m, paths)
    assert not s.ok and s.count("failed") == 1 and s.count("done") == 1
    assert [o.cell_id for o in s.outcomes] == ["pre-bad-seed0", "pre-a-seed0"]
    assert not paths.record(m.get("pre-bad-seed0")).exists()
    assert cell_status(m.get("pre-bad-seed0"), paths) == "failed"  # not done: reruns next time
    out = capsys.readouterr().out
    assert "exited with code 3" in out and "loss went NaN at step 3" in out
    # through the CLI: exit 1 at the end, the done cell is skipped, the failing one retried
    rc = main(["run", str(tmp_path / "matrix.yaml")])
    assert rc == 1 and "1 done (skipped)" in capsys.readouterr().out
    assert main(["list", str(tmp_path / "matrix.yaml")]) == 0
    out = capsys.readouterr().out
    assert "pre-bad-seed0  failed   exited with code 3" in out and "1 done, 1 failed" in out
    assert build_report(m, paths)["missing"] == ["pre-bad-seed0"]


def test_timeout_and_missing_results(tmp_path, capsys):
    m, paths = load(write_matrix(tmp_path, variants=("slow",), seeds=(0,)))
    s = run_matrix(m, paths, timeout_s=0.5)
    assert s.count("failed") == 1 and "timed out" in s.outcomes[0].message
    assert s.outcomes[0].wall_s < 10
    p = write_matrix(tmp_path, cells=[{"name": "nores", "command": ["{python}", "-c", "pass"]}], report={})
    m, paths = load(p)
    s = run_matrix(m, paths)
    assert s.count("failed") == 1 and "wrote no" in s.outcomes[0].message


def test_report_mean_std_n_and_missing(tmp_path, capsys):
    p = write_matrix(tmp_path)
    m, paths = load(p)
    run_matrix(m, paths, only=["pre-a-*", "pre-b-seed0"])
    rep = build_report(m, paths)
    rows = {r["group"]["variant"]: r for r in rep["rows"]}
    a = rows["a"]["metrics"]["R@1"]
    assert rows["a"]["n"] == 3 and rows["a"]["expected"] == 3
    assert a["mean"] == pytest.approx(0.6) and a["std"] == pytest.approx(statistics.stdev([0.5, 0.6, 0.7]))
    assert rows["b"]["n"] == 1 and rows["b"]["metrics"]["R@1"]["std"] is None
    assert rep["missing"] == ["pre-b-seed1", "pre-b-seed2"]
    md = to_markdown(rep, m)
    assert "| a | 3/3 | 0.600 ± 0.100 |" in md
    assert "| b | 1/3 | 0.700 |" in md  # one seed: just the value, n says 1 of 3
    assert "Missing (2): `pre-b-seed1`, `pre-b-seed2`" in md

    capsys.readouterr()
    assert main(["report", str(p), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["missing"] == ["pre-b-seed1", "pre-b-seed2"] and js["metrics"] == ["R@1", "loss"]
    # an override regroups without editing the file
    assert main(["report", str(p), "report.group_by=[seed]"]) == 0
    assert "| 0 | 2/2 |" in capsys.readouterr().out


def test_optional_metric_missing_is_a_dash_not_a_problem(tmp_path):
    """A column some cells lack by design (an anchor has no "its anchor") is "–" there; a required one is a problem."""
    p = write_matrix(tmp_path, seeds=(0,), report={"group_by": ["variant"], "metrics": [
        {"key": "retrieval.R@1", "label": "R@1", "fmt": ".3f"}, {"key": "anchor.rsum", "optional": True},
        {"key": "not.there"}]})
    m, paths = load(p)
    run_matrix(m, paths)
    rep = build_report(m, paths)
    assert not any("anchor.rsum" in x for x in rep["problems"])
    assert any("not.there" in x for x in rep["problems"])
    md = to_markdown(rep, m)
    assert "| a | 1/1 | 0.500 | – | – |" in md


def test_write_section_between_markers(tmp_path, capsys):
    p = write_matrix(tmp_path, seeds=(0,))
    m, paths = load(p)
    run_matrix(m, paths)
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\nintro\n<!-- bench:toy -->\nold table\n<!-- /bench:toy -->\n\nafter\n")
    assert main(["report", str(p), "--write", str(doc), "--section", "toy"]) == 0
    text = doc.read_text()
    assert text.startswith("# Results\n\nintro\n<!-- bench:toy -->\n| variant |") and text.endswith("<!-- /bench:toy -->\n\nafter\n")
    assert "old table" not in text and "| a | 1/1 | 0.500 |" in text
    assert main(["report", str(p), "--write", str(doc), "--section", "toy"]) == 0
    assert doc.read_text() == text  # idempotent
    with pytest.raises(UserError, match="bench:other"):
        replace_section(doc, "other", "x")
    assert main(["report", str(p), "--write", str(doc), "--section", "nope"]) == 2
    assert "markers" in capsys.readouterr().err


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["cells"][0].update(axess=d["cells"][0].pop("axes")), r"cells\[0\].*'axess'.*did you mean 'axes'"),
    (lambda d: d.update(timeout=5), r"'timeout'.*did you mean 'timeout_s'"),
    (lambda d: d["report"]["metrics"].append({"key": "x", "fmtt": ".2f"}), r"'fmtt'"),
    (lambda d: d["cells"][0]["command"].append("{seeds}"), r"unknown placeholder \{seeds\}"),
    (lambda d: d["report"].update(group_by=["varaint"]), r"group_by.*varaint"),
    (lambda d: d["cells"][0]["axes"].update(variant=["a/b"]), r"not a safe file name"),
    (lambda d: d["cells"].append(dict(d["cells"][0])), r"used twice"),
])
def test_matrix_typos_are_config_errors(tmp_path, edit, match):
    p = write_matrix(tmp_path)
    data = yaml.safe_load(p.read_text())
    edit(data)
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=match):
        load_matrix(p)


def test_cli_list_help_and_config_error(tmp_path, capsys):
    p = write_matrix(tmp_path, seeds=(0,))
    assert main(["run", str(p), "--max-cells", "1"]) == 0
    assert main(["list", str(p)]) == 0
    out = capsys.readouterr().out
    assert "pre-a-seed0  done" in out and "pre-b-seed0  pending" in out and "1 done, 0 failed, 1 pending" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("cellz: []\n")
    assert main(["list", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error:") and "'cellz'" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--max-cells" in capsys.readouterr().out


def test_example_matrix_loads():
    m = load_matrix(REPO / "configs" / "bench" / "example.yaml")
    assert len(m) == 6 and m.cells[0].id == "toy-small-seed0"


# first attempt leaves a checkpoint and dies; the next attempt finds it (resume_partial) and finishes
PARTIAL = (
    "import json, os, sys\n"
    "out = sys.argv[1]\n"
    "ck = os.path.join(out, 'checkpoint')\n"
    "if not os.path.exists(ck):\n"
    "    open(ck, 'w').write('step 2'); sys.exit(1)\n"
    "json.dump({'resumed_from': open(ck).read()}, open(os.path.join(out, 'results.json'), 'w'))\n"
)


@pytest.mark.parametrize("keep", [True, False])
def test_resume_partial_keeps_an_interrupted_cells_folder(tmp_path, keep):
    data = {"name": "long", "runs_root": str(tmp_path / "runs"), "results_dir": str(tmp_path / "cells"),
            "resume_partial": keep,
            "cells": [{"name": "c", "command": ["{python}", "-c", PARTIAL, "{output_dir}"], "axes": {"seed": [0]}}]}
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(data))
    m, paths = load(p)
    assert run_matrix(m, paths).count("failed") == 1
    s = run_matrix(m, paths)
    if keep:
        assert s.count("done") == 1
        rec = json.loads((tmp_path / "cells/long/c-seed0.json").read_text())
        assert rec["results"] == {"resumed_from": "step 2"}
    else:  # wiped: the second attempt starts from nothing and dies the same way
        assert s.count("failed") == 1


# writes <out>/results.json after recording its start and end times in a shared log
TIMED = (
    "import json, sys, time, os\n"
    "name, out, log = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "open(log, 'a').write('start %s %r\\n' % (name, time.time()))\n"
    "if name == 'anchor-bad':\n"
    "    sys.exit(3)\n"
    "time.sleep(0.4)\n"
    "open(log, 'a').write('end %s %r\\n' % (name, time.time()))\n"
    "json.dump({'omp': os.environ.get('OMP_NUM_THREADS')}, open(out + '/results.json', 'w'))\n"
)


def _needs_matrix(tmp_path, anchors=("a", "b"), extra_needs=None):
    log = tmp_path / "order.log"
    data = {
        "name": "dep", "runs_root": str(tmp_path / "runs"), "results_dir": str(tmp_path / "cells"),
        "cells": [
            {"name": "anchor", "command": ["{python}", "-c", TIMED, "anchor-{w}", "{output_dir}", str(log)],
             "axes": {"w": list(anchors)}, "id": "anchor-{w}"},
            {"name": "boost", "command": ["{python}", "-c", TIMED, "boost-{w}", "{output_dir}", str(log)],
             "axes": {"w": list(anchors)}, "id": "boost-{w}", "needs": extra_needs or ["anchor-{w}"]},
        ],
    }
    p = tmp_path / "dep.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p, log


def _events(log):
    ev = {}
    for line in log.read_text().splitlines():
        kind, name, t = line.split()
        ev[(kind, name)] = float(t)
    return ev


def test_jobs_run_cells_at_once_and_a_cell_waits_for_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    p, log = _needs_matrix(tmp_path)
    m, paths = load(p)
    assert m.get("boost-a").needs == ["anchor-a"]
    s = run_matrix(m, paths, jobs=2)
    assert s.ok and s.count("done") == 4
    ev = _events(log)
    assert ev[("start", "anchor-b")] < ev[("end", "anchor-a")]  # two at once
    for w in "ab":
        assert ev[("start", f"boost-{w}")] >= ev[("end", f"anchor-{w}")]  # never before its anchor
    rec = json.loads((tmp_path / "cells" / "dep" / "boost-a.json").read_text())
    assert rec["provenance"]["concurrent_cells"] == 2 and rec["provenance"]["env"]["OMP_NUM_THREADS"]
    assert rec["results"]["omp"] == rec["provenance"]["env"]["OMP_NUM_THREADS"]
    assert rec["provenance"]["thread_env"]["OMP_NUM_THREADS"] == rec["results"]["omp"]


def test_the_record_keeps_the_thread_count_the_command_saw(tmp_path, monkeypatch):
    # one cell at a time adds nothing to the environment, so the caller's setting is what counts
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    p, _ = _needs_matrix(tmp_path)
    m, paths = load(p)
    assert run_matrix(m, paths, jobs=1, only=["anchor-a"]).ok
    rec = json.loads((tmp_path / "cells" / "dep" / "anchor-a.json").read_text())
    assert rec["results"]["omp"] == "3"
    assert rec["provenance"]["thread_env"] == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": None}
    assert "env" not in rec["provenance"]  # the runner set nothing itself


def test_a_failed_or_missing_need_fails_the_cell_without_running_it(tmp_path):
    p, log = _needs_matrix(tmp_path, anchors=("bad", "b"))
    m, paths = load(p)
    s = run_matrix(m, paths, jobs=2)
    out = {o.cell_id: o for o in s.outcomes}
    assert out["anchor-bad"].status == "failed" and out["boost-bad"].status == "failed"
    assert "needs anchor-bad, which failed" in out["boost-bad"].message
    assert out["boost-b"].status == "done"
    assert ("start", "boost-bad") not in _events(log)
    # a need neither done nor selected: a clear failure, sequentially too
    (tmp_path / "two").mkdir()
    q, _ = _needs_matrix(tmp_path / "two", anchors=("c",))
    m2, paths2 = load(q)
    s2 = run_matrix(m2, paths2, only=["boost-*"])
    assert s2.outcomes[0].status == "failed" and "needs anchor-c, which is not done" in s2.outcomes[0].message


def test_needs_must_name_cells_of_the_matrix(tmp_path):
    p, _ = _needs_matrix(tmp_path, extra_needs=["anchor-{w}x"])
    with pytest.raises(ConfigError, match="needs 'anchor-ax', which is not a cell"):
        load_matrix(p)


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "bench").glob("*.yaml")), ids=lambda p: p.stem)
def test_the_repository_matrices_load(path):
    """Every shipped matrix expands (placeholders, ids, needs, report keys), without running anything."""
    m = load_matrix(path)
    assert len(m) > 0
    ids = {c.id for c in m}
    assert all(n in ids for c in m for n in c.needs)
