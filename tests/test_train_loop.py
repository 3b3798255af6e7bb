"""The shared training loop (imagetext.train) with tiny tasks on synthetic data.

The 2-process test launches this file itself as the worker (``--worker OUT``) under
``accelerate launch`` with configs/accelerate/cpu2.yaml: one launch for gather_with_grad and the loop.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # when run as the 2-process worker script
    sys.path.insert(0, str(REPO))

from imagetext.errors import ConfigError, UserError  # noqa: E402
from imagetext.losses.clip import clip_loss  # noqa: E402
from imagetext.train import (TrainConfig, Trainer, TrainingDiverged, TrainTask, gather_with_grad,  # noqa: E402
                             load_train_config, parse_config_args, resolve_mixed_precision, train)
from imagetext.train.cli import end_distributed  # noqa: E402


class Pairs(Dataset):
    """n synthetic (x, y) pairs with their index; fixed by seed, no randomness in __getitem__."""

    def __init__(self, n: int = 20, dim: int = 6, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.randn(dim, dim, generator=g) + 0.1 * torch.randn(n, dim, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "index": i}


class Regress(TrainTask):
    """Linear + dropout + MSE, with an SGD-momentum optimiser and a step LR schedule."""

    def __init__(self, dim: int = 6, nan_at: int = -1):
        self.models = {"net": nn.Sequential(nn.Linear(dim, 16), nn.Dropout(0.3), nn.Linear(16, dim))}
        self.optimizers = {"opt": torch.optim.SGD(self.models["net"].parameters(), lr=0.05, momentum=0.9)}
        self.schedulers = {"lr": torch.optim.lr_scheduler.StepLR(self.optimizers["opt"], step_size=4, gamma=0.5)}
        self.nan_at = nan_at
        self.calls = 0

    def training_step(self, batch, step):
        self.calls += 1
        pred = self.models["net"](batch["x"])
        loss = ((pred - batch["y"]) ** 2).mean()
        if step == self.nan_at:
            loss = loss * float("nan")
        return {"mse_loss": loss, "pred_norm": pred.detach().norm()}

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


class PairNet(nn.Module):
    """Image and text encoders in one module, so DDP sees (and syncs) both in one forward."""

    def __init__(self, dim: int = 6):
        super().__init__()
        self.img, self.txt = nn.Linear(dim, 4), nn.Linear(dim, 4)

    def forward(self, x, y):
        return self.img(x), self.txt(y)


class Contrast(TrainTask):
    """A tiny encoder pair with InfoNCE over embeddings gathered from every process."""

    def __init__(self, dim: int = 6):
        self.models = {"pair": PairNet(dim)}
        self.optimizers = {"opt": torch.optim.Adam(self.models["pair"].parameters(), lr=1e-2)}

    def training_step(self, batch, step):
        img, txt = self.models["pair"](batch["x"], batch["y"])
        return {"clip_loss": clip_loss(gather_with_grad(img), gather_with_grad(txt), 10.0)}


def _loader(batch_size: int = 4, n: int = 20):
    return DataLoader(Pairs(n), batch_size=batch_size, shuffle=True, drop_last=True)


def _cfg(out, **kw):
    base = dict(output_dir=str(out), max_steps=6, checkpoint_every=3, log_every=2, seed=7, mixed_precision="no")
    base.update(kw)
    return TrainConfig(**base)


def _run(out, task_kw=None, **kw):
    torch.manual_seed(0)  # the script seeds before building its task
    task = Regress(**(task_kw or {}))
    trainer = Trainer(task, _cfg(out, **kw), _loader())
    result = trainer.train()
    return task, trainer, result


def _weights(task):
    net = task.models["net"]
    return {k: v.detach().clone() for k, v in getattr(net, "module", net).state_dict().items()}


# 1. exact resumption ---------------------------------------------------------------------------


@pytest.mark.parametrize("accum", [1, 2])
def test_resumed_run_is_bit_identical(tmp_path, accum):
    """N steps == N/2 steps then resume=latest to N: shuffling sampler across epochs, dropout, momentum, LR schedule."""
    full_task, _, full = _run(tmp_path / "full", max_steps=8, checkpoint_every=4, gradient_accumulation_steps=accum)
    _run(tmp_path / "half", max_steps=4, checkpoint_every=4, gradient_accumulation_steps=accum)
    half_task, trainer, resumed = _run(tmp_path / "half", max_steps=8, checkpoint_every=4, resume="latest",
                                       gradient_accumulation_steps=accum)
    assert trainer.resume_from.name == "checkpoint-4"
    assert full["step"] == resumed["step"] == 8
    a, b = _weights(full_task), _weights(half_task)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    assert half_task.calls == full_task.calls == 8 * accum  # task state restored too
    assert full["last_logs"] == resumed["last_logs"]
    assert half_task.optimizers["opt"].param_groups[0]["lr"] == full_task.optimizers["opt"].param_groups[0]["lr"] == 0.05 / 4
    ck = tmp_path / "full" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint-4", "checkpoint-8"]
    assert (ck / "checkpoint-8" / "complete").is_file() and (tmp_path / "full" / "config.yaml").is_file()
    assert list((tmp_path / "full" / "logs").rglob("events.out.tfevents.*"))  # TensorBoard scalars


class Alternating(TrainTask):
    """GAN-shaped: two models, two optimisers, updated one after the other by the task itself."""

    manual_optimization = True

    def __init__(self, dim: int = 6):
        self.models = {"g": nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.2)), "d": nn.Linear(dim, 1)}
        self.optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-2) for k, m in self.models.items()}

    def training_step(self, batch, step):
        g, d, acc = self.models["g"], self.models["d"], self.accelerator
        d_loss = torch.nn.functional.softplus(d(g(batch["x"]).detach())).mean() + torch.nn.functional.softplus(-d(batch["y"])).mean()
        acc.backward(d_loss)
        self.optimizers["d"].step()
        self.optimizers["d"].zero_grad()
        g_loss = torch.nn.functional.softplus(-d(g(batch["x"]))).mean()
        acc.backward(g_loss)
        self.optimizers["g"].step()
        self.optimizers["g"].zero_grad()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


def test_manual_optimization_task_resumes_exactly(tmp_path):
    def run(out, **kw):
        torch.manual_seed(0)
        task = Alternating()
        Trainer(task, _cfg(out, checkpoint_every=3, **kw), _loader()).train()
        return {k: v.detach().clone() for name in ("g", "d") for k, v in task.models[name].state_dict().items()}

    full = run(tmp_path / "full", max_steps=6)
    run(tmp_path / "half", max_steps=3)
    half = run(tmp_path / "half", max_steps=6, resume="latest")
    assert all(torch.equal(full[k], half[k]) for k in full)
    with pytest.raises(UserError, match="gradient_accumulation_steps"):
        run(tmp_path / "acc", max_steps=2, gradient_accumulation_steps=2)


def test_keep_last_k_checkpoints(tmp_path):
    _run(tmp_path / "r", max_steps=5, checkpoint_every=1, keep_checkpoints=2)
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["checkpoint-4", "checkpoint-5"]


# 2. half-written checkpoints are never resumed ---------------------------------------------------


def test_half_written_checkpoint_is_ignored(tmp_path):
    out = tmp_path / "r"
    _run(out, max_steps=3, checkpoint_every=3)
    root = out / "checkpoints"
    (root / ".tmp-checkpoint-5").mkdir()            # killed while writing
    (root / ".tmp-checkpoint-5" / "model.safetensors").write_bytes(b"half")
    (root / "checkpoint-9").mkdir()                  # a folder without the marker
    _, trainer, result = _run(out, max_steps=4, checkpoint_every=3, resume="latest")
    assert trainer.resume_from == root / "checkpoint-3"
    assert result["step"] == 4
    assert not (root / ".tmp-checkpoint-5").exists()  # cleaned on start
    with pytest.raises(UserError, match="marker"):
        _run(out, max_steps=5, resume=str(root / "checkpoint-9"))


# 3. non-finite loss -------------------------------------------------------------------------------


def test_nonfinite_loss_names_step_ids_and_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged) as e:
        _run(tmp_path / "r", task_kw={"nan_at": 4}, max_steps=8, checkpoint_every=2)
    msg = str(e.value)
    assert "step 5" in msg and "mse_loss=nan" in msg
    assert "batch sample ids: [" in msg
    ids = json.loads(msg.split("batch sample ids: ")[1].split("]")[0] + "]")
    assert len(ids) == 4 and all(0 <= i < 20 for i in ids)
    assert str(tmp_path / "r" / "checkpoints" / "checkpoint-4") in msg
    assert isinstance(e.value, UserError)


# 6. bad input: another run in output_dir, foreign checkpoint, config typo -------------------------


def test_output_dir_of_another_run_is_refused(tmp_path):
    out = tmp_path / "r"
    _run(out, max_steps=2, checkpoint_every=2)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    cfg_text = (out / "config.yaml").read_text()
    with pytest.raises(UserError, match=r"holds another run .*seed \(here 8, there 7\)"):
        _run(out, max_steps=2, seed=8)
    with pytest.raises(UserError, match=r"holds another run"):
        _run(out, max_steps=4, seed=8, resume="latest")
    with pytest.raises(UserError, match="resume=latest"):  # same run, resume not asked
        _run(out, max_steps=4)
    with pytest.raises(UserError, match=r"resume=.*another checkpoint"):
        _run(tmp_path / "other", max_steps=4, seed=8, resume=str(out / "checkpoints" / "checkpoint-2"))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before and (out / "config.yaml").read_text() == cfg_text
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        _run(tmp_path / "junk", max_steps=1)


def test_a_run_saved_before_a_config_key_existed_resumes_when_the_key_is_at_its_default(tmp_path):
    """A key the project added later is absent from an older run's config.yaml: at its default it is
    no difference (the old run behaved so); set to anything else, it is one, named as absent there."""
    import yaml

    out = tmp_path / "r"
    _run(out, max_steps=2, checkpoint_every=2)
    for path in [out / "config.yaml", *out.glob("checkpoints/checkpoint-*/config.yaml")]:
        saved = yaml.safe_load(path.read_text())
        del saved["best_mode"], saved["grad_clip"]  # as if written before these keys existed
        path.write_text(yaml.safe_dump(saved))
    with pytest.raises(UserError, match=r"grad_clip \(here 1.0, there '<absent>'\)"):
        _run(out, max_steps=4, resume="latest", grad_clip=1.0)
    _, trainer, _ = _run(out, max_steps=4, resume="latest")
    assert trainer.resume_from is not None and trainer.resume_from.name == "checkpoint-2"
    assert (out / "checkpoints" / "checkpoint-4").is_dir()


def test_config_typo_and_bad_values(tmp_path):
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text(f"output_dir: {tmp_path / 'o'}\nmax_steps: 3\n")
    cfg = load_train_config(yaml_file, ["seed=3", "resume=latest"])
    assert (cfg.max_steps, cfg.seed, cfg.resume) == (3, 3, "latest")
    with pytest.raises(ConfigError, match=r"'max_stpes' \(did you mean 'max_steps'\?\)"):
        load_train_config(yaml_file, ["max_stpes=3"])
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_train_config(yaml_file, ["mixed_precision=fp8"])
    with pytest.raises(ConfigError, match="max_steps must be >= 1"):
        load_train_config(yaml_file, ["max_steps=0"])


def test_script_command_line_and_example_config(tmp_path):
    cfg = parse_config_args(TrainConfig, ["--config", str(REPO / "configs/train/example.yaml"),
                                          f"output_dir={tmp_path}", "max_steps=4", "resume=latest"])
    assert (cfg.max_steps, cfg.resume, cfg.output_dir, cfg.keep_checkpoints) == (4, "latest", str(tmp_path), 3)
    with pytest.raises(ConfigError, match="output_dir"):  # required key
        parse_config_args(TrainConfig, ["max_steps=4"])
    assert resolve_mixed_precision("no") == "no"
    if not torch.cuda.is_available():
        assert resolve_mixed_precision("auto") == "no"


class WithImages(Regress):
    def images(self, step):
        return {"samples": torch.rand(2, 3, 8, 8)}


def test_tensorboard_scalars_and_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    Trainer(WithImages(), _cfg(tmp_path / "r", max_steps=4, log_every=2), _loader()).train()
    (events,) = list((tmp_path / "r" / "logs").rglob("events.out.tfevents.*"))
    ea = EventAccumulator(str(events.parent), size_guidance={"images": 0}).Reload()
    assert {"train/mse_loss", "train/pred_norm", "lr/opt"} <= set(ea.Tags()["scalars"])
    assert [e.step for e in ea.Scalars("train/mse_loss")] == [2, 4]
    assert "samples" in ea.Tags()["images"]


def test_train_function_and_single_process_gather_is_identity(tmp_path):
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    torch.manual_seed(0)
    res = train(Contrast(), _cfg(tmp_path / "c", max_steps=2, checkpoint_every=0), _loader())
    assert res["step"] == 2 and res["last_checkpoint"].name == "checkpoint-2"


# 4 + 5. two real CPU processes -------------------------------------------------------------------

B, DIM = 3, 6


def _pair_and_data():
    torch.manual_seed(11)
    pair = PairNet(DIM)
    g = torch.Generator().manual_seed(5)
    return pair, torch.randn(2 * B, DIM, generator=g), torch.randn(2 * B, DIM, generator=g)


def _worker(out: Path) -> None:
    """Runs in each of 2 processes: the loop for 4 steps, then one gathered InfoNCE step."""
    torch.manual_seed(0)
    trainer = Trainer(Contrast(), _cfg(out / "run", max_steps=4, checkpoint_every=4), _loader(batch_size=2, n=16))
    result = trainer.train()
    acc = trainer.accelerator
    pair, xs, ys = _pair_and_data()
    net = acc.prepare(pair)  # DDP: gradients are averaged over the processes
    r = acc.process_index
    img, txt = net(xs[r * B:(r + 1) * B], ys[r * B:(r + 1) * B])
    loss = clip_loss(gather_with_grad(img), gather_with_grad(txt), 10.0)
    loss.backward()
    res = {"rank": r, "world": acc.num_processes, "loss": loss.item(), "step": result["step"],
           "grads": {k: p.grad.tolist() for k, p in net.module.named_parameters()}}
    # exact resumption under 2 processes: each process's RNG (dropout) and data shard position
    done = {}
    for name, steps, resume in [("full", 4, None), ("half", 2, None), ("half", 4, "latest")]:
        torch.manual_seed(0)
        task = Regress()
        Trainer(task, _cfg(out / name, max_steps=steps, checkpoint_every=2, resume=resume), _loader(batch_size=2, n=10)).train()
        done[name] = _weights(task)
    res["resume_equal"] = all(torch.equal(done["full"][k], done["half"][k]) for k in done["full"])
    # a non-finite loss on process 1 only stops both processes (no hang in the next collective)
    torch.manual_seed(0)
    try:
        Trainer(Regress(nan_at=3 if r == 1 else -1), _cfg(out / "nan", max_steps=6, checkpoint_every=2),
                _loader(batch_size=2, n=10)).train()
        res["diverged"] = None
    except TrainingDiverged as e:
        res["diverged"] = str(e)
    (out / f"rank{r}.json").write_text(json.dumps(res))
    acc.wait_for_everyone()
    end_distributed()  # an orderly exit: see its docstring


def test_two_processes_gather_equals_single_and_loop_checkpoints(tmp_path):
    """gather_with_grad: 2 x B == 1 x 2B (loss and DDP-averaged gradients); the loop checkpoints and resumes exactly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu2.yaml"),
           "--main_process_port", str(port), str(Path(__file__).resolve()), "--worker", str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert [x["resume_equal"] for x in res] == [True, True]
    last_good = str(tmp_path / "nan" / "checkpoints" / "checkpoint-2")
    assert all("step 4" in x["diverged"] and last_good in x["diverged"] for x in res), [x["diverged"] for x in res]
    assert "mse_loss=nan" in res[1]["diverged"] and "batch sample ids on process 1: [" in res[1]["diverged"]
    assert "non-finite value on another process" in res[0]["diverged"]
    assert [x["world"] for x in res] == [2, 2] and res[0]["loss"] == pytest.approx(res[1]["loss"], abs=1e-6)

    pair, xs, ys = _pair_and_data()  # one process, the global batch 2B
    img, txt = pair(xs, ys)
    loss = clip_loss(img, txt, 10.0)
    loss.backward()
    assert abs(loss.item() - res[0]["loss"]) < 1e-5
    for k, p in pair.named_parameters():
        for x in res:
            torch.testing.assert_close(torch.tensor(x["grads"][k]), p.grad, atol=1e-5, rtol=0)

    ck = tmp_path / "run" / "checkpoints"
    assert res[0]["step"] == 4 and sorted(p.name for p in ck.iterdir()) == ["checkpoint-4"]
    assert (ck / "checkpoint-4" / "complete").is_file()
    assert {p.name for p in (ck / "checkpoint-4").glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(Path(sys.argv[2]))


class Validated(Regress):
    """Regress with a validation score that peaks at step 4 (max) - a stand-in for rSum."""

    def validate(self, step):
        return {"score": -abs(step - 4), "other": step}


def test_validation_keeps_the_best_state_and_survives_resume(tmp_path):
    import json

    def run(out, **kw):
        task = Validated()
        train(task, _cfg(out, validate_every=2, best_metric="score", **kw), _loader())
        return task

    run(tmp_path / "a", max_steps=4, checkpoint_every=2)
    run(tmp_path / "a", max_steps=8, checkpoint_every=2, resume="latest")
    best = json.loads((tmp_path / "a" / "best.json").read_text())
    assert best == {"step": 4, "metric": "score", "mode": "max", "value": 0.0}
    assert (tmp_path / "a" / "best" / "complete").is_file()
    state = json.loads((tmp_path / "a" / "best" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["best_step"] == 4
    with pytest.raises(UserError, match="best_metric='nope'"):
        train(Validated(), _cfg(tmp_path / "b", max_steps=2, validate_every=2, best_metric="nope"), _loader())
    with pytest.raises(ConfigError, match="best_metric"):
        _cfg(tmp_path / "c", best_metric="score")  # without validate_every
