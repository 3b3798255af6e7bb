"""``t2i generate`` and generate-then-score (``t2i eval ... --fake model:DIR``) on one tiny trained model.

The model is trained once per module in-process (2 steps of configs/t2i/dfgan_tiny.yaml, 32 px);
every command then runs the real CLI in-process (``tests/cli_harness.py``): determinism,
the folder and grid layouts, every bad input (exit 2, a clear message, no traceback),
and that ``model:DIR`` generates one image per reference prompt, identical to what
``t2i generate`` draws, with prompts that faithfulness can score.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    from cli_harness import check_case, run_cli
except ImportError:  # tests/ collected as a package
    from tests.cli_harness import check_case, run_cli

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a small red bird with black wings", "a blue bird with a long tail"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A trained tiny DF-GAN: OUTPUT_DIR (holding final/)."""
    from t2i.gan.run import main

    out = tmp_path_factory.mktemp("gen_model")
    main(["--config", str(ROOT / "configs/t2i/dfgan_tiny.yaml"), f"output_dir={out}", "max_steps=2",
          "checkpoint_every=0", "sample.every=0", "eval.n_images=4"])
    assert (out / "final" / "pipeline.json").is_file()
    return out


def _gen(model: Path, out: Path, *extra: str, prompts=PROMPTS):
    argv = ["generate", "--model", model, "--out", out, "--no-progress", *extra]
    for p in prompts:
        argv += ["--prompt", p]
    return run_cli(argv)


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --------------------------------------------------------------------------- t2i generate


