"""Image-text retrieval recall (R@K, median / mean rank, rSum), chunked.

Conventions (METHODS §5):
- ``sims`` is images x captions; ``caption_to_image[c]`` is the image of caption c (any
  number of captions per image; COCO and Flickr30K have 5).
- i2t: the rank of an image query is the best rank among its captions, i.e. 1 + the
  number of *other images'* captions scoring at least as high as its best caption.
- t2i: the rank of a caption query is 1 + the number of other images scoring at least as
  high as its own image.
- Ties are pessimistic by default: a negative tied with the positive counts as ranked
  above it (a constant similarity matrix gives the worst rank, not R@1 = 100).
  ``tie="optimistic"`` counts only strictly higher negatives. Either way the result does
  not depend on the order of rows or columns.
- Recalls are percentages; rSum is the sum of the i2t and t2i recalls (six numbers for
  K = 1, 5, 10); medr is floor(median rank) (the VSE++ / SCAN convention, so it is an
  integer); meanr is the mean rank. Ranks are 1-based.
- COCO 1K: mean of each number over five folds of 1000 images (with their captions);
  COCO 5K: the whole 5000-image test split (:func:`coco_retrieval`).

The similarity matrix is never materialised whole: tiles of at most chunk_size x
chunk_size are requested from a provider (a dense array, :class:`EmbeddingSimilarity`,
or :class:`BlockSimilarity` around any callable), so 25K x 125K runs in bounded memory.
Each tile is compared once against thresholds known in advance (the positive scores),
so every similarity is computed exactly once.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MetricInputError
from .fid import ArrayLike, is_tensor, to_numpy

DEFAULT_CHUNK = 4096
TIE_RULES = ("pessimistic", "optimistic")


def _contig(idx: np.ndarray) -> Union[slice, np.ndarray]:
    """A slice for a contiguous ascending index array (so numpy returns a view)."""
    if len(idx) and int(idx[-1]) - int(idx[0]) == len(idx) - 1:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


# --------------------------------------------------------------------------- providers
class DenseSimilarity:
    """An in-memory (or memory-mapped) images x captions matrix, numpy or torch."""

    check_finite = True

    def __init__(self, sims: ArrayLike) -> None:
        if is_tensor(sims):
            torch = sys.modules["torch"]
            sims = sims.detach().cpu()
            if sims.dtype not in (torch.float32, torch.float64):
                sims = sims.double()
            sims = sims.numpy()
        arr = np.asarray(sims)
        if not np.issubdtype(arr.dtype, np.floating) or arr.dtype.itemsize < 4:
            arr = arr.astype(np.float64)
        if arr.ndim != 2:
            raise MetricInputError(f"similarity matrix: expected 2-D (images x captions), got shape {arr.shape}")
        self.sims = arr
        self.shape: Tuple[int, int] = (arr.shape[0], arr.shape[1])

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        r, c = _contig(rows), _contig(cols)
        if isinstance(r, np.ndarray) and isinstance(c, np.ndarray):
            return self.sims[np.ix_(r, c)]
        return self.sims[r][:, c] if isinstance(r, np.ndarray) else self.sims[r, c]

    def positives(self, caption_to_image: np.ndarray) -> np.ndarray:
        return np.asarray(self.sims[caption_to_image, np.arange(self.shape[1])])


class EmbeddingSimilarity:
    """Similarities computed tile by tile as image_emb @ text_emb.T.

    Args:
        image_emb: (n_images, d), numpy or torch (torch tiles are computed on its device).
        text_emb: (n_captions, d).
        normalize: L2-normalise both first (cosine similarity).
        dtype: "float32" / "float64"; default: float64 if either input is float64, else float32.
    """

    check_finite = False  # inputs are checked once; their products stay finite

    def __init__(self, image_emb: ArrayLike, text_emb: ArrayLike, normalize: bool = False,
                 dtype: Optional[str] = None) -> None:
        self.torch = is_tensor(image_emb) and is_tensor(text_emb)
        if self.torch:
            torch = sys.modules["torch"]
            wide = torch.float64 in (image_emb.dtype, text_emb.dtype)
            tdt = {"float32": torch.float32, "float64": torch.float64, None: torch.float64 if wide else torch.float32}
            if dtype not in tdt:
                raise MetricInputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
            img, txt = image_emb.detach().to(tdt[dtype]), text_emb.detach().to(tdt[dtype])
            for name, t in (("image embeddings", img), ("text embeddings", txt)):
                if t.ndim != 2:
                    raise MetricInputError(f"{name}: expected a 2-D array, got shape {tuple(t.shape)}")
                if not bool(torch.isfinite(t).all()):
                    raise MetricInputError(f"{name}: contains NaN or inf")
            if img.device != txt.device:
                txt = txt.to(img.device)
            if normalize:
                img, txt = self._normalize(img), self._normalize(txt)
        else:
            img = to_numpy(image_emb, "image embeddings", dtype=None, ndim=2)
            txt = to_numpy(text_emb, "text embeddings", dtype=None, ndim=2)
            wide = np.float64 in (img.dtype, txt.dtype)
            ndt = {"float32": np.float32, "float64": np.float64, None: np.float64 if wide else np.float32}
            if dtype not in ndt:
                raise MetricInputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
            img, txt = img.astype(ndt[dtype], copy=False), txt.astype(ndt[dtype], copy=False)
            if normalize:
                img, txt = self._normalize(img), self._normalize(txt)
        if img.shape[1] != txt.shape[1]:
            raise MetricInputError(f"image embeddings are {img.shape[1]}-d, text embeddings {txt.shape[1]}-d")
        self.img, self.txt = img, txt
        self.shape = (int(img.shape[0]), int(txt.shape[0]))

    @staticmethod
    def _normalize(x: Any) -> Any:
        norms = (x * x).sum(1, keepdims=True) ** 0.5
        if bool((norms == 0).any()):
            raise MetricInputError("an embedding has zero norm; cannot normalise")
        return x / norms

    def _take(self, x: Any, idx: np.ndarray) -> Any:
        sel = _contig(idx)
        if isinstance(sel, slice):
            return x[sel]
        if self.torch:
            return x[sys.modules["torch"].as_tensor(idx, device=x.device)]
        return x[sel]

    def block(self, rows: np.ndarray, cols: np.ndarray) -> Any:
        return self._take(self.img, rows) @ self._take(self.txt, cols).T

    def positives(self, caption_to_image: np.ndarray) -> Any:
        out = []
        for s in range(0, self.shape[1], DEFAULT_CHUNK):  # bounded temporaries
            c = np.arange(s, min(s + DEFAULT_CHUNK, self.shape[1]))
            a, b = self._take(self.img, caption_to_image[c]), self._take(self.txt, c)
            out.append((a * b).sum(1))
        if self.torch:
            return sys.modules["torch"].cat(out)
        return np.concatenate(out)


class BlockSimilarity:
    """Any callable ``fn(rows, cols) -> block`` as a provider.

    ``rows`` and ``cols`` are ascending int64 index arrays; the callable returns the
    (len(rows), len(cols)) block of the images x captions matrix (numpy or torch).
    """

    check_finite = True

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray], Any], shape: Tuple[int, int]) -> None:
        self.fn = fn
        self.shape = (int(shape[0]), int(shape[1]))

    def block(self, rows: np.ndarray, cols: np.ndarray) -> Any:
        out = self.fn(rows, cols)
        if tuple(out.shape) != (len(rows), len(cols)):
            raise MetricInputError(f"similarity callable returned shape {tuple(out.shape)}, "
                                   f"expected ({len(rows)}, {len(cols)})")
        return out


class _SubSimilarity:
    """The rows x cols sub-matrix of a provider (for COCO 1K folds)."""

    def __init__(self, parent: Any, rows: np.ndarray, cols: np.ndarray) -> None:
        self.parent, self.rows, self.cols = parent, rows, cols
        self.shape = (len(rows), len(cols))
        self.check_finite = getattr(parent, "check_finite", True)

    def block(self, rows: np.ndarray, cols: np.ndarray) -> Any:
        return self.parent.block(self.rows[rows], self.cols[cols])


def as_provider(sims: Any) -> Any:
    """Wrap an array / tensor as :class:`DenseSimilarity`; providers pass through."""
    if hasattr(sims, "block") and hasattr(sims, "shape"):
        return sims
    if callable(sims):
        raise MetricInputError("wrap a similarity callable as BlockSimilarity(fn, shape=(n_images, n_captions))")
    return DenseSimilarity(sims)


# --------------------------------------------------------------------------- ranks
class RetrievalRanks(NamedTuple):
    """1-based ranks. ``i2t[k]`` is the rank of image ``i2t_images[k]``; ``t2i[c]`` of caption c."""

    i2t: np.ndarray
    t2i: np.ndarray
    i2t_images: np.ndarray


def _check_mapping(caption_to_image: ArrayLike, shape: Tuple[int, int]) -> np.ndarray:
    n_img, n_cap = shape
    if n_img == 0 or n_cap == 0:
        raise MetricInputError(f"empty similarity matrix ({n_img} images x {n_cap} captions)")
    c2i = to_numpy(caption_to_image, "caption_to_image", dtype=None, ndim=1, finite=False)
    if not np.issubdtype(c2i.dtype, np.integer):
        if np.issubdtype(c2i.dtype, np.floating) and np.isfinite(c2i).all() and (c2i == np.round(c2i)).all():
            c2i = c2i.astype(np.int64)
        else:
            raise MetricInputError(f"caption_to_image must hold integer image indices, got dtype {c2i.dtype}")
    c2i = c2i.astype(np.int64, copy=False)
    if c2i.shape[0] != n_cap:
        raise MetricInputError(f"caption_to_image has {c2i.shape[0]} entries but the matrix has {n_cap} captions (columns)")
    bad = np.flatnonzero((c2i < 0) | (c2i >= n_img))
    if len(bad):
        raise MetricInputError(f"caption_to_image[{bad[0]}] = {c2i[bad[0]]} is out of range for {n_img} images "
                               f"({len(bad)} caption(s) out of range)")
    return c2i


def _positives(provider: Any, c2i: np.ndarray, chunk: int) -> Any:
    """s[c2i[c], c] for every caption, from the provider (exact values of its blocks)."""
    if hasattr(provider, "positives"):
        return provider.positives(c2i)
    n_cap = provider.shape[1]
    order = np.argsort(c2i, kind="stable")  # group captions of neighbouring images
    out: Any = None
    for s in range(0, n_cap, chunk):
        cols = np.sort(order[s:s + chunk])
        rows = np.unique(c2i[cols])
        blk = provider.block(rows, cols)
        ri, ci = np.searchsorted(rows, c2i[cols]), np.arange(len(cols))
        if is_tensor(blk):  # keep torch tiles' thresholds on their device and dtype
            torch = sys.modules["torch"]
            if out is None:
                out = torch.empty(n_cap, dtype=blk.dtype, device=blk.device)
            idx = [torch.as_tensor(a, device=blk.device) for a in (ri, ci, cols)]
            out[idx[2]] = blk[idx[0], idx[1]]
        else:
            blk = np.asarray(blk)
            if out is None:
                out = np.empty(n_cap, dtype=blk.dtype if blk.dtype in (np.float32, np.float64) else np.float64)
            out[cols] = blk[ri, ci]
    return out


def _to_np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if is_tensor(x) else np.asarray(x)


def _count_tile(tile: Any, thr_row: Any, thr_col: Any, pr: np.ndarray, pc: np.ndarray,
                strict: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Per row / column of ``tile``, how many entries reach the row / column threshold,
    not counting the positive pairs (pr[k], pc[k])."""
    if is_tensor(tile):
        torch = sys.modules["torch"]
        ge_c = tile > thr_col[None, :] if strict else tile >= thr_col[None, :]
        ge_r = tile > thr_row[:, None] if strict else tile >= thr_row[:, None]
        cnt_c = ge_c.sum(0).cpu().numpy().astype(np.int64)
        cnt_r = ge_r.sum(1).cpu().numpy().astype(np.int64)
        if len(pr):
            ipr = torch.as_tensor(pr, device=tile.device)
            ipc = torch.as_tensor(pc, device=tile.device)
            cnt_c -= np.bincount(pc, weights=ge_c[ipr, ipc].cpu().numpy(), minlength=len(cnt_c)).astype(np.int64)
            cnt_r -= np.bincount(pr, weights=ge_r[ipr, ipc].cpu().numpy(), minlength=len(cnt_r)).astype(np.int64)
        return cnt_r, cnt_c
    cmp = np.greater if strict else np.greater_equal
    ge = cmp(tile, thr_col[None, :])
    if ge.shape[0] < 2**16:  # summing bytes into uint16 down the columns is ~5x faster than count_nonzero
        cnt_c = np.add.reduce(ge.view(np.uint8), axis=0, dtype=np.uint16).astype(np.int64)
    else:
        cnt_c = np.count_nonzero(ge, axis=0)
    del ge
    cnt_r = np.count_nonzero(cmp(tile, thr_row[:, None]), axis=1)
    if len(pr):
        v = tile[pr, pc]
        cnt_c -= np.bincount(pc, weights=cmp(v, thr_col[pc]), minlength=len(cnt_c)).astype(np.int64)
        cnt_r -= np.bincount(pr, weights=cmp(v, thr_row[pr]), minlength=len(cnt_r)).astype(np.int64)
    return cnt_r, cnt_c


