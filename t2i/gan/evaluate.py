"""Scores of generated images against a held-out set: FID, KID, R-precision, faithfulness.

One :class:`GeneratedScorer` per run: the real set's features are extracted once; each call
generates one image per prompt (seeded, the same prompts every time) and scores it. The
trainer uses it for validation (on a validation set, never test) and the end-of-run test scores.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn


def split_images(split: Any, imsize: int, n: int) -> torch.Tensor:
    """The first ``n`` images of ``split`` as (n, 3, imsize, imsize) floats in [-1, 1] (resize + centre crop)."""
    from imagetext.data.dataset import ImageTextDataset

    ds = ImageTextDataset(split, image_size=imsize, train=False, two_captions=False)
    return torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))])


class GeneratedScorer:
    """Scores ``generate(prompts, seed) -> images in [-1, 1]`` on the first ``n`` images of ``split``.

    Args:
        split: the reference split (its first caption of each image is the prompt).
        extractor: a FEATURE_EXTRACTORS name (``synth`` gives faithfulness too) and its kwargs.
        text_encoder, image_encoder: the phase-1 pair for R-precision (None: no R-precision).
    """

    def __init__(self, split: Any, imsize: int, n: int, extractor: str = "synth",
                 extractor_kwargs: Optional[Dict[str, Any]] = None, world: Optional[str] = None,
                 text_encoder: Optional[nn.Module] = None, image_encoder: Optional[nn.Module] = None,
                 batch_size: int = 100, kid_subsets: int = 50, seed: int = 0, device: Any = "cpu",
                 encoder_size: Optional[int] = None) -> None:
        from imagetext.metrics.engine import extract
        from imagetext.registry import FEATURE_EXTRACTORS

        kwargs = dict(extractor_kwargs or {})
        if extractor == "synth" and world is not None:
            kwargs.setdefault("world", world)
        self.extractor_name = extractor
        self.extractor = FEATURE_EXTRACTORS.build(extractor, **kwargs).eval()
        self.samples = split.samples[:n]
        self.prompts: List[str] = [s.captions[0] for s in self.samples]
        atts = [(s.caption_attributes or [None])[0] for s in self.samples]
        self.mentions = atts if extractor == "synth" and all(a is not None for a in atts) else None
        ids: Dict[str, int] = {}
        self.caption_ids = [ids.setdefault(p, len(ids)) for p in self.prompts]  # equal prompts are never mismatched
        self.text_encoder, self.image_encoder = text_encoder, image_encoder
        self.batch_size, self.kid_subsets, self.seed, self.device = batch_size, kid_subsets, seed, device
        self.encoder_size = encoder_size
        real = split_images(split, imsize, n)
        self.real = extract(self.extractor, (real + 1) / 2, batch_size=batch_size, keep_features=True,
                            progress=False, num_workers=0, device=device)

    def __call__(self, generate: Callable[[List[str], int], torch.Tensor]) -> Dict[str, float]:
        from imagetext.metrics.engine import extract
        from imagetext.metrics.faithfulness import faithfulness
        from imagetext.metrics.fid import fid_from_stats
        from imagetext.metrics.kid import kernel_inception_distance

        fake = generate(self.prompts, self.seed).float().clamp(-1, 1)
        r = extract(self.extractor, (fake + 1) / 2, batch_size=self.batch_size, keep_features=True,
                    keep_heads=self.mentions is not None, progress=False, num_workers=0, device=self.device)
        out: Dict[str, float] = {"fid": fid_from_stats(self.real.stats, r.stats, check_meta=False)}
        kid = kernel_inception_distance(self.real.features, r.features, subsets=self.kid_subsets,
                                        subset_size=min(1000, r.n, self.real.n), seed=self.seed)
        out["kid"], out["kid_std"] = float(kid["kid"]), float(kid["kid_std"])
        if self.mentions is not None:
            f = faithfulness(r.heads, self.mentions, self.extractor.extra["config"])
            out["faithfulness"] = float(f["overall"])
        if self.text_encoder is not None and self.image_encoder is not None:
            out.update(self.rprecision(fake))
        return out

    @torch.no_grad()
    def rprecision(self, fake: torch.Tensor) -> Dict[str, float]:
        from imagetext.metrics.rprecision import r_precision

        from .variant import resize_for_encoder

        dev = next(self.image_encoder.parameters()).device
        img, txt = [], []
        for i in range(0, len(fake), self.batch_size):
            x = resize_for_encoder(fake[i:i + self.batch_size].to(dev), self.encoder_size)
            img.append(self.image_encoder(x).global_.float().cpu())
            txt.append(self.text_encoder.encode_text(self.prompts[i:i + self.batch_size]).sentence.float().cpu())
        n = len(fake)
        folds = max(1, min(10, n // 100))
        res = r_precision(torch.cat(img).numpy(), torch.cat(txt).numpy(), num_mismatched=min(99, n - 1), folds=folds,
                          seed=self.seed, caption_ids=np.array(self.caption_ids))
        return {"r_precision": float(res["r_precision"])}
