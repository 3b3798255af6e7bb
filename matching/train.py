"""Training embedding matchers with Deep Boosting Learning on the shared loop (METHODS.md §4).

    python scripts/train_matching.py --config configs/matching/birds_tiny.yaml
    python scripts/train_matching.py --config configs/matching/scenes_momentum.yaml seed=1 output_dir=runs/m

Regimes (``regime:``), one task:

- ``anchor``: the plain matcher, VSE0 warm-up then hardest negatives (VSE++); also the
  anchor the ``offline`` regime boosts.
- ``offline``: ``anchor_path`` names a trained matcher; it is frozen, the target starts
  from its weights and learns L_raw(S) + α·L_boost(S, sg(A)).
- ``online``: ``branches`` matchers from scratch, trained together; branch k learns
  L_raw(S_k) + α·Σ_{j<k} L_boost(S_k, sg(S_j)). The last branch is exported.
- ``momentum``: the anchor is an exponential moving average of the target, with momentum
  rising from ``momentum.start`` to ``momentum.end`` on a cosine schedule; the EMA is
  part of the checkpoint (exact resume).

Similarities are per process (B x B, as VSE++). A warning is printed when the raw loss
sits at the collapse value 2·B·γ (every embedding the same). With ``eval.val_holdout=N``,
``validate_every`` and ``best_metric: rsum``, the last N training images (never trained
on) are scored during training and the best state is the one exported. Writes ``final/``
(the matcher, ``EmbeddingMatcher.from_pretrained``) and ``results.json`` (held-out
retrieval of the exported model and, for boosted regimes, of its anchor, in one run).
"""
from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

import torch

from imagetext.cliargs import write_text_atomic
from imagetext.data.config import DataConfig
from imagetext.errors import ConfigError
from imagetext.train import TrainConfig, TrainTask

from .losses import DBLLoss, collapse_value, hardest_after


@dataclass
class MatcherSection:
    name: str = "vse_gpo"  # registered in imagetext.registry.MATCHERS
    embed_dim: int = 256
    text_encoder: str = "bilstm"
    image_encoder: str = "damsm_cnn"
    text_kwargs: Dict[str, Any] = field(default_factory=dict)
    image_kwargs: Dict[str, Any] = field(default_factory=dict)
    vocab_min_count: int = 1
    lr: float = 2e-4  # the reference recipe: Adam 2e-4


@dataclass
class LossSection:
    mode: Literal["relative", "absolute"] = "relative"
    margin: float = 0.2  # γ
    alpha: float = 1.0  # weight of the boost term
    beta: float = 1.0
    g: float = 0.5  # absolute form: share of the margin on the positive side
    soft: bool = False  # soft-margin adaptation
    warmup_steps: int = 0  # VSE0 (sum over negatives) before hardest negatives


@dataclass
class MomentumSection:
    start: float = 0.99
    end: float = 0.999


@dataclass
class EvalSection:
    split: str = "test"  # held-out scores at the end (never used to choose a checkpoint)
    max_images: Optional[int] = None
    batch_size: int = 100
    val_holdout: int = 0  # last N training images kept out of training, scored every validate_every steps
    val_split: Optional[str] = None  # or a real validation split (Karpathy "val"); never the test split


