"""Training and generation speed of the GAN variants, each on the trainer's own step, side by side.

    python scripts/benchmark_gan_variants.py --configs dfgan_scenes,ssagan_scenes,attngan_scenes,dmgan_scenes \
        [--scl] [--steps 3] [--repeats 3] [--warmup 1] [--threads 1] [--device auto|cpu|cuda] \
        [key=value ...] [NAME:key=value ...] [--json] [--out docs/results/speed/variants_scenes_32_cpu.json]

Every config (``configs/t2i/NAME.yaml`` or a path; ``--scl`` adds each ``NAME_scl`` twin) is built the
way ``scripts/train_t2i.py`` builds it (its data, its frozen encoders: ``encoders.path`` as configured,
or fresh ones with ``encoders.path=null``, which cost the same), and one real batch of its data is taken.
What is timed is ``GanTask.training_step``: the frozen text encoder on the batch's captions, G
forward, the D step, the G step with the variant's extra terms (DAMSM, CLIP similarity, KL, the
generation-phase SupCon of ``_scl``), the optimiser steps and the EMA update. Data loading is not.
The configs are measured round-robin, ``--repeats`` rounds of ``--steps`` steps each, so a change in
the machine's load touches every config alike.

``key=value`` overrides apply to every config, ``NAME:key=value`` to that one (e.g.
``galip_scenes:encoders.path=runs/bench/pretrain/scenes_clip-plain-seed0/run``).

``--ablations A[,B]`` adds, for every config a switch applies to, a twin ``NAME+A`` built the same way
(same seed, same weights) whose steps run with that optimisation switched off (the same maths):

  unfolded-upconv   the up-blocks' first 3x3 conv on the nearest-x2 map instead of the folded
                    stride-2 transposed conv (``t2i.gan.blocks.direct_upsample_conv``; every variant)
  direct-tower      GALIP's G step runs D's pass through the frozen tower and the CLIP term's tower
                    forward apart instead of sharing one pass (``t2i.gan.galip.direct_tower_passes``)
  separate-encodings  the G step of a DAMSM variant's ``_scl`` arm encodes the fakes twice, for the
                    DAMSM term and for the SupCon term, instead of once for both
                    (``t2i.gan.variant.separate_image_encodings``; SSA-GAN, AttnGAN, DM-GAN)

Reports per config: images through G per second (batch x branches per step; wall clock median
[min..max] and by process CPU time), step ms, parameter counts (trainable G and D; frozen towers
apart), the transient memory of one step, and generation through ``GanTask.generate`` (text encoding
included, EMA G): batch-1 latency and batch-64 images/s.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

import torch

from imagetext.bench.speed import count_params, machine_info, peak_memory, run_and_report, speedup, stats, sync


def _ablations() -> Dict[str, Tuple[Callable[[Any], bool], Callable[[], ContextManager[None]]]]:
    """name -> (does the switch touch this GanTask's step?, the context that switches it off)."""
    from t2i.gan import switches
    from t2i.gan.galip import GALIP

    def damsm_and_contrast(task: Any) -> bool:  # both terms encode the fakes: what the switch shares
        return task.supcon is not None and getattr(task.variant, "damsm_weight", 0) > 0

    return {"unfolded-upconv": (lambda task: True, switches.FOLD_UPSAMPLE_CONV.off),
            "direct-tower": (lambda task: isinstance(task.variant, GALIP), switches.SHARE_TOWER_PASS.off),
            "separate-encodings": (damsm_and_contrast, switches.SHARE_IMAGE_ENCODING.off)}


NOTE = ("Timed: GanTask.training_step (text encoding of the batch's captions, G forward, D step, G step with "
        "the variant's terms, optimiser steps, EMA). Not timed: data loading (one real batch, reused).")


def _config_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    return Path("configs/t2i") / f"{name}.yaml"


def _overrides_for(name: str, overrides: List[str]) -> List[str]:
    out = []
    for o in overrides:
        head, _, rest = o.partition("=")
        if ":" in head:
            target, key = head.split(":", 1)
            if target == name:
                out.append(f"{key}={rest}")
        else:
            out.append(o)
    return out


class Runner:
    """One config: its GanTask on accelerate-prepared models, and one real batch."""

    def __init__(self, name: str, overrides: List[str], device: torch.device, seed: int,
                 context: Optional[Callable[[], ContextManager[None]]] = None) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import set_seed

        from imagetext.config import load_config
        from imagetext.data.dataset import ImageTextDataset, collate_fn
        from imagetext.train.data import load_splits
        from imagetext.train.loop import prepare_task
        from t2i.gan.config import GanConfig
        from t2i.gan.run import encoder_image_size, load_encoders
        from t2i.gan.task import GanTask

        self.name, self.context = name, context or nullcontext
        cfg = load_config(GanConfig, _config_path(name), overrides)
        self.cfg = cfg
        train_split, _ = load_splits(cfg.data, "test")
        set_seed(seed)
        text, image = load_encoders(cfg, train_split)
        two = cfg.contrast.branches == 2
        ds = ImageTextDataset(train_split, image_size=cfg.data.image_size, seed=seed, train=True, two_captions=two)
        batch = collate_fn([ds[i] for i in range(cfg.batch_size)])
        set_seed(seed)
        task = GanTask(cfg, text, image, multi_label=train_split.multi_label, encoder_size=encoder_image_size(cfg))
        AcceleratorState._reset_state(reset_partial_state=True)
        acc = Accelerator(cpu=device.type == "cpu", mixed_precision="no")
        prepare_task(acc, task)
        for m in task.models.values():
            m.train()
        self.task, self.device, self.batch = task, device, batch
        self.images_per_step = cfg.batch_size * (2 if two else 1)
        v = task.variant
        frozen = {"text_encoder": count_params(task.text_encoder)}
        if task.image_encoder is not None:
            frozen["image_encoder"] = count_params(task.image_encoder)
        self.params = {"G": count_params(v.generator, trainable_only=True),
                       "D": count_params(v.discriminator, trainable_only=True), "frozen": frozen}
        self.step_i = 0

    def steps(self, n: int) -> None:
        with self.context():
            for _ in range(n):
                for opt in self.task.optimizers.values():  # what the shared loop does before a manual step
                    opt.zero_grad(set_to_none=True)
                self.task.training_step(self.batch, self.step_i)
                self.step_i += 1

    def timed(self, n: int) -> Tuple[float, float]:
        """(wall, process CPU) seconds per step over ``n`` steps."""
        sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        self.steps(n)
        sync(self.device)
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n

    def generation(self, repeats: int) -> Dict[str, Any]:
        captions = list(self.batch["caption"])
        prompts64 = [captions[i % len(captions)] for i in range(64)]
        with self.context():
            return self._generation(captions, prompts64, repeats)

    def _generation(self, captions: List[str], prompts64: List[str], repeats: int) -> Dict[str, Any]:
        self.task.generate(captions[:1], seed=0)  # warm-up
        lat, thr = [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            self.task.generate(captions[r % len(captions):][:1], seed=r)
            sync(self.device)
            lat.append((time.perf_counter() - t0) * 1e3)
        for r in range(max(1, repeats // 10)):
            t0 = time.perf_counter()
            self.task.generate(prompts64, seed=r, batch_size=64)
            sync(self.device)
            thr.append(64 / (time.perf_counter() - t0))
        a, b = stats(lat), stats(thr)
        return {"batch1_ms_median": a["median"], "batch1_ms_min": a["min"], "batch1_ms_max": a["max"],
                "batch64_img_per_s_median": b["median"], "batch64_img_per_s_min": b["min"],
                "batch64_img_per_s_max": b["max"], "batch1_runs": len(lat), "batch64_runs": len(thr)}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from imagetext.errors import UserError
    from imagetext.metrics.engine import resolve_device

    try:
        device = resolve_device(args.device)
    except UserError as e:
        raise SystemExit(f"benchmark_gan_variants: {e}") from None
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    if args.scl:
        names = [x for n in names for x in (n, f"{n}_scl")]
    if not names:
        raise SystemExit("benchmark_gan_variants: --configs names no config")
    known = _ablations()
    ablations = [a.strip() for a in args.ablations.split(",") if a.strip()]
    unknown = [a for a in ablations if a not in known]
    if unknown:
        raise SystemExit(f"benchmark_gan_variants: unknown ablation(s) {unknown}; known: {', '.join(known)}")
    machine = machine_info(device)
    runners: Dict[str, Runner] = {}
    setup_s: Dict[str, float] = {}
    ablation_of: Dict[str, Tuple[str, str]] = {}

    def build(n: str, label: str, context: Optional[Callable[[], ContextManager[None]]] = None) -> Runner:
        t0 = time.perf_counter()
        try:
            r = Runner(n, _overrides_for(n, args.overrides), device, args.seed, context)
        except UserError as e:
            raise SystemExit(f"benchmark_gan_variants: {n}: {e}") from None
        r.steps(args.warmup)
        runners[label] = r
        setup_s[label] = time.perf_counter() - t0
        if args.verbose:
            print(f"  built {label} (+{args.warmup} warm-up steps) in {setup_s[label]:.1f}s", file=sys.stderr)
        return r

    for n in names:
        base = build(n, n)
        for a in ablations:
            applies, off = known[a]
            if applies(base.task):  # a twin only where the switch touches this config's step
                build(n, f"{n}+{a}", off)
                ablation_of[f"{n}+{a}"] = (n, a)
    names = list(runners)
    wall: Dict[str, List[float]] = {n: [] for n in names}
    cpu: Dict[str, List[float]] = {n: [] for n in names}
    for rep in range(args.repeats):
        for n, r in runners.items():
            w, c = r.timed(args.steps)
            wall[n].append(w)
            cpu[n].append(c)
        if args.verbose:
            print(f"  round {rep + 1}/{args.repeats}: " + ", ".join(
                f"{n} {runners[n].images_per_step / wall[n][-1]:.1f} img/s" for n in names), file=sys.stderr)
    out: Dict[str, Any] = {}
    for n, r in runners.items():
        ips = [r.images_per_step / t for t in wall[n]]
        s = stats(ips)
        cfg = r.cfg
        entry = {
            "variant": cfg.model.variant, "imsize": cfg.model.imsize, "batch": cfg.batch_size,
            "branches": cfg.contrast.branches, "images_per_step": r.images_per_step,
            "contrast_weight": cfg.contrast.weight, "model_kwargs": dict(cfg.model.kwargs),
            "encoders": cfg.encoders.path or f"fresh {cfg.encoders.text}/{cfg.encoders.image}",
            "img_per_s_median": s["median"], "img_per_s_min": s["min"], "img_per_s_max": s["max"],
            "step_ms_median": statistics.median(wall[n]) * 1e3,
            "cpu_ms_median": statistics.median(cpu[n]) * 1e3,
            "img_per_cpu_s_median": r.images_per_step / statistics.median(cpu[n]),
            "params_g": r.params["G"], "params_d": r.params["D"], "params_frozen": r.params["frozen"],
            "setup_s": setup_s[n],
        }
        if n in ablation_of:  # the optimisation's gain: this twin's CPU time over its config's
            base, a = ablation_of[n]
            entry["ablation"] = {"of": base, "switched_off": a,
                                 "speedup_cpu_time_of_the_optimisation": speedup(cpu[n], cpu[base])["ratio_of_medians"],
                                 "speedup_paired_wall_median": speedup(wall[n], wall[base])["paired_median"]}
        if not args.no_mem:
            entry.update(peak_memory(lambda r=r: r.steps(1), device, "1 step after the timing"))
        entry["generation"] = r.generation(args.gen_repeats)
        out[n] = entry
    return {
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "config": {"configs": names, "ablations": ablations, "steps": args.steps, "repeats": args.repeats,
                   "warmup": args.warmup, "threads": torch.get_num_threads(), "device": str(device), "seed": args.seed,
                   "overrides": args.overrides},
        "variants": out,
        "note": NOTE,
        "command": "python scripts/benchmark_gan_variants.py " + " ".join(shlex.quote(a) for a in args.argv),
    }


def _table(res: Dict[str, Any]) -> str:
    c, mach = res["config"], res["machine"]
    lines = [f"{mach['device_name']} ({c['threads']} torch threads, torch {mach['torch']}); "
             f"{c['repeats']} repeats x {c['steps']} steps",
             f"{'config':38s} {'img/s':>7s} {'[min..max]':>15s} {'step ms':>8s} {'img/cpu-s':>9s} "
             f"{'G params':>10s} {'D params':>10s} {'peak MB':>8s} {'gen b1 ms':>9s} {'gen b64/s':>9s}"]
    for n, e in res["variants"].items():
        g = e["generation"]
        mem = f"{e['peak_mem_mb']:.0f}" if "peak_mem_mb" in e else "-"
        lines.append(f"{n:38s} {e['img_per_s_median']:7.1f} [{e['img_per_s_min']:6.1f}..{e['img_per_s_max']:6.1f}] "
                     f"{e['step_ms_median']:8.0f} {e['img_per_cpu_s_median']:9.1f} {e['params_g']:10,d} "
                     f"{e['params_d']:10,d} {mem:>8s} {g['batch1_ms_median']:9.1f} "
                     f"{g['batch64_img_per_s_median']:9.0f}")
    for n, e in res["variants"].items():
        if "ablation" in e:
            a = e["ablation"]
            lines.append(f"{a['of']}: {a['switched_off']} off costs {a['speedup_cpu_time_of_the_optimisation']:.2f}x "
                         f"CPU time (paired wall {a['speedup_paired_wall_median']:.2f}x)")
    lines.append(res["note"])
    lines.append(res["command"])
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmark_gan_variants", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", required=True, help="comma-separated config names (configs/t2i/NAME.yaml) or paths")
    p.add_argument("--scl", action="store_true", help="also each config's _scl twin")
    p.add_argument("--ablations", default="", metavar="A[,B]",
                   help="also each config with an optimisation switched off, where it applies: "
                        "unfolded-upconv, direct-tower, separate-encodings (see above)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per round and config")
    p.add_argument("--repeats", type=int, default=3, help="rounds (configs interleaved)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per config before the first round")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen-repeats", type=int, default=20, help="batch-1 generation runs (batch 64: a tenth)")
    p.add_argument("--no-mem", action="store_true", help="skip the one-step memory probe")
    p.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    p.add_argument("--out", help="also write the JSON object to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    p.add_argument("overrides", nargs="*", metavar="[NAME:]key=value")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for k in ("steps", "repeats", "gen_repeats"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        p.error(f"overrides must be key=value or NAME:key=value, got {bad[0]!r}")
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    return run_and_report(run, parse_args(argv), _table)


if __name__ == "__main__":
    main()
