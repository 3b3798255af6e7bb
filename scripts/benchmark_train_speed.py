"""Training-step speed of a text-to-image GAN: the published loop's structure vs the project's step.

    python scripts/benchmark_train_speed.py --variant dfgan --imsize 32 --batch 32 --steps 20 \
        [--warmup 3] [--repeats 3] [--modes reference,ours,...] [--device auto|cpu|cuda] [--compile] \
        [--threads N] [--no-mem] [--json] [--out docs/results/speed/dfgan_32_cpu.json]

Prints a table (or, with --json, one JSON object: machine, configuration, per mode
img_per_s median/min/max, step_ms, process-CPU ms per step, parameter counts, peak memory,
settings and the speed-up over ``reference``; the generation numbers). Timing is wall clock
(``img_per_s`` = batch / step time); the speed-ups are given three ways: ratio of medians,
median of per-repeat paired ratios (same round, so a change in the machine's load cancels),
and ratio of process-CPU time per step (with ``--threads 1`` on a CPU shared with other jobs,
the least load-sensitive of the three).

What is timed: one full D+G training step with MA-GP at the reference configuration
(``nf=32``, ``z=100``, 256-d sentences): G draws the fakes, D step (hinge + mismatched text +
MA-GP), G step through the same fakes, optimiser steps. The text encoder is NOT part of the
timed step: sentence embeddings are precomputed random tensors (a frozen encoder costs the
same in every mode) and the "real" images are random tensors in [-1, 1] (no data loading).

Modes (all built from the same seed, so the same initial weights; measured interleaved,
round-robin over ``--repeats``, each repeat timing ``--steps`` consecutive steps):

  reference              the step structure of the published DF-GAN loop, RE-IMPLEMENTED here on the
                         project's DFGenerator / DFDiscriminator (written from the paper and the
                         published loop's description; it is not the reference code and does not run
                         it): fp32, contiguous NCHW, plain Adam, the published block order (UpBlock:
                         nearest x2 first, then fuse1 and the 1x1 skip at the high resolution;
                         DownBlock: 1x1 skip conv before the 2x2 pooling; the blocks' classes are
                         swapped to subclasses with that forward), D's trunk called separately on the
                         real and on the fake images, mismatched logits from the real features, MA-GP
                         by autograd.grad on the real logits, then the G step through the same fakes
                         with D's parameters still requiring grad (so D's weight gradients are
                         computed and later zeroed). No EMA.
  reference-bf16         reference with its forward passes (MA-GP's gradient included) under torch's bf16
                         autocast: the issue's "reference's best" on a GPU is the faster of the two
                         (148 img/s fp32/TF32, 190 bf16 on an H200 at 256 px); every mode's
                         ``speedup_vs_reference_best`` is against the faster reference mode measured
  ours                   the project's step as merged: ``GanTask.training_step`` (t2i/gan/task.py) on
                         models prepared by an ``accelerate.Accelerator`` with the GanConfig defaults
                         (channels_last, fused Adam on any device, EMA update), mixed precision "no",
                         the library's block order (t2i/gan/blocks.py: UpBlock's fuse1 and skip before
                         the upsampling, DownBlock pools before its skip: the same maths at a quarter
                         of the pixels) and d_losses' two D calls (real with the mismatched sentences;
                         the detached fakes); the loop's zero_grad before the step is included.
  ours-no-channels-last  ours with model.channels_last=false
  ours-no-fused-adam     ours with model.fused_adam=false (torch's default Adam implementation)
  ours-unfolded-upconv   ours with the up-blocks' first 3x3 conv run on the nearest-x2 map (conv of the
                         upsampled tensor) instead of folded into one stride-2 transposed conv of the
                         low-resolution map (t2i/gan/blocks.py upsample_conv3x3; the same maths)
  ours-bf16              ours with accelerate mixed_precision="bf16" (CPU: torch's bf16 autocast)
  ours-compile           ours with torch.compile'd G and D (added by --compile); when D cannot be
                         compiled (MA-GP's double backward: torch.compile's backward does not support
                         it), G alone, with a note; skipped with a note when it does not compile/run
                         at all

The JSON also records ``reference_equivalence``: the largest absolute difference between the
published-order and the library-order forward (G's images; D's matched and mismatched logits) for
the same weights and inputs at this configuration, fp32 (ours in channels_last as configured).

Also: generation latency of the EMA generator (eval mode, no grad) at batch 1 (median ms) and
images/s at batch 64. Memory: on CUDA, max_memory_allocated during one probe step above the
memory allocated before it; on CPU, the peak RSS (psutil, sampled every ms) during one probe
step above the RSS before it (after malloc_trim): the step's transient memory, measured
after the timing so the sampler does not perturb it. ``state_mb``: parameters + gradients +
Adam moments (+ EMA) in float32.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shlex
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from imagetext.bench.speed import count_params as _count
from imagetext.bench.speed import machine_info as _machine
from imagetext.bench.speed import peak_memory, run_and_report, speedup
from imagetext.bench.speed import stats as _stats
from imagetext.bench.speed import sync as _sync

NOTE = ("Timed: one full D+G step (G forward, D step with hinge + mismatched text + MA-GP, G step, optimiser steps; "
        "ours also its EMA update). Not timed: the text encoder (sentence embeddings are precomputed random "
        "tensors) and data loading (the real images are random tensors).")

MODES: Dict[str, Dict[str, Any]] = {
    "reference": dict(kind="reference", channels_last=False, mixed_precision="no"),
    "reference-bf16": dict(kind="reference", channels_last=False, mixed_precision="bf16"),
    "ours": dict(kind="ours", channels_last=True, mixed_precision="no", fused_adam=True),
    "ours-no-channels-last": dict(kind="ours", channels_last=False, mixed_precision="no", fused_adam=True),
    "ours-no-fused-adam": dict(kind="ours", channels_last=True, mixed_precision="no", fused_adam=False),
    "ours-unfolded-upconv": dict(kind="ours", channels_last=True, mixed_precision="no", fused_adam=True,
                                 fold_upconv=False),
    "ours-bf16": dict(kind="ours", channels_last=True, mixed_precision="bf16", fused_adam=True),
    "ours-compile": dict(kind="ours", channels_last=True, mixed_precision="no", fused_adam=True, compile=True),
}
DEFAULT_MODES = "reference,ours,ours-no-channels-last,ours-no-fused-adam,ours-unfolded-upconv"


# ---------------------------------------------------------------------------- the modes
class ReferenceStep:
    """The published DF-GAN loop's step structure re-implemented on our DFGenerator / DFDiscriminator with
    the published block order (written from its description; not the reference code)."""

    def __init__(self, variant: nn.Module, device: torch.device, spec: Dict[str, Any], batch: int) -> None:
        self.batch = batch
        self.bf16 = spec["mixed_precision"] == "bf16"
        use_published_blocks(variant)
        self.device, self.v = device, variant.to(device)
        self.G, self.D = variant.generator, variant.discriminator
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=variant.lr_g, betas=variant.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=variant.lr_d, betas=variant.betas)
        self.G.train()
        self.D.train()
        self.generator_for_sampling = self.G
        self.settings = {"precision": "bf16 autocast" if self.bf16 else "fp32", "channels_last": False,
                         "adam": "plain (default implementation)",
                         "block_order": "published (UpBlock: upsample, then fuse1 and skip at the high resolution; "
                                        "DownBlock: skip conv, then pool)",
                         "d_trunk_calls_in_d_step": 2, "d_trunk_batch_in_d_step": self.batch,
                         "d_weight_grads_in_g_step": True, "ema": False}

    def step(self, real: torch.Tensor, sentence: torch.Tensor, i: int) -> None:
        # the backward passes run outside autocast, as torch recommends (they follow the forward's dtypes)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss_d, fake, sent = self._d_loss(real, sentence)
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        # G step through the same fakes; D's parameters keep requiring grad (their grads are zeroed next step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss_g = -self.D.head(self.D.features(fake), sent).float().mean()
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()

    def _d_loss(self, real: torch.Tensor, sentence: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from t2i.gan.variant import Condition

        v, G, D = self.v, self.G, self.D
        k, p = v.ma_gp_k, v.ma_gp_p
        real = real.detach().requires_grad_(True)
        sent = sentence.detach().requires_grad_(True)
        # D on the real images: matched and mismatched logits from the same features
        feats_real = D.features(real)
        logit_real = D.head(feats_real, sent)
        logit_mis = D.head(feats_real, sent.roll(-1, 0))
        # fakes, then D on the detached fakes (a second trunk forward)
        noise = v.sample_noise(real.shape[0], device=self.device)
        fake = G(noise, Condition(sent))
        logit_fake = D.head(D.features(fake.detach()), sent)
        # MA-GP on (real image, its sentence), joint norm over both gradients
        gx, gs = torch.autograd.grad(logit_real, (real, sent), torch.ones_like(logit_real),
                                     retain_graph=True, create_graph=True)
        gp = k * torch.cat([gx.float().flatten(1), gs.float().flatten(1)], 1).norm(dim=1).pow(p).mean()
        loss_d = F.relu(1 - logit_real.float()).mean() + 0.5 * (F.relu(1 + logit_fake.float()).mean()
                                                                 + F.relu(1 + logit_mis.float()).mean()) + gp
        return loss_d, fake, sent

    def state_mb(self) -> float:
        return 4 * 4 * (_count(self.G) + _count(self.D)) / 2**20  # param + grad + 2 Adam moments


def _published_classes() -> Dict[type, type]:
    """Subclasses of the library's blocks whose forward is the published order (the same maths).

    The library (t2i/gan/blocks.py) runs UpBlock's fuse1 and 1x1 skip before the nearest x2
    upsampling and DownBlock's 2x2 pooling before its 1x1 skip; the published model upsamples
    first and convolves the skip first, i.e. those ops at 4x the pixels.
    """
    from t2i.gan.blocks import DownBlock, UpBlock

    class PublishedUpBlock(UpBlock):
        def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            h = self.conv2(self.fuse2(self.conv1(self.fuse1(x, cond)), cond))
            return self.skip(x) + h

    class PublishedDownBlock(DownBlock):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = self.skip(x) if self.use_skip else x
            return F.avg_pool2d(s, 2) + self.gain * self.residual(x)

    return {UpBlock: PublishedUpBlock, DownBlock: PublishedDownBlock}


def use_published_blocks(*modules: nn.Module) -> int:
    """Swap every UpBlock / DownBlock under ``modules`` to its published-order subclass; the number swapped."""
    swap, n = _published_classes(), 0
    for root in modules:
        for m in root.modules():
            if type(m) in swap:
                m.__class__ = swap[type(m)]
                n += 1
    if n == 0:
        raise RuntimeError("benchmark_train_speed: no UpBlock/DownBlock found to give the published order")
    return n


@torch.no_grad()
def reference_equivalence(args: argparse.Namespace, batch: int = 4, channels_last: bool = True) -> Dict[str, Any]:
    """Max |published-order - library-order| of G's images and D's (mismatched) logits, same weights, fp32."""
    from imagetext.registry import GANS
    import t2i.gan  # noqa: F401  (registers the variants)
    from t2i.gan.variant import Condition

    torch.manual_seed(args.seed)
    ours = GANS.get(args.variant)(imsize=args.imsize, cond_dim=args.cond_dim, nf=args.nf, noise_dim=args.noise_dim)
    # non-trivial weights: the fusion affines start as the identity and D's residual gains at 0
    g = torch.Generator().manual_seed(args.seed + 2)
    for prm in ours.parameters():
        prm.add_(torch.randn(prm.shape, generator=g) * 0.01)  # larger: G saturates its tanh
    for m in ours.modules():
        if isinstance(getattr(m, "gain", None), nn.Parameter):
            m.gain.fill_(0.5)
    ref = copy.deepcopy(ours)
    use_published_blocks(ref)
    if channels_last:
        ours.to(memory_format=torch.channels_last)
    ours.eval()
    ref.eval()
    z = torch.randn(batch, args.noise_dim, generator=g)
    sent = torch.randn(batch, args.cond_dim, generator=g)
    real = torch.rand(batch, 3, args.imsize, args.imsize, generator=g) * 2 - 1
    img_ref = ref.generator(z, Condition(sent))
    img_ours = ours.generator(z, Condition(sent))
    x = real.contiguous(memory_format=torch.channels_last) if channels_last else real
    lr, mr = ref.discriminator(real, sent, sent.roll(1, 0))
    lo, mo = ours.discriminator(x, sent, sent.roll(1, 0))
    return {"g_images_max_abs_diff": (img_ref - img_ours).abs().max().item(),
            "g_images_max_abs": img_ref.abs().max().item(),
            "d_logits_max_abs_diff": (lr - lo).abs().max().item(),
            "d_mismatched_logits_max_abs_diff": (mr - mo).abs().max().item(),
            "d_logits_max_abs": lr.abs().max().item(),
            "setup": f"CPU, fp32, batch {batch}, initial weights + N(0, 0.01^2) noise, D's residual gains 0.5; "
                     f"reference: published block order, NCHW; ours: library order, "
                     f"{'channels_last' if channels_last else 'NCHW'}"}


class _NoTextEncoder(nn.Module):
    """Stands in for the frozen text encoder: the benchmark hands the task its sentences directly."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim


