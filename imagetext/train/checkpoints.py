"""Checkpoint folders: atomic writes, finding the latest complete one, pruning, run identity.

Layout: ``OUTPUT_DIR/checkpoints/checkpoint-<step>/`` holding accelerate's ``save_state`` files,
``config.yaml`` (the run's resolved config) and a ``complete`` marker. A checkpoint is written
under ``.tmp-checkpoint-<step>`` and renamed (``os.replace``, atomic on one filesystem) only
once every process has written its part and the marker exists, so a run killed mid-write leaves
a ``.tmp-*`` folder that :func:`latest_checkpoint` never picks.
"""
from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from .config import VOLATILE_KEYS

MARKER = "complete"
TMP_PREFIX = ".tmp-checkpoint-"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def is_complete(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MARKER).is_file()


def complete_checkpoints(output_dir: Path) -> List[Path]:
    """Complete checkpoints of a run, oldest first (folders without the marker are ignored)."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def prune(output_dir: Path, keep: Optional[int]) -> List[Path]:
    """Delete all but the newest ``keep`` complete checkpoints; returns the deleted folders."""
    if keep is None:
        return []
    doomed = complete_checkpoints(output_dir)[:-keep]
    for p in doomed:
        shutil.rmtree(p)
    return doomed


def remove_stale_tmp(output_dir: Path) -> None:
    """Remove half-written ``.tmp-checkpoint-*`` folders left by a killed run."""
    root = checkpoint_root(output_dir)
    if root.is_dir():
        for p in root.glob(TMP_PREFIX + "*"):
            shutil.rmtree(p, ignore_errors=True)


def identity(config: Dict[str, Any], train_path: Sequence[str], extra: Sequence[str] = ()) -> Dict[str, Any]:
    """The part of a resolved config that defines a run: the TrainConfig section's volatile keys
    dropped, and ``extra`` dotted keys under it (a config's own ``VOLATILE_EXTRA``: e.g. the
    test-only metrics of a GAN run, which a finished run may be re-scored with)."""
    out = copy.deepcopy(config)
    node = out
    for key in train_path:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        for key in VOLATILE_KEYS:
            node.pop(key, None)
        for dotted in extra:
            *parents, last = dotted.split(".")
            parent: Any = node
            for key in parents:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if isinstance(parent, dict):
                parent.pop(last, None)
    return out


def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(mine: Dict[str, Any], theirs: Dict[str, Any], limit: int = 4,
                       defaults: Optional[Dict[str, Any]] = None) -> List[str]:
    """Human-readable ``key (here X, there Y)`` lines for flattened keys that differ.

    With ``defaults`` (the config class's defaults, same layout as ``mine``), a key that ``theirs``
    lacks while ``mine`` holds its default is no difference: it is a key added to the project after
    that run was written, and the run behaved as the default says, so it may still be resumed."""
    a, b = _flatten(mine), _flatten(theirs)
    d = _flatten(defaults) if defaults is not None else {}
    missing = object()
    diffs = [f"{k} (here {a.get(k, '<absent>')!r}, there {b.get(k, '<absent>')!r})"
             for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)
             and not (k not in b and k in d and a.get(k, missing) == d[k])]
    return diffs[:limit] + ([f"... {len(diffs) - limit} more"] if len(diffs) > limit else [])


def read_config(path: Path) -> Optional[Dict[str, Any]]:
    """The YAML mapping at ``path``; None when missing or unreadable."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None
