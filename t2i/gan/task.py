"""The phase-2 task: one GAN trainer for every registered variant (METHODS.md §1, §3).

One step (read top to bottom in :meth:`GanTask.training_step`):

1. captions -> the frozen text encoder -> :class:`~t2i.gan.variant.Condition`; with two branches
   the batch is [caption 1; caption 2] of the same images with the *same* noise;
2. G draws the fakes once (the D step reads them detached, the G step through G's graph:
   no second generator forward);
3. D step: the variant's ``d_losses`` (DF-GAN: hinge + mismatched text + MA-GP) -> D update;
4. G step: the variant's ``g_losses`` (+ its own terms: CLIP similarity, DAMSM) and, when
   ``contrast.weight > 0``, SupCon between the frozen image encoder's embeddings of the two
   branches' fakes (label positives; gathered over processes) -> G update. D's parameters are
   frozen for this backward and its DDP sync is off, so the contrastive and adversarial
   gradients reach G only;
5. the EMA generator follows G.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from imagetext.losses import SupConLoss
from imagetext.registry import GANS
from imagetext.train import TrainTask, gather_with_grad

from .config import GanConfig
from .variant import Condition, GANVariant, final_image, resize_for_encoder


def build_variant(cfg: GanConfig, cond_dim: int, image_encoder: Optional[nn.Module]) -> GANVariant:
    """The configured variant at ``model.imsize`` conditioned on ``cond_dim``-d sentences."""
    from imagetext.errors import ConfigError

    kwargs = dict(cfg.model.kwargs)
    for k in ("imsize", "cond_dim", "image_encoder"):
        if k in kwargs:
            raise ConfigError(f"model.kwargs.{k}: set by the trainer (model.imsize, the text encoder's dim, "
                              "encoders.*), not in kwargs")
    builder = GANS.get(cfg.model.variant)
    try:
        return builder(imsize=cfg.model.imsize, cond_dim=cond_dim, image_encoder=image_encoder, **kwargs)
    except TypeError as e:  # an unknown builder argument is a config typo
        raise ConfigError(f"model.kwargs for variant {cfg.model.variant!r}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"model ({cfg.model.variant}): {e}") from None


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def encode_captions(text_encoder: nn.Module, captions: List[str], image_encoder: Optional[nn.Module] = None,
                    words: bool = False) -> Condition:
    """Captions -> the frozen text encoder's :class:`Condition` (no gradient)."""
    with torch.no_grad():
        tokens, lengths = text_encoder.tokenize(list(captions))
        dev = text_encoder.device
        out = text_encoder(tokens.to(dev), lengths.to(dev))
    return Condition(out.sentence.float(), out.words if words else None, out.mask if words else None, image_encoder)