def _make_bench_task_class() -> type:
    from t2i.gan.task import GanTask
    from t2i.gan.variant import Condition

    class BenchGanTask(GanTask):
        """GanTask whose condition() returns the precomputed sentence embeddings of the current batch."""

        bench_sentence: Optional[torch.Tensor] = None

        def condition(self, captions: List[str]) -> Condition:
            self._place()
            return Condition(self.bench_sentence[: len(captions)])

    return BenchGanTask


class OursStep:
    """The project's GanTask.training_step on accelerate-prepared models."""

    def __init__(self, args: argparse.Namespace, device: torch.device, spec: Dict[str, Any]) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        from imagetext.data.config import DataConfig
        from imagetext.train.loop import prepare_task
        from t2i.gan.config import GanConfig, ModelSection

        cfg = GanConfig(output_dir="runs/benchmark_train_speed", batch_size=args.batch,
                        mixed_precision=spec["mixed_precision"],
                        data=DataConfig(image_size=args.imsize),
                        model=ModelSection(variant=args.variant, imsize=args.imsize,
                                           kwargs={"nf": args.nf, "noise_dim": args.noise_dim},
                                           channels_last=spec["channels_last"], fused_adam=spec["fused_adam"]))
        torch.manual_seed(args.seed)
        task = _make_bench_task_class()(cfg, _NoTextEncoder(args.cond_dim), None)
        fused = bool(task.optimizers["G"].defaults.get("fused"))
        # one Accelerator per mode: accelerate keeps a process-wide state, so reset it to change mixed_precision
        AcceleratorState._reset_state(reset_partial_state=True)
        acc = Accelerator(cpu=device.type == "cpu", mixed_precision=spec["mixed_precision"])
        prepare_task(acc, task)
        self.compiled = None
        if spec.get("compile"):
            which = ("G", "D") if spec["compile"] is True else tuple(spec["compile"])
            for n in which:
                task.models[n] = torch.compile(task.models[n])
            self.compiled = " and ".join(which)
        for m in task.models.values():
            m.train()
        self.task, self.acc, self.device = task, acc, device
        self._ids: Dict[int, torch.Tensor] = {}
        self.generator_for_sampling = task.ema
        g, d = task.variant.generator, task.variant.discriminator
        self.params = (_count(g), _count(d))
        self._state_mb = 4 * (4 * (self.params[0] + self.params[1]) + self.params[0]) / 2**20
        self.settings = {"precision": spec["mixed_precision"] if spec["mixed_precision"] != "no" else "fp32",
                         "accelerate_mixed_precision": acc.mixed_precision,
                         "channels_last": cfg.model.channels_last,
                         "adam": "fused" if fused else "plain (default implementation)",
                         "block_order": "library (UpBlock: fuse1 and skip, then upsample; DownBlock: pool, then "
                                        "skip conv)",
                         "d_trunk_calls_in_d_step": 2, "d_trunk_batch_in_d_step": args.batch,
                         "d_weight_grads_in_g_step": False, "ema": True,
                         "compiled": self.compiled,
                         "upsample_conv": "folded (one stride-2 transposed conv of the low-resolution map)" if spec.get(
                             "fold_upconv", True) else "direct (3x3 conv of the nearest-x2 map)"}
        self.fold_upconv = spec.get("fold_upconv", True)

    def step(self, real: torch.Tensor, sentence: torch.Tensor, i: int) -> None:
        from t2i.gan.blocks import direct_upsample_conv

        # modes run interleaved, so the ablation's switch is per step
        with contextlib.nullcontext() if self.fold_upconv else direct_upsample_conv():
            self._step(real, sentence, i)

    def _step(self, real: torch.Tensor, sentence: torch.Tensor, i: int) -> None:
        task = self.task
        for opt in task.optimizers.values():  # what the shared loop does before every manual-optimisation step
            opt.zero_grad(set_to_none=True)
        task.bench_sentence = sentence
        b = real.shape[0]
        ids = self._ids.get(b)
        if ids is None:  # the loader's keys: sample indices and (single-label data) class labels
            ids = self._ids[b] = torch.arange(b)
        task.training_step({"image": real, "caption": [""] * b, "index": ids, "labels": ids}, i)

    def state_mb(self) -> float:
        return self._state_mb


