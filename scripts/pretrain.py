"""Phase-1 pretraining (thin entry point; see t2i/pretrain/run.py).

    python scripts/pretrain.py --config configs/pretrain/birds_tiny.yaml
    python scripts/pretrain.py --config configs/pretrain/scenes_supcon.yaml seed=1 max_steps=300 output_dir=runs/x
    accelerate launch --config_file configs/accelerate/cpu2.yaml scripts/pretrain.py --config ...
"""
import sys

from t2i.pretrain.run import cli

if __name__ == "__main__":
    sys.exit(cli())
