#!/usr/bin/env python
"""Train or evaluate SAN: ``python train_net.py --config-file ... [--eval-only] [--resume]``.

The same command as ``san-train`` (``tools/train_net.py``), kept where the paper's code has it.
"""
import sys

from san_d2_tools.train_net import cli

if __name__ == "__main__":
    sys.exit(cli())
