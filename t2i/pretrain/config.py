"""The phase-1 pretraining config: the training loop's keys at the top level, then sections.

    output_dir: runs/pretrain/birds_supcon     # every TrainConfig key (max_steps, seed, resume, ...)
    batch_size: 48
    data:   {source: birds, image_size: 64, ...}          # imagetext.data.DataConfig
    model:  {pair: damsm, ...}                            # which encoder pair
    loss:   {branches: 2, supcon: {...}, unicl_weight: 0, ce_weight: 0}
    sampler: {kind: m_per_class, m: 4}
    eval:   {split: test, knn_k: 10}

The five variants the paper compares are five values of ``loss``: plain matching (one
branch), instance contrast (two branches, SupCon with each image its own class: NT-Xent),
label-guided SupCon, a UniCL-style label-aware target, and a cross-entropy head.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Optional

from imagetext.data.config import DataConfig
from imagetext.errors import ConfigError
from imagetext.train import TrainConfig

# Encoder names per pair; ``model.text_encoder`` / ``model.image_encoder`` override them.
PAIRS = {"damsm": ("bilstm", "damsm_cnn"), "clip": ("openclip_text", "openclip_vision")}
# A small open_clip architecture for 64 px images (the CPU presets): 2.6M + 0.6M parameters.
SMALL_CLIP_CFG: Dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}


@dataclass
class ModelConfig:
    """The encoder pair and its optimiser."""

    pair: Literal["damsm", "clip"] = "damsm"
    text_encoder: Optional[str] = None  # registered name; default from ``pair``
    image_encoder: Optional[str] = None
    text_kwargs: Dict[str, Any] = field(default_factory=dict)  # builder arguments, e.g. {dim: 256}
    image_kwargs: Dict[str, Any] = field(default_factory=dict)
    small_clip: bool = True  # pair=clip without model_cfg in the kwargs: the 64 px architecture above
    vocab_min_count: int = 1  # word vocabulary (BiLSTM): words seen fewer times become <unk>
    lr: float = 2e-3  # AttnGAN's DAMSM learning rate
    # adam: L2 added to the gradient (AttnGAN's DAMSM has none); adamw: decoupled decay, as CLIP is
    # trained, on matrices only (not biases, norms, embeddings' gains or the logit scale). Adam's L2
    # is rescaled by Adam's normaliser: where the loss gradient is small it shrinks every weight by
    # about lr per step, which drove a from-scratch ViT's patch embedding to ~0 within 300 steps.
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    betas: tuple = (0.5, 0.999)  # AttnGAN's Adam betas

    def encoder_names(self) -> tuple:
        text, image = PAIRS[self.pair]
        return self.text_encoder or text, self.image_encoder or image


@dataclass
class SupConSection:
    """The label-guided SupCon terms; a weight of 0 switches a term off."""

    text_text: float = 0.0  # the two captions' sentence embeddings against each other
    image_image: float = 0.0  # image embeddings within the batch
    image_text: float = 0.0  # images as anchors, both branches' captions as candidates (and back)
    temperature: float = 0.1
    positives: Literal["any", "exact", "jaccard"] = "any"  # multi-label rule (METHODS.md §1)
    use_labels: bool = True  # False: each image is its own class (instance contrast, NT-Xent)


@dataclass
class DamsmSection:
    gamma1: float = 4.0
    gamma2: float = 5.0
    gamma3: float = 10.0
    word_weight: float = 1.0
    sent_weight: float = 1.0
    lse_root: bool = True  # the paper's (1/γ2)·log Σ exp; False: AttnGAN code's form without 1/γ2
    mask_same_class: bool = True  # same-class samples are not negatives (single-label data only)


@dataclass
class LossConfig:
    """What each step optimises: matching per branch + SupCon terms + label baselines."""

    branches: int = 2  # 1: the plain one-caption baseline; 2: two captions of each image, one text encoder
    matching_weight: float = 1.0
    damsm: DamsmSection = field(default_factory=DamsmSection)
    clip_temperature: float = 0.07  # initial; learnable (CLIP)
    supcon: SupConSection = field(default_factory=SupConSection)
    unicl_weight: float = 0.0  # UniCL-style label-aware cross-modal target (baseline)
    ce_weight: float = 0.0  # cross-entropy classification head on both embeddings (baseline)
    gather: bool = True  # contrast over the global batch across processes (sentence/global embeddings)


@dataclass
class SamplerConfig:
    kind: Literal["random", "m_per_class"] = "m_per_class"
    m: int = 4  # images per class in a batch (m_per_class), so every anchor has positives


@dataclass
class EvalConfig:
    split: str = "test"  # held-out split scored after training (never the training split)
    max_images: Optional[int] = None  # first N images of the split
    knn_k: int = 10
    rprecision_folds: int = 10
    batch_size: int = 100


@dataclass
class PretrainConfig(TrainConfig):
    """Everything a phase-1 run needs; ``output_dir/config.yaml`` is this, resolved."""

    output_dir: str = "runs/pretrain"
    batch_size: int = 48  # per process
    num_workers: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss.branches not in (1, 2):
            raise ConfigError(f"loss.branches must be 1 or 2, got {self.loss.branches}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2 (contrastive losses need negatives), got {self.batch_size}")
        if self.sampler.kind == "m_per_class" and not 2 <= self.sampler.m <= self.batch_size:
            raise ConfigError(f"sampler.m must be between 2 and batch_size ({self.batch_size}), got {self.sampler.m}")
        if self.loss.supcon.temperature <= 0:
            raise ConfigError(f"loss.supcon.temperature must be > 0, got {self.loss.supcon.temperature}")
        for k in ("text_text", "image_image", "image_text"):
            if getattr(self.loss.supcon, k) < 0:
                raise ConfigError(f"loss.supcon.{k} must be >= 0")
        if self.loss.branches == 1 and self.loss.supcon.text_text > 0:
            raise ConfigError("loss.supcon.text_text needs two captions per image: set loss.branches=2")