# ---------------------------------------------------------------------------- the measurement
def _resolve_device(name: str) -> torch.device:
    from imagetext.errors import UserError
    from imagetext.metrics.engine import resolve_device

    try:
        return resolve_device(name)
    except UserError as e:
        raise SystemExit(f"benchmark_train_speed: {e}") from None


def _build(mode: str, args: argparse.Namespace, device: torch.device) -> Any:
    from imagetext.registry import GANS
    import t2i.gan  # noqa: F401  (registers the variants)

    spec = MODES[mode]
    if spec["kind"] == "reference":
        torch.manual_seed(args.seed)
        v = GANS.get(args.variant)(imsize=args.imsize, cond_dim=args.cond_dim, nf=args.nf, noise_dim=args.noise_dim)
        r = ReferenceStep(v, device, spec, args.batch)
        r.params = (_count(r.G), _count(r.D))
        return r
    return OursStep(args, device, spec)


_D_COMPILE_FAILURE: Dict[str, str] = {}


def _build_compiled(mode: str, args: argparse.Namespace, device: torch.device, batches: List[Any],
                    notes: Dict[str, str]) -> Any:
    """torch.compile'd G and D; if D cannot be compiled (MA-GP's double backward), G alone, from fresh weights."""
    t0 = time.perf_counter()
    known = _D_COMPILE_FAILURE.get("reason")
    if known is None:
        try:
            r = _build(mode, args, device)
            _time_steps(r, batches, max(1, args.warmup), 0, device)
            return r
        except RuntimeError as e:
            if "double backward" not in str(e):
                raise
            known = _D_COMPILE_FAILURE["reason"] = str(e).strip().splitlines()[0]
            notes[mode] = (f"D not compiled: {known} (MA-GP differentiates D's gradient); G alone compiled "
                           f"(the failed G+D attempt took {time.perf_counter() - t0:.0f}s)")
    else:
        notes[mode] = f"D not compiled: {known} (found by an earlier mode of this run); G alone compiled"
    print(f"benchmark_train_speed: {mode}: {notes[mode]}", file=sys.stderr)
    spec = dict(MODES[mode], compile=("G",))
    r = OursStep(args, device, spec)
    _time_steps(r, batches, max(1, args.warmup), 0, device)
    return r


