"""Scoring subnets with inherited weights: BatchNorm recalibration, top-1, the cached evaluator.

BatchNorm statistics are not shared meaningfully between subnets, so every evaluation first
recalibrates them on training images (:func:`calibrate_bn`), then measures top-1 on the
validation split (:func:`accuracy`). Both work on any ``nn.Module``, typically an extracted
subnet.

:class:`SupernetEvaluator` does this for the archs a search asks about: it extracts each subnet,
recalibrates it on a fixed set of training images (the same for every arch, no augmentation),
measures top-1 and loss on the validation split (or on its first ``num_val_images`` images, in a
fixed order, for successive halving), adds parameters, FLOPs and any latency models' figures,
and caches the result in memory and in a JSONL file, keyed by checkpoint fingerprint, arch,
validation images and calibration images, so that no arch is evaluated twice, across runs too.
Under an initialised ``torch.distributed`` group the archs are sharded over the ranks.

This module does not time anything (see :mod:`nas.latency`) nor choose archs (see the searchers).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nas.candidate import FLOPS, LOSS, PARAMS, TOP1, Candidate, latency_key
from nas.checkpoint import fingerprint, load_checkpoint, supernet_from_checkpoint
from nas.data import Batches as TensorBatches
from nas.data import load_train_val
from nas.errors import CheckpointError, ConfigError
from nas.space import Arch
from nas.supernet import Supernet

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
T = TypeVar("T")
R = TypeVar("R")
CACHE_VERSION = 1
DEFAULT_CALIB_IMAGES = 2000  # as Once-for-All; also nas train's default


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
    modes = [(m, m.training) for m in model.modules()]
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
        for m, training in modes:
            m.training = training
    return seen


@torch.no_grad()
def accuracy(model: nn.Module, batches: Batches) -> tuple[float, float]:
    """Top-1 (a fraction in [0, 1]) and mean cross-entropy of ``model`` in eval mode.

    Counts accumulate on the model's device and are read once at the end (one synchronisation).
    The model's train/eval mode is restored afterwards.

    Raises:
        ValueError: ``batches`` is empty.
    """
    was_training = model.training
    model.eval()
    correct = loss_sum = None
    seen = 0
    try:
        for x, y in batches:
            logits = model(x)
            hits = (logits.argmax(1) == y).sum()
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            correct = hits if correct is None else correct + hits
            loss_sum = loss if loss_sum is None else loss_sum + loss
            seen += y.shape[0]
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("accuracy() got no batches")
    return int(correct) / seen, float(loss_sum) / seen


# ---------------------------------------------------------------------------------- sharding


def is_distributed() -> bool:
    """Whether this process is in an initialised ``torch.distributed`` group of several ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shard_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, sharded over the ranks of the ``torch.distributed`` group.

    Rank ``r`` of ``w`` computes ``items[r::w]``; the results are exchanged with
    ``all_gather_object`` and returned in the order of ``items`` on every rank. Every rank must
    call it with the same items. Without an initialised group (or with one rank) it is a plain
    loop. (With NCCL, set the CUDA device of each rank first, as torchrun scripts do.)
    """
    if not is_distributed():
        return [fn(x) for x in items]
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = [fn(x) for x in items[rank::world]]
    gathered: list[list[R] | None] = [None] * world
    dist.all_gather_object(gathered, mine)
    out: list[Any] = [None] * len(items)
    for r, results in enumerate(gathered):
        out[r::world] = results
    return out


def _union_over_ranks(items: list[str]) -> list[str]:
    """The union (first-seen order, rank 0 first) of every rank's ``items``."""
    if not is_distributed():
        return items
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return list(dict.fromkeys(x for part in gathered for x in part))


# ---------------------------------------------------------------------------------- the cache


class EvalCache:
    """Evaluation results in memory and, if ``path`` is given, in a JSONL file.

    A result is keyed by the checkpoint fingerprint and the evaluation settings of this cache
    (``settings``, e.g. calibration images and batch size, fixed per evaluator), then by arch
    string and number of validation images. Each line is ``{"v": 1, "checkpoint": FINGERPRINT,
    **settings, "arch": ARCH, "num_val_images": N, "metrics": {...}}``, appended with one
    ``write`` on a file opened for appending (so lines of concurrent ranks do not interleave) and
    synced to disk. Lines that do not parse (a run killed mid-write leaves at most one torn line)
    are skipped and counted in :attr:`skipped`; entries of other checkpoints or settings stay in
    the file and are ignored.

    Raises:
        CheckpointError: the file exists but cannot be read.
    """

    def __init__(self, path: str | Path | None, checkpoint: str, settings: dict[str, int] | None = None):
        self.path = Path(path) if path else None
        self.checkpoint, self.settings = checkpoint, dict(settings or {})
        self.entries: dict[tuple[str, int], dict[str, float]] = {}
        self.skipped = 0
        if self.path and self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_bytes().split(b"\n")
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read the evaluation cache ({exc})") from None
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = (rec["arch"], int(rec["num_val_images"]))
                mine = rec.get("v") == CACHE_VERSION and rec["checkpoint"] == self.checkpoint
                if mine and all(rec.get(k) == v for k, v in self.settings.items()):
                    self.entries[key] = {k: float(v) for k, v in rec["metrics"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                self.skipped += 1  # a line torn by a killed run; its arch is simply re-run

    def get(self, key: tuple[str, int]) -> dict[str, float] | None:
        """The metrics of ``(arch string, validation images)``, or None."""
        return self.entries.get(key)

    def put(self, key: tuple[str, int], metrics: dict[str, float], *, write: bool = True) -> None:
        """Stores a result; appends it to the file too when ``write``."""
        self.entries[key] = metrics
        if not (write and self.path):
            return
        arch, num_val = key
        line = json.dumps({"v": CACHE_VERSION, "checkpoint": self.checkpoint, **self.settings,
                           "arch": arch, "num_val_images": num_val, "metrics": metrics})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            torn = os.fstat(fd).st_size > 0 and not self._ends_with_newline()
            os.write(fd, (("\n" if torn else "") + line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


# ---------------------------------------------------------------------------------- evaluator


class SupernetEvaluator:
    """Scores archs of a supernet with inherited weights (see the module docstring).

    Args:
        supernet: the trained supernet.
        calib_data: the fixed calibration images (a ``nas.data.TensorData``), all used.
        val_data: the validation images, in the fixed order prefixes are taken from.
        fingerprint: identifies the weights in the cache (e.g. the checkpoint's file hash).
        device: where the subnets run; the supernet and the images are moved there.
        batch_size: images per forward pass (calibration and validation).
        cache_path: the JSONL cache file (``None``: memory only).
        latency_models: latency models whose figures are added to every result (not cached:
            they cache what is worth caching themselves).
        distributed: shard :meth:`evaluate` over the ``torch.distributed`` ranks when a group is
            initialised (every rank must then make the same calls).

    Raises:
        ConfigError: an empty calibration or validation set, a bad batch size, or two latency
            models with the same device label.
    """

    def __init__(self, supernet: Supernet, calib_data, val_data, *, fingerprint: str,
                 device: str | torch.device = "cpu", batch_size: int = 500,
                 cache_path: str | Path | None = None, latency_models: Sequence = (),
                 distributed: bool = True):
        if len(calib_data) == 0 or len(val_data) == 0:
            raise ConfigError(f"the evaluator needs calibration and validation images, got "
                              f"{len(calib_data)} and {len(val_data)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"eval batch size must be a positive integer, got {batch_size!r}")
        self.device = torch.device(device)
        self.supernet = supernet.to(self.device).eval()
        self.space = supernet.space
        self.calib_data, self.val_data = calib_data.to(self.device), val_data.to(self.device)
        self.batch_size = batch_size
        self.cache = EvalCache(cache_path, fingerprint,
                               {"calib_images": len(calib_data), "batch_size": batch_size})
        self.latency_models = list(latency_models)
        labels = [m.device for m in self.latency_models]
        for label in labels:
            if labels.count(label) > 1:
                raise ConfigError(f"two latency models are labelled {label!r} (metric "
                                  f"{latency_key(label)}); relabel one with SPEC@LABEL, e.g. "
                                  f"measured:cpu@{label}_measured")
        self.distributed = distributed
        self._prepared: dict[int, tuple[list, list]] = {}
        self.evaluated = 0  # archs actually run in this process (cache misses)

    @property
    def num_calib_images(self) -> int:
        return len(self.calib_data)

    @property
    def num_val_images(self) -> int:
        return len(self.val_data)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        calib_images: int | None = None, batch_size: int = 500,
                        cache_path: str | Path | None = None, data_root: str | None = None,
                        latency_models: Sequence = (), distributed: bool = True,
                        checkpoint: dict | None = None) -> "SupernetEvaluator":
        """Builds the evaluator of a checkpoint, rebuilding its recorded train/val split.

        The calibration images are the first ``calib_images`` (default: 2,000, or all training
        images if fewer) of a permutation of the training images the supernet was trained on
        (seeded with the split's seed); the validation images
        are the held-out split in a permutation seeded likewise (so any prefix is a random
        sample). Other arguments: see the class.

        Args:
            path: the checkpoint file (also hashed for the cache key).
            checkpoint: the file's contents if already loaded with
                :func:`nas.checkpoint.load_checkpoint` (saves a second read).

        Raises:
            CheckpointError: a missing or corrupt checkpoint, or one without a ``data`` entry.
            DataError: the data set is missing or differs from the recorded split.
            ConfigError: ``calib_images`` is not in ``[1, training images]``.
        """
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(path)
        data = ckpt.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("split"), dict):
            raise CheckpointError(f"{path}: the checkpoint has no data split record ('data' entry)"
                                  "; cannot rebuild its validation images")
        train, val = load_train_val(data["split"], root=data_root)
        if data.get("train_subset"):
            train = train.subset(range(min(int(data["train_subset"]), len(train))))
        if calib_images is None:
            calib_images = min(DEFAULT_CALIB_IMAGES, len(train))
        if isinstance(calib_images, bool) or not isinstance(calib_images, int) or not (
                1 <= calib_images <= len(train)):
            raise ConfigError(f"calib_images must be an integer in [1, {len(train)}] (the "
                              f"training images), got {calib_images!r}")
        g = torch.Generator().manual_seed(int(data["split"]["seed"]))
        calib = train.subset(torch.randperm(len(train), generator=g)[:calib_images])
        val = val.subset(torch.randperm(len(val), generator=g))
        return cls(supernet_from_checkpoint(ckpt), calib, val, fingerprint=fingerprint(path),
                   device=device, batch_size=batch_size, cache_path=cache_path,
                   latency_models=latency_models, distributed=distributed)

    # ------------------------------------------------------------------ data

    def _batches(self, resolution: int) -> tuple[list, list]:
        """Calibration and validation batches at ``resolution``, made once, kept on the device."""
        if resolution not in self._prepared:
            self._prepared[resolution] = tuple(
                list(TensorBatches(data, self.batch_size, resolution=resolution))
                for data in (self.calib_data, self.val_data))
        return self._prepared[resolution]

    def _val_prefix(self, resolution: int, n: int) -> list:
        _, val = self._batches(resolution)
        out, left = [], n
        for x, y in val:
            if left <= 0:
                break
            out.append((x[:left], y[:left]))
            left -= len(y)
        return out

    def _resolve_num_val(self, num_val_images: int | None) -> int:
        if num_val_images is None:
            return self.num_val_images
        if isinstance(num_val_images, bool) or not isinstance(num_val_images, int) or num_val_images < 1:
            raise ConfigError(f"num_val_images must be a positive integer or None, got "
                              f"{num_val_images!r}")
        return min(num_val_images, self.num_val_images)

    # ------------------------------------------------------------------ evaluation

    def _run(self, arch_text: str, num_val: int) -> dict[str, float]:
        """Evaluates one arch (no cache): extract, recalibrate, score, count."""
        arch = self.space.parse(arch_text)
        calib, _ = self._batches(arch.resolution)
        with torch.device(self.device):  # build the subnet's layers on the device directly
            subnet = self.supernet.extract(arch)
        calibrate_bn(subnet, calib)
        top1, loss = accuracy(subnet, self._val_prefix(arch.resolution, num_val))
        model = {"in_channels": self.supernet.in_channels, "num_classes": self.supernet.num_classes}
        self.evaluated += 1
        return {TOP1: top1, LOSS: loss, PARAMS: float(self.space.params(arch, **model)),
                FLOPS: float(self.space.flops(arch, **model))}

    def evaluate(self, archs: Sequence[Arch], num_val_images: int | None = None) -> list[dict[str, float]]:
        """Metric dicts (``top1``, ``loss``, ``params``, ``flops``, ``latency_ms.*``) of ``archs``,
        in order; cached results are reused and new ones cached.

        Args:
            archs: the archs (duplicates are evaluated once).
            num_val_images: score on the first N validation images only (None: all).

        Raises:
            ArchError: an arch that is not of the supernet's space.
        """
        for arch in archs:
            self.space.check(arch)
        num_val = self._resolve_num_val(num_val_images)
        texts = [str(a) for a in archs]
        todo = [t for t in dict.fromkeys(texts) if self.cache.get((t, num_val)) is None]
        if self.distributed:
            todo = _union_over_ranks(todo)
            results = shard_map(lambda t: self._cached_or_run(t, num_val), todo)
        else:
            results = [self._cached_or_run(t, num_val) for t in todo]
        for text, metrics in zip(todo, results):  # the other ranks' results, memory only
            if self.cache.get((text, num_val)) is None:
                self.cache.put((text, num_val), metrics, write=False)
        out = []
        for arch, text in zip(archs, texts):
            metrics = dict(self.cache.get((text, num_val)))
            for model in self.latency_models:
                metrics[latency_key(model.device)] = float(model.latency_ms(arch))
            out.append(metrics)
        return out

    def _cached_or_run(self, text: str, num_val: int) -> dict[str, float]:
        key = (text, num_val)
        metrics = self.cache.get(key)
        if metrics is None:
            metrics = self._run(text, num_val)
            self.cache.put(key, metrics)
        return metrics

    def candidates(self, archs: Sequence[Arch], num_val_images: int | None = None) -> list[Candidate]:
        """:meth:`evaluate` as :class:`~nas.candidate.Candidate` objects."""
        return [Candidate(a, m) for a, m in zip(archs, self.evaluate(archs, num_val_images))]

    def __call__(self, arch: Arch, num_val_images: int | None = None) -> Candidate:
        """The :class:`~nas.candidate.Candidate` of one arch."""
        return self.candidates([arch], num_val_images)[0]
