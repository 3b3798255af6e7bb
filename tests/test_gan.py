"""Phase 2: every registered GAN variant at tiny size, the one trainer, export and resume.

Parametrized over the registry: a new variant is tested by being registered (with ``tiny`` kwargs).
"""
from __future__ import annotations

import contextlib
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
from imagetext.registry import GANS, list_gans
from t2i.gan.config import GanConfig
from t2i.gan.run import cli, main
from t2i.gan.variant import Condition, GANVariant, final_image

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs/t2i/dfgan_tiny.yaml")
TINY_SCL = str(REPO / "configs/t2i/dfgan_tiny_scl.yaml")


def _tiny_variant(name: str):
    """(variant, image encoder) at the variant's tiny size; CLIP-style variants get the tiny CLIP tower."""
    from imagetext.encoders import build_image_encoder
    from t2i.gan.task import freeze

    cls = GANS.get(name)
    clip = cls.generator_holds_image_encoder  # GALIP's bridge needs a ViT; DAMSM-style terms a CNN
    enc = freeze(build_image_encoder("openclip_vision_tiny" if clip else "damsm_cnn_tiny", **({} if clip else {"dim": 16})))
    kw = {"cond_dim": enc.dim, **cls.tiny}
    torch.manual_seed(0)
    return cls(image_encoder=enc, **kw), enc


@pytest.mark.parametrize("name", list_gans())
def test_variant_forward_backward_and_losses_are_finite(name):
    v, enc = _tiny_variant(name)
    b = 3
    words = torch.randn(b, v.cond_dim, 5) if v.needs_words else None
    cond = Condition(torch.randn(b, v.cond_dim), words, torch.ones(b, 5, dtype=torch.bool) if v.needs_words else None,
                     image_encoder=enc)
    noise = v.sample_noise(b, generator=torch.Generator().manual_seed(0))
    fake = v.generator(noise, cond)  # one tensor, or coarse-to-fine stages
    assert final_image(fake).shape == (b, 3, v.imsize, v.imsize) and final_image(fake).abs().max() <= 1
    real = torch.rand(b, 3, v.imsize, v.imsize) * 2 - 1
    d = v.d_losses(v.discriminator, real, fake, cond)
    assert any(k.endswith("_loss") for k in d)
    if type(v).d_losses is GANVariant.d_losses:  # the shared hinge + mismatch + MA-GP set
        assert {"d_real_loss", "d_fake_loss", "d_mismatch_loss"} <= set(d) and ("d_ma_gp_loss" in d) == (v.ma_gp_k > 0)
    assert all(torch.isfinite(t).all() for t in d.values())
    sum(t for k, t in d.items() if k.endswith("_loss")).backward()
    # the D losses read the fakes detached: nothing reaches G
    assert all(p.grad is None for p in v.generator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in v.discriminator.parameters())
    v.discriminator.zero_grad(set_to_none=True)
    g = v.g_losses(v.discriminator, fake, cond)
    assert all(torch.isfinite(t).all() for t in g.values())
    sum(t for k, t in g.items() if k.endswith("_loss")).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in v.generator.parameters())
    assert all(p.grad is None for p in enc.parameters())


def test_truncated_noise_stays_in_range_and_is_seeded():
    v, _ = _tiny_variant("dfgan")
    z = v.sample_noise(500, generator=torch.Generator().manual_seed(1), truncation=0.5)
    assert z.abs().max() <= 0.5
    assert torch.equal(z, v.sample_noise(500, generator=torch.Generator().manual_seed(1), truncation=0.5))
    with pytest.raises(ValueError, match="truncation"):
        v.sample_noise(2, truncation=0.0)


@pytest.mark.parametrize("imsize,g,d", [(32, 2_431_235, 1_802_563), (64, 4_868_867, 3_506_756),
                                        (256, 9_744_131, 6_915_142)])
def test_dfgan_parameter_counts_match_the_published_model(imsize, g, d):
    v = GANS.get("dfgan")(imsize=imsize, cond_dim=256, nf=32, noise_dim=100)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(v.generator) - g) <= 0.02 * g and abs(count(v.discriminator) - d) <= 0.02 * d


