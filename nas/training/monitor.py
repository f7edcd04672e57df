"""What a training run reports while it runs: epoch-end validation of subnets, running
loss and throughput, progress bars.

:class:`SubnetEvaluator` scores a subnet the way the rest of the pipeline does (see
:mod:`nas.evaluate`): extracted with its inherited weights, BatchNorm recalibrated on a fixed
seeded sample of training images (the first ``calib_images`` of a permutation seeded with the
run's seed, as :meth:`nas.evaluate.SupernetEvaluator.from_checkpoint` picks them), top-1 on the
validation split.

This module does not write files; see :mod:`nas.training.state`.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from tqdm import tqdm

from nas.data import Batches, TensorData
from nas.evaluate import accuracy, calibrate_bn
from nas.space import Arch
from nas.supernet import Supernet


class SubnetEvaluator:
    """Validation top-1 of a subnet with inherited weights: extract it, recalibrate its
    BatchNorm on ``calib_images`` fixed training images, measure top-1 on ``val``.

    Args:
        train: training images (the calibration images are a seeded sample of them).
        val: validation images.
        calib_images: images used for BN recalibration.
        batch_size: batch size of calibration and validation.
        seed: seeds the choice of calibration images.
        device: where the subnet runs.
    """

    def __init__(self, train: TensorData, val: TensorData, *, calib_images: int,
                 batch_size: int, seed: int, device: torch.device):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        self.calib = train.subset(order[:calib_images]).to(device)
        self.val = val.to(device)
        self.batch_size, self.device = batch_size, device

    def top1(self, model: Supernet, arch: Arch) -> float:
        """Top-1 (a fraction) of the subnet ``arch`` of ``model`` on the validation images."""
        subnet = model.extract(arch).to(self.device)
        calibrate_bn(subnet, Batches(self.calib, self.batch_size, resolution=arch.resolution))
        top1, _ = accuracy(subnet, Batches(self.val, self.batch_size, resolution=arch.resolution))
        return top1

    def extremes(self, model: Supernet) -> dict[str, float]:
        """Top-1 of the largest and the smallest subnet."""
        return {"top1_largest": self.top1(model, model.space.max_arch()),
                "top1_smallest": self.top1(model, model.space.min_arch())}


class Meter:
    """Running loss, gradient norm and throughput since the last record."""

    def __init__(self, images_per_step: int):
        self.images_per_step = images_per_step
        self.reset()

    def reset(self) -> None:
        self.loss, self.grad_norm, self.steps, self.start = 0.0, 0.0, 0, time.perf_counter()

    def update(self, loss: float, grad_norm: float) -> None:
        self.loss += loss
        self.grad_norm += grad_norm
        self.steps += 1

    def rate(self) -> float:
        """Images per second (global batch) since the last reset."""
        return self.steps * self.images_per_step / max(time.perf_counter() - self.start, 1e-9)

    def record(self, event: str, step: int, steps_per_epoch: int, lr: float, *,
               reset: bool = True) -> dict[str, Any]:
        """A metrics.jsonl line of the means since the last reset."""
        n = max(self.steps, 1)
        out = {"event": event, "step": step, "epoch": round(step / steps_per_epoch, 4),
               "lr": lr, "loss": self.loss / n, "grad_norm": self.grad_norm / n,
               "img_per_s": self.rate(), "time_s": time.perf_counter() - self.start}
        if reset:
            self.reset()
        return out


def progress_bar(epoch: int, epochs: int, steps_per_epoch: int, initial: int,
                 enabled: bool) -> tqdm:
    """The tqdm bar of one epoch (rank 0 only)."""
    return tqdm(total=steps_per_epoch, initial=initial, desc=f"epoch {epoch + 1}/{epochs}",
                disable=not enabled, leave=False, dynamic_ncols=True, mininterval=0.5)
