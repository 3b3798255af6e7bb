"""Phase-1 pretraining: the five variants x two encoder pairs train, export and score; bad input is one line."""
from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imagetext.config import load_config
from imagetext.errors import ConfigError, UserError
from t2i.pretrain.config import PretrainConfig
from t2i.pretrain.run import cli, main

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs/pretrain/birds_tiny.yaml")
VARIANTS = ["plain", "instance", "supcon", "unicl", "ce"]
TINY_CLIP = ["model.pair=clip", "model.text_encoder=openclip_text_tiny", "model.image_encoder=openclip_vision_tiny"]


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "configs/pretrain/*.yaml"))), ids=lambda p: Path(p).stem)
def test_every_preset_loads(path):
    cfg = load_config(PretrainConfig, path)
    assert cfg.loss.branches in (1, 2) and cfg.output_dir


def _variant_overrides(variant: str) -> list:
    """The variant's loss section, as the preset files set it (read from configs/pretrain/variants)."""
    import yaml

    loss = yaml.safe_load((REPO / f"configs/pretrain/variants/{variant}.yaml").read_text())["loss"]
    base = ["loss.supcon.text_text=0", "loss.supcon.image_image=0", "loss.supcon.image_text=0"]
    out = []
    for k, v in loss.items():
        if isinstance(v, dict):
            out += [f"loss.{k}.{k2}={json.dumps(v2)}" for k2, v2 in v.items()]
        else:
            out.append(f"loss.{k}={json.dumps(v)}")
    return base + out