def retrieval_ranks(
    sims: Any,
    caption_to_image: ArrayLike,
    tie: str = "pessimistic",
    chunk_size: int = DEFAULT_CHUNK,
    allow_uncaptioned: bool = False,
) -> RetrievalRanks:
    """1-based i2t and t2i ranks (see the module docstring for the definitions).

    Args:
        sims: images x captions similarities: numpy / torch array, or a provider
            (:class:`EmbeddingSimilarity`, :class:`BlockSimilarity`).
        caption_to_image: (n_captions,) image index of each caption.
        tie: "pessimistic" (tied negatives rank above) or "optimistic".
        chunk_size: tile side; memory is O(chunk_size²).
        allow_uncaptioned: let images without captions act as t2i distractors (they get
            no i2t rank); otherwise such images are an error.
    """
    if tie not in TIE_RULES:
        raise MetricInputError(f"tie must be one of {TIE_RULES}, got {tie!r}")
    if chunk_size < 1:
        raise MetricInputError(f"chunk_size must be >= 1, got {chunk_size}")
    prov = as_provider(sims)
    n_img, n_cap = prov.shape
    c2i = _check_mapping(caption_to_image, (n_img, n_cap))
    has_caption = np.bincount(c2i, minlength=n_img) > 0
    if not has_caption.all() and not allow_uncaptioned:
        missing = np.flatnonzero(~has_caption)
        raise MetricInputError(f"{len(missing)} image(s) have no caption in caption_to_image (first: image "
                               f"{missing[0]}); pass allow_uncaptioned=True to keep them as distractors only")

    pos = _positives(prov, c2i, chunk_size)
    pos_np = _to_np(pos).astype(np.float64)
    if not np.isfinite(pos_np).all():
        raise MetricInputError("similarity matrix: NaN or inf among the positive (matching) pairs")
    # best positive score of each image; -inf for images without captions
    best_np = np.full(n_img, -np.inf)
    np.maximum.at(best_np, c2i, pos_np)
    if is_tensor(pos):
        torch = sys.modules["torch"]
        best = torch.as_tensor(best_np, device=pos.device, dtype=pos.dtype)
    else:
        pos = np.asarray(pos)
        best = best_np.astype(pos.dtype)

    cnt_i2t = np.zeros(n_img, dtype=np.int64)
    cnt_t2i = np.zeros(n_cap, dtype=np.int64)
    strict = tie == "optimistic"
    for r0 in range(0, n_img, chunk_size):
        rows = np.arange(r0, min(r0 + chunk_size, n_img))
        for c0 in range(0, n_cap, chunk_size):
            cols = np.arange(c0, min(c0 + chunk_size, n_cap))
            tile = prov.block(rows, cols)
            if prov.check_finite:
                finite = bool(sys.modules["torch"].isfinite(tile).all()) if is_tensor(tile) else np.isfinite(tile).all()
                if not finite:
                    raise MetricInputError(f"similarity matrix: NaN or inf in rows {r0}..{rows[-1]}, "
                                           f"columns {c0}..{cols[-1]}")
            g = c2i[cols]
            inside = (g >= r0) & (g < r0 + len(rows))
            pc = np.flatnonzero(inside)
            pr = g[pc] - r0
            cr, cc = _count_tile(tile, best[rows[0]:rows[-1] + 1], pos[cols[0]:cols[-1] + 1], pr, pc, strict)
            cnt_i2t[rows] += cr
            cnt_t2i[cols] += cc
    images = np.flatnonzero(has_caption)
    return RetrievalRanks(i2t=cnt_i2t[images] + 1, t2i=cnt_t2i + 1, i2t_images=images)


