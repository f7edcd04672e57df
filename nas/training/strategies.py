"""Training strategies: which subnets a step trains, and how they learn.

A strategy is a small object outside the model. Each step it names the subnets to train
(:meth:`Strategy.sample`, from an explicit ``random.Random``) and whether the first of them is the
teacher of the others (``distill``); :func:`forward_backward` then runs them one after the
other, accumulating their gradients in the shared weights.

- ``sandwich`` (BigNAS / once-for-all "sandwich rule", the default): the largest subnet, the
  smallest and ``num_random`` random ones. The largest learns from the labels (label smoothing);
  the others learn from its detached soft predictions (in-place distillation).
- ``uniform``: one uniformly random subnet per step, learning from the labels (single-path
  one-shot).
- ``progressive``: once-for-all progressive shrinking. Training is cut into equal phases:
  ``full`` (the largest subnet only), then ``kernel`` (kernel sizes, cell ops and resolution
  elastic), ``depth`` (depth too), ``width`` (everything elastic). Each shrinking phase trains the
  full network on the labels plus ``num_random`` subnets distilled from it.

This module does not step the optimizer, scale the learning rate or reduce gradients across
ranks; see :mod:`nas.training.loop`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from nas.space import Arch, SearchSpace


@dataclass(frozen=True)
class LossConfig:
    """How subnets learn: label smoothing of the label loss, weight and temperature of the
    distillation from the teacher's soft predictions."""

    label_smoothing: float = 0.1
    kd_weight: float = 1.0
    kd_temperature: float = 1.0


class Strategy:
    """Base class: ``sample`` returns the subnets of one step; ``distill`` says whether the first
    of them teaches the others."""

    name = ""
    distill = False

    def sample(self, space: SearchSpace, rng: random.Random, progress: float) -> list[Arch]:
        """The subnets to train in a step.

        Args:
            space: the search space.
            rng: the step's random generator (the same on every rank).
            progress: fraction of training done, in [0, 1).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class Sandwich(Strategy):
    """Largest + smallest + ``num_random`` random subnets, distilled from the largest."""

    name = "sandwich"
    distill = True

    def __init__(self, *, num_random: int = 2):
        if num_random < 0:
            raise ValueError(f"num_random must be >= 0, got {num_random}")
        self.num_random = num_random

    def sample(self, space: SearchSpace, rng: random.Random, progress: float) -> list[Arch]:
        return [space.max_arch(), space.min_arch()] + [space.sample(rng)
                                                      for _ in range(self.num_random)]


class Uniform(Strategy):
    """One uniformly random subnet per step, trained on the labels."""

    name = "uniform"
    distill = False

    def sample(self, space: SearchSpace, rng: random.Random, progress: float) -> list[Arch]:
        return [space.sample(rng)]


class Progressive(Strategy):
    """Once-for-all progressive shrinking with distillation from the full network."""

    name = "progressive"
    distill = True
    # (phase, dimensions sampled at random); the other dimensions stay at the largest value.
    PHASES: tuple[tuple[str, frozenset[str]], ...] = (
        ("full", frozenset()),
        ("kernel", frozenset({"cell", "kernel", "resolution"})),
        ("depth", frozenset({"cell", "kernel", "resolution", "depth"})),
        ("width", frozenset({"cell", "kernel", "resolution", "depth", "width"})),
    )

    def __init__(self, *, num_random: int = 2):
        if num_random < 1:
            raise ValueError(f"progressive needs num_random >= 1, got {num_random}")
        self.num_random = num_random

    def phase(self, progress: float) -> tuple[str, frozenset[str]]:
        """The phase at ``progress`` (equal shares of training, in order)."""
        return self.PHASES[min(int(progress * len(self.PHASES)), len(self.PHASES) - 1)]

    def sample(self, space: SearchSpace, rng: random.Random, progress: float) -> list[Arch]:
        largest = space.max_arch()
        _, elastic = self.phase(progress)
        if not elastic:
            return [largest]
        dims = ("cell", "depth", "width", "kernel", "resolution")
        fixed = {dim: getattr(largest, dim) for dim in dims if dim not in elastic}
        return [largest] + [dataclasses.replace(space.sample(rng), **fixed)
                            for _ in range(self.num_random)]


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Sandwich, Uniform, Progressive)}


def make_strategy(name: str, *, num_random: int = 2) -> Strategy:
    """Builds a strategy by name.

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad ``num_random``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    return cls() if cls is Uniform else cls(num_random=num_random)


def distill_loss(logits: torch.Tensor, teacher_logp: torch.Tensor, y: torch.Tensor,
                 loss: LossConfig) -> torch.Tensor:
    """A student's loss: ``kd_weight * T^2 * KL(teacher || student)`` at temperature ``T``, plus
    ``(1 - kd_weight)`` times the smoothed label cross-entropy.

    Args:
        logits: the student's logits (B, classes), float32.
        teacher_logp: the teacher's detached log-probabilities at temperature T (B, classes).
        y: labels (B,).
        loss: the loss settings.
    """
    t = loss.kd_temperature
    kd = F.kl_div(F.log_softmax(logits / t, dim=1), teacher_logp, log_target=True,
                  reduction="batchmean") * (t * t)
    if loss.kd_weight == 1.0:
        return kd
    ce = F.cross_entropy(logits, y, label_smoothing=loss.label_smoothing)
    return loss.kd_weight * kd + (1.0 - loss.kd_weight) * ce


def forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, archs: list[Arch], *,
                     distill: bool, loss: LossConfig,
                     autocast: Callable[[], ContextManager] = contextlib.nullcontext
                     ) -> torch.Tensor:
    """Runs each subnet on the batch and back-propagates its loss, accumulating gradients.

    Each backward runs right after its forward, so only one subnet's graph is alive at a time.
    Gradients are summed over subnets (not averaged), as in BigNAS and once-for-all.

    Args:
        model: the supernet, called as ``model(x, arch)``.
        x: images (B, C, H, W) at the space's largest resolution; resized (bilinear) for a
            subnet of a smaller resolution.
        y: labels (B,).
        archs: the subnets; with ``distill`` the first is the teacher of the others.
        distill: the first subnet learns from the labels and the others from its detached
            soft predictions; otherwise every subnet learns from the labels.
        loss: label smoothing and distillation settings.
        autocast: a context manager factory for the forward pass (bf16 autocast on CUDA).

    Returns:
        The detached loss of each subnet, shape (len(archs),).
    """
    teacher_logp = None  # (B, classes) log-probabilities at temperature T
    losses = []
    for arch in archs:
        inputs = x
        if x.shape[-1] != arch.resolution:
            inputs = F.interpolate(x, size=(arch.resolution,) * 2, mode="bilinear",
                                   align_corners=False)
        with autocast():
            logits = model(inputs, arch).float()  # (B, classes)
        if distill and teacher_logp is not None:
            value = distill_loss(logits, teacher_logp, y, loss)
        else:
            value = F.cross_entropy(logits, y, label_smoothing=loss.label_smoothing)
            if distill:
                teacher_logp = F.log_softmax(logits.detach() / loss.kd_temperature, dim=1)
        value.backward()
        losses.append(value.detach())
    return torch.stack(losses)
