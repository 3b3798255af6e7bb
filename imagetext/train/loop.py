"""The shared training loop: accelerate-prepared, step-based, atomically checkpointed, exactly resumable.

One step, top to bottom (see :meth:`Trainer.train`): fetch ``gradient_accumulation_steps`` batches,
``task.training_step`` -> sum of ``*_loss`` -> stop if non-finite -> backward (gradient sync only on
the last micro-batch) -> clip -> optimiser and scheduler step -> log -> checkpoint.

Exact resumption: a checkpoint holds the models, optimisers, schedulers, the task's extra state,
every process's RNG states (python, numpy, torch, CUDA: accelerate's ``save_state``) and the data
position (epoch and batch within it). The sampler's order is a function of (seed, epoch) only
(accelerate's seedable sampler), so resuming replays the epoch's order and skips the batches
already seen. Data loading runs under ``fork_rng``: building a DataLoader iterator draws a seed
from torch's global RNG, which would otherwise shift the model's dropout stream after a resume.
Datasets that randomise per sample should draw from their own (seed, epoch, index)-seeded generator.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from ..config import save_config, to_dict
from ..errors import UserError
from . import checkpoints as ckpt
from .config import TrainConfig, resolve_mixed_precision
from .task import TrainTask

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """A loss or the gradient norm became NaN/inf; the message names the step, batch and last good checkpoint."""


@dataclasses.dataclass
class _Position:
    """Loop position, checkpointed with accelerate's custom-state mechanism."""

    step: int = 0            # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already consumed (per process)
    num_processes: int = 1
    best_value: float = 0.0  # the best validation value so far (meaningful when best_step >= 0)
    best_step: int = -1

    def state_dict(self) -> Dict[str, int]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: Dict[str, int]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class _StateOf:
    """Adapts an object with state_dict/load_state_dict (task, scheduler) for register_for_checkpointing."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def state_dict(self) -> Any:
        return self.obj.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.obj.load_state_dict(state)


def _find_path(root: Any, target: Any, path: Tuple[str, ...] = ()) -> Optional[Tuple[str, ...]]:
    """Field path of ``target`` inside nested dataclass ``root`` (where the TrainConfig section lives)."""
    if root is target:
        return path
    if dataclasses.is_dataclass(root):
        for f in dataclasses.fields(root):
            found = _find_path(getattr(root, f.name), target, path + (f.name,))
            if found is not None:
                return found
    return None


def _defaults_of(cfg: Any) -> Dict[str, Any]:
    """The declared defaults of a config dataclass's fields, nested sections included, as a plain
    dict (fields without a default, like ``output_dir``, are left out): they tell which keys an
    older run's config.yaml lacks only because the project added them later."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = to_dict(value)
    return out


def _batch_ids(batch: Any) -> Optional[List[Any]]:
    if isinstance(batch, dict):
        for key in ("ids", "index"):
            if key in batch:
                ids = batch[key]
                return ids.tolist() if torch.is_tensor(ids) else list(ids)
    return None


def prepare_task(acc: Any, task: TrainTask, *extra: Any) -> List[Any]:
    """``acc.prepare`` the task's models and optimisers in place (the task reaches them through its
    dicts), set ``task.accelerator``; returns ``extra`` (e.g. the loader) prepared alongside."""
    names_m, names_o = list(task.models), list(task.optimizers)
    prepared = acc.prepare(*[task.models[n] for n in names_m], *[task.optimizers[n] for n in names_o], *extra)
    prepared = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
    for i, n in enumerate(names_m):
        task.models[n] = prepared[i]
    for i, n in enumerate(names_o):
        task.optimizers[n] = prepared[len(names_m) + i]
    task.accelerator = acc
    return prepared[len(names_m) + len(names_o):]


