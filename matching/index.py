"""A model-agnostic vector index over L2-normalised embeddings, saved with a verified manifest.

Why this module: ``t2i index build/search`` and the demo need to find the images nearest
to a text (or image) embedding in galleries from a few hundred to a million items, and
to load a saved gallery quickly without ever reading a damaged file as garbage. The model
that makes the embeddings is not this module's concern: it takes numpy arrays and ids.

Similarity is the inner product of unit vectors (= cosine). Kinds:

* ``flat``: exact ``IndexFlatIP`` (brute force; the results *are* the ground truth).
* ``hnsw``: ``IndexHNSWFlat`` (M=32, efConstruction=128, efSearch=256 by default; efSearch
  is a search-time knob, :meth:`SearchIndex.set_search_params`). Chosen over IVF as the
  approximate kind because (a) it needs no training, so incremental :meth:`add` never
  works against stale centroids fitted to the first batch, (b) it has the best
  latency/recall trade-off at high recall on CPUs, and (c) its vectors are stored
  uncompressed, so the scores it returns are exact cosines (only the candidate set is
  approximate). Cost: slower builds and ~256 bytes of graph per vector on top of the
  4·d bytes of the vector.
* ``ivf``: ``IndexIVFFlat`` (nlist = 4·√N, nprobe = nlist/8), for fast builds; trained on
  the build batch.
* ``auto``: ``flat`` up to :data:`EXACT_MAX` items, ``hnsw`` above; an auto index that
  grows past the threshold through :meth:`add` is rebuilt as HNSW (with a note).

Input policy (decided, documented, tested): NaN/inf, zero vectors, a wrong dimension,
duplicate ids, ids/embeddings length mismatch, an empty query batch and ``k`` larger than
the gallery are refused with :class:`SearchIndexError` (a one-line :class:`UserError`).
Rows that are finite but not unit-norm (|‖x‖-1| > 1e-3) are normalised and a note is
appended to :attr:`SearchIndex.notes` (callers print them): ranking by cosine is what is
meant, and refusing would only make every caller normalise first.

On disk (:meth:`SearchIndex.save`): ``index.faiss``, ``ids.json`` and ``manifest.json``
(format version, model info, dimension, count, kind, parameters, size and sha256 of
every file). :meth:`SearchIndex.load` checks the manifest and every checksum *before*
FAISS reads a byte, then memory-maps the index where FAISS supports it
(``IO_FLAG_MMAP_IFC`` for flat/HNSW vectors, ``IO_FLAG_MMAP`` for IVF lists).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from imagetext.safeio import sha256_file
from imagetext.errors import UserError

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"
KINDS = ("auto", "flat", "hnsw", "ivf")

EXACT_MAX = 50_000  # "auto": exact search up to here (p50 of one flat query at 5e4 x 512 is a few ms)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 128
HNSW_EF_SEARCH = 256
IVF_NPROBE_FRACTION = 8  # nprobe = nlist / 8
NORM_TOL = 1e-3
_ADD_CHUNK = 20_000

Hit = Tuple[str, float]


class SearchIndexError(UserError, ValueError):
    """A search index cannot be built, searched, saved or loaded as asked."""


# --------------------------------------------------------------------------- helpers
def _faiss() -> Any:
    try:
        import faiss  # noqa: PLC0415
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise SearchIndexError("the search index needs FAISS: pip install faiss-cpu") from None
    return faiss


def _as_matrix(x: Any, what: str, dim: Optional[int], notes: List[str]) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, d) matrix of unit rows; refuses what cannot be fixed."""
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise SearchIndexError(f"{what}: not a numeric array ({e})") from None
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise SearchIndexError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1 and what.startswith("quer"):
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SearchIndexError(f"{what}: expected a 2-D array (count, dimension), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise SearchIndexError(f"{what}: empty (0 rows)")
    if dim is not None and arr.shape[1] != dim:
        raise SearchIndexError(
            f"{what}: dimension {arr.shape[1]} but the index holds {dim}-d embeddings "
            f"(made by another model?); use the model the index was built with, or rebuild it")
    if arr.shape[1] == 0:
        raise SearchIndexError(f"{what}: dimension 0")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise SearchIndexError(f"{what}: {bad.size} row(s) with NaN/inf (first: row {int(bad[0])})")
    norms = np.linalg.norm(arr, axis=1)
    zero = norms < 1e-12
    if zero.any():
        bad = np.flatnonzero(zero)
        raise SearchIndexError(f"{what}: {bad.size} all-zero row(s) (first: row {int(bad[0])}); a zero vector has no direction")
    off = np.abs(norms - 1.0) > NORM_TOL
    if off.any():
        notes.append(f"{what}: {int(off.sum())} of {arr.shape[0]} row(s) were not unit-norm "
                     f"(norms {norms[off].min():.4g}..{norms[off].max():.4g}); normalised them")
        arr = np.ascontiguousarray(arr / norms[:, None], dtype=np.float32)
    return arr


def _check_ids(ids: Sequence[Any], n: int, existing: Optional[Dict[str, int]] = None) -> List[str]:
    if isinstance(ids, (str, bytes)):
        raise SearchIndexError("ids: expected a list of strings, got a single string")
    ids = list(ids)
    if len(ids) != n:
        raise SearchIndexError(f"ids: {len(ids)} id(s) for {n} embedding(s); give exactly one id per row")
    bad = [i for i, x in enumerate(ids) if not isinstance(x, str) or not x]
    if bad:
        raise SearchIndexError(f"ids: {len(bad)} id(s) are not non-empty strings (first: position {bad[0]}, {ids[bad[0]]!r})")
    seen: Dict[str, int] = {}
    dups: List[str] = []
    for x in ids:
        if x in seen or (existing is not None and x in existing):
            dups.append(x)
        seen[x] = 1
    if dups:
        where = " (already in the index or repeated)" if existing else ""
        shown = ", ".join(repr(d) for d in dups[:3]) + (", ..." if len(dups) > 3 else "")
        raise SearchIndexError(f"ids: {len(dups)} duplicate id(s){where}: {shown}; ids must be unique")
    return ids


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit="vec", leave=False)