@pytest.mark.parametrize("pair", ["damsm", "clip"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_exports_and_scores(tmp_path, variant, pair):
    extra = TINY_CLIP if pair == "clip" else []
    res = main(["--config", TINY, f"output_dir={tmp_path}", "max_steps=2", "checkpoint_every=0",
                *_variant_overrides(variant), *extra])
    assert res["steps"] == 2 and (tmp_path / "results.json").is_file()
    logs = res["last_logs"]
    assert any(k.endswith("_loss") for k in logs)
    if variant == "plain":
        assert not any(k.startswith("train/b2_") for k in logs)  # one branch
    if variant in ("instance", "supcon"):
        assert "train/supcon_tt_loss" in logs
    if variant == "unicl":
        assert any("unicl_loss" in k for k in logs)
    if variant == "ce":
        assert "train/ce_text_loss" in logs
    for key in ("t2i_r1", "i2t_r5", "knn_text", "knn_image", "train_samples_per_s"):
        assert key in res
    from imagetext.encoders import ImageEncoder, TextEncoder, load_encoder

    assert isinstance(load_encoder(tmp_path / "final/text_encoder"), TextEncoder)
    assert isinstance(load_encoder(tmp_path / "final/image_encoder"), ImageEncoder)


def test_both_branches_share_one_text_encoder_and_supcon_reaches_it(tmp_path):
    """Two captions go through the same weights; the text-text SupCon term alone gives them a gradient."""
    from imagetext.data.config import build_split
    from imagetext.data.dataset import ImageTextDataset, collate_fn
    from imagetext.tokenizer import WordTokenizer
    from t2i.pretrain.task import PretrainTask

    cfg = load_config(PretrainConfig, TINY, [f"output_dir={tmp_path}", "loss.matching_weight=0",
                                             "loss.supcon.image_image=0", "loss.supcon.image_text=0"])
    split = build_split(cfg.data, "train")
    tok = WordTokenizer.build([c for s in split.samples for c in s.captions])
    task = PretrainTask(cfg, tok, len(split.class_names), split.multi_label)
    assert [n for n in task.models] == ["text", "image"]  # one text encoder for both branches
    ds = ImageTextDataset(split, image_size=32, seed=0)
    batch = collate_fn([ds[i] for i in range(8)])
    assert batch["caption"] != batch["caption2"]
    out = task.training_step(batch, 0)
    loss = sum(v for k, v in out.items() if k.endswith("_loss"))
    loss.backward()
    assert set(k for k in out if k.endswith("_loss")) == {"b1_damsm_word_loss", "b1_damsm_sent_loss", "b2_damsm_word_loss",
                                                          "b2_damsm_sent_loss", "supcon_tt_loss"}
    grads = [p.grad for p in task.models["text"].parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in task.models["image"].parameters())


def test_resume_latest_continues_to_the_same_weights(tmp_path):
    common = ["--config", TINY, "checkpoint_every=2", "max_steps=4"]
    main(common + [f"output_dir={tmp_path / 'a'}"])
    main(common + [f"output_dir={tmp_path / 'b'}", "max_steps=2"])
    main(common + [f"output_dir={tmp_path / 'b'}", "resume=latest"])
    from safetensors.torch import load_file

    for part in ("text_encoder", "image_encoder"):
        a = load_file(tmp_path / "a/final" / part / "model.safetensors")
        b = load_file(tmp_path / "b/final" / part / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_scores_with_t2i_eval_rprecision(tmp_path, capsys):
    from imagetext.cli import main as t2i

    main(["--config", TINY, f"output_dir={tmp_path}", "max_steps=1", "checkpoint_every=0"])
    capsys.readouterr()
    rc = t2i(["eval", "rprecision", "--images", "dataset:birds:test:110", "--size", "32", "--folds", "2",
              "--text-encoder", str(tmp_path / "final/text_encoder"), "--image-encoder",
              str(tmp_path / "final/image_encoder"), "--json", "--no-progress"])
    assert rc == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["r_precision"] <= 1.0


@pytest.mark.parametrize("overrides,error,words", [
    (["max_stpes=3"], ConfigError, "max_steps"),
    (["loss.supcon.temprature=0.1"], ConfigError, "temperature"),
    (["eval.split=train"], ConfigError, "held-out"),
    (["loss.branches=3"], ConfigError, "loss.branches"),
    (["sampler.m=1"], ConfigError, "sampler.m"),
    (["loss.branches=1", "loss.supcon.text_text=1"], ConfigError, "two captions"),
    (["data.synthetic.n_train=1"], UserError, "class"),
])
def test_bad_config_is_a_clear_error(tmp_path, overrides, error, words):
    with pytest.raises(error, match=words):
        main(["--config", TINY, f"output_dir={tmp_path}", *overrides])


def test_output_dir_of_another_run_is_refused_and_cli_says_one_line(tmp_path, capsys):
    main(["--config", TINY, f"output_dir={tmp_path}", "max_steps=1", "checkpoint_every=0"])
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli(["--config", TINY, f"output_dir={tmp_path}", "max_steps=1", "loss.supcon.temperature=0.5"]) == 2
    err = capsys.readouterr().err
    assert "pretrain: error:" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing overwritten


@pytest.mark.timeout(240)
def test_pretrain_under_accelerate_two_processes(tmp_path):
    """`accelerate launch` with 2 CPU processes runs the script end to end and exports once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu2.yaml"),
           "--main_process_port", str(port), str(REPO / "scripts/pretrain.py"), "--config", TINY,
           f"output_dir={tmp_path}", "max_steps=2", "checkpoint_every=0"]
    r = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}, capture_output=True,
                       text=True, timeout=200, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["processes"] == 2 and res["steps"] == 2


def test_clip_style_export_serves_clipscore_and_the_clip_extractor(tmp_path, capsys):
    """`--weights EXPORT_DIR`: the project's own pretrained pair replaces a random-init CLIP."""
    from imagetext.cli import main as t2i

    main(["--config", TINY, f"output_dir={tmp_path / 'run'}", "max_steps=1", "checkpoint_every=0", *TINY_CLIP])
    capsys.readouterr()
    rc = t2i(["eval", "clipscore", "--images", "dataset:birds:test:6", "--size", "32", "--weights", str(tmp_path / "run"),
              "--json", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    res = json.loads(captured.out)
    assert res["extractor"].startswith("clip-export:") and res["weights_sha256"] and "random" not in captured.err
    rc = t2i(["eval", "fid", "--real", "dataset:birds:test:6", "--fake", "dataset:birds:train:6", "--size", "32",
              "--extractor", "clip", "--weights", str(tmp_path / "run" / "final"), "--json", "--no-progress"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["feature_dim"] == 16
    assert t2i(["eval", "clipscore", "--images", "dataset:birds:test:6", "--weights", str(tmp_path)]) == 2
    assert "not a pretraining export" in capsys.readouterr().err


def test_knn_scores_and_their_chance_levels():
    import numpy as np

    from t2i.pretrain.evaluate import knn_chance, knn_label_score

    emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1.0]])
    single = [(0,), (0,), (1,), (1,)]
    assert knn_label_score(emb, single, False, k=1) == 1.0 and knn_chance(single, False) == 0.5
    assert knn_label_score(emb[[0, 2, 1, 3]], single, False, k=1) == 0.0  # neighbours of the other class
    multi = [(0, 1), (1,), (2,), (2, 3)]
    assert knn_label_score(emb, multi, True, k=1) == 1.0
    assert knn_chance(multi, True) == pytest.approx(np.mean([1 / 3, 1 / 3, 1 / 3, 1 / 3]))


def test_resume_from_a_checkpoint_of_another_config_is_refused(tmp_path):
    main(["--config", TINY, f"output_dir={tmp_path / 'a'}", "max_steps=2", "checkpoint_every=2"])
    with pytest.raises(UserError, match="holds another checkpoint"):
        main(["--config", TINY, f"output_dir={tmp_path / 'b'}", "max_steps=2", "loss.supcon.temperature=0.5",
              f"resume={tmp_path / 'a' / 'checkpoints' / 'checkpoint-2'}"])
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_unlabelled_samples_and_long_captions_are_said_not_dropped(tmp_path, capsys):
    """A folder data set where one image has no label and one caption is longer than 18 words."""
    from PIL import Image

    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(12):
        Image.new("RGB", (32, 32), (20 * i, 100, 200 - 10 * i)).save(root / "img" / f"{i}.png")
        row = {"image": f"img/{i}.png", "captions": [f"a {'red' if i % 2 else 'blue'} bird number {i}",
                                                     f"another view of bird {i}"]}
        if i != 0:
            row["label"] = "red" if i % 2 else "blue"
        rows.append(row)
    rows[1]["captions"][0] = " ".join(["long"] * 25)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    res = main(["--config", TINY, f"output_dir={tmp_path / 'run'}", "max_steps=1", "checkpoint_every=0",
                "data.source=folder", f"data.root={root}", "batch_size=4", "eval.knn_k=2"])
    err = capsys.readouterr().err
    assert "1 training image(s) have no label" in err
    assert "1 of 24 training captions are longer than the text encoder's 18 words" in err
    assert res["steps"] == 1


def test_clip_pair_uses_decoupled_decay_on_matrices_only(tmp_path):
    """The CLIP presets train with AdamW; norms, biases, class embedding and the logit scale are not decayed.
    (Adam's coupled L2 at 0.1 had shrunk a from-scratch ViT's patch embedding to ~1e-3 in 300 steps.)"""
    from imagetext.data.config import build_split
    from imagetext.tokenizer import WordTokenizer
    from t2i.pretrain.task import PretrainTask

    assert load_config(PretrainConfig, REPO / "configs/pretrain/scenes_clip_plain.yaml").model.optimizer == "adamw"
    cfg = load_config(PretrainConfig, TINY, [f"output_dir={tmp_path}", *TINY_CLIP, "model.optimizer=adamw",
                                             "model.weight_decay=0.1"])
    split = build_split(cfg.data, "train")
    tok = WordTokenizer.build([c for s in split.samples for c in s.captions])
    task = PretrainTask(cfg, tok, len(split.class_names), split.multi_label)
    (opt,) = task.optimizers.values()
    assert isinstance(opt, torch.optim.AdamW)
    names = {id(p): f"{k}.{n}" for k, m in task.models.items() for n, p in m.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    kept = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert any("conv1.weight" in n for n in decayed) and any("in_proj_weight" in n for n in decayed)
    assert all(".ln_" in n or n.endswith("bias") or "class_embedding" in n or "logit_scale" in n for n in kept)
    assert any("logit_scale" in n for n in kept) and not any(".ln_" in n or n.endswith("bias") for n in decayed)
    assert len(decayed) + len(kept) == sum(p.requires_grad for m in task.models.values() for p in m.parameters())
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(PretrainConfig, TINY, [f"output_dir={tmp_path}", "model.optimizer=sgd"])