class Trainer:
    """Runs a :class:`TrainTask` for ``config.max_steps`` optimiser steps.

    Args:
        task: owns the models, optimisers, schedulers and ``training_step``.
        config: the loop's settings.
        train_loader: a ``torch.utils.data.DataLoader`` (``shuffle=True`` becomes a seeded sampler).
        run_config: the script's full resolved config (a dataclass holding ``config`` as a section),
            saved as ``output_dir/config.yaml`` and compared on resume; defaults to ``config``.

    Raises:
        UserError: ``output_dir`` holds another run or a run that ``resume`` was not asked to continue,
            or ``resume`` names a missing, incomplete or foreign checkpoint.
    """

    def __init__(self, task: TrainTask, config: TrainConfig, train_loader: Any, run_config: Any = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

        self.task, self.config = task, config
        self.output_dir = Path(config.output_dir)
        if task.manual_optimization and config.gradient_accumulation_steps != 1:
            raise UserError("gradient_accumulation_steps > 1 needs the loop's own optimisation; "
                            "a manual_optimization task accumulates itself")

        # Without a GPU, several processes (cpu2.yaml) join over gloo; cpu=True only then, so a
        # single-process run still finds MPS or other accelerators.
        multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.accelerator = acc = Accelerator(
            mixed_precision=resolve_mixed_precision(config.mixed_precision),
            cpu=multi_cpu,
            log_with="tensorboard",
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
        )
        # Different dropout per process (device_specific); the data order comes from data_seed.
        set_seed(config.seed, device_specific=True)

        run_config = config if run_config is None else run_config
        train_path = _find_path(run_config, config)
        self.run_dict = to_dict(run_config)
        self.train_path = train_path or ()
        self.volatile_extra = tuple(getattr(run_config, "VOLATILE_EXTRA", ()))
        self.identity = ckpt.identity(self.run_dict, self.train_path, self.volatile_extra)
        self.defaults = _defaults_of(run_config)
        self.resume_from = self._resolve_resume()  # every process checks, so all fail alike
        acc.wait_for_everyone()

        self.loader = prepare_task(acc, task, train_loader)[0]

        # Schedulers are stepped by us, once per optimiser step (accelerate's wrapper would step them
        # num_processes times), so they are checkpointed as custom state, like the task and position.
        self.position = _Position(num_processes=acc.num_processes)
        for name in sorted(getattr(task, "schedulers", {}) or {}):
            acc.register_for_checkpointing(_StateOf(task.schedulers[name]))
        acc.register_for_checkpointing(_StateOf(task))
        acc.register_for_checkpointing(self.position)

        if acc.is_main_process:
            ckpt.remove_stale_tmp(self.output_dir)
            save_config(self.run_dict, self.output_dir / "config.yaml")
        acc.wait_for_everyone()
        acc.init_trackers("tensorboard")
        self.last_checkpoint: Optional[Path] = self.resume_from

    # -- output folder and resume ------------------------------------------------------------

    def _resolve_resume(self) -> Optional[Path]:
        out, resume = self.output_dir, self.config.resume
        if out.exists() and not out.is_dir():
            raise UserError(f"output_dir {out}: is a file, not a folder")
        if resume not in (None, "latest"):
            path = Path(resume)
            if not ckpt.is_complete(path):
                why = "does not exist" if not path.exists() else f"has no '{ckpt.MARKER}' marker (half-written?)"
                raise UserError(f"resume={resume}: {why}; give a checkpoint-<step> folder or resume=latest")
            self._check_same_run(ckpt.read_config(path / "config.yaml"), f"resume={resume}", "checkpoint")
        saved = out / "config.yaml"
        if saved.exists():
            self._check_same_run(ckpt.read_config(saved), f"output_dir {out}", "run")
        elif out.is_dir() and any(out.iterdir()):
            shown = ", ".join(sorted(p.name for p in out.iterdir())[:3])
            raise UserError(f"output_dir {out}: folder is not empty ({shown}) and holds no run's config.yaml; "
                            "choose a new folder")
        latest = ckpt.latest_checkpoint(out)
        if resume is None:
            if latest is not None:
                raise UserError(f"output_dir {out}: holds a run with checkpoints (latest {latest.name}); "
                                "pass resume=latest to continue it, or choose a new output_dir (nothing was overwritten)")
            return None
        return latest if resume == "latest" else Path(resume)

    def _check_same_run(self, theirs: Optional[Dict[str, Any]], what: str, kind: str) -> None:
        if theirs is None:
            raise UserError(f"{what}: its config.yaml is missing or unreadable; cannot tell which run it is")
        diffs = ckpt.config_differences(self.identity, ckpt.identity(theirs, self.train_path, self.volatile_extra),
                                        defaults=self.defaults)
        if diffs:
            raise UserError(f"{what}: holds another {kind} (config differs in {'; '.join(diffs)}); "
                            "choose a new output_dir or the matching config (nothing was overwritten)")

    # -- data ------------------------------------------------------------------------------

    def _batches(self) -> Iterator[Any]:
        """Endless batches from the saved position on; keeps ``self.position`` epoch/batch current."""
        pos = self.position
        while True:
            self.loader.set_epoch(pos.epoch)
            loader = self.accelerator.skip_first_batches(self.loader, pos.batch_in_epoch) if pos.batch_in_epoch else self.loader
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(pos.epoch)
            it = iter(loader)
            while True:
                with torch.random.fork_rng(devices=[]):  # see module docstring
                    batch = next(it, StopIteration)
                if batch is StopIteration:
                    break
                pos.batch_in_epoch += 1
                yield batch
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0

    # -- checkpoints -----------------------------------------------------------------------

    def _write_state(self, final: Path, tmp: Path) -> None:
        """Write the full training state to ``tmp`` (all processes), mark it complete, rename it to ``final``."""
        acc = self.accelerator
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))  # every process writes its own RNG state into the same folder
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_config(self.run_dict, tmp / "config.yaml")
            (tmp / "trainer_state.json").write_text(json.dumps(self.position.state_dict()), encoding="utf-8")
            (tmp / ckpt.MARKER).write_text("", encoding="utf-8")
            if final.exists():  # e.g. a run resumed from an earlier step reaches this one again
                shutil.rmtree(final)
            os.replace(tmp, final)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/checkpoint-<step>`` atomically; prune to ``keep_checkpoints``."""
        step = self.position.step
        root = ckpt.checkpoint_root(self.output_dir)
        final = root / f"checkpoint-{step}"
        self._write_state(final, root / f"{ckpt.TMP_PREFIX}{step}")
        if self.accelerator.is_main_process:
            ckpt.prune(self.output_dir, self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        self.last_checkpoint = final
        return final

    def validate(self) -> Dict[str, float]:
        """Run ``task.validate``; log ``val/*``; keep ``output_dir/best`` by ``best_metric`` (never pruned)."""
        cfg, pos = self.config, self.position
        metrics = {k: float(v) for k, v in (self.task.validate(pos.step) or {}).items()}
        if metrics:
            self.accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=pos.step)
        if cfg.best_metric is None:
            return metrics
        if cfg.best_metric not in metrics:
            raise UserError(f"best_metric={cfg.best_metric!r}: the task's validate() returned "
                            f"{sorted(metrics) or 'nothing'}")
        value = metrics[cfg.best_metric]
        better = value > pos.best_value if cfg.best_mode == "max" else value < pos.best_value
        if pos.best_step < 0 or better:
            pos.best_value, pos.best_step = value, pos.step
            self._write_state(self.output_dir / "best", self.output_dir / f"{ckpt.TMP_PREFIX}best")
            if self.accelerator.is_main_process:
                (self.output_dir / "best.json").write_text(json.dumps(
                    {"step": pos.step, "metric": cfg.best_metric, "mode": cfg.best_mode, "value": value}) + "\n")
            self.accelerator.wait_for_everyone()
        return metrics

    # -- the loop --------------------------------------------------------------------------

    def _diverged(self, what: str, batch_ids: Optional[List[Any]]) -> TrainingDiverged:
        acc = self.accelerator
        where = f" on process {acc.process_index}" if acc.num_processes > 1 else ""
        ids = f"batch sample ids{where}: {batch_ids}" if batch_ids is not None else "batch carries no 'ids'/'index'"
        last = str(self.last_checkpoint) if self.last_checkpoint else "none (no checkpoint written yet)"
        return TrainingDiverged(f"training diverged at step {self.position.step + 1}: {what}; {ids}; "
                                f"last good checkpoint: {last}")

    def _check_finite(self, values: Dict[str, torch.Tensor], batch_ids: Optional[List[Any]]) -> None:
        """Stop every process when any process sees a non-finite value (one tiny all-reduce)."""
        bad = [k for k, v in values.items() if not bool(torch.isfinite(v.detach()).all())]
        flag = torch.tensor([float(len(bad))], device=self.accelerator.device)
        if float(self.accelerator.reduce(flag, reduction="sum").item()) > 0:
            what = (", ".join(f"{k}={values[k].detach().float().mean().item()}" for k in bad) if bad
                    else "non-finite value on another process")
            raise self._diverged(f"non-finite {what}", batch_ids if bad else None)

    def train(self) -> Dict[str, Any]:
        """Run to ``max_steps``; returns {"step", "last_checkpoint", "last_logs", "steps_run", "seconds"}.

        ``steps_run`` / ``seconds``: the optimiser steps this call made (after a resume: not the
        ones before it) and their wall time, for throughput figures.
        """
        import time
        acc, cfg, task = self.accelerator, self.config, self.task
        if self.resume_from is not None:
            acc.load_state(str(self.resume_from))  # models, optimisers, schedulers, task, position, RNGs
            if self.position.num_processes != acc.num_processes:
                log.warning("checkpoint was written by %d processes, now %d: data position is approximate",
                            self.position.num_processes, acc.num_processes)
                self.position.num_processes = acc.num_processes
            acc.print(f"resumed from {self.resume_from} at step {self.position.step}")
        start_step, t0 = self.position.step, time.perf_counter()
        batches = self._batches()
        params = [p for m in task.models.values() for p in m.parameters() if p.requires_grad]
        window: Dict[str, List[torch.Tensor]] = {}
        last_logs: Dict[str, float] = {}
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=self.position.step, disable=not acc.is_local_main_process,
                   desc="train", dynamic_ncols=True)
        for m in task.models.values():
            m.train()
        while self.position.step < cfg.max_steps:
            step = self.position.step
            if task.manual_optimization:
                # Gradients are not checkpointed: a stale one (e.g. D's from G's backward) would make
                # a resumed run differ, so every step starts from none.
                for opt in task.optimizers.values():
                    opt.zero_grad(set_to_none=True)
            # 1. forward + backward over the accumulation micro-batches
            for micro in range(cfg.gradient_accumulation_steps):
                batch = next(batches)
                last_micro = micro == cfg.gradient_accumulation_steps - 1
                with contextlib.ExitStack() as stack:
                    if not last_micro and not task.manual_optimization:  # sync gradients once per step
                        for m in task.models.values():
                            stack.enter_context(acc.no_sync(m))
                    out = task.training_step(batch, step)
                    losses = {k: v for k, v in out.items() if k.endswith("_loss")}
                    self._check_finite(losses if losses else out, _batch_ids(batch))
                    if not task.manual_optimization:
                        if not losses:
                            raise UserError("training_step returned no '*_loss' key to optimise")
                        loss = torch.stack([v.float() for v in losses.values()]).sum()
                        acc.backward(loss / cfg.gradient_accumulation_steps)
                for k, v in out.items():
                    if torch.is_tensor(v) and v.numel() == 1:
                        window.setdefault(k, []).append(v.detach().float().reshape(()))

            # 2. clip, step, zero
            if not task.manual_optimization:
                if cfg.grad_clip is not None:
                    norm = acc.clip_grad_norm_(params, cfg.grad_clip)
                    norm = torch.as_tensor(norm).detach().float().reshape(())
                    self._check_finite({"grad_norm": norm}, _batch_ids(batch))
                    window.setdefault("grad_norm", []).append(norm)
                for opt in task.optimizers.values():
                    opt.step()
                for name in sorted(getattr(task, "schedulers", {}) or {}):
                    task.schedulers[name].step()
                for opt in task.optimizers.values():
                    opt.zero_grad(set_to_none=True)
            self.position.step = step = step + 1
            bar.update(1)

            # 3. log (means over the window and over processes) and checkpoint
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                last_logs = self._log(window, step)
                window = {}
                bar.set_postfix({k: f"{v:.4g}" for k, v in last_logs.items() if k.endswith("loss")}, refresh=False)
            if cfg.validate_every and (step % cfg.validate_every == 0 or step == cfg.max_steps):
                self.validate()  # before the checkpoint, so the checkpoint holds the best-so-far record
            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.max_steps:
                self.save_checkpoint()
        bar.close()
        for tracker in acc.trackers:  # not acc.end_training(): that also destroys the process group
            tracker.finish()
        return {"step": self.position.step, "last_checkpoint": self.last_checkpoint, "last_logs": last_logs,
                "steps_run": self.position.step - start_step, "seconds": time.perf_counter() - t0}

    def _log(self, window: Dict[str, List[torch.Tensor]], step: int) -> Dict[str, float]:
        acc = self.accelerator
        logs: Dict[str, float] = {}
        if window:
            names = sorted(window)
            means = torch.stack([torch.stack(window[k]).mean() for k in names]).to(acc.device)
            means = acc.reduce(means, reduction="mean")
            logs = {f"train/{k}": float(v) for k, v in zip(names, means.tolist())}
        for name, opt in self.task.optimizers.items():
            logs[f"lr/{name}"] = float(opt.param_groups[0]["lr"])
        acc.log(logs, step=step)
        images = self.task.images(step)
        if images and acc.is_main_process:
            writer = acc.get_tracker("tensorboard", unwrap=True)
            for name, grid in images.items():
                writer.add_images(name, grid.detach().float().clamp(0, 1).cpu(), global_step=step)
        return logs


def train(task: TrainTask, config: TrainConfig, train_loader: Any, run_config: Any = None) -> Dict[str, Any]:
    """``Trainer(task, config, train_loader, run_config).train()``."""
    return Trainer(task, config, train_loader, run_config).train()
