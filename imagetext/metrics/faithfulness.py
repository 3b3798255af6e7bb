"""Prompt faithfulness on the synthetic worlds: does the image show what its prompt names?

On ``birds`` and ``scenes`` the truth of every prompt is known (its ``caption_attributes``).
The ``synth`` evaluator's heads judge each mention in the generated image:

* birds: every named attribute (body_shape, body_colour, wing_colour, pattern, accent, pose)
  must be the evaluator's top prediction.
* scenes: every named object must be detected (sigmoid > 0.5); a named colour or size
  must be the top prediction for that object's category; a named relation ("A left of B")
  must hold between the predicted centres of A and B.

Reported: accuracy per attribute kind, overall accuracy over all mentions, and the share
of images whose every mention holds ("fully faithful"). The same numbers on real test
images with their own captions are the ceiling the evaluator allows.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from ..errors import MetricInputError

# relation -> (axis of the predicted centre, sign of subject minus object); y grows downwards
RELATION_AXES = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}


def _judge_birds(h: Mapping[str, np.ndarray], i: int, mention: Mapping[str, Any], values: Mapping[str, List[str]],
                 tally: Dict[str, List[bool]]) -> bool:
    ok_all = True
    for attr, val in mention.items():
        if attr not in values or attr not in h:
            raise MetricInputError(f"prompt {i}: attribute {attr!r} is not judged by this evaluator (knows {sorted(values)})")
        if val not in values[attr]:
            raise MetricInputError(f"prompt {i}: {attr}={val!r} is not a known value ({values[attr]})")
        ok = values[attr][int(np.argmax(h[attr][i]))] == val
        tally[attr].append(ok)
        ok_all &= ok
    return ok_all


def _judge_scenes(h: Mapping[str, np.ndarray], i: int, mention: Mapping[str, Any], values: Mapping[str, List[str]],
                  tally: Dict[str, List[bool]]) -> bool:
    cats = values["categories"]
    ok_all = True
    idx = []
    for o in mention.get("objects", []):
        if o["category"] not in cats:
            raise MetricInputError(f"prompt {i}: unknown category {o['category']!r}")
        j = cats.index(o["category"])
        idx.append(j)
        present = bool(h["categories"][i, j] > 0)
        tally["object"].append(present)
        ok_all &= present
        for attr in ("colour", "size"):
            if attr in o:
                ok = values[attr][int(np.argmax(h[attr][i, j]))] == o[attr]
                tally[attr].append(ok)
                ok_all &= ok
    for r in mention.get("relations", []):
        if r["relation"] not in RELATION_AXES:
            raise MetricInputError(f"prompt {i}: unknown relation {r['relation']!r}")
        if not (0 <= r["subject"] < len(idx) and 0 <= r["object"] < len(idx)):
            raise MetricInputError(f"prompt {i}: relation {r} refers to an object the prompt does not name")
        axis, sign = RELATION_AXES[r["relation"]]
        a, b = h["position"][i, idx[r["subject"]], axis], h["position"][i, idx[r["object"]], axis]
        ok = bool(sign * (a - b) > 0)
        tally["relation"].append(ok)
        ok_all &= ok
    return ok_all


def faithfulness(heads: Mapping[str, np.ndarray], mentions: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> Dict[str, Any]:
    """Judge each image against its prompt's mentions.

    Args:
        heads: evaluator head outputs in image order (``Extracted.heads``).
        mentions: one dict per image, what its prompt names (``caption_attributes`` format).
        config: the evaluator's config (world, values).
    Returns:
        {"per_attribute": {kind: accuracy}, "counts": {kind: n}, "overall": accuracy over all mentions,
         "fully_faithful": share of images with every mention right, "n_images": n}
    """
    n = len(mentions)
    sizes = {len(v) for v in heads.values()}
    if n < 1 or sizes != {n}:
        raise MetricInputError(f"faithfulness: {n} prompts but evaluator outputs for {sorted(sizes)} images")
    world, values = config["world"], config["values"]
    judge = _judge_birds if world == "birds" else _judge_scenes
    tally: Dict[str, List[bool]] = defaultdict(list)
    full = [judge(heads, i, m, values, tally) for i, m in enumerate(mentions)]
    all_checks = [x for v in tally.values() for x in v]
    if not all_checks:
        raise MetricInputError("faithfulness: the prompts name no attribute or object to check")
    return {
        "world": world,
        "per_attribute": {k: float(np.mean(v)) for k, v in sorted(tally.items())},
        "counts": {k: len(v) for k, v in sorted(tally.items())},
        "overall": float(np.mean(all_checks)),
        "fully_faithful": float(np.mean(full)),
        "n_images": n,
    }
