"""The torch Dataset over a :class:`LoadedSplit`, and an m-per-class batch sampler.

Every random choice (which caption, which second caption, crop, flip) is a function of
``(seed, epoch, index)``, so a run is reproducible across worker counts and restarts;
call :meth:`ImageTextDataset.set_epoch` (and the sampler's) once per epoch.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler, default_collate

from ..errors import DataError
from .images import crop_to_bbox, open_rgb
from .records import BadInputPolicy, LoadedSplit, Problem, Sample

log = logging.getLogger(__name__)

# AttnGAN's train-time augmentation: resize to 76/64 of the size, random crop, flip
_RESIZE_MARGIN = 76 / 64


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float tensor ``3 x H x W`` in ``[-1, 1]``."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float()
    return t / 127.5 - 1.0


def _resize_short(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if min(w, h) == size:
        return img
    scale = size / min(w, h)
    return img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)


def default_transform(img: Image.Image, image_size: int, train: bool, rng: np.random.Generator) -> torch.Tensor:
    """Train: resize short side to 76/64 of ``image_size``, random crop, random flip.
    Eval: resize short side to ``image_size`` and centre-crop. Returns a tensor in [-1, 1]."""
    base = int(image_size * _RESIZE_MARGIN) if train else image_size
    img = _resize_short(img, base)
    w, h = img.size
    if train:
        x0 = int(rng.integers(0, w - image_size + 1))
        y0 = int(rng.integers(0, h - image_size + 1))
    else:
        x0, y0 = (w - image_size) // 2, (h - image_size) // 2
    img = img.crop((x0, y0, x0 + image_size, y0 + image_size))
    if train and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return pil_to_tensor(img)


class ImageTextDataset(Dataset):
    """Image + two captions of it + labels, for GAN training and image-text matching.

    Each item is a dict:
        ``image``: float ``3 x image_size x image_size`` in ``[-1, 1]``;
        ``caption``, ``caption2``: two captions (different when the image has two or
        more, for the two parameter-sharing branches); ``caption_index``, ``caption2_index``;
        ``labels``: the class id (long, ``-1`` if none) for single-label sets, the
        multi-hot float vector for multi-label sets; ``label_set``: the multi-hot float
        vector (``num_classes`` long) in both cases; ``index``: the sample's index;
        with a tokenizer also ``tokens``/``tokens2`` (long, ``max_words``, padded with
        ``tokenizer.pad_id``) and ``lengths``/``lengths2``.

    An image that fails to decode is, under the ``skip`` policy, recorded in
    :attr:`report` (``failed`` counts them), warned about once, and replaced by the next
    decodable index; under ``error`` a DataError naming the file is raised. With
    DataLoader workers each worker has its own copy of the report.

    Args:
        split: the loaded split.
        image_size: output side in pixels.
        transform: ``PIL.Image -> tensor`` replacing the default (then ``train`` and the
            seed do not affect the image).
        tokenizer: any object with ``encode(text, max_len) -> list[int]`` and ``pad_id``.
        max_words: token length (AttnGAN uses 18).
        two_captions: pick a second, different caption; else ``caption2 == caption``.
        seed: base seed of every random choice.
        policy: bad-input policy at load time; default skip.
        train: random crop and flip (else resize + centre crop).
    """

    def __init__(
        self,
        split: LoadedSplit,
        image_size: int = 64,
        transform: Optional[Callable[[Image.Image], Any]] = None,
        tokenizer: Any = None,
        max_words: int = 18,
        two_captions: bool = True,
        seed: int = 0,
        policy: Optional[BadInputPolicy] = None,
        train: bool = True,
    ) -> None:
        if len(split.samples) == 0:
            raise DataError(f"{split.report.source} {split.report.root} split {split.report.split!r}: no usable samples")
        self.split = split
        self.samples: List[Sample] = split.samples
        self.image_size = int(image_size)
        self.transform = transform
        self.tokenizer = tokenizer
        self.max_words = int(max_words)
        self.two_captions = two_captions
        self.seed = int(seed)
        self.policy = policy or BadInputPolicy()
        self.train = train
        self.epoch = 0
        self.report = split.report
        self.failed = 0
        self.failed_indices: Set[int] = set()
        # files whose conversion the loader already reported (check_images) are not counted again
        self._converted_files: Set[str] = {p.file for p in self.report.problems if p.action == "converted"}
        self._warned = False

    # --- properties the trainers and samplers need ------------------------------------
    @property
    def class_names(self) -> List[str]:
        return self.split.class_names

    @property
    def num_classes(self) -> int:
        return len(self.split.class_names)

    @property
    def multi_label(self) -> bool:
        return self.split.multi_label

    @property
    def sample_labels(self) -> List[tuple]:
        """Each sample's label tuple (for :class:`MPerClassSampler`)."""
        return [s.labels for s in self.samples]

    def all_captions(self, index: int) -> List[str]:
        return list(self.samples[index].captions)

    def set_epoch(self, epoch: int) -> None:
        """Select the captions and augmentations of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    # --- item assembly ----------------------------------------------------------------
    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, stream])

    def choose_captions(self, index: int) -> tuple[int, int]:
        """The two caption indices of ``index`` this epoch (deterministic)."""
        n = len(self.samples[index].captions)
        rng = self._rng(index, 0)
        first = int(rng.integers(n))
        if not self.two_captions or n < 2:
            return first, first
        second = (first + 1 + int(rng.integers(n - 1))) % n  # uniform over the others
        return first, second

    def _image(self, index: int) -> torch.Tensor:
        s = self.samples[index]
        if s.render is not None:
            img = s.render()
            if img.mode != "RGB":
                img = img.convert("RGB")
            if s.bbox is not None:
                img = crop_to_bbox(img, s.bbox)
        elif s.image_path is not None:
            img, note = open_rgb(s.image_path)
            if note is not None and str(s.image_path) not in self._converted_files:
                self._converted_files.add(str(s.image_path))  # count once, not once per epoch
                self.report.add(Problem(str(s.image_path), f"{note} image converted to RGB", action="converted"))
            if s.bbox is not None:
                img = crop_to_bbox(img, s.bbox)
        else:
            raise DataError(f"sample {s.key}: has neither an image file nor a renderer")
        if self.transform is not None:
            out = self.transform(img)
            return pil_to_tensor(out) if isinstance(out, Image.Image) else out
        return default_transform(img, self.image_size, self.train, self._rng(index, 1))

    def _labels(self, s: Sample) -> Dict[str, torch.Tensor]:
        label_set = torch.zeros(self.num_classes)
        for c in s.labels:
            if 0 <= c < self.num_classes:
                label_set[c] = 1.0
        if self.multi_label:
            return {"labels": label_set.clone(), "label_set": label_set}
        cls = s.labels[0] if s.labels else -1
        return {"labels": torch.tensor(cls, dtype=torch.long), "label_set": label_set}

    def _tokens(self, text: str) -> tuple[torch.Tensor, int]:
        ids = list(self.tokenizer.encode(text, self.max_words))[: self.max_words]
        if not ids:  # a caption with no words (only punctuation): one <unk>, as encode_batch does
            ids = [int(getattr(self.tokenizer, "unk_id", 1))]
        pad = int(getattr(self.tokenizer, "pad_id", 0))
        out = torch.full((self.max_words,), pad, dtype=torch.long)
        if ids:
            out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out, len(ids)

    def _item(self, index: int) -> Dict[str, Any]:
        s = self.samples[index]
        image = self._image(index)
        i1, i2 = self.choose_captions(index)
        item: Dict[str, Any] = {
            "image": image,
            "caption": s.captions[i1],
            "caption2": s.captions[i2],
            "caption_index": i1,
            "caption2_index": i2,
            "index": index,
        }
        item.update(self._labels(s))
        if self.tokenizer is not None:
            item["tokens"], item["lengths"] = self._tokens(s.captions[i1])
            item["tokens2"], item["lengths2"] = self._tokens(s.captions[i2])
        return item

    def __getitem__(self, index: int) -> Dict[str, Any]:
        n = len(self.samples)
        if index < 0:
            index += n
        for step in range(n):
            i = (index + step) % n
            if i in self.failed_indices:
                continue
            try:
                return self._item(i)
            except DataError as e:
                if self.policy.on_error == "error":
                    raise
                self._record_failure(i, e)
        raise DataError(f"{self.report.source} {self.report.root}: no sample in split {self.report.split!r} can be decoded")

    def _record_failure(self, index: int, err: DataError) -> None:
        self.failed_indices.add(index)
        self.failed += 1
        s = self.samples[index]
        file = str(s.image_path) if s.image_path is not None else s.key
        msg = str(err)
        if msg.startswith(f"{file}: "):
            msg = msg[len(file) + 2:]
        self.report.add(Problem(file, f"{msg} (at load time; the next sample was used)", action="skipped"))
        if not self._warned:
            self._warned = True
            log.warning("skipping undecodable image %s (%s); further failures are only counted in the report", file, msg)


def collate_fn(items: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack an item list: tensors stacked, strings and ints as lists/tensors (torch's default)."""
    return default_collate(list(items))


