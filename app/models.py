"""The bundled checkpoints as the demo sees them: a manifest, pipelines and galleries loaded on first use.

The demo never trains or builds a model: it reads ``manifest.json`` (written by
``scripts/make_checkpoints.py``), loads :class:`t2i.gan.pipeline.T2IPipeline` folders for
generation and :class:`matching.gallery.Gallery` folders for retrieval, and caches them.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from imagetext.encoders.weights import sha256_file
from imagetext.errors import UserError

DEFAULT_ROOT = Path(__file__).resolve().parent / "checkpoints"
MANIFEST = "manifest.json"
ARMS = ("baseline", "scl")


@dataclass
class GeneratorEntry:
    """One bundled generator: ``variant`` x ``arm`` (baseline or the contrastive ``scl`` twin)."""

    variant: str
    arm: str
    dir: Path
    world: str
    steps: int
    seed: int
    metrics: Dict[str, Any] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)


@dataclass
class GalleryEntry:
    """One bundled retrieval gallery (a matcher, its image index and caption index)."""

    world: str
    dir: Path
    metrics: Dict[str, Any] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)


class DemoModels:
    """The manifest of a checkpoint folder, with thread-safe lazy loading of its models."""

    def __init__(self, root: Optional[Path] = None) -> None:
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        path = self.root / MANIFEST
        if not path.is_file():
            raise UserError(f"{path}: missing; run `make checkpoints` to train the demo's models "
                            "(or pass --models DIR holding a manifest.json)")
        try:
            self.manifest: Dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        self.generators: Dict[Tuple[str, str], GeneratorEntry] = {}
        for g in self.manifest.get("generators", []):
            e = GeneratorEntry(g["variant"], g["arm"], self.root / g["dir"], g.get("world", "?"), int(g.get("steps", 0)),
                               int(g.get("seed", 0)), dict(g.get("metrics", {})), g)
            self.generators[(e.variant, e.arm)] = e
        self.galleries: Dict[str, GalleryEntry] = {
            g["world"]: GalleryEntry(g["world"], self.root / g["dir"], dict(g.get("metrics", {})), g)
            for g in self.manifest.get("galleries", [])}
        self.examples: List[str] = list(self.manifest.get("examples", []))
        self._pipes: Dict[Tuple[str, str], Any] = {}
        self._galleries: Dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def variants(self) -> List[str]:
        """Variants with at least one bundled generator, in manifest order."""
        return list(dict.fromkeys(v for v, _ in self.generators))

    def entry(self, variant: str, arm: str) -> GeneratorEntry:
        if (variant, arm) not in self.generators:
            have = ", ".join(f"{v} ({a})" for v, a in self.generators) or "none"
            raise UserError(f"no bundled generator {variant!r} ({arm}); bundled: {have}")
        return self.generators[(variant, arm)]

    def pipeline(self, variant: str, arm: str) -> Any:
        """The :class:`T2IPipeline` of ``variant`` / ``arm``, loaded once."""
        key = (variant, arm)
        entry = self.entry(variant, arm)
        with self._lock:
            if key not in self._pipes:
                from t2i.gan.pipeline import T2IPipeline

                self._pipes[key] = T2IPipeline.from_pretrained(entry.dir)
            return self._pipes[key]

    def gallery(self, world: str) -> Any:
        """The bundled :class:`Gallery` of ``world``, loaded once."""
        if world not in self.galleries:
            raise UserError(f"no bundled gallery {world!r}; bundled: {', '.join(self.galleries) or 'none'}")
        with self._lock:
            if world not in self._galleries:
                from matching.gallery import Gallery

                self._galleries[world] = Gallery.load(self.galleries[world].dir)
            return self._galleries[world]

    def verify(self) -> List[str]:
        """Files whose size or sha256 differs from the manifest (empty when all match)."""
        bad = []
        for f in self.manifest.get("files", []):
            p = self.root / f["path"]
            if not p.is_file():
                bad.append(f"{f['path']}: missing")
            elif p.stat().st_size != f.get("bytes", p.stat().st_size) or sha256_file(p) != f["sha256"]:
                bad.append(f"{f['path']}: checksum mismatch")
        return bad
