"""The optimizer and the learning-rate schedule of supernet training.

- SGD with Nesterov momentum; weight decay on conv and linear weights only (tensors of two or
  more dimensions), never on BatchNorm weights or biases.
- Linear scaling rule: the peak learning rate is ``lr * global_batch / ref_batch_size`` with
  ``global_batch = batch_size x world_size`` (Goyal et al., 2017).
- Linear warm-up from 0 over the first steps, then cosine decay to 0 at the last step. The rate
  is a pure function of the global step, so a resumed run needs no scheduler state beyond the
  step itself (the state dict records the constants, to check them on resume).

This module does not compute gradients; see :mod:`nas.training.strategies`.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def scaled_lr(lr: float, *, batch_size: int, world_size: int, ref_batch_size: int) -> float:
    """The linear scaling rule: ``lr * (batch_size * world_size) / ref_batch_size``."""
    return lr * batch_size * world_size / ref_batch_size


def build_optimizer(model: nn.Module, *, lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.SGD:
    """SGD with Nesterov momentum; no weight decay on BatchNorm parameters and biases.

    Args:
        model: the model whose parameters are optimized.
        lr: the initial learning rate (the schedule overwrites it every step).
        momentum: Nesterov momentum (> 0).
        weight_decay: L2 penalty of the conv and linear weights.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)


class CosineWarmup:
    """Linear warm-up to ``peak_lr`` over ``warmup_steps``, then cosine decay to 0.

    Args:
        optimizer: whose parameter groups get the rate.
        peak_lr: the rate at the end of the warm-up.
        warmup_steps: steps of the warm-up (0: start at the peak).
        total_steps: steps of the whole run.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, peak_lr: float, warmup_steps: int,
                 total_steps: int):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps "
                             f"({total_steps}) and total_steps >= 1")
        self.optimizer = optimizer
        self.peak_lr, self.warmup_steps, self.total_steps = peak_lr, warmup_steps, total_steps

    def lr_at(self, step: int) -> float:
        """The learning rate of global step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return 0.5 * self.peak_lr * (1.0 + math.cos(math.pi * progress))

    def apply(self, step: int) -> float:
        """Sets the rate of ``step`` on every parameter group and returns it."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"name": "cosine_warmup", "peak_lr": self.peak_lr,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        """Checks that a saved schedule has these constants.

        Raises:
            ValueError: a constant differs (the run's config or world size changed).
        """
        mine = self.state_dict()
        for key, value in mine.items():
            if state.get(key) != value:
                raise ValueError(f"the saved learning-rate schedule has {key}={state.get(key)!r}, "
                                 f"this run has {value!r} (did the batch size, world size or "
                                 f"epochs change?)")