def _task(config=TINY, **over):
    """A GanTask on the tiny config with a real (single-process) accelerator, and one batch."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from imagetext.data.dataset import ImageTextDataset, collate_fn
    from imagetext.train.data import load_splits
    from t2i.gan.run import load_encoders
    from t2i.gan.task import GanTask

    overrides = [f"{k}={v}" for k, v in over.items()]
    cfg = load_config(GanConfig, config, overrides)
    train, _ = load_splits(cfg.data, "test")
    torch.manual_seed(0)
    text, image = load_encoders(cfg, train)
    task = GanTask(cfg, text, image, multi_label=train.multi_label)
    acc = Accelerator(cpu=True)
    task.models["G"], task.models["D"], task.optimizers["G"], task.optimizers["D"] = acc.prepare(
        task.models["G"], task.models["D"], task.optimizers["G"], task.optimizers["D"])
    task.accelerator = acc
    ds = ImageTextDataset(train, image_size=cfg.data.image_size, two_captions=cfg.contrast.branches == 2)
    batch = next(iter(DataLoader(ds, batch_size=cfg.batch_size, collate_fn=collate_fn)))
    return task, batch


def _snapshot(m):
    return [p.detach().clone() for p in m.parameters()]


def _same(a, m):
    return all(torch.equal(x, y) for x, y in zip(a, m.parameters()))


def test_d_step_leaves_g_unchanged_and_g_step_leaves_d_unchanged():
    task, batch = _task()
    G, D = task.models["G"], task.models["D"]
    real, noise, cond, b = task.prepare_batch(batch)
    fake = G(noise, cond)
    g0, d0 = _snapshot(G), _snapshot(D)
    task.d_step(real, fake, cond)
    assert _same(g0, G) and not _same(d0, D)
    d1 = _snapshot(D)
    task.g_step(fake, cond, batch, b)
    assert _same(d1, D) and not _same(g0, G)
    assert all(p.requires_grad for p in D.parameters())  # D unfrozen again after the G step


def test_contrast_term_gradient_reaches_only_the_generator():
    task, batch = _task(TINY_SCL)
    G, D = task.models["G"], task.models["D"]
    real, noise, cond, b = task.prepare_batch(batch)
    assert real.shape[0] == 2 * b and torch.equal(noise[:b], noise[b:])  # two branches, same noise
    fake = G(noise, cond)
    loss = task.contrast_loss(fake, batch, b)["g_supcon_loss"]
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    assert all(p.grad is None for p in D.parameters())
    assert all(p.grad is None for p in task.image_encoder.parameters())
    assert all(p.grad is None for p in task.text_encoder.parameters())


@pytest.mark.parametrize("variant", ["ssagan", "attngan", "dmgan"])
def test_damsm_term_and_contrast_share_one_image_encoding_of_the_fakes(variant):
    """In a G step of a DAMSM variant's _scl arm the frozen image encoder runs once on the fakes, for
    both terms; losses and G's gradients equal those of two separate passes."""
    from t2i.gan.variant import separate_image_encodings

    task, batch = _task(str(REPO / f"configs/t2i/{variant}_tiny_scl.yaml"))
    G = task.accelerator.unwrap_model(task.models["G"])
    _, noise, _, b = task.prepare_batch(batch)
    calls = []
    hook = task.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    results = {}
    for shared in (True, False):
        calls.clear()
        G.zero_grad(set_to_none=True)
        _, _, cond, _ = task.prepare_batch(batch)  # a fresh Condition, as every training step has
        with contextlib.nullcontext() if shared else separate_image_encodings():
            fake = task.models["G"](noise, cond)
            out = task.variant.g_losses(task.models["D"], fake, cond)
            out.update(task.contrast_loss(fake, batch, b, cond))
        n = len(calls)
        sum(t for k, t in out.items() if k.endswith("_loss")).backward()
        results[shared] = (n, {k: t.detach() for k, t in out.items()},
                           [p.grad.clone() for p in G.parameters() if p.grad is not None])
    hook.remove()
    assert results[True][0] == 1 and results[False][0] == 2
    assert any("damsm" in k for k in results[True][1])  # the DAMSM term is there to share with
    for k, t in results[False][1].items():
        torch.testing.assert_close(results[True][1][k], t, rtol=1e-5, atol=1e-6)
    for x, y in zip(results[True][2], results[False][2]):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["attngan", "dmgan"])
def test_contrast_on_all_stages_averages_the_term_and_reaches_the_coarse_stages_own_head(variant):
    """``contrast.stages: all`` is the mean of the term over each stage's images; only then does the
    coarse stage's own RGB head (which the final image never reads) get a gradient from it."""
    config = str(REPO / f"configs/t2i/{variant}_tiny_scl.yaml")
    grads = {}
    for stages in ("final", "all"):
        task, batch = _task(config, **{"contrast.stages": stages})
        G = task.accelerator.unwrap_model(task.models["G"])
        _, noise, cond, b = task.prepare_batch(batch)
        fake = task.models["G"](noise, cond)
        assert isinstance(fake, (list, tuple)) and len(fake) >= 2
        loss = task.contrast_loss(fake, batch, b)["g_supcon_loss"]
        per_stage = [task.contrast_loss(images, batch, b)["g_supcon_loss"] for images in fake]
        want = sum(per_stage) / len(per_stage) if stages == "all" else per_stage[-1]
        assert torch.allclose(loss, want)
        loss.backward()
        grads[stages] = [p.grad for p in G.to_rgb[0].parameters()]
    assert all(g is None or g.abs().sum() == 0 for g in grads["final"])
    assert any(g is not None and g.abs().sum() > 0 for g in grads["all"])


