"""Batched, distributed feature extraction: images in, streaming statistics out.

Inputs are validated first (fewer than 2 images, non-image files, mixed sizes, undecodable
files are errors naming the file), so a metric is never computed from the wrong images.
Under ``accelerate launch`` every process extracts its shard; Gaussian statistics are
summed across processes and kept features are gathered back in input order, so the
result does not depend on the number of processes or the batch size.
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

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
# Files that may sit beside generated images (prompts, stats, notes) and are not images.
SIDE_FILE_EXTS = {".json", ".jsonl", ".csv", ".txt", ".npz", ".npy", ".yaml", ".yml", ".md", ".log"}


def list_images(folder: Union[str, Path], allow_mixed_sizes: bool = False, min_images: int = 2) -> List[Path]:
    """All images under ``folder`` (recursive, sorted); bad content is an error naming files."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise MetricInputError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    odd = [p for p in files if p.suffix.lower() not in IMAGE_EXTS | SIDE_FILE_EXTS]
    if odd:
        shown = ", ".join(str(p.relative_to(folder)) for p in odd[:5])
        raise MetricInputError(f"{folder}: {len(odd)} non-image file(s) among the images: {shown}; move them out")
    if len(images) < min_images:
        raise MetricInputError(f"{folder}: {len(images)} image(s) found, need at least {min_images}")
    if not allow_mixed_sizes:
        sizes: Dict[tuple, Path] = {}
        for p in images:
            try:
                with Image.open(p) as im:
                    sizes.setdefault(im.size, p)
            except Exception as e:  # noqa: BLE001 - any decoder failure names the file
                raise MetricInputError(f"{p}: not a readable image ({e})") from None
            if len(sizes) > 1:
                (s1, p1), (s2, p2) = list(sizes.items())[:2]
                raise MetricInputError(
                    f"{folder}: images of mixed sizes ({p1.name} {s1[0]}x{s1[1]}, {p2.name} {s2[0]}x{s2[1]}); "
                    "resizing changes FID, so resize them yourself or pass --allow-mixed-sizes"
                )
    return images


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


@dataclass
class Extracted:
    """What one pass over a set of images produced."""

    stats: Any  # FeatureStats
    n: int
    features: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None
    heads: Dict[str, np.ndarray] = field(default_factory=dict)


def _to_unit(batch: torch.Tensor) -> torch.Tensor:
    return batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()


def extract(extractor: torch.nn.Module, images: Union[Dataset, Sequence[Path], torch.Tensor], batch_size: int = 50,
            keep_features: bool = False, keep_logits: bool = False, keep_heads: bool = False,
            progress: bool = True, num_workers: int = 0, desc: str = "features") -> Extracted:
    """Run ``extractor`` over ``images``; every process takes its shard, results are merged.

    Args:
        images: a Dataset of (index, image) pairs, a list of image files, or a tensor.
        keep_*: also return raw features / logits / head outputs (input order) for KID, IS, faithfulness.
    """
    from tqdm.auto import tqdm

    from .fid import FeatureStats

    if isinstance(images, torch.Tensor):
        images = TensorImages(images)
    elif not isinstance(images, Dataset):
        images = ImageFiles(images)
    n = len(images)
    if n < 2:
        raise MetricInputError(f"{n} image(s): need at least 2")
    rank, world = rank_and_world_size()
    shard = torch.utils.data.Subset(images, list(range(rank, n, world)))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    stats = FeatureStats()
    idx_l: List[torch.Tensor] = []
    kept: Dict[str, List[torch.Tensor]] = {}
    bar = tqdm(loader, desc=desc, unit="batch", disable=not progress or rank != 0)
    for idx, batch in bar:
        out = extractor(_to_unit(batch))
        feats = out["features"]
        if not torch.isfinite(feats).all():
            raise MetricInputError(f"extractor produced NaN/inf features for images {idx[:5].tolist()}")
        stats.update(feats.double())
        idx_l.append(idx)
        if keep_features:
            kept.setdefault("features", []).append(feats.float().cpu())
        if keep_logits and out.get("logits") is not None:
            kept.setdefault("logits", []).append(out["logits"].float().cpu())
        if keep_heads:
            for k, v in (out.get("heads") or {}).items():
                if k != "features":
                    kept.setdefault(f"head:{k}", []).append(v.float().cpu())
    stats.all_reduce()
    local = {k: torch.cat(v) for k, v in kept.items()}
    order = torch.cat(idx_l) if idx_l else torch.zeros(0, dtype=torch.long)
    if world > 1 and local:
        gathered: List[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, (order, local))
        order = torch.cat([g[0] for g in gathered])
        local = {k: torch.cat([g[1][k] for g in gathered]) for k in local}
    perm = torch.argsort(order)
    arrays = {k: v[perm].numpy() for k, v in local.items()}
    return Extracted(
        stats=stats, n=n, features=arrays.get("features"), logits=arrays.get("logits"),
        heads={k[5:]: v for k, v in arrays.items() if k.startswith("head:")},
    )
