"""The task protocol: what the loop needs from a model family (open_clip's task object).

A task owns its models, optimisers and schedulers and knows how to compute one step's
losses; the loop owns everything else (devices, precision, processes, accumulation,
clipping, logging, checkpoints, resumption). Nothing in the loop knows a model.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn


class TrainTask:
    """Base class for a training task.

    Attributes (set by the subclass before handing the task to :class:`~imagetext.train.Trainer`):
        models: name -> ``nn.Module``; replaced in place by their prepared (device-placed,
            DDP-wrapped) versions, so ``training_step`` must reach them through this dict.
        optimizers: name -> optimiser over those models' parameters (replaced by prepared ones).
        schedulers: name -> LR scheduler; stepped once per optimiser step by the loop.
        manual_optimization: False: the loop sums the outputs whose keys end in ``_loss``, calls
            backward, clips, steps every optimiser and scheduler. True (GANs: alternating D/G updates):
            ``training_step`` does its own ``self.accelerator.backward`` / ``opt.step()`` / ``zero_grad``
            (and scheduler steps). The loop zeroes every optimiser's gradients before each step and
            still checks the returned losses, but only after the task has stepped: a non-finite loss
            stops the run with that step's update already applied (the named checkpoint is clean).
        accelerator: set by the Trainer before the first step.
    """

    models: Dict[str, nn.Module]
    optimizers: Dict[str, torch.optim.Optimizer]
    schedulers: Dict[str, Any] = {}
    manual_optimization: bool = False
    accelerator: Any = None

    def training_step(self, batch: Any, step: int) -> Dict[str, torch.Tensor]:
        """One step's outputs: keys ending ``_loss`` are summed for backward, every scalar is logged.

        ``step`` is the number of optimiser steps already done (0 on the first step).
        """
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Anything the task keeps beyond models/optimisers/schedulers (e.g. an EMA copy, counters)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    def validate(self, step: int) -> Optional[Dict[str, float]]:
        """Optional validation scores at ``step`` (every ``validate_every`` steps, on every process).

        Compute them on a validation split, never the test split; the loop logs them as
        ``val/*`` and keeps ``output_dir/best`` by ``best_metric``.
        """
        return None

    def images(self, step: int) -> Optional[Dict[str, torch.Tensor]]:
        """Optional images to log at ``step``: name -> [N, C, H, W] floats in [0, 1] (e.g. sample grids)."""
        return None
