#!/usr/bin/env python
"""Train a supernet: the same as ``nas train``, as a script that torchrun can launch.

    python scripts/train_supernet.py --space search_spaces/demo.yaml --out checkpoints/demo/supernet
    torchrun --nproc_per_node=4 scripts/train_supernet.py --space ... --out ... --config recipes/cifar10_gpu.yaml
"""
import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
