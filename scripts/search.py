#!/usr/bin/env python
"""Search entry point for ``torchrun`` and scripts: the same as ``nas search``.

    python scripts/search.py --checkpoint checkpoints/demo/supernet/best.pt --out runs/demo_search
    torchrun --standalone --nproc_per_node=2 scripts/search.py --checkpoint ... --out ...
"""
import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
