"""The training loop's config: one dataclass, loaded through :mod:`imagetext.config`.

A script embeds :class:`TrainConfig` as a section of its own config (or uses it alone)
and gets YAML + ``key=value`` overrides, unknown-key errors and ``config.yaml`` for free.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Optional, Union

from ..config import load_config
from ..errors import ConfigError

# Keys that may change between a run and its resumption without making it another run:
# extending max_steps, logging more often, keeping more checkpoints, moving the folder.
VOLATILE_KEYS = ("output_dir", "resume", "max_steps", "log_every", "checkpoint_every", "keep_checkpoints",
                 "validate_every")


@dataclass
class TrainConfig:
    output_dir: str
    max_steps: int = 1000               # optimiser steps (each one consumes gradient_accumulation_steps batches)
    checkpoint_every: int = 500         # 0: only the final checkpoint
    log_every: int = 10                 # scalars are averaged over this many steps
    seed: int = 0
    resume: Optional[str] = None        # None, "latest" (fresh start when there is none) or a checkpoint folder
    mixed_precision: Literal["no", "bf16", "auto"] = "auto"  # auto: bf16 where the device supports it
    grad_clip: Optional[float] = None   # max global grad norm; None: no clipping
    gradient_accumulation_steps: int = 1
    keep_checkpoints: Optional[int] = 3  # newest K complete checkpoints are kept; None keeps all
    validate_every: int = 0             # steps between task.validate() calls (and at the end); 0: never
    best_metric: Optional[str] = None   # a key validate() returns; the best state is kept in output_dir/best
    best_mode: Literal["max", "min"] = "max"  # max: higher is better (rSum); min: lower (FID)

    def __post_init__(self) -> None:
        checks = [
            ("max_steps", self.max_steps >= 1, ">= 1"),
            ("checkpoint_every", self.checkpoint_every >= 0, ">= 0"),
            ("validate_every", self.validate_every >= 0, ">= 0"),
            ("best_metric", self.best_metric is None or self.validate_every > 0, "unset unless validate_every > 0"),
            ("log_every", self.log_every >= 1, ">= 1"),
            ("seed", 0 <= self.seed < 2**32, "between 0 and 2**32-1"),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps >= 1, ">= 1"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "> 0 (or null for no clipping)"),
            ("keep_checkpoints", self.keep_checkpoints is None or self.keep_checkpoints >= 1, ">= 1 (or null to keep all)"),
            ("output_dir", bool(str(self.output_dir).strip()), "a folder path"),
            ("resume", self.resume is None or bool(str(self.resume).strip()), "'latest' or a checkpoint folder"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"train config: {key} must be {want}, got {getattr(self, key)!r}")


def load_train_config(path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """``TrainConfig`` from YAML ``path`` and ``key=value`` overrides (ConfigError names a bad key)."""
    return load_config(TrainConfig, path, overrides)


def resolve_mixed_precision(value: str) -> str:
    """accelerate's ``mixed_precision`` for our setting: ``auto`` is bf16 only on a CUDA device that has it.

    ``bf16`` asked on a CUDA device without bf16 is a ConfigError (it would silently run in float32
    or fail deep in a kernel). On CPU, torch's autocast supports bf16, so ``bf16`` is honoured.
    """
    import torch

    cuda = torch.cuda.is_available()
    has_bf16 = cuda and torch.cuda.is_bf16_supported()
    if value == "auto":
        return "bf16" if has_bf16 else "no"
    if value == "bf16" and cuda and not has_bf16:
        raise ConfigError(f"mixed_precision=bf16: this GPU ({torch.cuda.get_device_name()}) has no bf16; use 'no' or 'auto'")
    if value == "bf16" and not cuda:
        cap = torch.backends.cpu.get_cpu_capability()
        if "AVX512" not in cap and "AMX" not in cap:  # no native bf16: autocast emulates it
            import warnings

            warnings.warn(f"mixed_precision=bf16 on a CPU without native bf16 ({cap}): emulated, measured 17x slower "
                          "than float32 for a DF-GAN step (docs/RESULTS.md); 'auto' keeps float32 here", stacklevel=2)
    return value
