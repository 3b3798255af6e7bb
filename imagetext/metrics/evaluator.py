"""The ``synth`` evaluator: a small CNN trained on the synthetic worlds.

It plays the role the CUB-finetuned Inception plays for CUB: penultimate features for
FID/KID, class logits for IS, and attribute heads that judge prompt faithfulness
(does the image show the colour/shape/objects its prompt names?). Heads are declared
in the checkpoint's ``config.json`` so the module needs no import of the worlds.

Head kinds:
    single: softmax over ``n`` values (species, body colour, ...)
    multi:  ``n`` independent sigmoids (scene categories present)
    per_category: ``n_categories x n`` softmax, trained only where the category is present
        (colour of each object category in a scene)
    per_category_xy: ``n_categories x 2`` centre (x, y) in [0, 1] of each present category
        (judges spatial relations such as "left of")
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class SynthEvaluator(nn.Module):
    """CNN with a shared trunk and named heads; input float images in [0, 1], any size."""

    def __init__(self, heads: Dict[str, Dict[str, Any]], width: int = 16, input_size: int = 64,
                 world: str = "birds", values: Optional[Dict[str, List[str]]] = None, pool: str = "avg") -> None:
        super().__init__()
        self.config = {"heads": heads, "width": width, "input_size": input_size, "world": world,
                       "values": values or {}, "pool": pool}
        self.input_size = input_size
        w = width
        # A strided stem keeps training affordable on a CPU; four blocks reach a 4x4 grid at 64 px.
        self.trunk = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            _block(w, w, 1), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 8 * w, 2),
        )
        # "avgmax" adds a max-pooled copy: small objects vanish in an average over the grid.
        self.pool = pool
        self.feature_dim = 8 * w * (2 if pool == "avgmax" else 1)
        self.heads = nn.ModuleDict()
        for name, spec in heads.items():
            n = spec["n"] * spec.get("n_categories", 1)
            self.heads[name] = nn.Linear(self.feature_dim, n)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B x feature_dim) of images in [0, 1]."""
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        h = self.trunk((images - self.mean) / self.std)
        f = h.mean((2, 3))
        return torch.cat([f, h.amax((2, 3))], 1) if self.pool == "avgmax" else f

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Returns {"features": B x d, <head>: logits}; per_category heads are B x C x n."""
        f = self.features(images)
        out = {"features": f}
        for name, head in self.heads.items():
            spec = self.config["heads"][name]
            logits = head(f)
            if spec["kind"] == "per_category":
                logits = logits.view(len(f), spec["n_categories"], spec["n"])
            elif spec["kind"] == "per_category_xy":
                logits = torch.sigmoid(logits.view(len(f), spec["n_categories"], 2))
            out[name] = logits
        return out

    @property
    def class_head(self) -> str:
        """The head whose logits serve IS (species for birds, categories for scenes)."""
        return "species" if "species" in self.heads else "categories"

    def save_pretrained(self, directory: Union[str, Path]) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(self.config, indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(d / "model.safetensors"))
        return d

    @classmethod
    def from_pretrained(cls, directory: Union[str, Path]) -> "SynthEvaluator":
        from safetensors.torch import load_file

        from ..errors import UserError

        d = Path(directory)
        if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
            raise UserError(f"{d}: not a synth evaluator checkpoint (needs config.json and model.safetensors)")
        cfg = json.loads((d / "config.json").read_text())
        model = cls(**cfg)
        model.load_state_dict(load_file(str(d / "model.safetensors")))
        return model.eval()


def evaluator_loss(out: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor],
                   heads: Dict[str, Dict[str, Any]]) -> Dict[str, torch.Tensor]:
    """Per-head losses; targets: single -> long B, multi -> float B x n, per_category -> long B x C
    (-1 = absent), per_category_xy -> float B x C x 2 (-1 = absent)."""
    losses = {}
    for name, spec in heads.items():
        logits, t = out[name], targets[name]
        if spec["kind"] == "single":
            losses[f"{name}_loss"] = F.cross_entropy(logits, t, ignore_index=-1)
        elif spec["kind"] == "multi":
            # summed over labels (mean over images): a mean over 24 mostly-absent labels is too weak a signal
            losses[f"{name}_loss"] = F.binary_cross_entropy_with_logits(logits, t, reduction="sum") / len(t)
        elif spec["kind"] == "per_category":
            mask = t >= 0
            if mask.any():
                losses[f"{name}_loss"] = F.cross_entropy(logits[mask], t[mask])
        else:
            mask = t[..., 0] >= 0
            if mask.any():  # positions are small numbers: weight them up to matter next to the CE terms
                losses[f"{name}_loss"] = 10.0 * F.mse_loss(logits[mask], t[mask])
    return losses
