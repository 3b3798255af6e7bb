"""Scores of generated images against a held-out set: FID, KID, IS, R-precision, faithfulness.

One :class:`GeneratedScorer` per run: the real set's features are extracted once; each call
generates one image per prompt (seeded, the same prompts every time) and scores it. The
trainer uses it for validation (on a validation set, never test) and the end-of-run test scores.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

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
        extra_extractors: more extractors scoring the same fakes, their keys prefixed with the
            name (``inception`` -> ``inception_fid``, ``inception_kid``): the test scores' second
            opinion, too slow on a CPU for every validation.
        real_cache: a folder caching the real set's features per extractor (keyed by the images'
            and the extractor's hashes), so runs sharing a reference set extract it once.
        text_encoder, image_encoder: the phase-1 pair for R-precision (None: no R-precision).

    Every extractor with class logits (``synth``; ``inception`` from a torch-fidelity .pth)
    also gives the Inception Score (``is``, ``is_std``: 10 splits).
    """

    def __init__(self, split: Any, imsize: int, n: int, extractor: str = "synth",
                 extractor_kwargs: Optional[Dict[str, Any]] = None, world: Optional[str] = None,
                 text_encoder: Optional[nn.Module] = None, image_encoder: Optional[nn.Module] = None,
                 batch_size: int = 100, kid_subsets: int = 50, seed: int = 0, device: Any = "cpu",
                 encoder_size: Optional[int] = None, extra_extractors: Sequence[str] = (),
                 real_cache: Optional[str] = None) -> None:
        from imagetext.errors import ConfigError
        from imagetext.registry import FEATURE_EXTRACTORS

        def build(name: str, kwargs: Dict[str, Any]) -> nn.Module:
            if name == "synth" and world is not None:
                kwargs.setdefault("world", world)
            return FEATURE_EXTRACTORS.build(name, **kwargs).eval()

        if extractor in extra_extractors or len(set(extra_extractors)) < len(extra_extractors):
            raise ConfigError(f"extra extractors {list(extra_extractors)}: each named once, and not the main "
                              f"extractor {extractor!r}")
        self.extractor_name = extractor
        self.extractors = {extractor: build(extractor, dict(extractor_kwargs or {}))}
        self.extractors.update({name: build(name, {}) for name in extra_extractors})
        self.extractor = self.extractors[extractor]
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
        self.reals = {name: self._real(ext, real, real_cache) for name, ext in self.extractors.items()}
        self.real = self.reals[extractor]

    def _extract(self, ext: nn.Module, images: torch.Tensor, **keep: bool) -> Any:
        from imagetext.metrics.engine import extract

        return extract(ext, (images + 1) / 2, batch_size=self.batch_size, keep_features=True, progress=False,
                       num_workers=0, device=self.device, **keep)

    def _real(self, ext: nn.Module, real: torch.Tensor, cache: Optional[str]) -> Any:
        """The real set's extraction, from ``cache`` when an earlier run of the same images and weights left it."""
        if cache is None:
            return self._extract(ext, real)
        import hashlib
        import os
        from pathlib import Path

        from imagetext.dist import all_ranks_agree, is_main_process
        from imagetext.metrics.engine import Extracted
        from imagetext.metrics.fid import FeatureStats

        prov = ext.provenance
        key = hashlib.sha256(f"{tuple(real.shape)}|{real.dtype}|".encode())
        key.update(real.numpy().tobytes())
        key.update(f"{prov.extractor}|{prov.weights_sha256}|{prov.resize_mode}|{prov.input_size}".encode())
        path = Path(cache) / f"{prov.extractor}-{key.hexdigest()[:24]}.npy"
        # every rank must take the same branch: extraction is a collective over processes
        if all_ranks_agree(path.is_file()):
            feats = np.load(path)
        else:
            feats = self._extract(ext, real).features
            if is_main_process():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, feats)
                os.replace(tmp, path)  # concurrent runs: the last complete file wins, none is half-read
        # statistics from the features on a hit and on a miss alike, so a cached run scores bit-identically
        stats = FeatureStats()
        stats.update(torch.from_numpy(feats).double())
        return Extracted(stats=stats, n=len(feats), features=feats)

    def __call__(self, generate: Callable[[List[str], int], torch.Tensor]) -> Dict[str, float]:
        fake = generate(self.prompts, self.seed).float().clamp(-1, 1)
        out: Dict[str, float] = {}
        for name, ext in self.extractors.items():
            main = name == self.extractor_name
            scores = self._score(ext, self.reals[name], fake, faithfulness=main and self.mentions is not None)
            out.update(scores if main else {f"{name}_{k}": v for k, v in scores.items()})
        if self.text_encoder is not None and self.image_encoder is not None:
            out.update(self.rprecision(fake))
        return out

    def _score(self, ext: nn.Module, real: Any, fake: torch.Tensor, faithfulness: bool) -> Dict[str, float]:
        from imagetext.metrics.faithfulness import faithfulness as faithfulness_score
        from imagetext.metrics.fid import fid_from_stats
        from imagetext.metrics.isc import inception_score_of_logits
        from imagetext.metrics.kid import kernel_inception_distance

        has_logits = bool(ext.extra.get("has_logits"))
        r = self._extract(ext, fake, keep_heads=faithfulness, keep_logits=has_logits)
        out: Dict[str, float] = {"fid": fid_from_stats(real.stats, r.stats, check_meta=False)}
        kid = kernel_inception_distance(real.features, r.features, subsets=self.kid_subsets,
                                        subset_size=min(1000, r.n, real.n), seed=self.seed)
        out["kid"], out["kid_std"] = float(kid["kid"]), float(kid["kid_std"])
        if has_logits and r.logits is not None:
            isc = inception_score_of_logits(r.logits, bool(ext.extra.get("multi_label")), splits=min(10, r.n),
                                            seed=self.seed)
            out["is"], out["is_std"] = isc["inception_score"], isc["inception_score_std"]
        if faithfulness:
            f = faithfulness_score(r.heads, self.mentions, ext.extra["config"])
            out["faithfulness"] = float(f["overall"])
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
