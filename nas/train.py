"""Supernet training, the pipeline stage between a search space and a checkpoint.

The implementation lives in the :mod:`nas.training` package (strategies, optimizer, distributed,
run directory, loop); this module is its public face, as in the design's layout.
"""
from nas.training import (STRATEGIES, DivergedError, TrainConfig, TrainResult, make_strategy,
                          train_supernet)

__all__ = ["DivergedError", "STRATEGIES", "TrainConfig", "TrainResult", "make_strategy",
           "train_supernet"]
