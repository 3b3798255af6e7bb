"""The phase-1 task: a text and an image encoder, two parameter-sharing text branches, and
the matching + label-guided SupCon losses (METHODS.md §1-2).

One step (read top to bottom in :meth:`PretrainTask.training_step`):

1. image -> image encoder -> regions, global embedding v̄;
2. caption 1 (and caption 2: another caption of the same image, the second branch) ->
   the *same* text encoder -> words, sentence embedding ē;
3. per branch, the pair's matching loss: DAMSM word + sentence (same-class samples masked
   out of the negatives) or CLIP's InfoNCE with a learnable temperature;
4. SupCon terms with label positives: text-text (ē1 against ē2), image-image, and
   image-text (v̄ against both branches' ē, both directions);
5. the label baselines when asked: a UniCL-style label-aware target, a CE head.

Sentence and global embeddings are gathered across processes with gradients, so the
contrastive terms see the global batch; DAMSM's word loss stays per process (its
word-region attention over the global batch would cost B² attention maps).
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from imagetext.encoders import build_image_encoder, build_text_encoder
from imagetext.losses import ClassifierHead, ClipLoss, DamsmLoss, SupConLoss, UniClLoss
from imagetext.train import TrainTask, gather_with_grad

from .config import SMALL_CLIP_CFG, PretrainConfig


def build_encoders(cfg: PretrainConfig, tokenizer: Any) -> tuple:
    """The (text, image) encoder pair named by ``cfg.model``."""
    m = cfg.model
    text_name, image_name = m.encoder_names()
    tkw, ikw = dict(m.text_kwargs), dict(m.image_kwargs)
    if m.pair == "clip" and m.small_clip and not text_name.endswith("_tiny"):
        tkw.setdefault("model_name", "small")
        tkw.setdefault("model_cfg", SMALL_CLIP_CFG)
        ikw.setdefault("model_name", "small")
        ikw.setdefault("model_cfg", SMALL_CLIP_CFG)
    text = build_text_encoder(text_name, tokenizer=tokenizer, **tkw)
    image = build_image_encoder(image_name, **ikw)
    if text.dim != image.dim:
        from imagetext.errors import ConfigError

        raise ConfigError(f"model: text encoder {text_name} gives {text.dim}-d and image encoder {image_name} "
                          f"{image.dim}-d embeddings; set the same dim in model.text_kwargs / model.image_kwargs")
    return text, image


class PretrainHeads(nn.Module):
    """Every trainable part of the losses (temperatures, classifier heads), as one module."""

    def __init__(self, cfg: PretrainConfig, dim: int, num_classes: int, multi_label: bool) -> None:
        super().__init__()
        lc = cfg.loss
        self.damsm = DamsmLoss(lc.damsm.gamma1, lc.damsm.gamma2, lc.damsm.gamma3, lc.damsm.word_weight,
                               lc.damsm.sent_weight, lc.damsm.lse_root) if cfg.model.pair == "damsm" else None
        self.clip = ClipLoss(lc.clip_temperature) if cfg.model.pair == "clip" else None
        s = lc.supcon
        self.supcon = SupConLoss(s.temperature, s.positives)
        self.unicl = UniClLoss(lc.clip_temperature, positives=s.positives) if lc.unicl_weight > 0 else None
        self.ce_text = ClassifierHead(dim, num_classes, multi_label, name="ce_text") if lc.ce_weight > 0 else None
        self.ce_image = ClassifierHead(dim, num_classes, multi_label, name="ce_image") if lc.ce_weight > 0 else None

    def forward(self) -> None:  # pragma: no cover - a container; the task calls the parts
        raise RuntimeError("PretrainHeads is a container")


def no_decay(name: str, p: torch.Tensor) -> bool:
    """open_clip's exclusion from weight decay: vectors and scalars, norms, biases, the logit scale."""
    return p.ndim < 2 or any(s in name for s in ("bn", "ln", "bias", "logit_scale"))


