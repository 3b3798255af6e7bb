"""A searchable gallery: a trained matcher, a search index of its images and one of captions.

Why this module: the demo (and any application) wants "text -> images" and "image ->
captions" over a fixed gallery, and "index this folder now" over the user's own images,
without knowing how a matcher embeds or how the index is stored. A :class:`Gallery` holds
the matcher, a :class:`~matching.index.SearchIndex` over image embeddings and, optionally,
one over caption embeddings; it saves to and loads from one folder::

    gallery.json            {"format": "t2i-gallery", "version": 1, "image_size", "images", "captions", ...}
    matcher/                the matcher (``save_pretrained`` format), so the folder is self-contained
    images/                 SearchIndex of the image embeddings; ids are file names under thumbs/
    captions/               SearchIndex of the caption embeddings; ids are "0", "1", ... into captions.json
    captions.json           [{"text": ..., "image": id}, ...]
    thumbs/                 the gallery images (PNG)

    g = Gallery.load("app/checkpoints/retrieval/scenes")
    g.search_text("a red circle above a blue square", k=8)    # [(image id, cosine), ...]
    g.open_image(hits[0][0])                                   # PIL image (never outside the folder)
    g.search_image(pil_image, k=5)                             # [(caption, cosine), ...]

:meth:`Gallery.from_folder` embeds a folder of images in memory (no captions) with a
progress callback; it reads only regular image files inside that folder (symbolic links
that leave it are skipped and counted).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from imagetext.errors import UserError

from .index import SearchIndex

FORMAT = "t2i-gallery"
VERSION = 1
CONFIG = "gallery.json"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_QUERY_PIXELS = 40_000_000  # a query image above this is refused before it is decoded (~160 MB as RGB)
MAX_QUERY_CHARS = 2_000  # a text query is cut here (the text encoders read a few dozen words)

Progress = Optional[Callable[[int, int], None]]  # (done, total)


class GalleryError(UserError, ValueError):
    """A gallery folder, query or image that cannot be used; the message says which and why."""


def load_query_image(path: Union[str, Path], max_pixels: int = MAX_QUERY_PIXELS) -> Any:
    """Open ``path`` as RGB, refusing non-images and images above ``max_pixels`` before decoding."""
    from PIL import Image, UnidentifiedImageError

    from imagetext.data.images import DataError, open_rgb

    p = Path(path)
    try:
        with Image.open(p) as im:
            w, h = im.size
    except FileNotFoundError:
        raise GalleryError(f"{p.name}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise GalleryError(f"{p.name}: not an image file (PNG, JPEG, WebP, ...)") from None
    if w * h > max_pixels:
        raise GalleryError(f"{p.name}: {w} x {h} pixels is too large (at most {max_pixels / 1e6:.0f} megapixels)")
    try:
        img, _ = open_rgb(p)
    except DataError as e:
        raise GalleryError(str(e).replace(str(p), p.name)) from None
    return img


def embed_pil_images(model: Any, images: Sequence[Any], size: int, batch_size: int = 64,
                     progress: Progress = None) -> np.ndarray:
    """RGB PIL images -> (N, E) float32 unit vectors with ``model.embed_images`` at ``size`` px."""
    out = []
    n = len(images)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            batch = [torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float()
                     for im in images[i:i + batch_size]]
            x = torch.cat([torch.nn.functional.interpolate(b[None] / 255.0, size=(size, size), mode="bilinear",
                                                           align_corners=False, antialias=True) for b in batch])
            out.append(model.embed_images((x * 2.0 - 1.0).to(model.device)).float().cpu().numpy())
            if progress is not None:
                progress(min(i + batch_size, n), n)
    return np.concatenate(out) if out else np.zeros((0, int(model.embed_dim)), np.float32)


def embed_texts(model: Any, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Captions -> (N, E) float32 unit vectors with ``model.embed_texts``."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            out.append(model.embed_texts(list(texts[i:i + batch_size])).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, int(model.embed_dim)), np.float32)


def load_matcher(directory: Union[str, Path], flag: str = "--model") -> Any:
    """The embedding matcher saved in ``directory`` (float32, eval mode); an interaction model is refused
    with a message naming ``flag``, the option or role that named the folder."""
    from imagetext.registry import load_saved_model_with

    return load_saved_model_with(directory, ("embed_images", "embed_texts"), flag, "an embedding matcher",
                                 "an interaction model scores image-caption pairs jointly, so it cannot be "
                                 "indexed; index with an embedding matcher (it can re-rank a shortlist: "
                                 "t2i eval retrieval --rerank)").float().eval()


class Gallery:
    """A matcher with an image index (and optionally a caption index) over one set of images.

    Attributes:
        model: the matcher (``embed_images`` / ``embed_texts``, unit vectors).
        images: the :class:`SearchIndex` of image embeddings.
        captions: ``[{"text", "image"}, ...]`` (empty when the gallery has none).
        image_size: the side images are resized to for the matcher.
        root: the folder image ids resolve in (None for an in-memory folder gallery's
            absolute paths, see :meth:`open_image`).
        notes: what was skipped or changed while building (shown to the user).
    """

    def __init__(self, model: Any, images: SearchIndex, image_size: int, root: Optional[Path],
                 captions: Optional[List[Dict[str, str]]] = None, caption_index: Optional[SearchIndex] = None,
                 info: Optional[Dict[str, Any]] = None) -> None:
        self.model, self.images, self.image_size, self.root = model, images, int(image_size), root
        self.captions = list(captions or [])
        self.caption_index = caption_index
        self.info = dict(info or {})
        self.notes: List[str] = []

    def __len__(self) -> int:
        return len(self.images)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, model: Any, images: Sequence[Any], out: Union[str, Path],
              captions: Optional[Sequence[Tuple[str, int]]] = None, image_size: int = 64,
              info: Optional[Dict[str, Any]] = None, progress: Progress = None) -> "Gallery":
        """Save a self-contained gallery of PIL ``images`` to ``out``.

        ``model``: a matcher folder or a loaded matcher. ``captions``: ``(text, image
        position)`` pairs, indexed for image -> caption search. The matcher is saved into
        ``out/matcher`` so the folder moves as one piece.
        """
        out = Path(out)
        if out.exists() and any(out.iterdir()):
            raise GalleryError(f"{out}: not empty; give a new folder")
        if isinstance(model, (str, Path)):
            model = load_matcher(model)
        (out / "thumbs").mkdir(parents=True)
        model.save_pretrained(out / "matcher")
        ids = []
        for i, im in enumerate(images):
            name = f"thumbs/{i:05d}.png"
            im.convert("RGB").save(out / name, optimize=True)
            ids.append(name)
        meta = {"path": "matcher", "embed_dim": int(model.embed_dim), "image_size": int(image_size)}
        index = SearchIndex.build(embed_pil_images(model, images, image_size, progress=progress), ids,
                                  kind="flat", model_info=meta, progress=False)
        index.save(out / "images")
        rows: List[Dict[str, str]] = []
        cap_index = None
        if captions:
            rows = [{"text": t, "image": ids[int(j)]} for t, j in captions]
            cap_index = SearchIndex.build(embed_texts(model, [r["text"] for r in rows]), [str(i) for i in range(len(rows))],
                                          kind="flat", model_info=meta, progress=False)
            cap_index.save(out / "captions")
            (out / "captions.json").write_text(json.dumps(rows, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        cfg = {"format": FORMAT, "version": VERSION, "image_size": int(image_size), "images": len(ids),
               "captions": len(rows), **(info or {})}
        (out / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return cls(model, index, image_size, out, rows, cap_index, cfg)

    @classmethod
    def from_folder(cls, folder: Union[str, Path], model: Any, image_size: int = 64, max_images: int = 2_000,
                    progress: Progress = None) -> "Gallery":
        """Index the images directly inside ``folder`` and its subfolders, in memory.

        Only regular files with an image suffix whose real path stays inside ``folder`` are
        read; unreadable files, links leaving the folder and images past ``max_images``
        are skipped and counted in :attr:`notes`.
        """
        root = Path(folder).resolve()
        if not root.is_dir():
            raise GalleryError(f"{folder}: not a folder")
        paths, outside = [], 0
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
                continue
            real = p.resolve()
            if root not in real.parents:
                outside += 1
                continue
            paths.append(real)
        if not paths:
            raise GalleryError(f"{folder}: no image files (PNG, JPEG, WebP, ...) in this folder")
        notes = []
        if len(paths) > max_images:
            notes.append(f"{len(paths) - max_images} image(s) past the first {max_images} were not indexed")
            paths = paths[:max_images]
        if outside:
            notes.append(f"{outside} link(s) pointing outside the folder were skipped")
        imgs, ids, bad = [], [], []
        for i, p in enumerate(paths):
            try:
                imgs.append(load_query_image(p))
                ids.append(str(p.relative_to(root)))
            except GalleryError:
                bad.append(str(p.relative_to(root)))
            if progress is not None:
                progress(i + 1, 2 * len(paths))  # reading is the first half of the work
        if bad:
            notes.append(f"{len(bad)} unreadable file(s) skipped: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
        if not imgs:
            raise GalleryError(f"{folder}: none of its {len(paths)} image file(s) could be read")
        step = (lambda d, n: progress(len(paths) + math.ceil(d * len(paths) / n), 2 * len(paths))) if progress else None
        emb = embed_pil_images(model, imgs, image_size, progress=step)
        index = SearchIndex.build(emb, ids, kind="auto", progress=False)
        g = cls(model, index, image_size, root, info={"folder": str(root), "images": len(ids)})
        g.notes = notes + list(index.notes)
        return g

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, directory: Union[str, Path], model: Any = None) -> "Gallery":
        """Load a folder written by :meth:`build` (indexes checked against their checksums)."""
        d = Path(directory)
        cfg_path = d / CONFIG
        if not cfg_path.is_file():
            raise GalleryError(f"{d}: no {CONFIG}: not a gallery folder")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise GalleryError(f"{cfg_path}: not valid JSON ({e})") from None
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or cfg.get("version") != VERSION:
            raise GalleryError(f"{cfg_path}: not a {FORMAT} version {VERSION} file")
        model = model if model is not None else load_matcher(d / "matcher", flag="gallery matcher")
        images = SearchIndex.load(d / "images")
        if images.dim != int(model.embed_dim):
            raise GalleryError(f"{d / 'images'}: holds {images.dim}-d embeddings, the matcher gives {model.embed_dim}-d")
        rows, cap_index = [], None
        if (d / "captions").is_dir():
            cap_index = SearchIndex.load(d / "captions")
            rows = json.loads((d / "captions.json").read_text(encoding="utf-8"))
            if len(rows) != len(cap_index):
                raise GalleryError(f"{d / 'captions.json'}: {len(rows)} captions, the index holds {len(cap_index)}")
        return cls(model, images, int(cfg.get("image_size", 64)), d, rows, cap_index, cfg)

    # ------------------------------------------------------------------ search
    def _k(self, k: int, n: int) -> int:
        return max(1, min(int(k), n))

    def search_text(self, text: str, k: int = 8) -> List[Tuple[str, float]]:
        """The ``k`` gallery images nearest to ``text`` (k is clamped to the gallery size)."""
        if not isinstance(text, str) or not text.strip():
            raise GalleryError("the text query is empty: type words to search for")
        q = embed_texts(self.model, [text.strip()[:MAX_QUERY_CHARS]])
        return self.images.search(q, k=self._k(k, len(self.images)))[0]

    def search_image(self, image: Any, k: int = 5) -> List[Tuple[str, float]]:
        """The ``k`` captions nearest to a PIL ``image``: ``[(caption text, cosine), ...]``."""
        if self.caption_index is None:
            raise GalleryError("this gallery has no captions to search (index a gallery with captions)")
        q = embed_pil_images(self.model, [image], self.image_size)
        hits = self.caption_index.search(q, k=self._k(k, len(self.caption_index)))[0]
        return [(self.captions[int(i)]["text"], s) for i, s in hits]

    def similar_images(self, image: Any, k: int = 8) -> List[Tuple[str, float]]:
        """The ``k`` gallery images nearest to a PIL ``image``."""
        q = embed_pil_images(self.model, [image], self.image_size)
        return self.images.search(q, k=self._k(k, len(self.images)))[0]

    def image_path(self, image_id: str) -> Path:
        """The file of a gallery id; refuses any id that resolves outside :attr:`root`."""
        if self.root is None:
            raise GalleryError("this gallery has no folder")
        p = (self.root / image_id).resolve()
        if self.root.resolve() not in p.parents:
            raise GalleryError(f"{image_id}: not inside the gallery folder")
        return p

    def open_image(self, image_id: str) -> Any:
        """The gallery image ``image_id`` as an RGB PIL image."""
        return load_query_image(self.image_path(image_id))