def test_ema_follows_g_with_its_decay():
    task, batch = _task(**{"model.ema_decay": 0.5})
    before = _snapshot(task.ema)
    task.training_step(batch, 100)  # past the warm-up: min(0.5, 101/110) = 0.5
    g = list(task.models["G"].parameters())
    for e, b0, p in zip(task.ema.parameters(), before, g):
        assert torch.allclose(e, 0.5 * b0 + 0.5 * p.detach(), atol=1e-6)
    before = _snapshot(task.ema)
    task.training_step(batch, 0)  # warm-up: decay min(0.5, 1/10) = 0.1
    for e, b0, p in zip(task.ema.parameters(), before, task.models["G"].parameters()):
        assert torch.allclose(e, 0.1 * b0 + 0.9 * p.detach(), atol=1e-6)


# every variant's tiny preset (its _scl form: two branches + the contrast term), plus DF-GAN's baseline
TINY_PRESETS = [TINY] + sorted(glob.glob(str(REPO / "configs/t2i/*_tiny_scl.yaml")))


@pytest.mark.parametrize("config", TINY_PRESETS, ids=lambda p: Path(p).stem)
def test_train_export_reload_gives_identical_images(tmp_path, config):
    from t2i.gan.pipeline import T2IPipeline

    res = main(["--config", config, f"output_dir={tmp_path}", "max_steps=2", "checkpoint_every=0"])
    assert res["steps"] == 2 and all(k in res["test"] for k in ("fid", "kid", "is", "faithfulness", "r_precision"))
    pipe = T2IPipeline.from_pretrained(tmp_path)
    prompts = ["a small red bird", "a blue bird with a long tail"]
    a = pipe.generate_tensors(prompts, seed=3, num_images=2)
    b = T2IPipeline.from_pretrained(tmp_path / "final").generate_tensors(prompts, seed=3, num_images=2)
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, pipe.generate_tensors(prompts, seed=4, num_images=2))
    imgs = pipe(prompts, seed=3)
    assert len(imgs) == 2 and imgs[0].size == (32, 32)


def test_results_name_the_frozen_encoders_by_their_weights_digest(tmp_path):
    from imagetext.safeio import sha256_file

    first = main(["--config", TINY, f"output_dir={tmp_path / 'a'}", "max_steps=1", "checkpoint_every=0"])
    assert first["encoders"]["fresh"] and first["encoders"]["path"] is None
    # the first run's export holds a text encoder: condition a second run on it as on a phase-1 folder
    res = main(["--config", TINY, f"output_dir={tmp_path / 'b'}", "max_steps=1", "checkpoint_every=0",
                f"encoders.path={tmp_path / 'a'}"])
    enc = res["encoders"]
    assert enc["path"] == str(tmp_path / "a" / "final")
    assert enc["text_sha256"] == sha256_file(tmp_path / "a" / "final" / "text_encoder" / "model.safetensors")
    assert enc["image_sha256"] is None  # the pipeline export keeps no image encoder
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["encoders"] == enc