def _resolve_kind(kind: str, n: int) -> str:
    if kind not in KINDS:
        raise SearchIndexError(f"kind {kind!r}: unknown; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        return "flat" if n <= EXACT_MAX else "hnsw"
    return kind


# --------------------------------------------------------------------------- the index
class SearchIndex:
    """Embeddings of a gallery with string ids; cosine search, incremental add, save/load.

    Attributes:
        kind: ``flat``, ``hnsw`` or ``ivf`` (what was built; ``auto`` is resolved).
        model_info: what the caller says made the embeddings (saved in the manifest).
        params: index parameters (``auto``, ``M``, ``ef_construction``, ``ef_search``,
            ``nlist``, ``nprobe``).
        notes: things done to the input that the caller should show (normalisation,
            rebuilds).
    """

    def __init__(self, index: Any, ids: List[str], kind: str, model_info: Dict[str, Any],
                 params: Dict[str, Any], mmap_path: Optional[Path] = None) -> None:
        self._index = index
        self._ids = ids
        self._pos = {x: i for i, x in enumerate(ids)}
        self.kind = kind
        self.model_info = dict(model_info)
        self.params = dict(params)
        self.notes: List[str] = []
        self._mmap_path = mmap_path  # set when the FAISS data is a read-only mapping of this file
        self._apply_search_params()

    # ----------------------------------------------------------------- construction
    @classmethod
    def build(cls, embeddings: Any, ids: Sequence[str], kind: str = "auto",
              model_info: Optional[Dict[str, Any]] = None, progress: bool = True,
              **params: Any) -> "SearchIndex":
        """Index ``embeddings`` (N, d) under ``ids`` (N unique strings).

        ``params`` override the defaults: ``M``, ``ef_construction``, ``ef_search`` (HNSW),
        ``nlist``, ``nprobe`` (IVF). Raises :class:`SearchIndexError` on bad input.
        """
        notes: List[str] = []
        x = _as_matrix(embeddings, "embeddings", None, notes)
        ids = _check_ids(ids, x.shape[0])
        auto = kind == "auto"
        kind = _resolve_kind(kind, x.shape[0])
        unknown = set(params) - {"M", "ef_construction", "ef_search", "nlist", "nprobe"}
        if unknown:
            raise SearchIndexError(f"unknown index parameter(s): {', '.join(sorted(unknown))}")
        index, p = cls._new_index(kind, x, params)
        p["auto"] = auto
        out = cls(index, [], kind, model_info or {}, p)
        out.notes.extend(notes)
        out._add_vectors(x, ids, progress)
        return out

    @staticmethod
    def _new_index(kind: str, x: np.ndarray, params: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
        faiss = _faiss()
        d = x.shape[1]
        if kind == "flat":
            return faiss.IndexFlatIP(d), {}
        if kind == "hnsw":
            m = int(params.get("M", HNSW_M))
            index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(params.get("ef_construction", HNSW_EF_CONSTRUCTION))
            return index, {"M": m, "ef_construction": index.hnsw.efConstruction,
                           "ef_search": int(params.get("ef_search", HNSW_EF_SEARCH))}
        # ivf: nlist ~ 4 sqrt(N), but at least 39 training points per list (FAISS's k-means minimum)
        n = x.shape[0]
        nlist = int(params.get("nlist", max(1, min(int(4 * math.sqrt(n)), n // 39))))
        if nlist < 1 or nlist > n:
            raise SearchIndexError(f"ivf: nlist {nlist} must be between 1 and the number of embeddings ({n})")
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234
        index.train(x)
        nprobe = int(params.get("nprobe", max(1, nlist // IVF_NPROBE_FRACTION)))
        return index, {"nlist": nlist, "nprobe": nprobe}

    def add(self, embeddings: Any, ids: Sequence[str], progress: bool = False) -> None:
        """Add more items (same dimension, new unique ids)."""
        x = _as_matrix(embeddings, "embeddings", self.dim, self.notes)
        ids = _check_ids(ids, x.shape[0], self._pos)
        self._ensure_writable()
        if self.params.get("auto") and self.kind == "flat" and len(self) + x.shape[0] > EXACT_MAX:
            old = self._index.reconstruct_n(0, len(self))
            self.notes.append(f"index grew past {EXACT_MAX} items: rebuilt as HNSW (kind auto)")
            old_ids = self._ids
            self._index, p = self._new_index("hnsw", old, {})
            self.params = {**p, "auto": True}
            self.kind = "hnsw"
            self._ids, self._pos = [], {}
            self._apply_search_params()
            self._add_vectors(old, old_ids, progress)
        self._add_vectors(x, ids, progress)

    def _add_vectors(self, x: np.ndarray, ids: List[str], progress: bool) -> None:
        bar = _progress(x.shape[0], progress, f"index {self.kind}")
        try:
            for s in range(0, x.shape[0], _ADD_CHUNK):
                chunk = x[s:s + _ADD_CHUNK]
                self._index.add(chunk)
                if bar is not None:
                    bar.update(chunk.shape[0])
        finally:
            if bar is not None:
                bar.close()
        for i, x_id in enumerate(ids, start=len(self._ids)):
            self._pos[x_id] = i
        self._ids.extend(ids)

    def _ensure_writable(self) -> None:
        """A memory-mapped index is read-only: read it into memory before changing it."""
        if self._mmap_path is not None:
            self._index = _faiss().read_index(str(self._mmap_path))
            self._mmap_path = None
            self._apply_search_params()

    # ----------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ids(self) -> List[str]:
        return list(self._ids)

    def set_search_params(self, ef_search: Optional[int] = None, nprobe: Optional[int] = None) -> None:
        """Trade speed for recall at search time (HNSW ``ef_search``, IVF ``nprobe``)."""
        if ef_search is not None:
            if self.kind != "hnsw" or ef_search < 1:
                raise SearchIndexError(f"ef_search applies to an hnsw index and must be >= 1 (index is {self.kind})")
            self.params["ef_search"] = int(ef_search)
        if nprobe is not None:
            if self.kind != "ivf" or not 1 <= nprobe <= self.params["nlist"]:
                raise SearchIndexError(f"nprobe applies to an ivf index and must be in [1, nlist] (index is {self.kind})")
            self.params["nprobe"] = int(nprobe)
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = int(self.params.get("ef_search", HNSW_EF_SEARCH))
        elif self.kind == "ivf":
            self._index.nprobe = int(self.params.get("nprobe", 1))

    def search(self, queries: Any, k: int = 10) -> List[List[Hit]]:
        """The ``k`` most similar items for each query: ``[[(id, cosine), ...], ...]``, descending.

        ``queries`` is (Q, d) or one (d,) vector. ``k`` must be in ``[1, len(self)]``
        (a larger ``k`` is an error, not silently fewer results). An approximate index
        may, rarely, find fewer than ``k``; those lists are shorter.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise SearchIndexError(f"k={k!r}: must be a positive integer")
        if k > len(self):
            raise SearchIndexError(f"k={k} is larger than the gallery ({len(self)} item(s)); use k <= {len(self)}")
        q = _as_matrix(queries, "queries", self.dim, self.notes)
        if self.kind == "hnsw" and self._index.hnsw.efSearch < k:
            self._index.hnsw.efSearch = int(k)
        try:
            scores, idx = self._index.search(q, int(k))
        finally:
            self._apply_search_params()
        out: List[List[Hit]] = []
        for srow, irow in zip(scores, idx):
            out.append([(self._ids[i], float(s)) for s, i in zip(srow, irow) if i >= 0])
        return out

    # ----------------------------------------------------------------- persistence
    def manifest(self) -> Dict[str, Any]:
        """What :meth:`save` writes to ``manifest.json`` (without the file checksums)."""
        faiss = _faiss()
        return {"format": "imagetext-search-index", "format_version": FORMAT_VERSION,
                "model": self.model_info, "dimension": self.dim, "count": len(self),
                "kind": self.kind, "metric": "inner_product (cosine of unit vectors)",
                "params": self.params, "faiss_version": faiss.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def save(self, directory: Union[str, Path]) -> Path:
        """Write ``index.faiss``, ``ids.json`` and (last) ``manifest.json`` into ``directory``.

        Each file is written under a temporary name and renamed; the manifest comes last,
        so an interrupted save leaves no manifest and is refused on load.
        """
        faiss = _faiss()
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise SearchIndexError(f"{d}: is a file; give a folder to save the index in")
        try:
            d.mkdir(parents=True, exist_ok=True)
            (d / MANIFEST_FILE).unlink(missing_ok=True)
            tmp = d / (INDEX_FILE + ".tmp")
            faiss.write_index(self._index, str(tmp))
            os.replace(tmp, d / INDEX_FILE)
            tmp = d / (IDS_FILE + ".tmp")
            tmp.write_text(json.dumps(self._ids, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, d / IDS_FILE)
            man = self.manifest()
            man["files"] = {name: {"bytes": (d / name).stat().st_size, "sha256": sha256_file(d / name)}
                            for name in (INDEX_FILE, IDS_FILE)}
            tmp = d / (MANIFEST_FILE + ".tmp")
            tmp.write_text(json.dumps(man, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, d / MANIFEST_FILE)
        except OSError as e:
            raise SearchIndexError(f"{d}: cannot save the index ({e.strerror or e})") from None
        return d

    @classmethod
    def load(cls, directory: Union[str, Path], mmap: bool = True, verify: bool = True) -> "SearchIndex":
        """Read an index saved by :meth:`save`, checking the manifest and every checksum first.

        ``mmap`` maps the FAISS data instead of reading it (the OS pages it in on use;
        :meth:`add` then reads it into memory first). ``verify=False`` skips the sha256
        pass (sizes are still checked), for huge indexes on trusted disks.
        """
        faiss = _faiss()
        d = Path(directory)
        if not d.exists():
            raise SearchIndexError(f"{d}: no such index folder")
        if not d.is_dir():
            raise SearchIndexError(f"{d}: is a file; an index is a folder holding {MANIFEST_FILE}")
        mpath = d / MANIFEST_FILE
        if not mpath.is_file():
            raise SearchIndexError(f"{d}: no {MANIFEST_FILE}: not a saved search index, or its save did not finish")
        try:
            man = json.loads(mpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SearchIndexError(f"{mpath}: not valid JSON ({e})") from None
        if not isinstance(man, dict) or "format_version" not in man:
            raise SearchIndexError(f"{mpath}: not a search index manifest (no format_version)")
        if man["format_version"] != FORMAT_VERSION:
            raise SearchIndexError(f"{mpath}: unknown format version {man['format_version']!r} "
                                   f"(this version reads {FORMAT_VERSION}); rebuild the index")
        need = ("dimension", "count", "kind", "params", "files", "model")
        missing = [k for k in need if k not in man]
        if missing:
            raise SearchIndexError(f"{mpath}: missing key(s) {', '.join(missing)}")
        files = man["files"]
        if not isinstance(files, dict) or not {INDEX_FILE, IDS_FILE} <= set(files):
            raise SearchIndexError(f"{mpath}: 'files' must list {INDEX_FILE} and {IDS_FILE} with their checksums")
        if man["kind"] not in ("flat", "hnsw", "ivf"):
            raise SearchIndexError(f"{mpath}: unknown index kind {man['kind']!r}")
        for name, info in files.items():
            p = d / name
            if not p.is_file():
                raise SearchIndexError(f"{p}: missing (listed in {MANIFEST_FILE})")
            size = p.stat().st_size
            if size != info.get("bytes"):
                raise SearchIndexError(f"{p}: {size} bytes, the manifest says {info.get('bytes')} "
                                       f"(truncated or altered); rebuild or restore the index")
            if verify and sha256_file(p) != info.get("sha256"):
                raise SearchIndexError(f"{p}: sha256 checksum mismatch (altered or corrupt); rebuild or restore the index")
        try:
            ids = json.loads((d / IDS_FILE).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SearchIndexError(f"{d / IDS_FILE}: not valid JSON ({e})") from None
        if not isinstance(ids, list) or len(ids) != man["count"]:
            raise SearchIndexError(f"{d / IDS_FILE}: expected a list of {man['count']} ids")
        kind = man["kind"]
        flags = 0
        if mmap:
            flags = faiss.IO_FLAG_MMAP if kind == "ivf" else faiss.IO_FLAG_MMAP_IFC
        try:
            index = faiss.read_index(str(d / INDEX_FILE), flags)
        except RuntimeError as e:
            raise SearchIndexError(f"{d / INDEX_FILE}: FAISS cannot read it ({str(e).splitlines()[-1][:200]})") from None
        expected = {"flat": "IndexFlatIP", "hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}[kind]
        if type(index).__name__ != expected or index.ntotal != man["count"] or index.d != man["dimension"]:
            raise SearchIndexError(f"{d / INDEX_FILE}: holds {type(index).__name__} with {index.ntotal} "
                                   f"{index.d}-d vectors; the manifest says {kind}, {man['count']} x {man['dimension']}")
        return cls(index, ids, kind, man["model"], man["params"], mmap_path=(d / INDEX_FILE) if mmap else None)
