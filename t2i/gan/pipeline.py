"""The exported generator and the pipeline around it (diffusers-style).

``OUTPUT_DIR/final/`` holds:

* ``generator/``: the EMA generator as a diffusers ``ModelMixin``/``ConfigMixin``
  (``config.json`` + ``diffusion_pytorch_model.safetensors``); ``T2IGenerator.from_pretrained``
  rebuilds it from the variant name and arguments (GALIP's frozen CLIP tower included);
* ``text_encoder/``: the frozen text encoder with its vocabulary (``save_pretrained`` format);
* ``pipeline.json``: ``{"format": "t2i-gan", variant, imsize, noise_dim, truncation, ...}``; an
  optional ``"text_encoder": "../shared/enc"`` points at a text encoder folder elsewhere inside the
  same bundle (several pipelines conditioned on one frozen encoder keep one copy: app/checkpoints), and
  ``config.yaml``: the resolved training config.

    pipe = T2IPipeline.from_pretrained("runs/t2i/dfgan_birds/final")
    images = pipe(["a small red bird with black wings"], seed=0, num_images=4)   # PIL images

Prompts: an empty or whitespace-only prompt is an error (``PromptError``); words the text
encoder does not know become ``<unk>`` and are reported in ``pipe.last_warnings``; a prompt
longer than the encoder reads is truncated to its first words (also reported).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from imagetext.errors import UserError
from imagetext.registry import GANS, MODEL_LOADERS

from .variant import Condition, sample_noise

if TYPE_CHECKING:  # diffusers is imported only when a generator is built or loaded (it is slow to import)
    from .generator import T2IGenerator

FORMAT = "t2i-gan"
PIPELINE_FILE = "pipeline.json"
MAX_PROMPTS = 10_000  # one call; more is almost certainly a mistake (use several calls)


class PromptError(UserError):
    """A prompt the pipeline cannot condition on (empty)."""


class T2IPipeline:
    """prompts -> PIL images with a trained generator and its text encoder."""

    def __init__(self, generator: "T2IGenerator", text_encoder: nn.Module, info: Optional[Dict[str, Any]] = None) -> None:
        self.generator = generator.eval()
        self.text_encoder = text_encoder.eval()
        self.info = dict(info or {})
        self.last_warnings: List[str] = []

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def to(self, device: Union[str, torch.device]) -> "T2IPipeline":
        self.generator.to(device)
        self.text_encoder.to(device)
        return self

    @property
    def imsize(self) -> int:
        return int(self.generator.config.imsize)

    # -- saving and loading --------------------------------------------------------------

    def save_pretrained(self, directory: Union[str, Path], run_config: Any = None) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.generator.save_pretrained(d / "generator")
        self.text_encoder.save_pretrained(d / "text_encoder")
        info = {"format": FORMAT, "variant": self.generator.config.variant, "imsize": self.imsize,
                "noise_dim": self.generator.noise_dim, **{k: v for k, v in self.info.items() if k != "format"}}
        (d / PIPELINE_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if run_config is not None:
            from imagetext.config import save_config

            save_config(run_config, d / "config.yaml")
        return d

    @classmethod
    def from_pretrained(cls, directory: Union[str, Path], device: Union[str, torch.device] = "cpu") -> "T2IPipeline":
        """Load ``directory`` (a ``final/`` folder or the run folder holding it)."""
        from imagetext.encoders import load_encoder

        root = Path(directory)
        if not root.is_dir():
            raise UserError(f"{root}: not a folder (give a trained model's final/ folder or its run folder)")
        d = root if (root / PIPELINE_FILE).is_file() else root / "final"
        meta_path = d / PIPELINE_FILE
        if not meta_path.is_file():
            raise UserError(f"{root}: no {PIPELINE_FILE} here or in {root / 'final'}: not a trained t2i model "
                            "(scripts/train_t2i.py writes OUTPUT_DIR/final/)")
        try:
            info = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{meta_path}: not valid JSON ({e})") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise UserError(f"{meta_path}: format is {info.get('format') if isinstance(info, dict) else None!r}, "
                            f"not {FORMAT!r}")
        if info.get("variant") not in GANS:
            raise UserError(f"{meta_path}: variant {info.get('variant')!r} is not installed "
                            f"(known: {', '.join(GANS.names())})")
        enc_dir = d / "text_encoder"
        if info.get("text_encoder") is not None:  # a shared copy elsewhere in the bundle
            rel = info["text_encoder"]
            enc_dir = (d / str(rel)).resolve()
            if not isinstance(rel, str) or Path(rel).is_absolute() or d.resolve().parent.parent not in enc_dir.parents:
                raise UserError(f"{meta_path}: text_encoder {rel!r} must be a relative path inside the bundle")
        for part, files in ((d / "generator", ("config.json", "diffusion_pytorch_model.safetensors")),
                            (enc_dir, ("config.json", "model.safetensors"))):
            for f in files:
                if not (part / f).is_file():
                    raise UserError(f"{part / f}: missing; the model folder is incomplete (copy it again)")
        from .generator import T2IGenerator

        try:
            gen = T2IGenerator.from_pretrained(str(d / "generator"))
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise UserError(f"{d / 'generator'}: cannot be loaded ({str(e).splitlines()[0][:300]})") from None
        if gen.config.variant != info["variant"]:
            raise UserError(f"{d}: generator is a {gen.config.variant!r}, {PIPELINE_FILE} says {info['variant']!r}")
        from safetensors import SafetensorError

        try:
            enc = load_encoder(enc_dir)
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as e:
            if isinstance(e, UserError):
                raise
            # safetensors' own error (a damaged file) is not an OSError: name the file, no traceback
            raise UserError(f"{enc_dir}: cannot be loaded ({str(e).splitlines()[0][:300]})") from None
        if getattr(enc, "uses_word_vocab", False) and getattr(enc, "tokenizer", None) is None:
            raise UserError(f"{enc_dir / 'vocab.json'}: missing; the text encoder has no vocabulary "
                            "(the model folder is incomplete: copy it again)")
        # a bundle may store weights in float16 to halve its size (app/checkpoints): compute in float32
        return cls(gen.float(), enc.float(), info).to(device)

    # -- generation ----------------------------------------------------------------------

    def _check_prompts(self, prompts: Sequence[str], warnings: Optional[List[str]] = None) -> List[str]:
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise PromptError("no prompts given")
        if len(prompts) > MAX_PROMPTS:
            raise PromptError(f"{len(prompts)} prompts in one call; at most {MAX_PROMPTS}")
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise PromptError(f"prompt {i + 1} is empty: give words to draw")
        said = self.prompt_warnings(prompts)
        self.last_warnings = said
        if warnings is not None:  # the caller's own list: safe when threads share the pipeline
            warnings.extend(said)
        return prompts

    def prompt_warnings(self, prompts: List[str]) -> List[str]:
        """Unknown words and truncation, said once per prompt (the generator still runs).

        Thread-safe (unlike :attr:`last_warnings`, which the latest call overwrites)."""
        tok = getattr(self.text_encoder, "tokenizer", None)
        limit = getattr(self.text_encoder, "max_len", None)
        out = []
        if tok is None:
            return out
        from imagetext.tokenizer import split_words

        for i, p in enumerate(prompts):
            words = split_words(p)
            unknown = [w for w in words if tok.word_to_id.get(w, 0) < 2]
            short = f"{p[:40]}..." if len(p) > 40 else p
            if words and len(unknown) == len(words):
                out.append(f"prompt {i + 1} ({short!r}): none of its words is in the vocabulary; "
                           "the image is conditioned on <unk> only")
            elif unknown:
                out.append(f"prompt {i + 1}: unknown word(s) {sorted(set(unknown))[:5]} read as <unk>")
            elif not words:
                out.append(f"prompt {i + 1} ({short!r}): no words (only symbols); conditioned on <unk> only")
            if limit and len(words) > int(limit):
                out.append(f"prompt {i + 1}: {len(words)} words, the text encoder reads the first {limit}")
        return out

    @torch.no_grad()
    def encode(self, prompts: List[str]) -> Condition:
        from .task import encode_captions  # the trainer's own caption -> Condition step

        p = next(self.text_encoder.parameters(), None)
        if p is not None and p.device != self.device:  # never .to() on every call: it rebinds an LSTM's
            self.text_encoder.to(self.device)           # weights, racing other threads' forward passes
        return encode_captions(self.text_encoder, prompts, words=self.generator.needs_words)

    @torch.no_grad()
    def generate_tensors(self, prompts: Sequence[str], seed: int = 0, num_images: int = 1,
                         truncation: Optional[float] = None, batch_size: int = 64, progress: bool = False,
                         warnings: Optional[List[str]] = None) -> torch.Tensor:
        """(len(prompts) * num_images, 3, H, W) in [-1, 1], prompt-major; the noise depends on ``seed`` only.

        ``progress`` shows a tqdm bar over the batches (for long command-line runs). ``warnings``, a
        list, receives this call's prompt warnings (:attr:`last_warnings` is shared between threads).
        """
        prompts = self._check_prompts(prompts, warnings)
        if num_images < 1:
            raise PromptError(f"num_images must be >= 1, got {num_images}")
        flat = [p for p in prompts for _ in range(num_images)]
        if len(flat) > MAX_PROMPTS:
            raise PromptError(f"{len(flat)} images in one call; at most {MAX_PROMPTS}")
        gen = torch.Generator().manual_seed(int(seed))
        noise = sample_noise(len(flat), self.generator.noise_dim, gen, truncation)
        out = []
        from tqdm.auto import tqdm

        for i in tqdm(range(0, len(flat), batch_size), desc="generating", unit="batch", disable=not progress):
            cond = self.encode(flat[i:i + batch_size])
            out.append(self.generator(noise[i:i + batch_size].to(self.device), cond).float().clamp(-1, 1).cpu())
        return torch.cat(out)

    def __call__(self, prompts: Union[str, Sequence[str]], seed: int = 0, num_images: int = 1,
                 truncation: Optional[float] = None, batch_size: int = 64,
                 warnings: Optional[List[str]] = None) -> List[Any]:
        """PIL images, ``num_images`` per prompt in prompt order (``warnings``: see :meth:`generate_tensors`)."""
        from PIL import Image

        x = self.generate_tensors(prompts, seed, num_images, truncation, batch_size, warnings=warnings)
        arr = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(a) for a in arr]


@MODEL_LOADERS.register(FORMAT)
def load_pipeline(directory: Any) -> T2IPipeline:
    return T2IPipeline.from_pretrained(directory)