def test_same_seed_same_bytes_other_seed_other_images(model, tmp_path):
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        r = _gen(model, tmp_path / name, "--n", "2", "--seed", seed, "--batch-size", "3")
        assert r.code == 0 and not r.traceback, r.err
        runs[name] = sorted(p.name for p in (tmp_path / name).iterdir())
    assert runs["a"] == runs["b"] == ["0000.png", "0001.png", "0002.png", "0003.png", "metadata.jsonl"]
    for f in runs["a"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    # another seed: other noise, other images
    for f in runs["a"][:-1]:
        assert not np.array_equal(_pixels(tmp_path / "a" / f), _pixels(tmp_path / "c" / f)), f
    # --batch-size does not change the images
    assert _gen(model, tmp_path / "d", "--n", "2", "--seed", "0", "--batch-size", "64").code == 0
    assert (tmp_path / "d" / "0003.png").read_bytes() == (tmp_path / "a" / "0003.png").read_bytes()


def test_folder_metadata_is_the_eval_folder_format(model, tmp_path):
    from imagetext.metrics.inputs import resolve_input

    out = tmp_path / "imgs"
    r = _gen(model, out, "--n", "3", "--seed", "5", "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["seed"] == 5 and summary["n"] == 3 and summary["prompts"] == PROMPTS
    assert len(summary["files"]) == 6 and summary["kind"] == "folder"
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows == [{"file_name": f"{i:04d}.png", "text": PROMPTS[i // 3], "seed": 5, "index": i, "prompt_index": i // 3}
                    for i in range(6)]
    assert Image.open(out / "0000.png").size == (32, 32)
    s = resolve_input(str(out), argparse.Namespace(), need_prompts=True)
    assert s.used == 6 and not s.skipped and [x.captions[0] for x in s.split.samples] == [PROMPTS[i // 3] for i in range(6)]


def test_grid_rows_are_prompts_columns_are_images(model, tmp_path):
    prompts = PROMPTS + ["a green bird"]
    assert _gen(model, tmp_path / "grid.png", "--n", "2", "--seed", "3", prompts=prompts).code == 0
    grid = _pixels(tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size == (2 * 32, 3 * 32)
    assert _gen(model, tmp_path / "imgs", "--n", "2", "--seed", "3", prompts=prompts).code == 0
    for i in range(3):
        for j in range(2):
            tile = grid[i * 32:(i + 1) * 32, j * 32:(j + 1) * 32]
            assert np.array_equal(tile, _pixels(tmp_path / "imgs" / f"{i * 2 + j:04d}.png")), (i, j)
    # an existing grid needs --overwrite
    check_case(["generate", "--model", model, "--prompt", "red", "--out", tmp_path / "grid.png"], 2, ["--overwrite"])
    assert _gen(model, tmp_path / "grid.png", "--overwrite", prompts=["red"]).code == 0
    assert Image.open(tmp_path / "grid.png").size == (32, 32)


def test_overwrite_replaces_only_its_own_files(model, tmp_path):
    out = tmp_path / "imgs"
    assert _gen(model, out, "--n", "2").code == 0
    (out / "notes.txt").write_text("mine")
    assert _gen(model, out, "--overwrite", prompts=["red"]).code == 0
    assert sorted(p.name for p in out.iterdir()) == ["0000.png", "metadata.jsonl", "notes.txt"]


def test_unknown_words_long_prompts_and_other_scripts_generate_with_warnings(model, tmp_path):
    long = ("red bird " * 2000)[:10_000]
    prompts = [long, "🐦🐦🐦", "птица с красными крыльями", "a bird 🐦 鸟 zzzqx"]
    r = _gen(model, tmp_path / "imgs", "--json", prompts=prompts)
    assert r.code == 0 and not r.traceback, r.err
    summary = json.loads(r.out)
    assert summary["prompts"][0] == long and len(summary["files"]) == 4
    text = " ".join(summary["warnings"])
    assert "reads the first" in text and "<unk>" in text and "zzzqx" in text
    assert "t2i generate: warning:" in r.err and "<unk>" in r.err
    rows = [json.loads(x) for x in (tmp_path / "imgs" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["text"] for x in rows] == prompts


@pytest.fixture(scope="module")
def bad(model, tmp_path_factory) -> Path:
    """Broken inputs: prompt files, model folders of another kind or with files missing."""
    w = tmp_path_factory.mktemp("bad")
    (w / "empty.txt").write_bytes(b"")
    (w / "blank.txt").write_text("\n   \n")
    (w / "latin1.txt").write_bytes(b"a red bird\na caf\xe9 bird\n")
    enc = w / "pretrain" / "final"
    for part in ("text_encoder", "image_encoder"):
        (enc / part).mkdir(parents=True)
        (enc / part / "config.json").write_text(json.dumps({"format": "imagetext.encoder", "kind": part[:-8]}))
    (w / "matcher").mkdir()
    (w / "matcher" / "matcher.json").write_text(json.dumps({"format": "matching.embedding/1"}))
    for name, missing in (("no_weights", "generator/diffusion_pytorch_model.safetensors"),
                          ("no_vocab", "text_encoder/vocab.json")):
        shutil.copytree(model / "final", w / name)
        (w / name / missing).unlink()
    (w / "full").mkdir()
    (w / "full" / "x.txt").write_text("x")
    return w


BAD_CASES = [
    ("empty prompt", ["--prompt", ""], ["--prompt 1", "empty"]),
    ("blank prompt", ["--prompt", "ok", "--prompt", "  \t "], ["--prompt 2", "empty"]),
    ("missing prompts file", ["--prompts-file", "{w}/nope.txt"], ["nope.txt", "no such file"]),
    ("empty prompts file", ["--prompts-file", "{w}/empty.txt"], ["empty.txt", "empty"]),
    ("blank prompts file", ["--prompts-file", "{w}/blank.txt"], ["blank.txt", "no prompts"]),
    ("latin-1 prompts file", ["--prompts-file", "{w}/latin1.txt"], ["latin1.txt:2", "not utf-8", "column 6"]),
    ("prompts folder", ["--prompts-file", "{w}"], ["is a folder"]),
    ("n zero", ["--prompt", "red", "--n", "0"], ["--n", "positive"]),
    ("n huge", ["--prompt", "red", "--prompt", "blue", "--n", "5001"], ["10,002", "at most 10,000"]),
    ("truncation zero", ["--prompt", "red", "--truncation", "0"], ["--truncation", "> 0"]),
    ("model missing", ["--prompt", "red", "--model", "{w}/nomodel"], ["nomodel", "no such folder"]),
    ("model is a file", ["--prompt", "red", "--model", "{w}/empty.txt"], ["not a folder"]),
    ("pretrain encoders", ["--prompt", "red", "--model", "{w}/pretrain"], ["phase-1 encoders", "not a generator"]),
    ("matcher", ["--prompt", "red", "--model", "{w}/matcher"], ["matcher", "not a text-to-image generator"]),
    ("weights missing", ["--prompt", "red", "--model", "{w}/no_weights"], ["diffusion_pytorch_model.safetensors", "missing"]),
    ("vocab missing", ["--prompt", "red", "--model", "{w}/no_vocab"], ["vocab.json", "missing"]),
    ("grid not png", ["--prompt", "red", "--out", "{w}/grid.jpg"], ["png"]),
    ("grid too big", ["--prompt", "red", "--n", "1025", "--out", "{w}/big.png"], ["1,024", "folder"]),
    ("out folder not empty", ["--prompt", "red", "--out", "{w}/full"], ["not empty", "--overwrite"]),
    ("out is a file", ["--prompt", "red", "--out", "{w}/empty.txt"], ["is a file"]),
]


@pytest.mark.parametrize("argv,words", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_one_clear_line(model, bad, argv, words):
    argv = [a.replace("{w}", str(bad)) for a in argv]
    base = {"--model": str(model), "--out": str(bad / "out_never_written")}
    for flag, value in base.items():
        if flag not in argv:
            argv = [flag, value] + argv
    r = check_case(["generate", *argv], 2, words)
    assert not (bad / "out_never_written").exists()
    if not any(a in argv for a in ("--n", "--truncation")):  # argparse's own errors print usage first
        assert len(r.err.strip().splitlines()) == 1, r.err


# --------------------------------------------------------------------------- --fake model:DIR


def test_eval_all_with_a_model_as_fake(model):
    r = run_cli(["eval", "all", "--real", "dataset:birds:test:24", "--fake", f"model:{model}", "--extractor", "synth",
                 "--world", "birds", "--json", "--no-progress", "--seed", "2", "--subsets", "10"])
    assert r.code == 0 and not r.traceback, r.err + r.traceback
    out = json.loads(r.out)
    assert math.isfinite(out["fid"]) and math.isfinite(out["kid"])
    assert math.isfinite(out["faithfulness"]["overall"]) and out["faithfulness"]["n_images"] == 24
    fake = out["inputs"]["fake"]
    assert fake["kind"] == "generated" and fake["used"] == fake["given"] == 24
    assert fake["used"] + fake["skipped"] + fake["beyond_limit"] == fake["given"]
    gen = fake["generated"]
    assert (gen["model"], gen["n"], gen["seed"], gen["prompts_from"]) == (str(model), 24, 2, "dataset:birds:test:24")
    assert gen["image_size"] == [32, 32]
    assert "generated by" in r.err


def test_model_generates_what_t2i_generate_draws(model, tmp_path, monkeypatch):
    """One image per reference prompt (its first caption, attributes and labels), seeded like ``t2i generate``."""
    import imagetext.metrics.inputs as inputs

    args = argparse.Namespace(size=64, device="cpu", seed=0, gen_seed=7, gen_batch_size=5, no_progress=True,
                              prompts_from=None)
    ref = inputs.resolve_input("dataset:birds:test:12", args)
    gen = inputs.resolve_input(f"model:{model}", args, allow_model=True, need_prompts=True, reference=ref)
    assert gen.used == 12 and gen.summary()["given"] == 12
    for g, s in zip(gen.split.samples, ref.split.samples):
        assert g.captions == s.captions[:1] and g.labels == s.labels
        assert g.caption_attributes == s.caption_attributes[:1]
    prompts = [s.captions[0] for s in ref.split.samples]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    assert run_cli(["generate", "--model", model, "--prompts-file", tmp_path / "p.txt", "--seed", "7",
                    "--out", tmp_path / "imgs", "--no-progress"]).code == 0
    for i, s in enumerate(gen.split.samples):
        assert np.array_equal(np.asarray(s.load_image()), _pixels(tmp_path / "imgs" / f"{i:04d}.png")), i
    # generation in chunks: the first is drawn with --gen-seed itself, later ones get their own noise,
    # warnings keep their prompt numbers
    from imagetext.registry import load_saved_model

    monkeypatch.setattr(inputs, "GEN_CHUNK", 5)
    chunked = inputs.resolve_input(f"model:{model}", args, allow_model=True, reference=ref)
    imgs = [np.asarray(s.load_image()) for s in chunked.split.samples]
    first = load_saved_model(model).generate_tensors(prompts[:5], seed=7)
    first = ((first + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    for i in range(5):
        assert np.array_equal(imgs[i], first[i]), i
    again = inputs.resolve_input(f"model:{model}", args, allow_model=True, reference=ref)
    assert all(np.array_equal(a, np.asarray(s.load_image())) for a, s in zip(imgs, again.split.samples))
    assert not np.array_equal(imgs[5], imgs[0])
    numbers = [int(w.split()[1].rstrip(":")) for w in chunked.generated["warning_examples"] if w.startswith("prompt ")]
    assert numbers == sorted(numbers) and all(1 <= n <= 12 for n in numbers)


def _nogen_model(folder: Path) -> Path:
    """A saved model of a registered format that cannot generate (stands in for a matcher)."""
    from imagetext.registry import MODEL_LOADERS

    if "test-nogen/1" not in MODEL_LOADERS:
        MODEL_LOADERS.register("test-nogen/1")(lambda d: object())
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format": "test-nogen/1"}))
    return folder


def test_model_spec_errors(model, tmp_path):
    base = ["--extractor", "synth", "--no-progress"]
    check_case(["eval", "fid", "--real", f"model:{model}", "--fake", "dataset:birds:test:24", *base], 2,
               ["--real", "generated images", "real images"])
    check_case(["eval", "stats", "--input", f"model:{model}", "--output", tmp_path / "s.npz", *base], 2, ["--input"])
    check_case(["eval", "is", "--images", f"model:{model}", *base], 2, ["--prompts-from"])
    check_case(["eval", "kid", "--real", "dataset:birds:test:24", "--fake", f"model:{tmp_path}/nothere", *base], 2,
               ["--fake", "nothere", "not a folder"])
    check_case(["eval", "kid", "--real", "dataset:birds:test:24", "--fake", "model:", *base], 2, ["name the model folder"])
    nogen = _nogen_model(tmp_path / "nogen")
    check_case(["eval", "kid", "--real", "dataset:birds:test:24", "--fake", f"model:{nogen}", *base], 2,
               ["cannot generate"])
    plain = tmp_path / "plain"
    plain.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(plain / f"{i}.png")
    check_case(["eval", "kid", "--real", plain, "--fake", f"model:{model}", *base], 2, ["no prompts", "--prompts-from"])


def test_shared_text_encoder_and_float16_bundle(model, tmp_path):
    """A bundle keeps one text encoder for several pipelines (pipeline.json points to it) and may store
    float16 weights; the pipeline loads both and draws what the original draws (to float16 rounding)."""
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from imagetext.errors import UserError
    from t2i.gan.pipeline import T2IPipeline

    bundle = tmp_path / "bundle"
    shutil.copytree(model / "final", bundle / "t2i" / "a")
    shutil.move(str(bundle / "t2i" / "a" / "text_encoder"), str(bundle / "t2i" / "shared_enc"))
    meta_path = bundle / "t2i" / "a" / "pipeline.json"
    meta = json.loads(meta_path.read_text())
    meta["text_encoder"] = "../shared_enc"
    meta_path.write_text(json.dumps(meta))
    for f in bundle.rglob("*.safetensors"):
        save_file({k: (v.half() if v.dtype == torch.float32 else v) for k, v in load_file(str(f)).items()}, str(f),
                  metadata={"format": "pt"})
    ref = T2IPipeline.from_pretrained(model / "final").generate_tensors(PROMPTS, seed=1)
    pipe = T2IPipeline.from_pretrained(bundle / "t2i" / "a")
    assert all(p.dtype == torch.float32 for p in pipe.generator.parameters())
    assert (pipe.generate_tensors(PROMPTS, seed=1) - ref).abs().max() < 0.05
    for bad in ("/etc", "../../../../outside"):
        meta["text_encoder"] = bad
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(UserError, match="relative path inside the bundle"):
            T2IPipeline.from_pretrained(bundle / "t2i" / "a")


def test_one_pipeline_serves_concurrent_threads(model):
    """The demo calls one pipeline from several request threads: every call must succeed and draw what a
    lone call draws (a BiLSTM text encoder moved with .to() on every call used to race: zip() errors)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from t2i.gan.pipeline import T2IPipeline

    pipe = T2IPipeline.from_pretrained(model / "final")
    ref = {s: pipe.generate_tensors(PROMPTS, seed=s) for s in range(4)}
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: (i % 4, pipe.generate_tensors(PROMPTS, seed=i % 4)), range(48)))
    assert all(torch.equal(x, ref[s]) for s, x in outs)


def test_each_call_gets_its_own_prompt_warnings(model):
    """``warnings=`` collects one call's warnings, whatever other threads ask meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from t2i.gan.pipeline import T2IPipeline

    pipe = T2IPipeline.from_pretrained(model / "final")

    def call(i):
        said = []
        prompt = "zzqx blorf" if i % 2 else PROMPTS[0]
        pipe([prompt], seed=i, warnings=said)
        return i, said

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(16)))
    for i, said in results:
        if i % 2:
            assert len(said) == 1 and "none of its words is in the vocabulary" in said[0]
        else:
            assert said == []


def test_sample_sheet_puts_real_and_each_model_side_by_side(model, tmp_path):
    from PIL import Image

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sample_sheet
    finally:
        sys.path.pop(0)
    out = tmp_path / "sheet.png"
    assert sample_sheet.main(["--model", f"a={model}", "--model", f"b={model}", "--n", "3", "--scale", "2",
                              "--out", str(out)]) == 0
    sheet = Image.open(out)
    # 3 columns (real, a, b) of 64 px tiles beside the prompt text; 3 rows under the header
    assert sheet.size == (220 + 3 * (64 + 4), 18 + 3 * (64 + 4))
    # the two columns of one model and seed are the same pixels; the real column differs from them
    tiles = [sheet.crop((220 + j * 68, 18, 220 + j * 68 + 64, 18 + 64)).tobytes() for j in range(3)]
    assert tiles[1] == tiles[2] and tiles[0] != tiles[1]
    assert sample_sheet.main(["--model", f"x={tmp_path / 'nothing'}", "--out", str(out)]) == 2


def test_fid_reference_points_scores_real_rows_and_refuses_bad_extractors(capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import fid_reference_points
    finally:
        sys.path.pop(0)
    args = ["--world", "scenes", "--n", "12", "--n-train", "24"]
    assert fid_reference_points.main(args + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    own = rows["real (the test images: faithfulness ceiling)"]
    assert own["fid"] == pytest.approx(0.0, abs=1e-6) and own["faithfulness"] > rows["flat grey"]["faithfulness"]
    assert rows["flat grey"]["is"] == pytest.approx(1.0) and own["is"] > 1.0
    for bad, words in (("nope", "unknown feature extractor"), ("synth", "not the main extractor")):
        assert fid_reference_points.main(args + ["--test-extractors", bad]) == 2
        assert words in capsys.readouterr().err
