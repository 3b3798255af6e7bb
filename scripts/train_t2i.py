#!/usr/bin/env python
"""Train a text-to-image GAN (phase 2): ``--config configs/t2i/<variant>_<world>[_scl].yaml [key=value ...]``."""
import sys

from t2i.gan.run import cli

if __name__ == "__main__":
    sys.exit(cli())