class MPerClassSampler(Sampler[List[int]]):
    """Batches in which each class present has at least two members (when it has two or more
    images), so every anchor has a positive for supervised contrastive losses.

    Each epoch every index appears once: a class's shuffled indices are cut into groups
    of ``m`` (a lone leftover joins its class's last group); unlabelled images are groups
    of one. Groups are shuffled and packed into batches of exactly ``batch_size``; a
    group is split across two batches only when nothing else fits the free space.

    Args:
        labels: per sample, a class id or a tuple of ids (multi-label: the first id groups
            it; an empty tuple or -1 means unlabelled).
        m: group size per class (>= 2 to guarantee positives).
        batch_size: batch size (>= m).
        seed: base seed; the order is a function of ``(seed, epoch)``.
        drop_last: drop the final incomplete batch.
    """

    def __init__(self, labels: Sequence[Any], m: int, batch_size: int, seed: int = 0, drop_last: bool = True) -> None:
        if m < 1 or batch_size < m:
            raise ValueError(f"MPerClassSampler needs 1 <= m <= batch_size, got m={m}, batch_size={batch_size}")
        self.m, self.batch_size, self.seed, self.drop_last = int(m), int(batch_size), int(seed), drop_last
        self.epoch = 0
        self.groups: Dict[int, List[int]] = {}
        self.unlabelled: List[int] = []
        for i, lab in enumerate(labels):
            key = self._key(lab)
            if key is None:
                self.unlabelled.append(i)
            else:
                self.groups.setdefault(key, []).append(i)
        self.n = len(labels)

    @staticmethod
    def _key(lab: Any) -> Optional[int]:
        if isinstance(lab, torch.Tensor):
            lab = lab.tolist()
        if isinstance(lab, (list, tuple)):
            return int(lab[0]) if len(lab) else None
        return None if lab is None or int(lab) < 0 else int(lab)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def _chunks(self, rng: np.random.Generator) -> List[List[int]]:
        chunks: List[List[int]] = []
        for cls in sorted(self.groups):
            idx = [self.groups[cls][j] for j in rng.permutation(len(self.groups[cls]))]
            parts = [idx[k : k + self.m] for k in range(0, len(idx), self.m)]
            if len(parts) > 1 and len(parts[-1]) == 1 and self.m > 1:
                leftover = parts.pop()
                parts[-1] += leftover  # a lone leftover would have no positive
            chunks += parts
        chunks += [[i] for i in self.unlabelled]
        return [chunks[j] for j in rng.permutation(len(chunks))]

    def __iter__(self) -> Iterator[List[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        stream = self._chunks(rng)
        pending: Dict[int, List[List[int]]] = {}  # size -> groups that did not fit earlier
        batch: List[int] = []
        pos = 0
        while pos < len(stream) or pending:
            free = self.batch_size - len(batch)
            fit = [k for k in pending if k <= free and pending[k]]
            if fit:
                batch += pending[max(fit)].pop()
            elif pos < len(stream) and len(stream[pos]) <= free:
                batch += stream[pos]
                pos += 1
            elif pos < len(stream):
                pending.setdefault(len(stream[pos]), []).append(stream[pos])
                pos += 1
            else:  # only larger groups remain: split one
                size = max(k for k in pending if pending[k])
                g = pending[size].pop()
                batch += g[:free]
                pending.setdefault(len(g) - free, []).append(g[free:])
            pending = {k: v for k, v in pending.items() if v}
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch
