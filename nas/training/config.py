"""The training stage's one config: :class:`TrainConfig`, a frozen dataclass.

Recipes (``recipes/*.yaml``) and ``--set key=value`` flags are turned into it by
:func:`nas.config.from_mapping`, which refuses unknown keys and wrong types; the ranges are
checked here, in ``__post_init__``, with a ``ValueError`` that names the key.

This module does not read files or argv (see :mod:`nas.commands.train`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nas.training.strategies import STRATEGIES

DEVICES = ("auto", "cpu", "cuda")

# Keys that may differ when a run is resumed: they change neither the weights nor the data.
RESUMABLE_KEYS = frozenset({"checkpoint_every", "log_every", "device"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a supernet is trained.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per step on each rank; the global batch is ``batch_size x world``.
        lr: peak learning rate for a global batch of ``ref_batch_size`` images; the rate used is
            ``lr * global_batch / ref_batch_size`` (linear scaling rule).
        ref_batch_size: the global batch ``lr`` is given for.
        momentum: Nesterov momentum of SGD.
        weight_decay: L2 penalty on conv and linear weights (never on BatchNorm or biases).
        warmup_epochs: linear warm-up of the learning rate from 0, then cosine decay to 0.
        label_smoothing: smoothing of the label cross-entropy.
        grad_clip: clip the global gradient norm to this value (0 disables clipping).
        strategy: how subnets are chosen each step: ``sandwich``, ``uniform`` or ``progressive``.
        num_random: random subnets per step besides the largest and smallest (``sandwich``), or
            besides the full network in the shrinking phases (``progressive``, >= 1);
            ``uniform`` trains one subnet per step and ignores it.
        kd_weight: weight of the distillation term in a student's loss; the rest is the label
            loss (1.0: students learn from the largest subnet only).
        kd_temperature: softmax temperature of the distillation.
        augment: random crops and flips of the training images.
        val_size: validation images held out of the training split (an int count, or a
            fraction in (0, 1)).
        train_subset: train on the first N images of the training split only (0: all of them);
            for smoke tests.
        calib_images: training images used to recalibrate BatchNorm before each evaluation.
        eval_batch_size: batch size of BN recalibration and validation.
        seed: seeds the weights, the split, the batch order, augmentation and subnet sampling.
        checkpoint_every: also write ``last.pt`` every N steps (0: at epoch ends only).
        log_every: write a line to ``metrics.jsonl`` every N steps (0: at epoch ends only).
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        amp: bf16 autocast and channels_last on CUDA (ignored on CPU, which trains in fp32).
        deterministic: deterministic algorithms (bitwise reproducible and resumable on CPU;
            slower on CUDA).
        threads: CPU threads of torch (0: torch's default); a resumed run must use the same
            number to reproduce bitwise.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.2
    ref_batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    grad_clip: float = 5.0
    strategy: str = "sandwich"
    num_random: int = 2
    kd_weight: float = 1.0
    kd_temperature: float = 1.0
    augment: bool = True
    val_size: int | float = 2000
    train_subset: int = 0
    calib_images: int = 2000
    eval_batch_size: int = 500
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 50
    device: str = "auto"
    amp: bool = True
    deterministic: bool = True
    threads: int = 0

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "ref_batch_size", "calib_images", "eval_batch_size")
        for key in positive:
            _require(getattr(self, key) >= 1, key, "must be >= 1", getattr(self, key))
        for key in ("num_random", "train_subset", "seed", "checkpoint_every", "log_every",
                    "threads"):
            _require(getattr(self, key) >= 0, key, "must be >= 0", getattr(self, key))
        for key in ("weight_decay", "warmup_epochs", "grad_clip"):
            _require(getattr(self, key) >= 0, key, "must be >= 0", getattr(self, key))
        _require(self.lr > 0, "lr", "must be > 0", self.lr)
        _require(self.kd_temperature > 0, "kd_temperature", "must be > 0", self.kd_temperature)
        for key in ("momentum", "label_smoothing", "kd_weight"):
            _require(0 <= getattr(self, key) <= 1, key, "must lie in [0, 1]", getattr(self, key))
        _require(self.momentum < 1, "momentum", "must be < 1", self.momentum)
        _require(self.label_smoothing < 1, "label_smoothing", "must be < 1", self.label_smoothing)
        if isinstance(self.val_size, float):
            _require(0 < self.val_size < 1, "val_size", "as a fraction must lie in (0, 1)",
                     self.val_size)
        else:
            _require(self.val_size >= 1, "val_size", "as a count must be >= 1", self.val_size)
        _require(self.strategy in STRATEGIES, "strategy",
                 f"must be one of {', '.join(STRATEGIES)}", self.strategy)
        _require(self.strategy != "progressive" or self.num_random >= 1, "num_random",
                 "must be >= 1 for strategy progressive", self.num_random)
        _require(self.device in DEVICES, "device", f"must be one of {', '.join(DEVICES)}",
                 self.device)

    @classmethod
    def keys(cls) -> list[str]:
        """The config keys, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]


def _require(ok: bool, key: str, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{key} {rule}, got {value!r}")