class GanTask(TrainTask):
    """Models ``G`` and ``D``; optimisers ``G`` and ``D``; the EMA generator and the frozen encoders as state."""

    manual_optimization = True

    def __init__(self, cfg: GanConfig, text_encoder: nn.Module, image_encoder: Optional[nn.Module],
                 multi_label: bool = False, fixed_prompts: Optional[List[str]] = None, validator: Any = None,
                 encoder_size: Optional[int] = None) -> None:
        self.cfg = cfg
        self.text_encoder = freeze(text_encoder)
        self.image_encoder = freeze(image_encoder) if image_encoder is not None else None
        self.variant = build_variant(cfg, text_encoder.dim, self.image_encoder)
        if cfg.model.channels_last:
            self.variant.to(memory_format=torch.channels_last)
        self.multi_label = multi_label
        self.models = {"G": self.variant.generator, "D": self.variant.discriminator}
        fused = bool(cfg.model.fused_adam)  # torch has fused Adam kernels for CUDA and CPU
        self.optimizers = {
            name: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr, betas=self.variant.betas,
                                   **({"fused": True} if fused else {}))
            for name, m, lr in (("G", self.models["G"], self.variant.lr_g), ("D", self.models["D"], self.variant.lr_d))
        }
        self.schedulers = {}
        self.ema = freeze(copy.deepcopy(self.variant.generator))
        c = cfg.contrast
        self.supcon = SupConLoss(c.temperature, c.positives) if c.weight > 0 else None
        self.fixed_prompts = list(fixed_prompts or [])
        self.validator = validator
        self.encoder_size = encoder_size
        self._placed = False

    # -- helpers ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.accelerator.device if self.accelerator is not None else torch.device("cpu")

    def _place(self) -> None:
        """Frozen encoders and the EMA live beside the prepared models (they are not trained, so not prepared)."""
        if self._placed:
            return
        dev = self.device
        self.text_encoder.to(dev)
        if self.image_encoder is not None:
            self.image_encoder.to(dev)
        self.ema.to(dev)
        self._placed = True

    def condition(self, captions: List[str]) -> Condition:
        self._place()
        cond = encode_captions(self.text_encoder, captions, self.image_encoder, words=self.variant.needs_words)
        cond.encoder_size = self.encoder_size
        return cond

    def _labels(self, batch: Dict[str, Any]) -> torch.Tensor:
        return batch["label_set"] if self.multi_label else batch["labels"]

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        g = self.accelerator.unwrap_model(self.models["G"]) if self.accelerator is not None else self.models["G"]
        # warm-up (1 + t) / (10 + t): early EMAs would otherwise be mostly the random init for
        # 1 / (1 - decay) steps, which is most of a short CPU run
        decay = min(self.cfg.model.ema_decay, (1.0 + step) / (10.0 + step)) if step >= self.cfg.model.ema_start else 0.0
        for e, p in zip(self.ema.parameters(), g.parameters()):
            if p.requires_grad:
                e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.ema.buffers(), g.buffers()):
            e.copy_(b)

    # -- one step --------------------------------------------------------------------------

    def prepare_batch(self, batch: Dict[str, Any]) -> tuple:
        """(real, noise, condition, per-branch batch size) for one step; two branches repeat images and noise."""
        cfg, v = self.cfg, self.variant
        real = batch["image"].to(self.device)
        if cfg.model.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        b = real.shape[0]
        two = cfg.contrast.branches == 2
        cond = self.condition(list(batch["caption"]) + (list(batch["caption2"]) if two else []))
        noise = v.sample_noise(b, device=self.device)
        # unlabelled images (-1) and multi-label data: only the image itself (both branches) is masked
        ids = batch["index"] if self.multi_label else torch.where(batch["labels"] >= 0, batch["labels"],
                                                                   -2 - batch["index"])
        cond.class_ids = ids.to(self.device)
        if two:  # the second branch: the same images and noise, the other caption
            real, noise = torch.cat([real, real]), torch.cat([noise, noise])
            cond.class_ids = torch.cat([cond.class_ids, cond.class_ids])
        return real, noise, cond, b

    def d_step(self, real: torch.Tensor, fake: Any, cond: Condition) -> Dict[str, torch.Tensor]:
        """One discriminator update on the detached fakes."""
        d_out = self.variant.d_losses(self.models["D"], real, fake, cond)
        self.accelerator.backward(sum(t for k, t in d_out.items() if k.endswith("_loss")))
        self.optimizers["D"].step()
        self.optimizers["D"].zero_grad(set_to_none=True)
        return d_out

    def g_step(self, fake: Any, cond: Condition, batch: Dict[str, Any], b: int) -> Dict[str, torch.Tensor]:
        """One generator update through ``fake``'s graph; D is frozen and unsynchronised meanwhile,
        so nothing of this backward reaches (or all-reduces) D."""
        D, acc = self.models["D"], self.accelerator
        d_params = [p for p in D.parameters() if p.requires_grad]
        for p in d_params:
            p.requires_grad_(False)
        try:
            with acc.no_sync(D):
                g_out = self.variant.g_losses(D, fake, cond)
                if self.supcon is not None:
                    g_out.update(self.contrast_loss(fake, batch, b, cond))
                acc.backward(sum(t for k, t in g_out.items() if k.endswith("_loss")))
        finally:
            for p in d_params:
                p.requires_grad_(True)
        self.optimizers["G"].step()
        self.optimizers["G"].zero_grad(set_to_none=True)
        return g_out

    def training_step(self, batch: Dict[str, Any], step: int) -> Dict[str, torch.Tensor]:
        real, noise, cond, b = self.prepare_batch(batch)
        fake = self.models["G"](noise, cond)  # once: the D step reads it detached, the G step through its graph
        d_out = self.d_step(real, fake, cond)
        g_out = self.g_step(fake, cond, batch, b)
        self.update_ema(step)
        return {**d_out, **g_out}

    def contrast_loss(self, fake: Any, batch: Dict[str, Any], b: int,
                      cond: Optional[Condition] = None) -> Dict[str, torch.Tensor]:
        """SupCon between the image encoder's embeddings of branch 1's and branch 2's fakes (global batch).

        ``fake`` is the generator's output: one image tensor, or a coarse-to-fine list of which the
        final image is contrasted (``contrast.stages: final``) or every stage, averaged (``all``).
        With the step's ``cond``, an image encoding its G loss already made of the same fakes (a DAMSM
        term's) is reused (:meth:`Condition.encode_image`)."""
        c = self.cfg.contrast
        stages = list(fake) if c.stages == "all" and isinstance(fake, (list, tuple)) else [final_image(fake)]
        labels = self._labels(batch).to(self.device) if c.use_labels else batch["index"].to(self.device)
        ids = batch["index"].to(self.device)
        g_lab, g_ids = gather_with_grad(labels), gather_with_grad(ids)
        loss = 0.0
        for images in stages:
            feats = (cond.encode_image(images) if cond is not None and cond.image_encoder is self.image_encoder
                     else self.image_encoder(resize_for_encoder(images, self.encoder_size)))
            emb = feats.global_.float()
            e1, e2 = gather_with_grad(emb[:b]), gather_with_grad(emb[b:])
            loss = loss + self.supcon(torch.cat([e1, e2]), torch.cat([g_lab, g_lab]),
                                      ids=torch.cat([g_ids, g_ids]))["supcon_loss"]
        return {"g_supcon_loss": c.weight * loss / len(stages)}

    # -- state, samples, validation ----------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.ema.load_state_dict(state["ema"])

    @torch.no_grad()
    def generate(self, captions: List[str], seed: int, truncation: Optional[float] = None,
                 batch_size: int = 64) -> torch.Tensor:
        """EMA images in [-1, 1] for ``captions`` (one each), noise from ``seed`` only."""
        gen = torch.Generator().manual_seed(seed)
        noise = self.variant.sample_noise(len(captions), generator=gen, truncation=truncation)
        out = []
        for i in range(0, len(captions), batch_size):
            cond = self.condition(captions[i:i + batch_size])
            out.append(final_image(self.ema(noise[i:i + batch_size].to(self.device), cond)).float().cpu())
        return torch.cat(out)

    def images(self, step: int) -> Optional[Dict[str, torch.Tensor]]:
        s = self.cfg.sample
        if not self.fixed_prompts or not s.every or step % s.every:
            return None
        prompts = [p for p in self.fixed_prompts for _ in range(s.per_prompt)]
        imgs = self.generate(prompts, seed=self.cfg.seed, truncation=s.truncation)
        return {"samples": (imgs + 1) / 2}

    def validate(self, step: int) -> Optional[Dict[str, float]]:
        if self.validator is None:
            return None
        scores = self.validator(lambda caps, seed: self.generate(caps, seed, self.cfg.eval.truncation,
                                                                 self.cfg.eval.batch_size))
        if self.accelerator is None or self.accelerator.is_main_process:
            # the learning curve as data (TensorBoard has it too): one JSON row per validation
            import json
            from pathlib import Path

            row = {"step": step, "images_seen": step * self.cfg.batch_size * self.cfg.contrast.branches *
                   (self.accelerator.num_processes if self.accelerator is not None else 1), **scores}
            with open(Path(self.cfg.output_dir) / "validation.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        return scores
