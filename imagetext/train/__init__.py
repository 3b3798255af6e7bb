"""The shared training loop (accelerate): one loop for every model family; nothing here knows a model.

    cfg = load_train_config("configs/train/x.yaml", ["max_steps=100", "resume=latest"])
    train(MyTask(...), cfg, loader)

See :mod:`imagetext.train.loop` for the step and the resume guarantees.
"""
from .cli import parse_config_args
from .config import TrainConfig, load_train_config, resolve_mixed_precision
from .gather import gather_with_grad
from .loop import Trainer, TrainingDiverged, train
from .task import TrainTask

__all__ = ["TrainConfig", "load_train_config", "resolve_mixed_precision", "gather_with_grad", "Trainer",
           "TrainingDiverged", "train", "TrainTask",
           "parse_config_args"]
