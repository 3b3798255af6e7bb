"""Phase-2 training end to end: data -> frozen encoders -> GAN task -> the shared loop -> export -> test scores.

    python scripts/train_t2i.py --config configs/t2i/dfgan_tiny.yaml
    python scripts/train_t2i.py --config configs/t2i/dfgan_scenes_scl.yaml max_steps=2000 seed=1
    accelerate launch --config_file configs/accelerate/cpu2.yaml scripts/train_t2i.py --config ...

Writes, under ``output_dir``: ``config.yaml`` (resolved), ``checkpoints/``, ``logs/`` (TensorBoard
scalars and sample grids), ``best/`` (by validation FID when ``best_metric=fid``), ``final/`` (the
EMA generator pipeline: ``T2IPipeline.from_pretrained``, ``t2i generate --model``) and
``results.json`` (test-split scores and throughput: the benchmark runner's contract).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from imagetext.cliargs import write_text_atomic
from imagetext.errors import ConfigError, UserError

from .config import GanConfig


def encoder_image_size(cfg: GanConfig) -> Optional[int]:
    """The side the frozen image encoder was trained at (see ``encoders.image_size``)."""
    if cfg.encoders.image_size is not None or not cfg.encoders.path:
        return cfg.encoders.image_size
    from imagetext.train.checkpoints import read_config

    saved = read_config(Path(cfg.encoders.path) / "config.yaml") or {}
    size = (saved.get("data") or {}).get("image_size")
    return int(size) if isinstance(size, int) else None


def load_encoders(cfg: GanConfig, train_split: Any) -> Tuple[Any, Optional[Any]]:
    """(text encoder, image encoder): the phase-1 export at ``encoders.path``, or fresh ones."""
    from imagetext.encoders import build_image_encoder, build_text_encoder, load_encoder
    from imagetext.train.data import word_tokenizer

    e = cfg.encoders
    if e.path:
        d = _encoder_dir(cfg)
        text = load_encoder(d / "text_encoder")
        image = load_encoder(d / "image_encoder") if (d / "image_encoder").is_dir() else None
        return text, image
    if not (e.text_kwargs.get("pretrained") or e.image_kwargs.get("pretrained")):
        print(f"train_t2i: note: encoders.path is unset: fresh, randomly initialised {e.text}/{e.image} encoders "
              "(a fixed random text embedding; use a phase-1 export for real runs)", file=sys.stderr)
    tok = word_tokenizer(e.text, train_split, e.vocab_min_count)
    text = build_text_encoder(e.text, tokenizer=tok, **e.text_kwargs)
    image = build_image_encoder(e.image, **e.image_kwargs)
    return text, image


def _encoder_dir(cfg: GanConfig) -> Path:
    """The folder holding ``text_encoder/`` (and ``image_encoder/``): ``encoders.path`` or its ``final/``."""
    root = Path(cfg.encoders.path)
    d = root / "final" if (root / "final" / "text_encoder").is_dir() else root
    if not (d / "text_encoder").is_dir():
        raise UserError(f"encoders.path={cfg.encoders.path}: no text_encoder/ here or in final/ (give a phase-1 run "
                        "folder, e.g. runs/pretrain/birds_supcon, or unset it for fresh encoders)")
    return d


def encoders_provenance(cfg: GanConfig) -> Dict[str, Any]:
    """Which frozen encoders a run was conditioned on: the folder and the sha256 of each weights file.

    A phase-1 run retrained with the same seed need not give the same weights (float reduction order
    differs with threads and code), so a results record names the weights, not just the path.
    """
    from imagetext.encoders.weights import sha256_file

    if not cfg.encoders.path:
        return {"path": None, "text": cfg.encoders.text, "image": cfg.encoders.image, "fresh": True}
    d = _encoder_dir(cfg)
    out: Dict[str, Any] = {"path": str(d)}
    for kind in ("text", "image"):
        f = d / f"{kind}_encoder" / "model.safetensors"
        out[f"{kind}_sha256"] = sha256_file(f) if f.is_file() else None
    return out


def fixed_prompts(split: Any, n: int) -> List[str]:
    return [s.captions[0] for s in split.samples[:n]]


def export(task: Any, cfg: GanConfig, directory: Path) -> Path:
    """The EMA generator + text encoder as a pipeline folder."""
    from imagetext.encoders.base import encoder_meta

    from .generator import T2IGenerator
    from .pipeline import T2IPipeline

    v = task.variant
    img_meta = encoder_meta(task.image_encoder) if (v.generator_holds_image_encoder and task.image_encoder is not None) else None
    gen = T2IGenerator(variant=cfg.model.variant, imsize=cfg.model.imsize, cond_dim=v.cond_dim,
                       variant_kwargs=dict(cfg.model.kwargs), image_encoder=img_meta)
    gen.generator.load_state_dict({k: t.detach().cpu() for k, t in task.ema.state_dict().items()})
    pipe = T2IPipeline(gen, task.text_encoder, {"data": cfg.data.source, "truncation": cfg.eval.truncation})
    from imagetext.config import to_dict

    return pipe.save_pretrained(directory, run_config=to_dict(cfg))


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Train, export ``final/``, score the EMA generator on the test split; returns the results."""
    from accelerate.utils import set_seed

    from imagetext.data.dataset import ImageTextDataset
    from imagetext.train import Trainer, parse_config_args
    from imagetext.train.data import build_train_loader, load_splits, validation_split

    from .evaluate import GeneratedScorer
    from .task import GanTask

    cfg = parse_config_args(GanConfig, argv, description=__doc__, prog="train_t2i")
    train_split, test_split = load_splits(cfg.data, "test")
    train_split, val_split = validation_split(cfg.data, train_split, cfg.eval.val_split, cfg.eval.val_holdout, "test",
                                              cfg.batch_size)
    if (cfg.validate_every or cfg.best_metric) and val_split is None:
        raise ConfigError("validate_every/best_metric need a validation set: set eval.val_holdout=N or "
                          "eval.val_split (never the test split)")
    c = cfg.contrast
    if c.weight > 0 and c.use_labels and len({x for s in train_split.samples for x in s.labels}) < 2:
        raise ConfigError(f"contrast.use_labels: the training split of {cfg.data.source} has fewer than 2 classes; "
                          "set contrast.use_labels=false (instance-level) or use labelled data")
    set_seed(cfg.seed)
    text, image = load_encoders(cfg, train_split)
    if c.weight > 0 and image is None:
        raise ConfigError("contrast.weight > 0 needs the phase-1 image encoder (encoders.path has no image_encoder/)")
    dataset = ImageTextDataset(train_split, image_size=cfg.data.image_size, seed=cfg.seed, train=True,
                               two_captions=c.branches == 2)
    loader = build_train_loader(dataset, train_split, cfg.batch_size, cfg.sampler, cfg.sampler_m, cfg.seed,
                                cfg.num_workers)
    set_seed(cfg.seed)  # the initial weights depend on the seed only
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    scorer_args = dict(imsize=cfg.model.imsize, extractor=cfg.eval.extractor, extractor_kwargs=cfg.eval.extractor_kwargs,
                       world=cfg.data.source, text_encoder=text, image_encoder=image, batch_size=cfg.eval.batch_size,
                       encoder_size=encoder_image_size(cfg),
                       kid_subsets=cfg.eval.kid_subsets, seed=cfg.seed, real_cache=cfg.eval.real_cache)
    validator = None
    if cfg.validate_every:
        validator = GeneratedScorer(val_split, n=min(cfg.eval.n_images, len(val_split.samples)), device=device,
                                    **scorer_args)
    prompts = fixed_prompts(val_split or test_split, cfg.sample.prompts)
    task = GanTask(cfg, text, image, multi_label=train_split.multi_label, fixed_prompts=prompts, validator=validator,
                   encoder_size=encoder_image_size(cfg))
    trainer = Trainer(task, cfg, loader)
    state = trainer.train()
    seconds = state["seconds"]
    acc = trainer.accelerator
    results: Dict[str, Any] = {}
    # every process scores (extraction shards over processes); the main one writes
    scorer = GeneratedScorer(test_split, n=min(cfg.eval.n_images, len(test_split.samples)),
                             device=acc.device, extra_extractors=cfg.eval.test_extractors, **scorer_args)
    scores = scorer(lambda caps, seed: task.generate(caps, seed, cfg.eval.truncation, cfg.eval.batch_size))
    if acc.is_main_process:
        final = export(task, cfg, Path(cfg.output_dir) / "final")
        steps = state["steps_run"]
        per_step = cfg.batch_size * acc.num_processes * c.branches
        results = {
            "steps": state["step"],
            "train_img_per_s": (steps * per_step / seconds) if steps else None,
            "images_seen": state["step"] * per_step,
            "train_seconds": seconds,
            "processes": acc.num_processes,
            "last_logs": state["last_logs"],
            "encoders": encoders_provenance(cfg),
            "test": {"split": "test", "n_images": scorer.real.n, "extractor": cfg.eval.extractor, **scores},
            "final": str(final),
        }
        record = Path(cfg.output_dir) / TRAIN_RECORD
        if steps:
            keep = {k: results[k] for k in ("steps", *TRAINING_KEYS)}
            write_text_atomic(record, json.dumps(keep, indent=2, default=str) + "\n")
        else:  # nothing left to train: a re-scoring
            results.update({**_trained_before(record, state["step"]), "rescored": True})
        best = Path(cfg.output_dir) / "best.json"
        if best.is_file():
            results["best"] = json.loads(best.read_text(encoding="utf-8"))
        write_text_atomic(Path(cfg.output_dir) / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    acc.wait_for_everyone()
    return results


TRAIN_RECORD = "train_record.json"  # the last training segment's throughput (results.json is the scores')
TRAINING_KEYS = ("train_img_per_s", "train_seconds", "processes", "last_logs")  # what a re-scoring keeps


def _trained_before(path: Path, step: int) -> Dict[str, Any]:
    """A run resumed at ``max_steps`` trains nothing and only re-scores (e.g. with more metrics): it
    keeps the throughput that the segment which trained it to the same step recorded."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if old.get("steps") != step:
        return {}
    return {k: old[k] for k in TRAINING_KEYS if old.get(k) is not None}


def _summary(res: Dict[str, Any]) -> str:
    t = res.get("test", {})
    keys = ("fid", "kid", "is", "faithfulness", "r_precision", "inception_fid", "inception_kid")
    return f"test ({t.get('n_images')} images): " + ", ".join(f"{k}={t[k]:.4g}" for k in keys if k in t)


def cli(argv: Optional[List[str]] = None) -> int:
    from imagetext.train.cli import run_script

    return run_script(main, "train_t2i", argv, _summary)
