"""Supernet training: strategies, distillation, data-parallel scale-out, resumable checkpoints.

- :mod:`nas.training.config`: :class:`TrainConfig`, the one config of the stage;
- :mod:`nas.training.strategies`: ``sandwich``, ``uniform``, ``progressive`` and the losses;
- :mod:`nas.training.optim`: SGD (Nesterov), linear lr scaling, cosine schedule with warm-up;
- :mod:`nas.training.distributed`: torchrun process groups and the one-bucket gradient average;
- :mod:`nas.training.state`: the run directory, checkpoints and resuming;
- :mod:`nas.training.monitor`: epoch-end validation, running loss and throughput, progress bars;
- :mod:`nas.training.loop`: :func:`train_supernet`, the loop itself.

The public entry points are re-exported here and by :mod:`nas.train`.
"""
from nas.training.config import TrainConfig
from nas.training.loop import DivergedError, TrainResult, train_supernet
from nas.training.strategies import STRATEGIES, make_strategy

__all__ = ["DivergedError", "STRATEGIES", "TrainConfig", "TrainResult", "make_strategy",
           "train_supernet"]