@dataclass
class MatchingConfig(TrainConfig):
    """The loop's keys at the top level, then the matching sections."""

    output_dir: str = "runs/matching"
    regime: Literal["anchor", "offline", "online", "momentum"] = "anchor"
    anchor_path: Optional[str] = None  # offline: a trained matcher folder
    branches: int = 2  # online
    batch_size: int = 128
    num_workers: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: MatcherSection = field(default_factory=MatcherSection)
    loss: LossSection = field(default_factory=LossSection)
    momentum: MomentumSection = field(default_factory=MomentumSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.regime == "offline" and not self.anchor_path:
            raise ConfigError("regime=offline needs anchor_path=<a trained matcher folder> (train one with regime=anchor)")
        if self.regime == "online" and self.branches < 2:
            raise ConfigError(f"regime=online needs branches >= 2, got {self.branches}")
        if not 0.0 <= self.momentum.start <= self.momentum.end <= 1.0:
            raise ConfigError(f"momentum: need 0 <= start <= end <= 1, got {self.momentum.start}, {self.momentum.end}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2 (negatives), got {self.batch_size}")


def cosine_momentum(step: int, total: int, start: float, end: float) -> float:
    """Momentum rising from ``start`` (step 0) to ``end`` (last step) along half a cosine."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return end - (end - start) * (math.cos(math.pi * t) + 1.0) / 2.0


class MatchingTask(TrainTask):
    """The regimes above as one task: trainable branches in ``models``, frozen anchors beside them."""

    def __init__(self, cfg: MatchingConfig, tokenizer: Any, val_split: Any = None) -> None:
        from imagetext.registry import MATCHERS

        from .models import EmbeddingMatcher

        self.cfg, self.val_split = cfg, val_split
        lc = cfg.loss
        self.loss = DBLLoss(lc.mode, lc.margin, lc.alpha, lc.beta, lc.g, soft=lc.soft)
        m = cfg.model

        def build() -> Any:
            return MATCHERS.build(m.name, tokenizer=tokenizer, embed_dim=m.embed_dim, text_encoder=m.text_encoder,
                                  image_encoder=m.image_encoder, text_kwargs=m.text_kwargs, image_kwargs=m.image_kwargs)

        self.anchor: Optional[Any] = None
        if cfg.regime == "offline":
            self.anchor = EmbeddingMatcher.from_pretrained(cfg.anchor_path)
            target = copy.deepcopy(self.anchor).train()
            self.models = {"target": target}
        elif cfg.regime == "online":
            self.models = {f"branch{k}": build() for k in range(cfg.branches)}
        else:
            self.models = {"target": build()}
            if cfg.regime == "momentum":
                self.anchor = copy.deepcopy(self.models["target"])
        if self.anchor is not None:
            self.anchor.eval().requires_grad_(False)
        params = [p for mod in self.models.values() for p in mod.parameters() if p.requires_grad]
        self.optimizers = {"adam": torch.optim.Adam(params, lr=m.lr)}
        self.schedulers = {}
        self._warned_collapse = False

    def _net(self, name: str) -> Any:
        return self.accelerator.unwrap_model(self.models[name]) if self.accelerator is not None else self.models[name]

    def exported(self) -> Any:
        """The model the run exports: the target, or the last (most boosted) online branch."""
        return self._net(f"branch{self.cfg.branches - 1}" if self.cfg.regime == "online" else "target")

    def anchor_model(self) -> Optional[Any]:
        """What the exported model was boosted against (None for the anchor regime)."""
        if self.cfg.regime == "online":
            return self._net("branch0")
        return self.anchor

    def _sim(self, name: str, batch: Dict[str, Any]) -> torch.Tensor:
        net = self._net(name)
        tokens, lengths = net.tokenize(batch["caption"])
        dev = batch["image"].device
        return self.models[name](batch["image"], tokens.to(dev), lengths.to(dev))

    @torch.no_grad()
    def _update_ema(self, step: int) -> float:
        mom = cosine_momentum(step, self.cfg.max_steps, self.cfg.momentum.start, self.cfg.momentum.end)
        target = self._net("target")
        for a, t in zip(self.anchor.parameters(), target.parameters()):
            a.mul_(mom).add_(t.detach(), alpha=1.0 - mom)
        for a, t in zip(self.anchor.buffers(), target.buffers()):
            a.copy_(t)
        return mom

    def training_step(self, batch: Dict[str, Any], step: int) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        hard = hardest_after(step, cfg.loss.warmup_steps)
        out: Dict[str, torch.Tensor] = {}
        if self.anchor is not None:
            self.anchor.to(batch["image"].device)
        if cfg.regime == "online":
            sims: List[torch.Tensor] = []
            for k in range(cfg.branches):
                s = self._sim(f"branch{k}", batch)
                terms = self.loss(s, [x.detach() for x in sims], max_violation=hard)
                out.update({f"b{k}_{key}": v for key, v in terms.items()})
                sims.append(s)
            raw = out[f"b{cfg.branches - 1}_dbl_raw_loss"]
        else:
            if cfg.regime == "momentum" and step > 0:  # the EMA follows the weights of the previous update
                out["momentum"] = torch.tensor(self._update_ema(step))
            s = self._sim("target", batch)
            anchor_sim = None
            if self.anchor is not None:
                with torch.no_grad():
                    tokens, lengths = self.anchor.tokenize(batch["caption"])
                    dev = batch["image"].device
                    anchor_sim = self.anchor(batch["image"], tokens.to(dev), lengths.to(dev))
            out.update(self.loss(s, anchor_sim, max_violation=hard))
            raw = out["dbl_raw_loss"]
        bound = collapse_value(len(batch["caption"]), cfg.loss.margin, max_violation=hard)
        raw = float(raw.detach())
        if hard and not self._warned_collapse and abs(raw - bound) < 0.01 * bound:
            self._warned_collapse = True
            print(f"train_matching: warning: step {step}: the raw loss {raw:.4g} sits at the collapse value "
                  f"2·B·γ = {bound:.4g} (all embeddings alike); lower the learning rate or add loss.warmup_steps",
                  file=sys.stderr)
        return out

    def validate(self, step: int) -> Optional[Dict[str, float]]:
        """rSum and recalls of the exported model on the held-out part of the training split."""
        if self.val_split is None:
            return None
        model = self.exported()
        was_training = model.training
        res = evaluate_matcher(model, self.val_split, self.cfg.data.image_size, self.cfg.eval.batch_size)
        model.train(was_training)
        return res

    def state_dict(self) -> Dict[str, Any]:
        return {"ema": self.anchor.state_dict()} if self.cfg.regime == "momentum" else {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if "ema" in state:
            self.anchor.load_state_dict(state["ema"])


@torch.no_grad()
def evaluate_matcher(model: Any, split: Any, image_size: int, batch_size: int = 100,
                     max_images: Optional[int] = None) -> Dict[str, float]:
    """Held-out retrieval (images x all their captions) with the shared ``retrieval_recall``.

    An embedding matcher is scored on ``embed_images @ embed_texts.T``; an interaction
    matcher (no per-item embedding) on its score of every image-caption pair.
    """
    import numpy as np

    from imagetext.data.dataset import ImageTextDataset
    from imagetext.metrics.retrieval import EmbeddingSimilarity, retrieval_recall

    model.eval()
    ds = ImageTextDataset(split, image_size=image_size, train=False, two_captions=False)
    n = len(ds) if max_images is None else min(max_images, len(ds))
    dev = model.device
    caps = [(i, c) for i in range(n) for c in split.samples[i].captions]
    if not hasattr(model, "embed_images"):  # an interaction model: every pair scored jointly (full ranking)
        from .interaction import interaction_scores

        images = torch.stack([ds[i]["image"] for i in range(n)])
        sims = interaction_scores(model, images, [c for _, c in caps], batch_size).numpy()
        res = retrieval_recall(sims, np.array([i for i, _ in caps]))
        return {k: res[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")}
    img = np.concatenate([model.embed_images(torch.stack([ds[i]["image"] for i in range(a, min(a + batch_size, n))])
                                             .to(dev)).cpu().numpy() for a in range(0, n, batch_size)])
    txt = np.concatenate([model.embed_texts([c for _, c in caps[a:a + batch_size]]).cpu().numpy()
                          for a in range(0, len(caps), batch_size)])
    res = retrieval_recall(EmbeddingSimilarity(img, txt), np.array([i for i, _ in caps]))
    return {k: res[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Train, export ``final/``, score the exported model (and its anchor) on the held-out split."""
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    from imagetext.data.dataset import ImageTextDataset, collate_fn
    from imagetext.train import Trainer, parse_config_args
    from imagetext.train.data import load_splits, validation_split, word_tokenizer

    cfg = parse_config_args(MatchingConfig, argv, description=__doc__, prog="train_matching")
    train_split, test_split = load_splits(cfg.data, cfg.eval.split)
    train_split, val_split = validation_split(cfg.data, train_split, cfg.eval.val_split, cfg.eval.val_holdout,
                                              cfg.eval.split, cfg.batch_size)
    if cfg.best_metric is not None and val_split is None:
        raise ConfigError("best_metric needs a validation set: set eval.val_holdout=N or eval.val_split (never the test split)")
    # offline: the anchor's saved encoder brings its own vocabulary
    tokenizer = None if cfg.regime == "offline" else word_tokenizer(cfg.model.text_encoder, train_split,
                                                                     cfg.model.vocab_min_count)
    dataset = ImageTextDataset(train_split, image_size=cfg.data.image_size, seed=cfg.seed, train=True,
                               two_captions=False)
    if len(dataset) < cfg.batch_size:
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {len(dataset)} training images")
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True, collate_fn=collate_fn,
                        num_workers=cfg.num_workers)
    set_seed(cfg.seed)
    task = MatchingTask(cfg, tokenizer, val_split)
    trainer = Trainer(task, cfg, loader)
    state = trainer.train()
    seconds = state["seconds"]
    acc = trainer.accelerator
    results: Dict[str, Any] = {}
    best = Path(cfg.output_dir) / "best"
    if cfg.best_metric is not None and best.is_dir():
        acc.load_state(str(best))  # export the best validated state, not the last one
    if acc.is_main_process:
        final = Path(cfg.output_dir) / "final"
        model = task.exported()
        model.save_pretrained(final)
        steps = state["steps_run"]
        kw = dict(image_size=cfg.data.image_size, batch_size=cfg.eval.batch_size, max_images=cfg.eval.max_images)
        results = {"regime": cfg.regime, "steps": state["step"], "processes": acc.num_processes,
                   "train_pairs_per_s": steps * cfg.batch_size * acc.num_processes / seconds if steps else None,
                   "last_logs": state["last_logs"], "target": evaluate_matcher(model, test_split, **kw),
                   "best_step": trainer.position.best_step if cfg.best_metric else None}
        anchor = task.anchor_model()
        if anchor is not None:
            results["anchor"] = evaluate_matcher(anchor, test_split, **kw)
            results["rsum_gain"] = results["target"]["rsum"] - results["anchor"]["rsum"]
        write_text_atomic(Path(cfg.output_dir) / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    acc.wait_for_everyone()
    return results


def _summary(res: Dict[str, Any]) -> str:
    t = res["target"]
    line = f"held-out ({res['regime']}): rsum={t['rsum']:.2f} i2t_r1={t['i2t_r1']:.2f} t2i_r1={t['t2i_r1']:.2f}"
    return line + (f"; anchor rsum={res['anchor']['rsum']:.2f}" if "anchor" in res else "")


def cli(argv: Optional[List[str]] = None) -> int:
    """Entry point: user mistakes are one line on stderr (exit 2), never a traceback."""
    from imagetext.train.cli import run_script

    return run_script(main, "train_matching", argv, _summary)
