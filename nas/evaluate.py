"""Scoring subnets with inherited weights: BatchNorm recalibration and top-1.

BatchNorm statistics are not shared meaningfully between subnets, so every evaluation first
recalibrates them on training images (:func:`calibrate_bn`), then measures top-1 on the
validation split (:func:`accuracy`). Both work on any ``nn.Module``, typically an extracted
subnet.

This module does not measure latency (see :mod:`nas.latency`).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: Batches) -> int:
    """Recomputes every BatchNorm's running statistics as the cumulative average over
    ``batches`` (reset, ``momentum=None``, forward in train mode).

    The model's train/eval mode and the BN momenta are restored afterwards, even on error.

    Returns:
        The number of images seen.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    was_training = model.training
    seen = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for x, _ in batches:
            model(x)
            seen += x.shape[0]
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return seen


@torch.no_grad()
def accuracy(model: nn.Module, batches: Batches) -> tuple[float, float]:
    """Top-1 (a fraction in [0, 1]) and mean cross-entropy of ``model`` in eval mode.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    correct, loss_sum, seen = 0, 0.0, 0
    try:
        for x, y in batches:
            logits = model(x)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            seen += y.shape[0]
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("accuracy() got no batches")
    return correct / seen, loss_sum / seen
