"""The supernet training loop: :func:`train_supernet`.

One step: every rank takes its shard of the global batch, samples the same subnets (from a
``random.Random`` seeded by ``(seed, step)``), runs them forward and backward with the strategy,
averages the gradients across ranks, clips them and steps SGD. The learning rate, the batch and
the subnets are pure functions of the global step, so a checkpoint of the weights, the optimizer
and the step resumes bitwise (on CPU, with deterministic algorithms and the same thread count).

At every epoch end rank 0 evaluates the largest and the smallest subnet (extracted, BatchNorm
recalibrated on training images, top-1 on the validation split), writes ``best.pt`` when the
largest improved, then ``last.pt``; ``last.pt`` is also written every ``checkpoint_every`` steps.
A non-finite loss or gradient stops the run before the update, keeping the last good checkpoint.

This module does not parse flags or load data sets; see :mod:`nas.commands.train`.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import torch

from nas.checkpoint import save_checkpoint
from nas.data import Batches, TensorData
from nas.errors import CheckpointError, ConfigError, NASError
from nas.space import Arch, SearchSpace
from nas.supernet import Supernet
from nas.training import distributed, state
from nas.training.config import TrainConfig
from nas.training.monitor import Meter, SubnetEvaluator, progress_bar
from nas.training.optim import CosineWarmup, build_optimizer, scaled_lr
from nas.training.strategies import LossConfig, forward_backward, make_strategy


class DivergedError(NASError):
    """The loss or the gradient became NaN or infinite."""


@dataclass
class TrainResult:
    """What a finished run reports (the top-1 values are fractions, None on ranks other than 0).

    Attributes:
        model: the trained supernet.
        top1_largest: validation top-1 of the largest subnet, BN recalibrated.
        top1_smallest: validation top-1 of the smallest subnet, BN recalibrated.
        best_top1: the best epoch-end top-1 of the largest subnet (the one in ``best.pt``).
        steps: optimizer steps done in all.
        out: the run directory.
    """

    model: Supernet
    top1_largest: float | None
    top1_smallest: float | None
    best_top1: float | None
    steps: int
    out: Path


def train_supernet(config: TrainConfig, space: SearchSpace, train: TensorData, val: TensorData,
                   out: str | Path, *, data_meta: dict[str, Any],
                   resume_from: dict[str, Any] | None = None,
                   echo: Callable[[str], None] = print) -> TrainResult:
    """Trains a supernet of ``space`` on ``train`` and writes the run directory ``out``.

    Launched by ``torchrun --nproc_per_node=N``, each of the N processes calls this function;
    they form one data-parallel run (see :mod:`nas.training.distributed`). The global batch is
    ``config.batch_size x N`` and the peak learning rate ``config.lr x global_batch /
    config.ref_batch_size``.

    Args:
        config: the resolved training config.
        space: the search space.
        train: training images (the validation split already held out).
        val: validation images, for the epoch-end top-1 and ``best.pt``.
        out: the run directory (see :mod:`nas.training.state`); checked by the caller.
        data_meta: the ``data`` entry of the checkpoints (:func:`nas.training.state.data_meta`).
        resume_from: a checkpoint loaded from ``out/last.pt`` to continue from.
        echo: where rank 0's one-line messages go.

    Returns:
        The trained supernet and its final validation top-1 values.

    Raises:
        DivergedError: the loss or gradient became non-finite.
        ConfigError: a device that is not available, or too little data for one step.
        CheckpointError: ``resume_from`` does not fit this run.
    """
    world = distributed.world_from_env()
    device = pick_device(config.device, world)
    with torch_settings(config, device):
        distributed.setup(world, device)
        try:
            run = Run(config, space, train, val, Path(out), data_meta, world, device)
            start = run.restore(resume_from) if resume_from is not None else 0
            return _loop(run, start, resumed=resume_from is not None,
                         echo=echo if world.is_main else (lambda _: None))
        finally:
            distributed.teardown(world)


def _loop(run: Run, start: int, *, resumed: bool, echo: Callable[[str], None]) -> TrainResult:
    """Trains from global step ``start`` to the end, checkpointing and evaluating on the way."""
    config, spe, world = run.config, run.steps_per_epoch, run.world
    distributed.broadcast_parameters(run.model, world)
    run.out.mkdir(parents=True, exist_ok=True)
    log = state.MetricsLog(run.out / state.METRICS, enabled=world.is_main,
                           resume_step=start if resumed else None)
    if world.is_main:
        state.write_config(run.out, config)
    echo(run.describe() + (f", resuming at step {start}" if start else ""))
    window, epoch_meter = (Meter(images_per_step=config.batch_size * world.size) for _ in "ab")
    bar = None
    try:
        for step in range(start, run.total):
            epoch, k = divmod(step, spe)
            if bar is None:
                bar = progress_bar(epoch, config.epochs, spe, k, world.is_main)
            x, y = run.shard(epoch, k)
            lr = run.schedule.apply(step)
            archs = run.strategy.sample(run.space, step_rng(config.seed, step), step / run.total)
            loss, grad_norm = train_step(run, x, y, archs, step=step, lr=lr)
            window.update(loss, grad_norm)
            epoch_meter.update(loss, grad_norm)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}",
                            img_s=f"{epoch_meter.rate():.0f}", refresh=False)
            done = step + 1
            if config.log_every and done % config.log_every == 0:
                log.write(window.record("step", done, spe, lr))
            if done % spe == 0:  # epoch end: evaluate, keep the best, checkpoint
                bar.close()
                bar = None
                record = epoch_meter.record("epoch", done, spe, lr)
                if world.is_main:
                    improved = run.evaluate(done)
                    log.write({**record, **run.top1()})
                    echo(f"epoch {done // spe}/{config.epochs}: loss {record['loss']:.4f}, val "
                         f"top-1 largest {run.metrics['top1_largest']:.2%}, smallest "
                         f"{run.metrics['top1_smallest']:.2%}, {record['img_per_s']:.0f} img/s")
                    if improved:  # best first: a kill in between redoes this epoch end
                        run.save(state.BEST, done)
                run.save(state.LAST, done)
                epoch_meter.reset()  # evaluation time is not training throughput
            elif config.checkpoint_every and done % config.checkpoint_every == 0:
                run.save(state.LAST, done)
    finally:
        if bar is not None:
            bar.close()
    m = run.metrics
    return TrainResult(run.model, m["top1_largest"], m["top1_smallest"], m["best_top1"],
                       run.total, run.out)


class Run:
    """The objects of one training run, built from its config: the supernet, the optimizer,
    the schedule, this rank's batches, the strategy, the evaluator and the metrics so far.

    Args:
        config: the resolved config.
        space: the search space.
        train: training images.
        val: validation images.
        out: the run directory.
        data_meta: the ``data`` entry of the checkpoints.
        world: this process's rank and the number of processes.
        device: where to train.

    Raises:
        ConfigError: too few training images for one global batch.
    """

    def __init__(self, config: TrainConfig, space: SearchSpace, train: TensorData,
                 val: TensorData, out: Path, data_meta: dict[str, Any],
                 world: distributed.World, device: torch.device):
        self.config, self.space, self.out, self.data_meta = config, space, out, data_meta
        self.world, self.device = world, device
        self.num_train = len(train)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = Supernet(space, num_classes=train.info.num_classes,
                              in_channels=train.info.in_channels).to(device)
        self.amp = config.amp and device.type == "cuda"
        if self.amp:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params = list(self.model.parameters())
        self.optimizer = build_optimizer(self.model, lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.batches = Batches(train.to(device), config.batch_size, shuffle=True,
                               seed=config.seed, augment=config.augment, drop_last=True,
                               resolution=max(space.resolution))
        self.steps_per_epoch = len(self.batches) // world.size  # global batch: all ranks' ones
        if self.steps_per_epoch < 1:
            raise ConfigError(f"{len(train)} training images make no global batch of "
                              f"{config.batch_size} x {world.size} rank(s); lower batch_size")
        self.total = self.steps_per_epoch * config.epochs
        self.peak_lr = scaled_lr(config.lr, batch_size=config.batch_size, world_size=world.size,
                                 ref_batch_size=config.ref_batch_size)
        warmup = min(self.total, round(config.warmup_epochs * self.steps_per_epoch))
        self.schedule = CosineWarmup(self.optimizer, peak_lr=self.peak_lr, warmup_steps=warmup,
                                     total_steps=self.total)
        self.strategy = make_strategy(config.strategy, num_random=config.num_random)
        self.losses = LossConfig(config.label_smoothing, config.kd_weight, config.kd_temperature)
        self.evaluator = SubnetEvaluator(train, val, calib_images=config.calib_images,
                                         batch_size=config.eval_batch_size, seed=config.seed,
                                         device=device)
        self.metrics: dict[str, Any] = {"best_top1": None, "best_step": None,
                                        "top1_largest": None, "top1_smallest": None}

    def describe(self) -> str:
        """One line saying what is trained, on what, how."""
        c = self.config
        return (f"training {self.space.name} ({c.strategy}) on {self.data_meta['name']}: "
                f"{self.num_train} images, {self.steps_per_epoch} steps/epoch x {c.epochs} "
                f"epochs, global batch {c.batch_size * self.world.size} ({self.world.size} "
                f"rank(s), {self.device.type}), peak lr {self.peak_lr:g}")

    def autocast(self) -> ContextManager:
        """bf16 autocast on CUDA with ``amp``; nothing (fp32) otherwise."""
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def shard(self, epoch: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's part of global batch ``k`` of ``epoch``: images (B, C, H, W), labels (B,).

        Global batch ``k`` is the rank batches ``k * world + 0 .. k * world + world - 1`` of the
        epoch's order, so the images of a step do not depend on the number of ranks.
        """
        x, y = self.batches.batch(epoch, k * self.world.size + self.world.rank)
        if self.amp:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def evaluate(self, step: int) -> bool:
        """Validation top-1 of the largest and smallest subnets into :attr:`metrics`.

        Returns:
            Whether the largest subnet beat the best so far.
        """
        self.metrics.update(self.evaluator.extremes(self.model))
        best = self.metrics["best_top1"]
        improved = best is None or self.metrics["top1_largest"] > best
        if improved:
            self.metrics.update(best_top1=self.metrics["top1_largest"], best_step=step)
        return improved

    def top1(self) -> dict[str, float | None]:
        return {k: self.metrics[k] for k in ("top1_largest", "top1_smallest")}

    def save(self, name: str, step: int) -> None:
        """Writes checkpoint ``name`` (rank 0), refusing weights that overflowed."""
        check_finite(self.model, step, self.out)
        if self.world.is_main:
            save_checkpoint(state.checkpoint_payload(
                model=self.model, optimizer=self.optimizer, schedule=self.schedule,
                config=self.config, data_meta=self.data_meta, step=step,
                steps_per_epoch=self.steps_per_epoch, metrics=self.metrics,
                world_size=self.world.size, device=self.device), self.out / name)

    def restore(self, ckpt: dict[str, Any]) -> int:
        """Loads a checkpoint's weights, optimizer, schedule, RNG states and metrics.

        Returns:
            The global step to continue from.

        Raises:
            CheckpointError: the checkpoint was written by a run of another shape.
        """
        if ckpt.get("world_size") != self.world.size:
            raise CheckpointError(f"the run was trained by {ckpt.get('world_size')} process(es);"
                                  f" resume it with as many (now {self.world.size}): the global "
                                  f"batch and the learning rate depend on it")
        try:
            self.model.load_state_dict(ckpt["state_dict"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.schedule.load_state_dict(ckpt["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint does not fit this run: "
                                  f"{str(exc).splitlines()[0]}") from None
        state.set_rng_state(ckpt["rng"], self.device)
        self.metrics = dict(ckpt["metrics"])
        return int(ckpt["step"])


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor, archs: list[Arch], *, step: int,
               lr: float) -> tuple[float, float]:
    """One optimizer step over the subnets ``archs``: forward and backward of each, gradients
    averaged across ranks, clipped, then SGD.

    Returns:
        The summed loss of the subnets (averaged across ranks) and the gradient norm.

    Raises:
        DivergedError: the loss or the gradient norm is not finite (nothing was updated).
    """
    run.optimizer.zero_grad(set_to_none=True)
    per_arch = forward_backward(run.model, x, y, archs, distill=run.strategy.distill,
                                loss=run.losses, autocast=run.autocast)
    per_arch = distributed.average_gradients(run.params, run.world, per_arch)
    loss = float(per_arch.sum())
    grads = [p for p in run.params if p.grad is not None]
    if run.config.grad_clip > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(grads, run.config.grad_clip))
    else:
        norm = float(torch.nn.utils.get_total_norm([p.grad for p in grads]))
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise DivergedError(
            f"step {step + 1}: the loss is {loss} and the gradient norm {norm} (lr {lr:.3g}); "
            f"training stopped before this update; {_last_good(run.out)}; lower lr or raise "
            f"warmup_epochs")
    run.optimizer.step()
    return loss, norm


def _last_good(out: Path) -> str:
    last = out / state.LAST
    return (f"{last} keeps the last good weights (continue with --resume)" if last.is_file()
            else "no checkpoint had been written yet")


def check_finite(model: torch.nn.Module, step: int, out: Path) -> None:
    """Refuses to checkpoint weights that overflowed.

    Raises:
        DivergedError: a parameter holds NaN or infinity.
    """
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise DivergedError(f"step {step}: parameter {name} is not finite; training "
                                f"stopped; {_last_good(out)}; lower lr")


def step_rng(seed: int, step: int) -> random.Random:
    """The subnet sampler of global step ``step``: the same on every rank and after a resume."""
    entropy = np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint32)
    return random.Random(int(entropy[0]) << 32 | int(entropy[1]))


def pick_device(name: str, world: distributed.World) -> torch.device:
    """``cpu``, ``cuda`` (the local rank's GPU) or ``auto``.

    Raises:
        ConfigError: ``cuda`` asked for on a machine without a GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


@contextlib.contextmanager
def torch_settings(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Thread count and determinism for the run, restored afterwards."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            if device.type == "cuda":  # cuBLAS needs it before its first use
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = device.type == "cuda" and not config.deterministic
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark = saved[3]