def test_resume_latest_continues_to_bit_identical_weights(tmp_path):
    from safetensors.torch import load_file

    common = ["--config", TINY_SCL, "checkpoint_every=2", "max_steps=4"]
    main(common + [f"output_dir={tmp_path / 'a'}"])
    main(common + [f"output_dir={tmp_path / 'b'}", "max_steps=2"])
    main(common + [f"output_dir={tmp_path / 'b'}", "resume=latest"])
    f = "final/generator/diffusion_pytorch_model.safetensors"
    a, b = load_file(tmp_path / "a" / f), load_file(tmp_path / "b" / f)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_run_rescores_with_more_extractors_and_keeps_its_training_record(tmp_path):
    """resume=latest at max_steps trains nothing: the same generator and seed give the same synth
    scores, the extra extractor adds its own, the throughput of the training run is kept, and the
    real set's features come from the cache the second time."""
    common = ["--config", TINY, f"output_dir={tmp_path / 'run'}", "max_steps=2", "checkpoint_every=2",
              f"eval.real_cache={tmp_path / 'cache'}"]
    first = main(common)
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].startswith("synth-")
    (tmp_path / "run" / "results.json").unlink()  # as the benchmark runner does before a rerun
    again = main(common + ["resume=latest", "eval.test_extractors=[inception]"])
    assert again["rescored"] and again["steps"] == 2 and again["train_img_per_s"] == first["train_img_per_s"]
    for k in ("fid", "kid", "is", "faithfulness", "r_precision"):
        assert again["test"][k] == pytest.approx(first["test"][k], rel=1e-9, abs=1e-12), k
    assert again["test"]["inception_fid"] > 0 and "inception_kid" in again["test"]
    assert "inception_is" not in again["test"]  # the TorchScript Inception has no class logits
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_validation_keeps_the_best_checkpoint_by_fid(tmp_path):
    res = main(["--config", TINY, f"output_dir={tmp_path}", "max_steps=2", "checkpoint_every=0", "validate_every=1",
                "best_metric=fid", "best_mode=min", "eval.val_holdout=12"])
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["metric"] == "fid" and best["step"] in (1, 2) and (tmp_path / "best").is_dir()
    assert res["best"]["value"] == best["value"]
    logs = list((tmp_path / "logs").rglob("events.out.tfevents*"))
    assert logs  # scalars and sample grids went to TensorBoard


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "configs/t2i/*.yaml"))), ids=lambda p: Path(p).stem)
def test_every_preset_loads(path):
    cfg = load_config(GanConfig, path)
    assert cfg.model.variant in list_gans()
    if "_scl" in Path(path).stem:
        assert cfg.contrast.weight > 0 and cfg.contrast.branches == 2


@pytest.mark.parametrize("overrides,error,words", [
    (["max_stpes=3"], ConfigError, "max_steps"),
    (["contrast.wieght=0.2"], ConfigError, "wieght"),
    (["contrast.weight=0.2", "contrast.branches=1"], ConfigError, "two branches"),
    (["contrast.stages=first"], ConfigError, "first"),
    (["model.variant=nope"], UserError, "nope"),
    (["model.kwargs.nff=3"], ConfigError, "nff"),
    (["model.imsize=64"], ConfigError, "image_size"),
    (["encoders.path=/nonexistent/run"], UserError, "text_encoder"),
    (["validate_every=1"], ConfigError, "validation set"),
    (["eval.test_extractors=[inceptoin]"], ConfigError, "inceptoin"),
    (["eval.test_extractors=[synth]"], ConfigError, "other than eval.extractor"),
])
def test_bad_config_is_a_clear_error(tmp_path, overrides, error, words):
    with pytest.raises(error, match=words):
        main(["--config", TINY, f"output_dir={tmp_path}", *overrides])


def test_output_dir_of_another_run_is_refused_with_one_line(tmp_path, capsys):
    main(["--config", TINY, f"output_dir={tmp_path}", "max_steps=1", "checkpoint_every=0"])
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli(["--config", TINY, f"output_dir={tmp_path}", "max_steps=1", "model.ema_decay=0.5"]) == 2
    err = capsys.readouterr().err
    assert "train_t2i: error:" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_model_folder_that_is_not_a_gan_is_refused(tmp_path):
    from t2i.gan.pipeline import T2IPipeline

    with pytest.raises(UserError, match="pipeline.json"):
        T2IPipeline.from_pretrained(tmp_path)
    main(["--config", TINY, f"output_dir={tmp_path / 'm'}", "max_steps=1", "checkpoint_every=0"])
    (tmp_path / "m/final/generator/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(UserError, match="missing"):
        T2IPipeline.from_pretrained(tmp_path / "m")


@pytest.mark.timeout(240)
def test_train_t2i_under_accelerate_two_processes(tmp_path):
    """`accelerate launch` with 2 CPU processes: DDP G and D, MA-GP's double backward, the gathered SupCon."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu2.yaml"),
           "--main_process_port", str(port), str(REPO / "scripts/train_t2i.py"), "--config", TINY_SCL,
           f"output_dir={tmp_path / 'run'}", "max_steps=2", "checkpoint_every=0", f"eval.real_cache={tmp_path / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=200, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["processes"] == 2 and res["steps"] == 2 and (tmp_path / "run/final/pipeline.json").is_file()
    # the real-feature cache is written once (rank 0) and read by both ranks on a re-scoring
    assert len(list((tmp_path / "cache").iterdir())) == 1
    r = subprocess.run(cmd + ["resume=latest"], env=env, capture_output=True, text=True, timeout=200, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((tmp_path / "run" / "results.json").read_text())
    assert again["rescored"] and again["test"]["fid"] == pytest.approx(res["test"]["fid"], rel=1e-9)
