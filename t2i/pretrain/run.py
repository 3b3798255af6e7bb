"""Phase-1 pretraining end to end: data -> task -> the shared loop -> held-out scores -> export.

    python scripts/pretrain.py --config configs/pretrain/birds_supcon.yaml max_steps=200 seed=1
    accelerate launch --config_file configs/accelerate/cpu2.yaml scripts/pretrain.py --config ...

Writes, under ``output_dir``: ``config.yaml`` (resolved), ``checkpoints/``, ``logs/``
(TensorBoard), ``final/text_encoder`` and ``final/image_encoder`` (``save_pretrained``
folders that ``imagetext.encoders.load_encoder`` and ``t2i eval rprecision`` read), and
``results.json`` (held-out scores, throughput: the benchmark runner's contract).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from imagetext.cliargs import write_text_atomic
from imagetext.errors import DataError

from .config import PretrainConfig


def check_labels(cfg: PretrainConfig, split: Any) -> None:
    """Label-guided terms need labels and at least two classes; say so before training."""
    lc = cfg.loss
    wants_labels = (lc.supcon.use_labels and (lc.supcon.text_text or lc.supcon.image_image or lc.supcon.image_text)) \
        or lc.unicl_weight or lc.ce_weight or cfg.sampler.kind == "m_per_class"
    if not wants_labels:
        return
    classes = {c for s in split.samples for c in s.labels}
    unlabelled = sum(1 for s in split.samples if not s.labels)
    if len(classes) < 2:
        raise DataError(f"data.source={cfg.data.source}: the training split has {len(classes)} class(es); label-guided "
                        "losses and the m-per-class sampler need at least 2 (set loss.supcon.use_labels=false and "
                        "sampler.kind=random for unlabelled data)")
    if unlabelled:
        print(f"pretrain: note: {unlabelled} training image(s) have no label: they are their own class "
              "(only their other caption is a positive)", file=sys.stderr)


def task_limit(cfg: PretrainConfig, tokenizer: Any) -> Optional[int]:
    """Words the text encoder reads per caption (word-vocabulary encoders), or None."""
    if tokenizer is None:
        return None
    return int(cfg.model.text_kwargs.get("max_len", 18))


def report_truncation(limit: Optional[int], split: Any) -> None:
    """Say how many training captions the text encoder will cut (AttnGAN's 18 words cut CUB's longest)."""
    if limit is None:
        return
    from imagetext.tokenizer import split_words

    caps = [c for s in split.samples for c in s.captions]
    long = sum(1 for c in caps if len(split_words(c)) > limit)
    if long:
        print(f"pretrain: note: {long} of {len(caps)} training captions are longer than the text encoder's "
              f"{limit} words and are truncated (model.text_kwargs.max_len raises the limit)", file=sys.stderr)


def build_loader(cfg: PretrainConfig, dataset: Any, split: Any) -> Any:
    from imagetext.train.data import build_train_loader

    return build_train_loader(dataset, split, cfg.batch_size, cfg.sampler.kind, cfg.sampler.m, cfg.seed, cfg.num_workers)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Train, score on the held-out split, export; returns the results (also ``results.json``)."""
    from imagetext.data.dataset import ImageTextDataset
    from imagetext.train import Trainer, parse_config_args
    from imagetext.train.data import load_splits, word_tokenizer

    from .evaluate import evaluate_pair
    from .task import PretrainTask

    cfg = parse_config_args(PretrainConfig, argv, description=__doc__, prog="pretrain")
    train_split, test_split = load_splits(cfg.data, cfg.eval.split)
    check_labels(cfg, train_split)
    tokenizer = word_tokenizer(cfg.model.encoder_names()[0], train_split, cfg.model.vocab_min_count)
    report_truncation(task_limit(cfg, tokenizer), train_split)
    dataset = ImageTextDataset(train_split, image_size=cfg.data.image_size, seed=cfg.seed, train=True,
                               two_captions=cfg.loss.branches == 2)
    loader = build_loader(cfg, dataset, train_split)
    from accelerate.utils import set_seed

    set_seed(cfg.seed)  # the initial weights depend on the seed only, not on what ran before in this process
    task = PretrainTask(cfg, tokenizer, num_classes=len(train_split.class_names), multi_label=train_split.multi_label)
    trainer = Trainer(task, cfg, loader)
    state = trainer.train()
    seconds = state["seconds"]
    acc = trainer.accelerator
    results: Dict[str, Any] = {}
    if acc.is_main_process:
        text, image = task._unwrap("text"), task._unwrap("image")
        final = Path(cfg.output_dir) / "final"
        text.save_pretrained(final / "text_encoder")
        image.save_pretrained(final / "image_encoder")
        steps = state["steps_run"]
        results = {
            "steps": state["step"],
            "train_samples_per_s": (steps * cfg.batch_size * acc.num_processes / seconds) if steps else None,
            "train_seconds": seconds,
            "processes": acc.num_processes,
            "last_logs": state["last_logs"],
            **evaluate_pair(text, image, test_split, cfg.data.image_size, test_split.multi_label, k=cfg.eval.knn_k,
                            folds=cfg.eval.rprecision_folds, batch_size=cfg.eval.batch_size,
                            max_images=cfg.eval.max_images, seed=cfg.seed),
        }
        write_text_atomic(Path(cfg.output_dir) / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    acc.wait_for_everyone()
    return results


def _summary(res: Dict[str, Any]) -> str:
    keys = ("t2i_r1", "t2i_r5", "i2t_r1", "i2t_r5", "r_precision", "knn_text", "knn_image")
    return "held-out: " + ", ".join(f"{k}={res[k]:.4g}" for k in keys if isinstance(res.get(k), float))


def cli(argv: Optional[List[str]] = None) -> int:
    """Entry point: user mistakes are one line on stderr (exit 2), never a traceback."""
    from imagetext.train.cli import run_script

    return run_script(main, "pretrain", argv, _summary)
