"""Random search: uniform samples of the space, never the same arch twice.

The baseline every other searcher must beat (on NAS-Bench-201 it is hard to beat by much). Archs
are drawn in batches of ``batch_size`` so that a supernet evaluator can score a batch in parallel
across ``torch.distributed`` ranks; the batch size does not change which archs are drawn.

This module is torch-free.
"""
from __future__ import annotations

import random

from nas.search.oracle import Oracle


class RandomSearch:
    """Uniform random search.

    Args:
        batch_size: archs per evaluator call (a "generation", evaluated in parallel).
    """

    name = "random"

    def __init__(self, *, batch_size: int = 10):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def run(self, oracle: Oracle, rng: random.Random) -> None:
        """Evaluates uniform samples until the budget (or the space) is exhausted."""
        space = oracle.space
        while oracle.remaining > 0:
            archs = oracle.propose(lambda: space.sample(rng), min(self.batch_size, oracle.remaining),
                                   rng)
            if not archs:
                return
            oracle.evaluate(archs)
