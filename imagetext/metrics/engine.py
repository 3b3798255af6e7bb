"""Batched, distributed feature extraction: images in, streaming statistics out.

What an input means (which files, what was skipped) is settled before this runs, by
:mod:`imagetext.metrics.inputs`. Images of any size are accepted: a batch is split into
groups of equal size and each group goes through the extractor, which resizes every
image to its own input size (the mode is in its provenance), so each image is resized
once, on its own, and the sizes seen are recorded. An undecodable file is an error
naming it. Under ``accelerate launch`` every process extracts its shard; Gaussian
statistics are summed across processes and kept features are gathered back in input
order, so the result does not depend on the number of processes or the batch size.
Extraction runs on the chosen device (``auto``: CUDA when present) in float32 with TF32
off, so GPU features agree with CPU ones to float32 rounding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..dist import rank_and_world_size
from ..errors import MetricInputError

class ImageFiles(Dataset):
    """Images as float tensors in [0, 1]; an undecodable file is an error naming it."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple:
        from ..data.images import open_rgb
        from ..errors import DataError

        try:
            img, _ = open_rgb(self.paths[i])
        except DataError as e:
            raise MetricInputError(str(e)) from None
        arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return i, arr


class SplitImages(Dataset):
    """(index, uint8 CHW) over a LoadedSplit, in the split's order (so prompts stay aligned)."""

    def __init__(self, split: Any) -> None:
        self.samples = split.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple:
        from ..errors import DataError

        try:
            img = self.samples[i].load_image()
        except DataError as e:
            raise MetricInputError(str(e)) from None
        return i, torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


