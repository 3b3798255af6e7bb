"""Training of the ``synth`` evaluator (run by ``scripts/train_synth_evaluator.py``).

Seeded end to end: the same world seed, training seed and torch version give the same
checkpoint. The evaluator is validated on held-out *real* synthetic images (test split,
disjoint image seeds) before it is saved.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

from .evaluator import SynthEvaluator, evaluator_loss


def head_specs(world: str) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, List[str]]]:
    """Heads and their value vocabularies for a world."""
    from ..data import synthetic as syn

    if world == "birds":
        # every key a bird caption can mention gets a head, so every mention can be judged
        values = {"species": list(syn.SPECIES_NAMES), **{k: list(v) for k, v in syn.BIRD_MENTION_VALUES.items()}}
        heads = {k: {"kind": "single", "n": len(v)} for k, v in values.items()}
        return heads, values
    if world == "scenes":
        c = len(syn.SCENE_CATEGORIES)
        values = {"categories": list(syn.SCENE_CATEGORIES), "colour": list(syn.SCENE_COLOURS),
                  "size": list(syn.SCENE_SIZES), "position": ["x", "y"]}
        heads = {
            "categories": {"kind": "multi", "n": c},
            "colour": {"kind": "per_category", "n": len(syn.SCENE_COLOURS), "n_categories": c},
            "size": {"kind": "per_category", "n": len(syn.SCENE_SIZES), "n_categories": c},
            "position": {"kind": "per_category_xy", "n": 2, "n_categories": c},
        }
        return heads, values
    raise ValueError(f"unknown world {world!r}")


def targets_of(world: str, attributes: List[Dict[str, Any]], values: Dict[str, List[str]]) -> Dict[str, torch.Tensor]:
    """Head targets from each image's ground truth."""
    n = len(attributes)
    if world == "birds":
        return {k: torch.tensor([v.index(a[k]) for a in attributes]) for k, v in values.items()}
    cats = values["categories"]
    c = len(cats)
    t = {"categories": torch.zeros(n, c), "colour": torch.full((n, c), -1, dtype=torch.long),
         "size": torch.full((n, c), -1, dtype=torch.long), "position": torch.full((n, c, 2), -1.0)}
    for i, a in enumerate(attributes):
        for o in a["objects"]:
            j = cats.index(o["category"])
            t["categories"][i, j] = 1.0
            t["colour"][i, j] = values["colour"].index(o["colour"])
            t["size"][i, j] = values["size"].index(o["size"])
            t["position"][i, j] = torch.tensor([o["x"], o["y"]])
    return t


def _render_chunk(args: Tuple[str, str, int, int, int, int]) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    from ..data.synthetic import load_synthetic

    world, split, start, stop, seed, size = args
    s = load_synthetic(world, split, n=stop, seed=seed, size=size, n_train=max(stop, 1), n_test=max(stop, 1))
    samples = s.samples[start:stop]
    imgs = np.stack([np.asarray(x.load_image(), dtype=np.uint8) for x in samples])
    return imgs, [x.attributes for x in samples]


def render_split(world: str, split: str, n: int, seed: int, size: int, workers: int = 2) -> Tuple[torch.Tensor, List[Dict[str, Any]]]:
    """Render ``n`` images (uint8 N x 3 x H x W) and their ground truth, in parallel chunks."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    chunk = 500
    jobs = [(world, split, a, min(a + chunk, n), seed, size) for a in range(0, n, chunk)]
    imgs, atts = [], []
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for im, at in tqdm(ex.map(_render_chunk, jobs), total=len(jobs), desc=f"render {world}/{split}"):
            imgs.append(im)
            atts.extend(at)
    return torch.from_numpy(np.concatenate(imgs)).permute(0, 3, 1, 2).contiguous(), atts


def train_evaluator(world: str, images: torch.Tensor, attributes: List[Dict[str, Any]], epochs: int = 8,
                    batch_size: int = 128, lr: float = 3e-3, width: int = 16, seed: int = 0,
                    pool: str = "avg", log: Any = print) -> SynthEvaluator:
    """Train the evaluator with AdamW + one-cycle cosine; flips are off (facing is not an attribute, but
    left/right relations are)."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    heads, values = head_specs(world)
    model = SynthEvaluator(heads, width=width, input_size=images.shape[-1], world=world, values=values, pool=pool)
    targets = targets_of(world, attributes, values)
    n = len(images)
    steps = epochs * math.ceil(n / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        bar = tqdm(range(0, n, batch_size), desc=f"epoch {ep + 1}/{epochs}", leave=False)
        total = 0.0
        for a in bar:
            idx = perm[a:a + batch_size]
            x = images[idx].float() / 255.0
            out = model(x)
            losses = evaluator_loss(out, {k: v[idx] for k, v in targets.items()}, heads)
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {ep + 1}: loss {total / n:.4f}")
    return model.eval()


@torch.no_grad()
def evaluate_heads(model: SynthEvaluator, images: torch.Tensor, attributes: List[Dict[str, Any]],
                   batch_size: int = 256) -> Dict[str, float]:
    """Held-out accuracy of every head (per_category heads: over present objects; position: mean abs error)."""
    world = model.config["world"]
    heads, values = model.config["heads"], model.config["values"]
    t = targets_of(world, attributes, values)
    outs: Dict[str, List[torch.Tensor]] = {}
    for a in range(0, len(images), batch_size):
        o = model(images[a:a + batch_size].float() / 255.0)
        for k in heads:
            outs.setdefault(k, []).append(o[k])
    res = {}
    for k, spec in heads.items():
        o = torch.cat(outs[k])
        if spec["kind"] == "single":
            res[f"{k}_acc"] = float((o.argmax(-1) == t[k]).float().mean())
        elif spec["kind"] == "multi":
            pred = o > 0
            res[f"{k}_exact_set_acc"] = float((pred == t[k].bool()).all(-1).float().mean())
            res[f"{k}_label_acc"] = float((pred == t[k].bool()).float().mean())
        elif spec["kind"] == "per_category":
            m = t[k] >= 0
            res[f"{k}_acc"] = float((o.argmax(-1)[m] == t[k][m]).float().mean())
        else:
            m = t[k][..., 0] >= 0
            res[f"{k}_mae"] = float((o[m] - t[k][m]).abs().mean())
    return res
