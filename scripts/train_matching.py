"""Image-text matching with Deep Boosting Learning (thin entry point; see matching/train.py).

    python scripts/train_matching.py --config configs/matching/birds_tiny.yaml
    python scripts/train_matching.py --config configs/matching/scenes_momentum.yaml seed=1 output_dir=runs/m
    accelerate launch --config_file configs/accelerate/cpu2.yaml scripts/train_matching.py --config ...
"""
import sys

from matching.train import cli

if __name__ == "__main__":
    sys.exit(cli())
