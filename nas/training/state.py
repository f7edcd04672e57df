"""What a training run writes in its run directory, and how a run is resumed from it.

The run directory (``--out``) holds:

- ``config.yaml``: the resolved :class:`TrainConfig`, written atomically at the start;
- ``last.pt``: the latest checkpoint, written atomically at every epoch end and every
  ``checkpoint_every`` steps, so a killed run loses little;
- ``best.pt``: the checkpoint of the epoch end with the best validation top-1 of the largest
  subnet (BN recalibrated);
- ``metrics.jsonl``: one JSON object per ``log_every`` steps and per epoch.

A checkpoint (see :func:`checkpoint_payload`) holds only tensors and plain Python data, so it
loads with ``torch.load(weights_only=True)``: ``space``, ``model``, ``state_dict``, ``config``,
``data``, ``step``, ``epoch``, ``steps_per_epoch``, ``optimizer``, ``scheduler``, ``rng``,
``metrics``, ``world_size`` (:data:`RESUME_KEYS`), plus ``format`` and ``format_version``
(stamped by :func:`nas.checkpoint.save_checkpoint`).

This module does not decide when to save; see :mod:`nas.training.loop`.
"""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import torch
import yaml

from nas.checkpoint import atomic_write_text, load_checkpoint
from nas.config import from_mapping, to_mapping
from nas.errors import CheckpointError, ConfigError
from nas.space import SearchSpace
from nas.training.config import RESUMABLE_KEYS, TrainConfig

CONFIG_FILE, LAST, BEST, METRICS = "config.yaml", "last.pt", "best.pt", "metrics.jsonl"
# What a checkpoint written by training holds (besides format and format_version).
RESUME_KEYS = frozenset({"space", "model", "state_dict", "config", "data", "step", "epoch",
                         "steps_per_epoch", "optimizer", "scheduler", "rng", "metrics",
                         "world_size"})


def check_run_dir(out: Path, *, resume: bool) -> None:
    """Refuses to overwrite a run, or to resume one that is not there.

    Raises:
        ConfigError: ``out`` holds files and ``resume`` is false, or ``resume`` is true and
            ``out/last.pt`` is missing.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a run directory")
    if resume:
        if not (out / LAST).is_file():
            raise ConfigError(f"--resume: {out / LAST} not found; there is no run to resume in "
                              f"{out} (drop --resume to start one)")
        return
    if out.is_dir() and any(out.iterdir()):
        held = ", ".join(sorted(p.name for p in out.iterdir())[:4])
        raise ConfigError(f"--out {out} already holds files ({held}); pass --resume to continue "
                          f"the run, or choose another --out (nothing was overwritten)")


def write_config(out: Path, config: TrainConfig) -> None:
    """Writes the resolved config to ``out/config.yaml`` atomically."""
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(to_mapping(config), sort_keys=False))


def resumed_config(saved: dict[str, Any], given: dict[str, Any], source: str) -> TrainConfig:
    """The config of a resumed run: the saved one, where the keys given again must agree
    except those in :data:`RESUMABLE_KEYS` (checkpointing, logging, device), which are taken.

    Args:
        saved: the ``config`` mapping of the checkpoint.
        given: the keys set explicitly for this invocation (recipe, flags, ``--set``).
        source: the checkpoint's path, for messages.

    Raises:
        ConfigError: a given key differs from the saved value and would change the result.
    """
    config = from_mapping(TrainConfig, saved, source=f"{source}: config")
    merged = to_mapping(config)
    for key, value in given.items():
        mine = to_mapping(from_mapping(TrainConfig, {key: value}, source="resume"))[key]
        if mine == merged[key]:
            continue
        if key not in RESUMABLE_KEYS:
            raise ConfigError(f"--resume: {key}={mine!r} differs from the run's {key}="
                              f"{merged[key]!r} recorded in {source}; a resumed run keeps its "
                              f"config (only {', '.join(sorted(RESUMABLE_KEYS))} may change)")
        merged[key] = mine
    return from_mapping(TrainConfig, merged, source=f"{source}: config")


def load_resume_checkpoint(out: Path, space: SearchSpace | None) -> dict[str, Any]:
    """Loads ``out/last.pt`` and checks it was trained on ``space`` (when given).

    Raises:
        CheckpointError: missing, corrupt or foreign file, or another search space.
    """
    ckpt = load_checkpoint(out / LAST)
    missing = sorted(RESUME_KEYS - set(ckpt))
    if missing:
        raise CheckpointError(f"{out / LAST}: not a training checkpoint (it lacks "
                              f"{', '.join(missing)}); cannot resume from it")
    saved = SearchSpace.from_config(ckpt["space"], source=f"{out / LAST}: space")
    if space is not None and saved != space:
        raise CheckpointError(f"--resume: {out / LAST} was trained on space {saved.name!r}, "
                              f"which differs from --space {space.source or space.name}")
    return ckpt


def rng_state(device: torch.device) -> dict[str, Any]:
    """The torch and Python RNG states, as tensors and lists (loadable with weights_only)."""
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restores what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def checkpoint_payload(*, model, optimizer, schedule, config: TrainConfig, data_meta: dict,
                       step: int, steps_per_epoch: int, metrics: dict, world_size: int,
                       device: torch.device) -> dict[str, Any]:
    """Everything needed to rebuild the supernet and resume its training."""
    return {
        "space": model.space.to_config(),
        "model": {"num_classes": model.num_classes, "in_channels": model.in_channels},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": to_mapping(config),
        "data": data_meta,
        "step": step,
        "epoch": step // steps_per_epoch,  # completed epochs
        "steps_per_epoch": steps_per_epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "rng": rng_state(device),
        "metrics": dict(metrics),
        "world_size": world_size,
    }


def data_meta(info, split: dict, train_subset: int) -> dict[str, Any]:
    """The ``data`` entry of a checkpoint: name, DatasetInfo as a dict, the split record."""
    info_dict = {k: list(v) if isinstance(v, tuple) else v
                 for k, v in dataclasses.asdict(info).items()}
    return {"name": info.name, "info": info_dict, "split": dict(split),
            "train_subset": train_subset}


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (rank 0 only).

    Args:
        path: the file.
        resume_step: when resuming, drop the lines logged after this step (they belong to the
            part of the killed run that is trained again).
        enabled: false on ranks other than 0.
    """

    def __init__(self, path: Path, *, resume_step: int | None = None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.is_file():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and _json_step(line) <= resume_step]
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _json_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a line cut short by a kill: dropped
