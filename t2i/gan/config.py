"""The phase-2 (generation) config: the training loop's keys at the top level, then sections.

    output_dir: runs/t2i/dfgan_scenes_scl        # every TrainConfig key (max_steps, seed, resume, ...)
    batch_size: 32
    data:     {source: scenes, image_size: 32, ...}      # imagetext.data.DataConfig (image_size = model.imsize)
    encoders: {path: runs/pretrain/scenes_plain}        # the frozen phase-1 pair (or fresh ones, for smoke runs)
    model:    {variant: dfgan, imsize: 32, kwargs: {nf: 32}, ema_decay: 0.999}
    contrast: {weight: 0.2, temperature: 0.5}           # the generation-phase SupCon; weight 0 = the baseline
    sample:   {every: 500, prompts: 8}                  # TensorBoard grids of fixed prompts
    eval:     {val_holdout: 500, n_images: 500, extractor: synth}

A baseline config and its ``_scl`` twin differ only in ``contrast.weight``; both use two
branches when ``contrast.branches=2`` (then both branches get the full GAN losses).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple

from imagetext.data.config import DataConfig
from imagetext.errors import ConfigError
from imagetext.train import TrainConfig


@dataclass
class EncoderSection:
    """The frozen text (and image) encoder the generator is conditioned on.

    ``path``: a phase-1 run folder (holding ``final/``) or a folder with ``text_encoder/`` and
    ``image_encoder/``; without it, fresh randomly initialised encoders of the registered names
    ``text`` / ``image`` are built (a fixed random text embedding: smoke runs and speed checks only).
    """

    path: Optional[str] = None
    text: str = "bilstm"
    image: str = "damsm_cnn"
    text_kwargs: Dict[str, Any] = field(default_factory=dict)
    image_kwargs: Dict[str, Any] = field(default_factory=dict)
    vocab_min_count: int = 1
    # Side the image encoder reads (fakes are resized to it for SupCon and R-precision); None: the
    # phase-1 run's data.image_size when encoders.path has its config.yaml, else the generator's size.
    image_size: Optional[int] = None


@dataclass
class ModelSection:
    variant: str = "dfgan"  # a name in imagetext.registry.GANS
    imsize: int = 64
    kwargs: Dict[str, Any] = field(default_factory=dict)  # the variant's builder arguments (nf, noise_dim, lr_g, ...)
    ema_decay: float = 0.999  # generator EMA (sampled, validated, exported); warmed up as min(decay, (1+t)/(10+t))
    ema_start: int = 0  # steps before the EMA starts tracking (it copies G until then)
    channels_last: bool = True  # NHWC convolutions (faster on GPUs and recent CPUs)
    fused_adam: bool = True  # torch's fused Adam where the device has it


@dataclass
class ContrastSection:
    """The generation-phase SupCon between the two branches' generated images (METHODS.md §1)."""

    weight: float = 0.0  # 0: the baseline
    temperature: float = 0.5
    branches: int = 1  # 2: two captions of each image through the same G with the same noise
    positives: Literal["any", "exact", "jaccard"] = "any"
    use_labels: bool = True  # False: the instance-level predecessor (only the other branch is a positive)
    # which images of a coarse-to-fine generator (AttnGAN, DM-GAN) are contrasted: "final" (the paper's
    # choice) or "all" (the mean of the term over every stage); one-stage variants have one image either way
    stages: Literal["final", "all"] = "final"


@dataclass
class SampleSection:
    every: int = 500  # steps between TensorBoard sample grids (0: never)
    prompts: int = 8  # fixed prompts (first captions of the first validation images)
    per_prompt: int = 2
    truncation: Optional[float] = None


@dataclass
class GanEvalSection:
    val_holdout: int = 0  # last N training images kept out of training: the validation set (never test)
    val_split: Optional[str] = None  # or a real validation split (COCO/CUB Karpathy "val")
    n_images: int = 500  # generated images per validation (one per prompt, first N validation images)
    extractor: str = "synth"  # synth (the world's evaluator) or inception
    extractor_kwargs: Dict[str, Any] = field(default_factory=dict)
    batch_size: int = 100
    kid_subsets: int = 50
    truncation: Optional[float] = None
    # more extractors for the test scores only (their keys prefixed: inception_fid, ...); each
    # costs a pass over the real and the generated set (Inception at 299 px: minutes on a CPU)
    test_extractors: List[str] = field(default_factory=list)
    real_cache: Optional[str] = None  # a folder caching real-set features across runs (e.g. runs/cache/real)


@dataclass
class GanConfig(TrainConfig):
    """Everything a phase-2 run needs; ``output_dir/config.yaml`` is this, resolved."""

    output_dir: str = "runs/t2i"
    batch_size: int = 32  # real images per process per step (x2 generated with two branches)
    num_workers: int = 0
    sampler: Literal["random", "m_per_class"] = "random"  # m_per_class: every fake has same-label positives
    sampler_m: int = 4
    data: DataConfig = field(default_factory=DataConfig)
    encoders: EncoderSection = field(default_factory=EncoderSection)
    model: ModelSection = field(default_factory=ModelSection)
    contrast: ContrastSection = field(default_factory=ContrastSection)
    sample: SampleSection = field(default_factory=SampleSection)
    eval: GanEvalSection = field(default_factory=GanEvalSection)

    # not part of the run's identity: a finished run may be re-scored with more test metrics
    VOLATILE_EXTRA: ClassVar[Tuple[str, ...]] = ("eval.test_extractors", "eval.real_cache")

    def __post_init__(self) -> None:
        super().__post_init__()
        c = self.contrast
        checks = [
            ("batch_size", self.batch_size >= 2, ">= 2 (the mismatched-text term pairs images with other captions)"),
            ("contrast.branches", c.branches in (1, 2), "1 or 2"),
            ("contrast.weight", c.weight >= 0, ">= 0"),
            ("contrast.temperature", c.temperature > 0, "> 0"),
            ("contrast.weight", c.weight == 0 or c.branches == 2, "0 with contrast.branches=1 (it needs two branches)"),
            ("model.ema_decay", 0 <= self.model.ema_decay < 1, "in [0, 1)"),
            ("model.imsize", self.model.imsize >= 8, ">= 8 (the variant checks its own size rule)"),
            ("sample.every", self.sample.every >= 0, ">= 0"),
            ("eval.val_holdout", self.eval.val_holdout >= 0, ">= 0"),
            ("eval.n_images", self.eval.n_images >= 2, ">= 2"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"t2i config: {key} must be {want}")
        from imagetext.registry import list_feature_extractors

        extra, known = self.eval.test_extractors, list_feature_extractors()
        for name in extra:
            if name not in known or name == self.eval.extractor or extra.count(name) > 1:
                raise ConfigError(f"t2i config: eval.test_extractors: {name!r} must be a feature extractor "
                                  f"({', '.join(known)}) other than eval.extractor "
                                  f"({self.eval.extractor}), named once")
        if self.data.image_size != self.model.imsize:
            raise ConfigError(f"data.image_size={self.data.image_size} and model.imsize={self.model.imsize} differ; "
                              "the generator draws model.imsize images, set both to the same value")