def recall_from_ranks(i2t: np.ndarray, t2i: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """R@K (percent), medr (floor of the median rank), meanr and rSum from 1-based ranks."""
    out: Dict[str, float] = {}
    rsum = 0.0
    for tag, ranks in (("i2t", np.asarray(i2t)), ("t2i", np.asarray(t2i))):
        if ranks.size == 0:
            raise MetricInputError(f"no {tag} queries to evaluate")
        for k in ks:
            r = 100.0 * float(np.mean(ranks <= k))
            out[f"{tag}_r{k}"] = r
            rsum += r
        out[f"{tag}_medr"] = float(np.floor(np.median(ranks)))
        out[f"{tag}_meanr"] = float(np.mean(ranks))
    out["rsum"] = rsum
    return out


def retrieval_recall(
    sims: Any,
    caption_to_image: ArrayLike,
    ks: Sequence[int] = (1, 5, 10),
    tie: str = "pessimistic",
    folds: int = 1,
    chunk_size: int = DEFAULT_CHUNK,
    allow_uncaptioned: bool = False,
) -> Dict[str, float]:
    """Retrieval recall of an images x captions similarity matrix.

    Args:
        sims: numpy / torch (n_images, n_captions), or a provider
            (:class:`EmbeddingSimilarity`, :class:`BlockSimilarity`).
        caption_to_image: (n_captions,) image index of each caption.
        ks: recall cut-offs.
        tie: "pessimistic" (default) or "optimistic".
        folds: >1 splits the images into that many contiguous folds (fold f: images
            [f·n//folds, (f+1)·n//folds) and their captions), evaluates each alone and
            returns the mean of every number (COCO 1K: folds=5 on the 5K test split).
        chunk_size: tile side.
        allow_uncaptioned: see :func:`retrieval_ranks`.

    Returns:
        {"i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr", "t2i_r1", ..., "t2i_meanr",
         "rsum", "n_images", "n_captions", "folds"}; recalls in percent.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise MetricInputError(f"ks must be positive integers, got {ks}")
    prov = as_provider(sims)
    n_img, n_cap = prov.shape
    c2i = _check_mapping(caption_to_image, (n_img, n_cap))
    if folds < 1 or folds > n_img:
        raise MetricInputError(f"folds must be between 1 and the number of images ({n_img}), got {folds}")
    results = []
    for f in range(folds):
        if folds == 1:
            sub, sub_c2i = prov, c2i
        else:
            a, b = f * n_img // folds, (f + 1) * n_img // folds
            cols = np.flatnonzero((c2i >= a) & (c2i < b))
            if len(cols) == 0:
                raise MetricInputError(f"fold {f} (images {a}..{b - 1}) has no captions")
            sub, sub_c2i = _SubSimilarity(prov, np.arange(a, b), cols), c2i[cols] - a
        ranks = retrieval_ranks(sub, sub_c2i, tie=tie, chunk_size=chunk_size, allow_uncaptioned=allow_uncaptioned)
        results.append(recall_from_ranks(ranks.i2t, ranks.t2i, ks))
    out = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
    out.update(n_images=n_img, n_captions=n_cap, folds=folds)
    return out


def coco_retrieval(sims: Any, caption_to_image: ArrayLike, fold_size: int = 1000, **kw: Any) -> Dict[str, Any]:
    """COCO protocol: ``"1k"``, the mean over folds of ``fold_size`` images, and ``"5k"``, the whole split.

    The split (normally the 5000-image Karpathy test split) must be a whole number of folds.
    The whole-split entry is labelled ``"5k"`` only when the split has 5 folds (5000
    images); another size is labelled by its own count (``"all_3000"``), and a single fold
    has only ``"1k"``, so a number is never reported under a protocol it did not follow.
    Extra keyword arguments go to :func:`retrieval_recall`.
    """
    prov = as_provider(sims)
    n_img = prov.shape[0]
    if fold_size < 1 or n_img % fold_size or n_img < fold_size:
        raise MetricInputError(f"COCO 1K needs a whole number of {fold_size}-image folds; got {n_img} images")
    folds = n_img // fold_size
    out: Dict[str, Any] = {"n_images": n_img, "1k": retrieval_recall(prov, caption_to_image, folds=folds, **kw)}
    if folds > 1:
        out["5k" if folds == 5 else f"all_{n_img}"] = retrieval_recall(prov, caption_to_image, **kw)
    return out


def retrieval_recall_from_embeddings(image_emb: ArrayLike, text_emb: ArrayLike, caption_to_image: ArrayLike,
                                     normalize: bool = False, chunk_size: int = DEFAULT_CHUNK,
                                     dtype: Optional[str] = None, **kw: Any) -> Dict[str, float]:
    """:func:`retrieval_recall` on sims = image_emb @ text_emb.T, computed tile by tile."""
    prov = EmbeddingSimilarity(image_emb, text_emb, normalize=normalize, dtype=dtype)
    return retrieval_recall(prov, caption_to_image, chunk_size=chunk_size, **kw)
