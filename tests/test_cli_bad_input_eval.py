"""Bad input to ``t2i eval``: a table of (command, input, exit code, words), each asserting no traceback.

Every row runs the real CLI in-process (``tests/cli_harness.py``). The inputs are made once
per module in a scratch folder; the synth evaluator (committed weights, 64 px) is the
extractor wherever a row gets as far as building one, so no row is slow. A second part
checks the accounting property: for every eval command, items used + items reported as
skipped (+ items beyond a dataset's N) equals the items given.
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

try:
    from cli_harness import check_case, run_cli
except ImportError:  # tests/ collected as a package
    from tests.cli_harness import check_case, run_cli

SYNTH = ["--extractor", "synth", "--world", "birds", "--no-progress"]


def _images(folder: Path, n: int, size: int = 64, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def W(tmp_path_factory) -> Path:
    """Every input the table names, made once."""
    w = tmp_path_factory.mktemp("evalinputs")
    _images(w / "imgs", 10)
    _images(w / "imgs2", 10, seed=1)
    _images(w / "one", 1)
    hidden = w / "hidden_only"
    hidden.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 64)).save(hidden / f".h{i}.png")
    broken = _images(w / "broken", 3)
    (broken / "bad.png").write_bytes(b"this is not a png")
    mixed = _images(w / "mixed", 4)
    Image.new("RGB", (80, 50), (200, 10, 10)).save(mixed / "wide.png")
    Image.new("L", (30, 30), 128).save(mixed / "gray.png")
    # prompts without ground truth (no caption_attributes)
    pr = _images(w / "prompts", 4)
    (pr / "metadata.jsonl").write_text("".join(json.dumps({"image": f"{i:03d}.png", "caption": f"bird {i}"}) + "\n"
                                               for i in range(4)))
    assert run_cli(["data", "synth", "--world", "birds", "--out", w / "world", "--n-train", "4", "--n-test", "6",
                    "--size", "64", "--json"]).code == 0
    (w / "notes.txt").write_text("hello")
    (w / "text.npz").write_text("mu,sigma\n1,2\n")
    with open(w / "pickle.npz", "wb") as f:
        pickle.dump({"mu": [0.0]}, f)
    np.savez(w / "zero.npz", mu=np.zeros(128), sigma=np.zeros((128, 128)))
    np.savez(w / "n1.npz", mu=np.zeros(128), sigma=np.eye(128), n=np.int64(1))
    np.savez(w / "nosigma.npz", mu=np.zeros(128))
    np.savez(w / "nan.npz", mu=np.full(128, np.nan), sigma=np.eye(128))
    assert run_cli(["eval", "stats", "--input", w / "imgs", "--output", w / "ref.npz", *SYNTH]).code == 0
    data = dict(np.load(w / "ref.npz"))
    meta = json.loads(str(data["meta"]))
    meta["resize_mode"] = "bicubic-antialias"
    np.savez(w / "ref_bicubic.npz", **{**data, "meta": np.array(json.dumps(meta))})
    (w / "trunc.npz").write_bytes((w / "ref.npz").read_bytes()[:300])
    np.save(w / "array.npy", np.zeros(3))
    shutil.copy(w / "array.npy", w / "array_as.npz")
    np.savez(w / "emb_missing.npz", image_emb=np.eye(4))
    np.savez(w / "emb.npz", image_emb=np.eye(4), text_emb=np.eye(4), caption_to_image=np.arange(4))
    (w / "afile").write_text("x")
    (w / "outdir").mkdir()
    # encoders for rprecision
    from imagetext.data.synthetic import load_synthetic
    from imagetext.encoders import build_image_encoder, build_text_encoder
    from imagetext.tokenizer import WordTokenizer

    split = load_synthetic("birds", "train", n=10, size=32)
    torch.manual_seed(0)
    build_text_encoder("bilstm_tiny", tokenizer=WordTokenizer.build([c for s in split.samples for c in s.captions])
                       ).save_pretrained(w / "text_enc")
    build_image_encoder("damsm_cnn_tiny").save_pretrained(w / "image_enc")
    (w / "empty_enc").mkdir()
    return w


# (id, argv with {W} for the scratch folder, exit code, words in the message)
CASES = [
    # --- inputs that do not exist or are the wrong kind
    ("fid-real-missing", "fid --real {W}/nope --fake {W}/imgs", 2, ["--real", "no such folder"]),
    ("fid-real-is-file", "fid --real {W}/notes.txt --fake {W}/imgs", 2, ["notes.txt", "not a folder"]),
    ("fid-text-as-npz", "fid --real {W}/text.npz --fake {W}/imgs", 2, ["text.npz", "not an .npz", "looks like text"]),
    ("fid-pickle-as-npz", "fid --real {W}/pickle.npz --fake {W}/imgs", 2, ["pickle.npz", "looks like pickle"]),
    ("fid-truncated-npz", "fid --real {W}/trunc.npz --fake {W}/imgs", 2, ["trunc.npz", "truncated or corrupt"]),
    ("fid-npy-as-npz", "fid --real {W}/array_as.npz --fake {W}/imgs", 2, ["array_as.npz", "looks like npy"]),
    ("fid-npz-missing", "fid --real {W}/absent.npz --fake {W}/imgs", 2, ["absent.npz", "no such file"]),
    ("fid-zero-stats", "fid --real {W}/zero.npz --fake {W}/ref.npz", 2, ["zero.npz", "sigma is all zeros"]),
    ("fid-n1-stats", "fid --real {W}/n1.npz --fake {W}/ref.npz", 2, ["n1.npz", "n=1"]),
    ("fid-no-sigma", "fid --real {W}/nosigma.npz --fake {W}/ref.npz", 2, ["nosigma.npz", "missing key(s) sigma"]),
    ("fid-nan-stats", "fid --real {W}/nan.npz --fake {W}/ref.npz", 2, ["nan.npz", "nan"]),
    ("fid-resize-mismatch", "fid --real {W}/ref.npz --fake {W}/ref_bicubic.npz", 2,
     ["made differently", "resize_mode", "--allow-mismatch"]),
    ("fid-npz-vs-other-extractor", "fid --real {W}/ref.npz --fake {W}/imgs --extractor synth --world scenes", 2,
     ["ref.npz", "synth-birds"]),
    ("fid-one-image", "fid --real {W}/one --fake {W}/imgs", 2, ["one", "1 usable image", "at least 2"]),
    ("fid-hidden-only", "fid --real {W}/hidden_only --fake {W}/imgs", 2, ["0 usable image", "hidden file"]),
    ("fid-world-root", "fid --real {W}/world --fake {W}/imgs", 2, ["several metadata files", "dataset:folder:"]),
    ("fid-undecodable", "fid --real {W}/broken --fake {W}/imgs" + " --extractor synth", 2, ["bad.png"]),
    # --- dataset specs
    ("fid-unknown-dataset", "fid --real dataset:flowers:test --fake {W}/imgs", 2, ["unknown data set", "flowers"]),
    ("fid-dataset-no-split", "fid --real dataset:birds --fake {W}/imgs", 2, ["dataset:NAME:SPLIT"]),
    ("fid-dataset-n-zero", "fid --real dataset:birds:test:0 --fake {W}/imgs", 2, ["N must be >= 1"]),
    ("fid-dataset-n-text", "fid --real dataset:birds:test:ten --fake {W}/imgs", 2, ["N must be an integer", "ten"]),
    ("fid-dataset-bad-split", "fid --real dataset:birds:tset:5 --fake {W}/imgs", 2, ["tset"]),
    ("fid-cub-no-root", "fid --real dataset:cub:test --fake {W}/imgs", 2, ["--data-root"]),
    ("fid-cub-root-missing", "fid --real dataset:cub:test --data-root {W}/nope --fake {W}/imgs", 2,
     ["--data-root", "not a folder"]),
    # --- numbers
    ("fid-batch-zero", "fid --real {W}/imgs --fake {W}/imgs2 --batch-size 0", 2, ["--batch-size", "positive integer"]),
    ("fid-batch-negative", "fid --real {W}/imgs --fake {W}/imgs2 --batch-size -4", 2, ["--batch-size", "positive"]),
    ("fid-batch-text", "fid --real {W}/imgs --fake {W}/imgs2 --batch-size many", 2, ["--batch-size", "not an integer"]),
    ("fid-size-small", "fid --real dataset:birds:test:4 --fake {W}/imgs --size 16", 2, ["--size", "between 32 and 256"]),
    ("fid-seed-negative", "fid --real {W}/imgs --fake {W}/imgs2 --seed -1", 2, ["--seed", "2**32"]),
    ("fid-workers-negative", "fid --real {W}/imgs --fake {W}/imgs2 --workers -1", 2, ["--workers", ">= 0"]),
    ("fid-unknown-device", "fid --real {W}/imgs --fake {W}/imgs2 --device tpu", 2, ["--device", "invalid choice"]),
    # --- outputs, checked before any work
    ("fid-out-folder", "fid --real {W}/imgs --fake {W}/imgs2 --out {W}/outdir", 2, ["--out", "is a folder"]),
    ("fid-out-under-file", "fid --real {W}/imgs --fake {W}/imgs2 --out {W}/afile/r.json", 2, ["afile", "is a file"]),
    ("stats-output-folder", "stats --input {W}/imgs --output {W}/outdir", 2, ["--output", "is a folder"]),
    ("stats-output-suffix", "stats --input {W}/imgs --output {W}/stats.txt", 2, ["--output", "must end in .npz"]),
    ("stats-input-npz", "stats --input {W}/ref.npz --output {W}/s2.npz", 2, ["stats needs the images"]),
    ("stats-out-equals-output", "stats --input {W}/imgs --output {W}/s3.npz --out {W}/s3.npz", 2, ["both name"]),
    # --- KID / IS / all
    ("kid-npz", "kid --real {W}/ref.npz --fake {W}/imgs", 2, ["KID needs the images"]),
    ("kid-subset-larger-than-set", "kid --real {W}/imgs --fake {W}/imgs2 --subset-size 100", 2,
     ["--subset-size 100", "larger than", "--subset-size 10 or fewer"]),
    ("kid-subsets-zero", "kid --real {W}/imgs --fake {W}/imgs2 --subsets 0", 2, ["--subsets", "positive"]),
    ("is-splits-too-many", "is --images {W}/imgs --splits 20", 2, ["--splits 20", "more than the 10 images"]),
    ("is-no-logits", "is --images {W}/imgs --extractor inception", 2, ["no class logits", "--extractor synth"]),
    ("all-fake-npz", "all --real {W}/imgs --fake {W}/ref.npz", 2, ["needs the images"]),
    ("all-subset-larger-than-set", "all --real {W}/imgs --fake {W}/imgs2 --subset-size 50", 2, ["larger than"]),
    # --- prompts
    ("faith-no-prompts", "faithfulness --images {W}/imgs", 2, ["no prompts", "metadata.jsonl"]),
    ("faith-no-ground-truth", "faithfulness --images {W}/prompts", 2, ["caption_attributes"]),
    ("clipscore-no-prompts", "clipscore --images {W}/imgs --clip-model tiny", 2, ["no prompts"]),
    ("clipscore-random-weights", "clipscore --images {W}/prompts --clip-model tiny", 0, ["warning", "random weights"]),
    ("rprec-swapped", "rprecision --images {W}/prompts --text-encoder {W}/image_enc --image-encoder {W}/text_enc --folds 2",
     2, ["did you swap"]),
    ("rprec-not-folder", "rprecision --images {W}/prompts --text-encoder {W}/notes.txt --image-encoder {W}/image_enc --folds 2", 2,
     ["notes.txt", "not a folder"]),
    ("rprec-empty-folder", "rprecision --images {W}/prompts --text-encoder {W}/empty_enc --image-encoder {W}/image_enc --folds 2",
     2,
     ["empty_enc", "not a saved encoder"]),
    ("rprec-folds-zero", "rprecision --images {W}/prompts --text-encoder {W}/text_enc --image-encoder {W}/image_enc "
     "--folds 0", 2, ["--folds", "positive"]),
    ("rprec-folds-too-many", "rprecision --images {W}/prompts --text-encoder {W}/text_enc --image-encoder {W}/image_enc",
     2, ["--folds 10", "more than the 4 images"]),
    # --- retrieval files
    ("retr-text", "retrieval --embeddings {W}/notes.txt", 2, ["notes.txt", "looks like text"]),
    ("retr-pickle", "retrieval --embeddings {W}/pickle.npz", 2, ["looks like pickle"]),
    ("retr-truncated", "retrieval --embeddings {W}/trunc.npz", 2, ["truncated or corrupt"]),
    ("retr-missing-keys", "retrieval --embeddings {W}/emb_missing.npz", 2, ["missing key(s)", "text_emb"]),
    ("retr-absent", "retrieval --embeddings {W}/absent.npz", 2, ["no such file"]),
    ("retr-npz-as-sims", "retrieval --sims {W}/emb.npz --caption-to-image {W}/array.npy", 2, ["not an .npy", "looks like npz"]),
    ("retr-sims-alone", "retrieval --sims {W}/array.npy", 2, ["--caption-to-image"]),
    ("retr-both", "retrieval --embeddings {W}/emb.npz --sims {W}/array.npy", 2, ["give one of", "--embeddings and --sims"]),
    ("retr-model-no-data", "retrieval --model {W}/text_enc", 2, ["--model needs --data"]),
    ("retr-model-not-matcher", "retrieval --model {W}/text_enc --data {W}/prompts", 2, ["no saved model of a known format"]),
    ("retr-model-missing", "retrieval --model {W}/nope --data {W}/prompts", 2, ["nope", "not a folder"]),
    ("retr-coco-too-small", "retrieval --embeddings {W}/emb.npz --protocol coco", 2, ["whole number of 1000-image folds"]),
    # --- the command line itself
    ("unknown-metric", "fidd --real a --fake b", 2, ["invalid choice", "fidd"]),
    ("unknown-option", "fid --real {W}/imgs --fake {W}/imgs2 --allow-mixed-sizes", 2, ["unrecognized arguments"]),
    ("option-of-another-metric", "clipscore --images {W}/prompts --world birds", 2, ["unrecognized arguments", "--world"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_eval_bad_input_table(W, case):
    _, argv, code, words = case
    check_case(["eval", *argv.format(W=W).split()], code, words)


def test_table_size():
    """The size the issue asked to report (docs/RESULTS.md): rows, and rows with an expected message."""
    assert len(CASES) >= 60 and all(words for *_, words in CASES)


def _json(argv):
    r = run_cli(argv + ["--json", "--no-progress"])
    assert r.code == 0 and not r.traceback, r.err + r.traceback
    return json.loads(r.out), r.err


def test_fid_of_two_npz_reports_the_files_provenance(W):
    res, _ = _json(["eval", "fid", "--real", str(W / "ref.npz"), "--fake", str(W / "ref.npz")])
    # the default extractor (inception) was never built: the provenance is the files'
    assert res["extractor"] == "synth-birds" and res["from_statistics"] and res["fid"] == pytest.approx(0.0, abs=1e-6)


def test_allow_mismatch_is_recorded(W):
    res, err = _json(["eval", "fid", "--real", str(W / "ref.npz"), "--fake", str(W / "ref_bicubic.npz"),
                      "--allow-mismatch"])
    assert res["provenance_mismatch"][str(W / "ref_bicubic.npz")]["resize_mode"] == ["bicubic-antialias", "bilinear-antialias"]
    assert "warning" in err and "resize_mode" in err and res["warnings"]


def test_mixed_sizes_are_scored_and_recorded(W):
    res, _ = _json(["eval", "fid", "--real", str(W / "mixed"), "--fake", str(W / "imgs"), *SYNTH])
    assert res["n_real"] == 6 and np.isfinite(res["fid"])
    assert res["image_sizes"][str(W / "mixed")] == {"30x30": 1, "64x64": 4, "80x50": 1}


def _counting_folder(root: Path) -> tuple[Path, int]:
    """A generated-images folder with prompts for 5 of 8 images, a hidden file, a stray file; returns (folder, given)."""
    d = root / "gen"
    if d.exists():
        shutil.rmtree(d)
    rows = []
    from imagetext.data.synthetic import load_synthetic

    split = load_synthetic("birds", "test", n=8, size=64)
    d.mkdir(parents=True)
    for i, s in enumerate(split.samples):
        s.load_image().save(d / f"{i}.png")
        if i < 5:
            rows.append({"image": f"{i}.png", "caption": s.captions[0], "caption_attributes": [s.caption_attributes[0]]})
    rows.append({"image": "missing.png", "caption": "a bird"})  # a row whose image is not there
    (d / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / ".thumb.png").write_bytes(b"x")
    (d / "log.txt").write_text("notes")
    # given: 8 images + 1 missing row + hidden + stray (the metadata file itself is not an item)
    return d, 8 + 1 + 1 + 1


@pytest.mark.parametrize("metric", ["fid", "kid", "is", "stats", "faithfulness", "all", "clipscore"])
def test_used_plus_skipped_equals_given(W, tmp_path, metric):
    d, given = _counting_folder(tmp_path)
    argv = {
        "fid": ["fid", "--real", str(W / "imgs"), "--fake", str(d), *SYNTH],
        "kid": ["kid", "--real", str(W / "imgs"), "--fake", str(d), "--subsets", "3", *SYNTH],
        "is": ["is", "--images", str(d), "--splits", "2", *SYNTH],
        "stats": ["stats", "--input", str(d), "--output", str(tmp_path / "s.npz"), *SYNTH],
        "faithfulness": ["faithfulness", "--images", str(d), "--world", "birds", "--no-progress"],
        "all": ["all", "--real", str(W / "imgs"), "--fake", str(d), "--subsets", "3", "--splits", "2", *SYNTH],
        "clipscore": ["clipscore", "--images", str(d), "--clip-model", "tiny", "--no-progress"],
    }[metric]
    res, err = _json(["eval", *argv])
    role = {"fid": "fake", "kid": "fake", "all": "fake", "stats": "input"}.get(metric, "images")
    summ = res["inputs"][role]
    assert summ["used"] == 5 and summ["given"] == given
    assert summ["used"] + summ["skipped"] + summ["beyond_limit"] == given
    named = " ".join(summ["problems"])
    for what in ("5.png: image not listed", ".thumb.png: hidden file", "log.txt: not an image", "missing.png"):
        assert what in named, (what, named)
    assert f"used 5 of {given}" in err  # said on stderr, not only in the JSON


def test_dataset_limit_is_counted(W):
    res, err = _json(["eval", "is", "--images", "dataset:folder:test:4", "--data-root", str(W / "world"),
                      "--splits", "2", *SYNTH])
    summ = res["inputs"]["images"]
    assert (summ["used"], summ["beyond_limit"], summ["given"]) == (4, 2, 6)
    assert "first 4 of 6" in err