def _time_steps(runner: Any, batches: List[Any], n: int, start: int, device: torch.device,
                cpu_times: Optional[List[float]] = None) -> float:
    """Wall seconds per step over ``n`` steps; appends the process CPU seconds per step to ``cpu_times``."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        real, sent = batches[(start + i) % len(batches)]
        runner.step(real, sent, start + i)
    _sync(device)
    if cpu_times is not None:
        cpu_times.append((time.process_time() - c0) / max(n, 1))
    return (time.perf_counter() - t0) / max(n, 1)


def _peak_mem(runner: Any, batches: List[Any], start: int, device: torch.device) -> Dict[str, Any]:
    return peak_memory(lambda: _time_steps(runner, batches, 1, start, device), device, "1 step after the timing")


@torch.no_grad()
def _generation(gens: Dict[str, nn.Module], args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    """EMA G (eval, no grad): batch-1 latency and batch-64 throughput, generators interleaved."""
    from t2i.gan.variant import Condition

    out: Dict[str, Any] = {}
    g = torch.Generator().manual_seed(args.seed + 1)
    sent1 = torch.randn(1, args.cond_dim, generator=g).to(device)
    sent64 = torch.randn(64, args.cond_dim, generator=g).to(device)
    z1 = torch.randn(1, args.noise_dim, generator=g).to(device)
    z64 = torch.randn(64, args.noise_dim, generator=g).to(device)
    lat: Dict[str, List[float]] = {k: [] for k in gens}
    thr: Dict[str, List[float]] = {k: [] for k in gens}
    for m in gens.values():
        m.eval()
        for _ in range(2):
            m(z1, Condition(sent1))
            m(z64, Condition(sent64))
    for _ in range(args.gen_repeats):
        for name, m in gens.items():
            _sync(device)
            t0 = time.perf_counter()
            m(z1, Condition(sent1))
            _sync(device)
            lat[name].append((time.perf_counter() - t0) * 1e3)
    for _ in range(max(1, args.gen_repeats // 10)):
        for name, m in gens.items():
            _sync(device)
            t0 = time.perf_counter()
            m(z64, Condition(sent64))
            _sync(device)
            thr[name].append(64 / (time.perf_counter() - t0))
    for name in gens:
        a, b = _stats(lat[name]), _stats(thr[name])
        out[name] = {"batch1_ms_median": a["median"], "batch1_ms_min": a["min"], "batch1_ms_max": a["max"],
                     "batch1_runs": len(lat[name]),
                     "batch64_img_per_s_median": b["median"], "batch64_img_per_s_min": b["min"],
                     "batch64_img_per_s_max": b["max"], "batch64_runs": len(thr[name])}
    return out


def _ema_cost(runner: Any, device: torch.device, n: int = 20) -> Optional[float]:
    """Median ms of one GanTask.update_ema (the only per-step work ours has and the reference has not)."""
    task = getattr(runner, "task", None)
    if task is None:
        return None
    ts = []
    for i in range(n):
        _sync(device)
        t0 = time.perf_counter()
        task.update_ema(10_000 + i)
        _sync(device)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    device = _resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":  # every mode alike: the issue's reference figure is "fp32/TF32"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    machine = _machine(device)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.compile and "ours-compile" not in modes:
        modes.append("ours-compile")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"benchmark_train_speed: unknown mode(s) {unknown}; known: {', '.join(MODES)}")
    if args.variant != "dfgan":
        raise SystemExit("benchmark_train_speed: only --variant dfgan has the reference structure here")

    equivalence = reference_equivalence(args)  # on the CPU, before anything is timed
    g = torch.Generator().manual_seed(args.seed)
    batches = [(torch.rand(args.batch, 3, args.imsize, args.imsize, generator=g).mul(2).sub(1).to(device),
                torch.randn(args.batch, args.cond_dim, generator=g).to(device)) for _ in range(2)]

    runners: Dict[str, Any] = {}
    skipped: Dict[str, str] = {}
    notes: Dict[str, str] = {}
    setup_s: Dict[str, float] = {}
    for mode in modes:
        t0 = time.perf_counter()
        try:
            if MODES[mode].get("compile"):
                r = _build_compiled(mode, args, device, batches, notes)
            else:
                r = _build(mode, args, device)
                _time_steps(r, batches, args.warmup, 0, device)
        except Exception as e:  # a mode that cannot run here (e.g. compile) is reported, not fatal
            if mode in ("reference", "ours"):
                raise
            skipped[mode] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            print(f"benchmark_train_speed: skipping {mode}: {skipped[mode]}", file=sys.stderr)
            continue
        setup_s[mode] = time.perf_counter() - t0
        runners[mode] = r
        if args.verbose:
            print(f"  built {mode} (+{args.warmup} warm-up steps) in {setup_s[mode]:.1f}s", file=sys.stderr)

    times: Dict[str, List[float]] = {m: [] for m in runners}
    cpu: Dict[str, List[float]] = {m: [] for m in runners}
    pos = {m: args.warmup for m in runners}
    for rep in range(args.repeats):
        order = list(runners) if rep % 2 == 0 else list(runners)[::-1]  # alternate the order against drift
        for mode in order:
            times[mode].append(_time_steps(runners[mode], batches, args.steps, pos[mode], device, cpu[mode]))
            pos[mode] += args.steps
            if args.verbose:
                print(f"  repeat {rep + 1}/{args.repeats} {mode}: {args.batch / times[mode][-1]:.1f} img/s",
                      file=sys.stderr)

    results: Dict[str, Any] = {}
    ref_times = times.get("reference")
    # the issue's target is against the reference's best: the faster reference precision measured here
    refs = [m for m in runners if MODES[m]["kind"] == "reference"]
    best_ref = max(refs, key=lambda m: statistics.median([args.batch / t for t in times[m]])) if refs else None
    for mode, r in runners.items():
        ts = times[mode]
        ips = [args.batch / t for t in ts]
        entry = {
            "img_per_s_median": statistics.median(ips), "img_per_s_min": min(ips), "img_per_s_max": max(ips),
            "step_ms_median": statistics.median(ts) * 1e3, "step_ms_min": min(ts) * 1e3, "step_ms_max": max(ts) * 1e3,
            "img_per_s_repeats": ips,
            # process CPU time per step: with one torch thread on a shared CPU, less sensitive to the other jobs
            # than wall time (with several threads it also counts OpenMP spin-waiting)
            "cpu_ms_median": statistics.median(cpu[mode]) * 1e3,
            "cpu_ms_min": min(cpu[mode]) * 1e3, "cpu_ms_max": max(cpu[mode]) * 1e3,
            "img_per_cpu_s_median": args.batch / statistics.median(cpu[mode]),
            "params_g": r.params[0], "params_d": r.params[1],
            "state_mb": r.state_mb(),
            "setup_s": setup_s[mode],
            "settings": r.settings,
        }
        if mode in notes:
            entry["note"] = notes[mode]
        if args.no_mem:
            entry.update(peak_mem_mb=None, peak_mem_method="not measured (--no-mem)")
        else:
            entry.update(_peak_mem(r, batches, pos[mode], device))
        if ref_times:
            sp = speedup(ref_times, ts)
            entry["speedup_vs_reference"] = sp["ratio_of_medians"]
            entry["speedup_paired_median"] = sp["paired_median"]
            entry["speedup_paired_min"], entry["speedup_paired_max"] = sp["paired_min"], sp["paired_max"]
            entry["speedup_cpu_time_vs_reference"] = speedup(cpu["reference"], cpu[mode])["ratio_of_medians"]
        if best_ref is not None:
            sp = speedup(times[best_ref], ts)
            entry["speedup_vs_reference_best"] = sp["ratio_of_medians"]
            entry["speedup_vs_reference_best_paired_median"] = sp["paired_median"]
        results[mode] = entry

    ema_ms = _ema_cost(runners["ours"], device) if "ours" in runners else None

    gens: Dict[str, nn.Module] = {}
    if "ours" in runners:
        gens["ours_ema"] = runners["ours"].generator_for_sampling  # channels_last as configured
    if "ours-no-channels-last" in runners:
        gens["ours_ema_no_channels_last"] = runners["ours-no-channels-last"].generator_for_sampling
    if "reference" in runners:  # published block order, NCHW (its trained weights: the speed does not depend on them)
        gens["reference_g"] = copy.deepcopy(runners["reference"].generator_for_sampling)
    generation = _generation(gens, args, device) if gens and args.gen_repeats > 0 else {}

    return {
        "benchmark": "train_step_speed",
        "note": NOTE,
        "command": "python scripts/benchmark_train_speed.py " + " ".join(shlex.quote(a) for a in args.argv),
        "machine": {**machine, **({"load_average_at_end": list(os.getloadavg())} if hasattr(os, "getloadavg") else {})},
        "config": {"variant": args.variant, "imsize": args.imsize, "batch": args.batch, "steps": args.steps,
                   "warmup": args.warmup, "repeats": args.repeats, "nf": args.nf, "noise_dim": args.noise_dim,
                   "cond_dim": args.cond_dim, "ma_gp": {"k": 2.0, "p": 6.0, "norm": "joint"}, "seed": args.seed,
                   "modes": modes, "timing": "per repeat: wall time of --steps consecutive steps / steps; modes "
                   "round-robin (order reversed every other repeat); img_per_s = batch / step time"},
        "modes": results,
        "skipped": skipped,
        "speedup_vs_reference": {m: e.get("speedup_vs_reference") for m, e in results.items()},
        "reference_best": best_ref,
        "speedup_vs_reference_best": {m: e.get("speedup_vs_reference_best") for m, e in results.items()},
        "ema_update_ms": ema_ms,
        "generation": generation,
        "reference_equivalence": equivalence,
    }


def _table(res: Dict[str, Any]) -> str:
    c, mach = res["config"], res["machine"]
    lines = [f"{c['variant']} {c['imsize']}px batch {c['batch']} nf {c['nf']} on {mach['device_name']} "
             f"({mach['torch_threads']} torch threads, torch {mach['torch']}); "
             f"{c['repeats']} repeats x {c['steps']} steps",
             f"{'mode':22s} {'img/s med':>9s} {'[min..max]':>13s} {'step ms':>8s} {'x ref':>5s} "
             f"{'paired [min..max]':>18s} "
             f"{'cpu ms':>7s} {'x ref cpu':>9s} {'peak MB':>7s}  settings"]
    for m, e in res["modes"].items():
        sp = e.get("speedup_vs_reference")
        paired = (f"{e['speedup_paired_median']:.2f} [{e['speedup_paired_min']:.2f}..{e['speedup_paired_max']:.2f}]"
                  if sp is not None else "-")
        spc = e.get("speedup_cpu_time_vs_reference")
        mem = e["peak_mem_mb"]
        s = e["settings"]
        spread = f"[{e['img_per_s_min']:.1f}..{e['img_per_s_max']:.1f}]"
        lines.append(f"{m:22s} {e['img_per_s_median']:9.2f} {spread:>13s} "
                     f"{e['step_ms_median']:8.0f} {(f'{sp:.2f}' if sp is not None else '-'):>5s} {paired:>18s} "
                     f"{e['cpu_ms_median']:7.0f} {(f'{spc:.2f}' if spc is not None else '-'):>9s} "
                     f"{(f'{mem:.0f}' if mem is not None else '-'):>7s}  "
                     f"{s['precision']}, channels_last={s['channels_last']}, adam={s['adam']}, "
                     f"d_trunk_calls={s['d_trunk_calls_in_d_step']}, ema={s['ema']}"
                     + f", blocks={s['block_order'].split(' ')[0]}"
                     + (f", upconv={s['upsample_conv'].split(' ')[0]}" if s.get("upsample_conv") else "")
                     + (f", compiled={s['compiled']}" if s.get("compiled") else ""))
    first = next(iter(res["modes"].values()), None)
    if first is not None:
        lines.append(f"params: G {first['params_g']:,}  D {first['params_d']:,}")
    for m, e in res["modes"].items():
        if e.get("note"):
            lines.append(f"note {m}: {e['note']}")
    for m, why in res["skipped"].items():
        lines.append(f"{m:22s} skipped: {why}")
    best = res.get("reference_best")
    if best and len([m for m in res["modes"] if m.startswith("reference")]) > 1:
        lines.append(f"against the faster reference ({best}): " + ", ".join(
            f"{m} {e['speedup_vs_reference_best']:.2f}x (paired {e['speedup_vs_reference_best_paired_median']:.2f})"
            for m, e in res["modes"].items() if not m.startswith("reference")))
    if res.get("ema_update_ms") is not None:
        lines.append(f"EMA update (ours only): {res['ema_update_ms']:.2f} ms/step")
    for name, g in res["generation"].items():
        lines.append(f"generation {name}: batch 1 {g['batch1_ms_median']:.2f} ms "
                     f"[{g['batch1_ms_min']:.2f}..{g['batch1_ms_max']:.2f}], batch 64 "
                     f"{g['batch64_img_per_s_median']:.0f} img/s "
                     f"[{g['batch64_img_per_s_min']:.0f}..{g['batch64_img_per_s_max']:.0f}]")
    eq = res.get("reference_equivalence")
    if eq:
        lines.append(f"published vs library block order, same weights: max |diff| G images "
                     f"{eq['g_images_max_abs_diff']:.2e} (of {eq['g_images_max_abs']:.2f}), D logits "
                     f"{eq['d_logits_max_abs_diff']:.2e} (of {eq['d_logits_max_abs']:.2f}), mismatched "
                     f"{eq['d_mismatched_logits_max_abs_diff']:.2e}")
    lines.append(res["note"])
    lines.append(res["command"])
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmark_train_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="dfgan")
    p.add_argument("--imsize", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat and mode")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per mode before the first repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated, of: {', '.join(MODES)}")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--compile", action="store_true", help="add the ours-compile mode")
    p.add_argument("--tf32", choices=["on", "off"], default="on",
                   help="CUDA only: TF32 for fp32 matmuls and convolutions, every mode alike (default on: the "
                        "issue's reference figure is fp32/TF32); recorded in the JSON's machine")
    p.add_argument("--nf", type=int, default=32)
    p.add_argument("--noise-dim", type=int, default=100)
    p.add_argument("--cond-dim", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0: torch's default); on a CPU shared with other jobs 1 thread "
                        "avoids OpenMP workers waiting on preempted siblings")
    p.add_argument("--gen-repeats", type=int, default=50, help="batch-1 generation runs (batch 64: a tenth)")
    p.add_argument("--no-mem", action="store_true", help="skip the one-step memory probe per mode (slow modes)")
    p.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    p.add_argument("--out", help="also write the JSON object to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for k in ("batch", "steps", "repeats", "imsize", "nf"):
        if getattr(args, k) < 1:
            p.error(f"--{k} must be >= 1")
    if args.batch < 2:
        p.error("--batch must be >= 2 (the mismatched-text term pairs images with other captions)")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    return run_and_report(run, parse_args(argv), _table)


if __name__ == "__main__":
    main()