class TensorImages(Dataset):
    """In-memory images (N x 3 x H x W, uint8 or float in [0, 1])."""

    def __init__(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise MetricInputError(f"expected N x 3 x H x W images, got {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple:
        return i, self.images[i]


class EmbeddingExtractor(torch.nn.Module):
    """Any model with ``embed_images`` ((B, 3, H, W) in [-1, 1] -> (B, E)) as an extractor for :func:`extract`.

    Each batch group is resized to ``size`` (antialiased bilinear) before the model; the
    embeddings come back as ``features``. Used to embed galleries and held-out sets with
    trained matchers, whatever package the model comes from. ``method`` names another
    per-image encoder of the model (e.g. an interaction model's ``encode_images``, whose
    (B, K, E) region sets need ``extract(..., stats=False)``).
    """

    def __init__(self, model: torch.nn.Module, size: int, method: str = "embed_images") -> None:
        super().__init__()
        self.model, self.size, self.method = model, int(size), method

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> Dict[str, Any]:
        if x.shape[-2:] != (self.size, self.size):
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                                antialias=True)
        return {"features": getattr(self.model, self.method)(x * 2.0 - 1.0).float()}


@dataclass
class Extracted:
    """What one pass over a set of images produced."""

    stats: Any  # FeatureStats
    n: int
    features: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None
    heads: Dict[str, np.ndarray] = field(default_factory=dict)
    image_sizes: Dict[str, int] = field(default_factory=dict)  # "WxH" -> count, over all processes
    device: str = "cpu"


def _to_unit(batch: torch.Tensor) -> torch.Tensor:
    return batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()


def _collate(items: List[tuple]) -> tuple:
    """Indices as a tensor, images as a list: sizes may differ within a batch."""
    return torch.tensor([i for i, _ in items], dtype=torch.long), [x for _, x in items]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: accelerate's device under ``accelerate launch``, else CUDA when present, else CPU."""
    import os

    if name == "auto":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
            from accelerate import PartialState

            return PartialState().device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MetricInputError("--device cuda: no CUDA device is available here (use --device auto or cpu)")
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        return PartialState().device
    return torch.device(name)


def default_workers(device: torch.device) -> int:
    """Data-loader workers: none on CPU (decoding competes with the extractor for the same
    cores), several on an accelerator so PNG/JPEG decoding keeps up with the network."""
    import os

    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def extract(extractor: torch.nn.Module, images: Union[Dataset, Sequence[Path], torch.Tensor], batch_size: int = 50,
            keep_features: bool = False, keep_logits: bool = False, keep_heads: bool = False,
            progress: bool = True, num_workers: Optional[int] = None, desc: str = "features",
            device: Union[str, torch.device] = "cpu", stats: bool = True) -> Extracted:
    """Run ``extractor`` over ``images``; every process takes its shard, results are merged.

    Args:
        images: a Dataset of (index, image) pairs, a list of image files, or a tensor;
            images may differ in size (each is resized by the extractor on its own).
        keep_*: also return raw features / logits / head outputs (input order) for KID, IS, faithfulness.
        num_workers: data-loader workers; None picks :func:`default_workers` for the device.
        device: where the extractor runs (``"auto"``, ``"cpu"``, ``"cuda"`` or a torch.device).
        stats: accumulate FID statistics of the features (False: features of any shape are
            only kept, and ``Extracted.stats`` stays empty).
    """
    from collections import Counter

    from tqdm.auto import tqdm

    from .fid import FeatureStats

    if isinstance(images, torch.Tensor):
        images = TensorImages(images)
    elif not isinstance(images, Dataset):
        images = ImageFiles(images)
    n = len(images)
    if n < 2:
        raise MetricInputError(f"{n} image(s): need at least 2")
    dev = resolve_device(device) if isinstance(device, str) else device
    workers = default_workers(dev) if num_workers is None else num_workers
    extractor = extractor.to(dev)
    rank, world = rank_and_world_size()
    shard = torch.utils.data.Subset(images, list(range(rank, n, world)))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
                        pin_memory=dev.type == "cuda")
    want_stats = stats
    stats = FeatureStats()
    idx_l: List[torch.Tensor] = []
    kept: Dict[str, List[torch.Tensor]] = {}
    sizes: Counter = Counter()
    bar = tqdm(loader, desc=desc, unit="batch", disable=not progress or rank != 0)
    # TF32 convolutions/matmuls would move GPU features ~1e-3 away from CPU ones
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for idx, batch in bar:
            groups: Dict[tuple, List[int]] = {}
            for j, x in enumerate(batch):
                groups.setdefault(tuple(x.shape), []).append(j)
                sizes[f"{x.shape[-1]}x{x.shape[-2]}"] += 1
            for shape, js in groups.items():
                x = torch.stack([batch[j] for j in js]).to(dev, non_blocking=True)
                out = extractor(_to_unit(x))
                feats = out["features"]
                gidx = idx[js]
                if not torch.isfinite(feats).all():
                    raise MetricInputError(f"extractor produced NaN/inf features for images {gidx[:5].tolist()}")
                if want_stats:
                    stats.update(feats.double().cpu())
                idx_l.append(gidx)
                if keep_features:
                    kept.setdefault("features", []).append(feats.float().cpu())
                if keep_logits and out.get("logits") is not None:
                    kept.setdefault("logits", []).append(out["logits"].float().cpu())
                if keep_heads:
                    for k, v in (out.get("heads") or {}).items():
                        if k != "features":
                            kept.setdefault(f"head:{k}", []).append(v.float().cpu())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    if want_stats:
        stats.all_reduce()
    local = {k: torch.cat(v) for k, v in kept.items()}
    order = torch.cat(idx_l) if idx_l else torch.zeros(0, dtype=torch.long)
    if world > 1:
        gathered: List[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, (order, local, sizes))
        order = torch.cat([g[0] for g in gathered])
        local = {k: torch.cat([g[1][k] for g in gathered]) for k in local}
        sizes = sum((g[2] for g in gathered), Counter())
    perm = torch.argsort(order)
    arrays = {k: v[perm].numpy() for k, v in local.items()}
    return Extracted(
        stats=stats, n=n, features=arrays.get("features"), logits=arrays.get("logits"),
        heads={k[5:]: v for k, v in arrays.items() if k.startswith("head:")},
        image_sizes=dict(sorted(sizes.items())), device=str(dev),
    )