def build_optimizer(models: Dict[str, nn.Module], m: Any) -> torch.optim.Optimizer:
    """One optimiser over every trainable parameter of ``models`` (``m``: the config's model section)."""
    named = [(f"{k}.{n}", p) for k, mod in models.items() for n, p in mod.named_parameters() if p.requires_grad]
    betas = tuple(m.betas)
    if m.optimizer == "adam":
        return torch.optim.Adam([p for _, p in named], lr=m.lr, betas=betas, weight_decay=m.weight_decay)
    groups = [{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": m.weight_decay},
              {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=m.lr, betas=betas)


class PretrainTask(TrainTask):
    """Models ``text``, ``image`` and, when the losses have parameters, ``heads``; one optimiser over all."""

    def __init__(self, cfg: PretrainConfig, tokenizer: Any, num_classes: int, multi_label: bool) -> None:
        self.cfg = cfg
        self.multi_label = multi_label
        text, image = build_encoders(cfg, tokenizer)
        self.heads = PretrainHeads(cfg, text.dim, num_classes, multi_label)
        self.models = {"text": text, "image": image}
        if any(True for _ in self.heads.parameters()):  # DDP refuses a module without parameters
            self.models["heads"] = self.heads
        self.optimizers = {cfg.model.optimizer: build_optimizer(self.models, cfg.model)}
        self.schedulers = {}

    # -- helpers ---------------------------------------------------------------------------

    def _unwrap(self, name: str) -> nn.Module:
        return self.accelerator.unwrap_model(self.models[name]) if self.accelerator is not None else self.models[name]

    def _gather(self, x: torch.Tensor) -> torch.Tensor:
        return gather_with_grad(x) if self.cfg.loss.gather else x

    def _labels(self, batch: Dict[str, Any]) -> torch.Tensor:
        """(B,) class ids (-1: none) or (B, C) multi-hot, as the losses take them."""
        return batch["labels"] if not self.multi_label else batch["label_set"]

    def encode_captions(self, captions: List[str]) -> Any:
        tokens, lengths = self._unwrap("text").tokenize(list(captions))
        dev = next(self._unwrap("text").parameters()).device
        return self.models["text"](tokens.to(dev), lengths.to(dev)), lengths.to(dev)

    # -- one step --------------------------------------------------------------------------

    def training_step(self, batch: Dict[str, Any], step: int) -> Dict[str, torch.Tensor]:
        lc = self.cfg.loss
        if "heads" in self.models:
            heads = self._unwrap("heads")
        else:
            heads = self.heads.to(batch["image"].device)
        for part in (heads.clip, heads.unicl):  # CLIP's clamp of the learnable scale, after the last update
            if part is not None:
                part.clamp_()
        out: Dict[str, torch.Tensor] = {}
        labels = self._labels(batch)
        ids = batch["index"]
        img = self.models["image"](batch["image"])
        branches = [batch["caption"]] + ([batch["caption2"]] if lc.branches == 2 else [])
        sents = []
        for b, captions in enumerate(branches, 1):
            txt, lengths = self.encode_captions(captions)
            sents.append(txt.sentence)
            if heads.damsm is not None:
                class_ids = labels if (lc.damsm.mask_same_class and not self.multi_label) else None
                terms = heads.damsm(img.regions, txt.words, txt.sentence, img.global_, lengths=lengths,
                                    class_ids=class_ids, words_mask=txt.mask)
            else:
                terms = heads.clip(self._gather(img.global_), self._gather(txt.sentence))
            for k, v in terms.items():
                if k.endswith("_loss"):
                    out[f"b{b}_{k}"] = lc.matching_weight * v / len(branches)
                else:
                    out[k] = v
        # label-guided (or instance) SupCon over the global batch
        g_img = self._gather(img.global_)
        g_lab = self._gather(labels)
        g_ids = self._gather(ids)
        g_txt = [self._gather(s) for s in sents]
        pos_lab = g_lab if lc.supcon.use_labels else g_ids
        s = lc.supcon
        if s.text_text > 0:
            feats = torch.cat(g_txt)
            out["supcon_tt_loss"] = s.text_text * heads.supcon(
                feats, torch.cat([pos_lab] * len(g_txt)), ids=torch.cat([g_ids] * len(g_txt)))["supcon_loss"]
        if s.image_image > 0:
            out["supcon_ii_loss"] = s.image_image * heads.supcon(g_img, pos_lab, ids=g_ids)["supcon_loss"]
        if s.image_text > 0:
            out["supcon_it_loss"] = s.image_text * heads.supcon(
                g_img, pos_lab, contrast=torch.cat(g_txt), contrast_labels=torch.cat([pos_lab] * len(g_txt)),
                ids=g_ids, contrast_ids=torch.cat([g_ids] * len(g_txt)))["supcon_loss"]
        if heads.unicl is not None:
            for b, t in enumerate(g_txt, 1):
                out[f"b{b}_unicl_loss"] = lc.unicl_weight * heads.unicl(g_img, t, g_lab)["unicl_loss"] / len(g_txt)
        if heads.ce_text is not None:
            r_t = heads.ce_text(torch.cat(sents), torch.cat([labels] * len(sents)))
            r_i = heads.ce_image(img.global_, labels)
            out["ce_text_loss"] = lc.ce_weight * r_t["ce_text_loss"]
            out["ce_image_loss"] = lc.ce_weight * r_i["ce_image_loss"]
            out["ce_text_accuracy"], out["ce_image_accuracy"] = r_t["ce_text_accuracy"], r_i["ce_image_accuracy"]
        return out
