"""Latency models that need no lookup table: measured, per-arch table, FLOPs proxy.

- :class:`MeasuredLatency` times the extracted subnet itself on a device of this machine.
- :class:`TableLatency` looks an arch up in a CSV table (e.g. NAS-Bench-201's ``lat_ms_*``).
- :class:`FlopsLatency` is a *proxy*: FLOPs divided by a nominal throughput, for when no device
  is at hand. It ranks archs by compute, not by real latency.

The lookup-table model is in :mod:`nas.latency.lut`.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

import torch

from nas.errors import ArchError, CheckpointError, ConfigError
from nas.latency import target
from nas.latency.base import LatencyModel, default_label, resolve_device
from nas.space import Arch, SearchSpace
from nas.supernet import build_subnet

# The FLOPs proxy's nominal throughput: 10 GFLOP/s, roughly what eager PyTorch reaches on one
# or two CPU cores for these small convolutions. It only sets the unit; rankings do not use it.
PROXY_GFLOPS = 10.0


class MeasuredLatency(LatencyModel):
    """Times the extracted subnet of an arch (``build_subnet``, eval mode, inference mode).

    After ``warmup`` calls, the median (or ``statistic="min"``) of ``repeats`` timings (each long
    enough to last ``min_time_ms``), with CUDA/MPS synchronised before the clock is read, on the
    wall clock (or ``clock="thread"``: CPU time, one thread); see
    :func:`nas.latency.target.time_calls`. Results are cached per arch.

    Args:
        space: the search space.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        batch_size: images per forward pass.
        threads: torch intra-op threads while timing (default: the current setting).
        in_channels, num_classes: the model's input channels and classes.
        name: device label (default ``cpu``, ``cuda``...; with ``_bN`` for a batch N > 1).

    Raises:
        ConfigError: an unknown or unavailable device, or a bad batch size.
    """

    kind = "measured"

    def __init__(self, space: SearchSpace, *, device: str = "cpu", batch_size: int = 1,
                 threads: int | None = None, in_channels: int = 3, num_classes: int = 10,
                 name: str | None = None, warmup: int = 3, repeats: int = 7,
                 min_time_ms: float = 5.0, statistic: str = "median", clock: str = "wall"):
        self.torch_device = resolve_device(device)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
        self.space, self.batch_size, self.threads = space, batch_size, threads
        self.in_channels, self.num_classes = in_channels, num_classes
        self.device = name or default_label(self.torch_device, batch_size)
        self.timing = {"warmup": warmup, "repeats": repeats, "min_time_ms": min_time_ms,
                       "statistic": statistic, "clock": clock}
        self._cache: dict[Arch, float] = {}

    def _runner(self, arch: Arch):
        with torch.random.fork_rng(devices=[]):  # random weights without moving the caller's RNG
            net = build_subnet(self.space, arch, in_channels=self.in_channels,
                               num_classes=self.num_classes).to(self.torch_device).eval()
            x = torch.randn(self.batch_size, self.in_channels, arch.resolution,
                            arch.resolution).to(self.torch_device)
        return lambda: net(x)

    def latencies_ms(self, archs: list[Arch]) -> list[float]:
        """Times the archs not yet cached, interleaved (one round times each once)."""
        todo = list(dict.fromkeys(a for a in archs if a not in self._cache))
        if todo:
            runners = [self._runner(a) for a in todo]
            try:
                with target.num_threads(self.threads), torch.inference_mode():
                    times = target.time_calls(runners, self.torch_device, **self.timing)
            except target.ProfileError as exc:
                raise ConfigError(str(exc)) from None
            self._cache.update(zip(todo, times))
        return [self._cache[a] for a in archs]

    def latency_ms(self, arch: Arch) -> float:
        return self.latencies_ms([arch])[0]


class TableLatency(LatencyModel):
    """Per-arch latencies read from a CSV table (``.csv`` or ``.csv.gz``).

    The table has an ``arch`` column of arch strings of the space (for NAS-Bench-201, the cell
    strings) and a column of milliseconds. The device label is the column name without a
    ``lat_ms_`` prefix (``lat_ms_pixel2`` -> ``pixel2``).

    Raises:
        CheckpointError: a missing or malformed file, a missing column, or arch strings that are
            not of the space.
    """

    kind = "table"
    cheap = True

    def __init__(self, space: SearchSpace, path: str | Path, column: str, *,
                 name: str | None = None):
        self.space, self.path, self.column = space, Path(path), column
        self.device = name or column.removeprefix("lat_ms_")
        self.table = self._read()

    def _read(self) -> dict[str, float]:
        path = self.path
        try:
            raw = path.read_bytes()
            text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
        except FileNotFoundError:
            raise CheckpointError(f"{path}: latency table not found") from None
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable latency table ({exc})") from None
        reader = csv.DictReader(io.StringIO(text))
        columns = reader.fieldnames or []
        for needed in ("arch", self.column):
            if needed not in columns:
                raise CheckpointError(f"{path}: no column {needed!r}; columns: "
                                      f"{', '.join(columns) or 'none'}")
        table = {}
        for line, row in enumerate(reader, start=2):
            try:
                value = float(row[self.column])
                arch = self.space.parse(row["arch"])
            except ValueError as exc:  # ArchError is a ValueError too
                raise CheckpointError(f"{path} line {line}: {exc}") from None
            if not math.isnan(value):
                table[str(arch)] = value
        return table

    def latency_ms(self, arch: Arch) -> float:
        self.space.check(arch)
        try:
            return self.table[str(arch)]
        except KeyError:
            raise ArchError(f"arch {arch} has no {self.column} value in {self.path}") from None


class FlopsLatency(LatencyModel):
    """A FLOPs proxy, NOT a latency: ``FLOPs x batch / (PROXY_GFLOPS x 1e9)`` in milliseconds.

    For when no device is at hand. It ignores memory traffic, parallelism and per-layer overhead,
    so it ranks archs by compute only; its device label is ``flops``.
    """

    kind = "flops"
    cheap = True

    def __init__(self, space: SearchSpace, *, in_channels: int = 3, num_classes: int = 10,
                 batch_size: int = 1, gflops: float = PROXY_GFLOPS):
        self.space, self.in_channels, self.num_classes = space, in_channels, num_classes
        self.batch_size, self.gflops = batch_size, gflops
        self.device = "flops"

    def latency_ms(self, arch: Arch) -> float:
        self.space.check(arch)
        flops = self.space.flops(arch, in_channels=self.in_channels, num_classes=self.num_classes)
        return flops * self.batch_size / (self.gflops * 1e9) * 1e3
