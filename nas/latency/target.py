#!/usr/bin/env python3
"""Device-side latency profiler: needs torch and the Python standard library, nothing else.

This file runs where the framework is not installed (a phone board, a Jetson, a server): copy it
(it is also ``scripts/profile_device.py``) and a *layer list* written on a development machine by
``nas profile --space SPACE.yaml --export-layers LAYERS.json``, then on the target::

    python profile_device.py LAYERS.json --device cuda --batch-size 1 --out PROFILE.json

The framework runs the same code in-process for ``nas profile --out``, so both write the same
profile file (its schema is documented in :mod:`nas.latency`). It

1. builds every entry of the list (a layer of the walk, or an elementwise op of a cell's node
   sums) as plain ``torch.nn`` modules, to be timed on a random input of its shape;
2. builds the listed whole networks: the *calibration* networks fit the constants
   ``latency = intercept + scale * sum(entries) + per_item * items`` (least squares on the
   relative error), which absorb what summing isolated layers misses (Python dispatch between
   layers, cache effects); the *validation* networks, if any, never enter the fit and give the
   table's error: MAPE, the share within +-10 % and Kendall's tau;
3. times entries and networks together in the same interleaved rounds, so that a change of load
   on the machine shifts both alike.

Timing: eval mode under ``torch.inference_mode``, a fixed thread count, ``warmup`` calls, then
``repeats`` rounds that time every item once each (interleaved, so that a load change on the
machine hits all items alike); each time is the mean of enough back-to-back calls to last at
least ``min_time_ms``, and the reported figure is the median over rounds (or, with
``statistic="min"``, the minimum). CUDA and MPS are synchronised before the clock is read.
Python's garbage collector is paused while timing. The clock is wall time; on a CPU shared with
other work, ``clock="thread"`` (one thread only) reads this thread's CPU time instead, which
other processes do not inflate.

Layer list schema (JSON)::

    {"format": "ofa-nas-layer-list", "version": 1,
     "space": {"name": str, "config": {...}},          # the search space (its YAML mapping)
     "model": {"in_channels": int, "num_classes": int},
     "layers": {KEY: {"input": [C, H, W], "module": MODULE}, ...},
     "networks": [{"arch": str, "role": "calibrate" | "validate", "input": [C, H, W],
                   "layers": [KEY, ...],                # the arch's entries, with repeats
                   "module": MODULE}, ...]}             # the whole network, layers as refs

where MODULE is one of ``{"type": "conv2d", "in", "out", "kernel", "stride", "padding",
"bias"}``, ``{"type": "batchnorm2d", "features", "eps"}``, ``{"type": "linear", "in", "out"}``,
``{"type": "avgpool2d", "kernel", "stride", "padding", "count_include_pad"}``,
``{"type": "adaptive_avgpool2d", "size"}``, ``relu``, ``flatten``, ``identity``, ``node_add``
(``x + other``, one more edge into a cell node) and ``node_zeros`` (``zeros_like(x)``, a node
with only zero edges), these just ``{"type": ...}``, ``{"type": "sequential", "children": [MODULE, ...]}``,
``{"type": "resblock", "conv_a": MODULE, "conv_b": MODULE, "shortcut": MODULE}`` (``shortcut(x) +
conv_b(conv_a(x))``), ``{"type": "cell", "nodes": N, "edges": [[src, dst, MODULE], ...]}`` (node
``j`` sums its incoming edges, zeros if none; the output is the last node) and
``{"type": "ref", "key": KEY}`` (the layer ``KEY`` of ``layers``).

What this file does not do: walk search spaces or know op names (the layer list says what to
build), or decide which device label a profile gets beyond ``--name``.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

LAYERS_FORMAT = "ofa-nas-layer-list"
LAYERS_VERSION = 1
PROFILE_FORMAT = "ofa-nas-latency-profile"
PROFILE_VERSION = 1
FIT_FEATURES = ("intercept", "lut_sum_ms", "items")
DEVICES = "cpu, cuda, cuda:N or mps"
STATISTICS = {"median": statistics.median, "min": min}
# "wall": elapsed time, what a user waits for. "thread": CPU time of the calling thread, which
# other processes preempting this one do not inflate; valid for one CPU thread only (the work of
# other intra-op threads would be missed), for profiling on a CPU shared with other work.
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


class ProfileError(ValueError):
    """An input the profiler cannot use (bad device, malformed layer list); one clear line."""


# ---------------------------------------------------------------------------------- modules


class Cell(nn.Module):
    """A cell DAG: node ``j`` sums its incoming edges (zeros if none); returns the last node.

    The same computation (and state-dict layout) as ``nas.supernet.Cell``.
    """

    def __init__(self, num_nodes: int, edges: list[tuple[int, int, nn.Module]]):
        super().__init__()
        self.num_nodes = num_nodes
        self.wiring = [(src, dst) for src, dst, _ in edges]
        self.edges = nn.ModuleList(module for _, _, module in edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        nodes = [x]
        k = 0
        for dst in range(1, self.num_nodes):
            acc = None
            while k < len(self.wiring) and self.wiring[k][1] == dst:
                y = self.edges[k](nodes[self.wiring[k][0]])
                acc = y if acc is None else acc + y
                k += 1
            nodes.append(torch.zeros_like(x) if acc is None else acc)
        return nodes[-1]


class ResBlock(nn.Module):
    """``shortcut(x) + conv_b(conv_a(x))``; the layout of ``nas.dynamic.ResBlock``."""

    def __init__(self, conv_a: nn.Module, conv_b: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.conv_a, self.conv_b, self.shortcut = conv_a, conv_b, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NodeAdd(nn.Module):
    """A cell node's sum of one more incoming edge: ``x + other`` (``other`` a tensor of x's
    shape, made on first use)."""

    def __init__(self):
        super().__init__()
        self.other: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.other is None or self.other.shape != x.shape or self.other.device != x.device:
            self.other = torch.randn_like(x)
        return x + self.other


class NodeZeros(nn.Module):
    """A cell node whose incoming edges are all the zero op: ``zeros_like(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


_LEAVES: dict[str, Callable[[dict], nn.Module]] = {
    "conv2d": lambda s: nn.Conv2d(s["in"], s["out"], s["kernel"], s["stride"], s["padding"],
                                  bias=s["bias"]),
    "batchnorm2d": lambda s: nn.BatchNorm2d(s["features"], eps=s["eps"]),
    "linear": lambda s: nn.Linear(s["in"], s["out"]),
    "avgpool2d": lambda s: nn.AvgPool2d(s["kernel"], s["stride"], s["padding"],
                                        count_include_pad=s["count_include_pad"]),
    "adaptive_avgpool2d": lambda s: nn.AdaptiveAvgPool2d(s["size"]),
    "relu": lambda s: nn.ReLU(),
    "flatten": lambda s: nn.Flatten(),
    "identity": lambda s: nn.Identity(),
    "node_add": lambda s: NodeAdd(),
    "node_zeros": lambda s: NodeZeros(),
}


def build_module(spec: dict, layers: dict[str, dict] | None = None) -> nn.Module:
    """Builds the plain module a MODULE spec describes (see the module docstring).

    Raises:
        ProfileError: an unknown type, a missing field or an unknown ref.
    """
    try:
        kind = spec["type"]
        if kind in _LEAVES:
            return _LEAVES[kind](spec)
        if kind == "sequential":
            return nn.Sequential(*[build_module(c, layers) for c in spec["children"]])
        if kind == "resblock":
            return ResBlock(*(build_module(spec[k], layers) for k in ("conv_a", "conv_b", "shortcut")))
        if kind == "cell":
            return Cell(spec["nodes"], [(s, d, build_module(m, layers)) for s, d, m in spec["edges"]])
        if kind == "ref":
            if layers is None or spec["key"] not in layers:
                raise ProfileError(f"module ref {spec['key']!r} is not in the layer list")
            return build_module(layers[spec["key"]]["module"], layers)
    except (KeyError, TypeError) as exc:
        raise ProfileError(f"malformed module spec {json.dumps(spec)[:200]}: missing or bad "
                           f"field {exc}") from None
    raise ProfileError(f"unknown module type {kind!r}; known: "
                       f"{', '.join([*_LEAVES, 'sequential', 'resblock', 'cell', 'ref'])}")


# ---------------------------------------------------------------------------------- devices


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a torch device that exists here.

    Raises:
        ProfileError: an unknown device name or one this machine does not have.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ProfileError(f"unknown device {name!r}; choose {DEVICES}") from None
    if device.type not in ("cpu", "cuda", "mps") or (device.type != "cuda" and device.index):
        raise ProfileError(f"unknown device {name!r}; choose {DEVICES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ProfileError(f"device {name!r} is not available here (torch.cuda.is_available()"
                               " is False); choose cpu")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ProfileError(f"device {name!r} does not exist: this machine has "
                               f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ProfileError(f"device {name!r} is not available here (no Apple MPS); choose cpu")
    return device


def device_description(device: torch.device) -> str:
    """A human-readable name of the hardware behind ``device``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    name = platform.processor() or platform.machine()
    try:  # Linux: the CPU model is more telling than the architecture
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith(("model name", "Model", "Hardware"))), name)
    except OSError:
        pass
    return name


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


@contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Sets torch's intra-op thread count for the block, restoring it afterwards."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------- timing


_ALLOCATOR_SET = False


def steady_allocator() -> None:
    """Makes glibc's malloc behave as in a long-running process, whatever ran before.

    glibc serves blocks above its mmap threshold (128 KiB at start, raised only as such blocks
    are freed) with fresh mmaps, and the page faults of those cost more than the computation at
    a batch of 64 (the same subnet timed 30 ms early in a process and 11 ms after other work).
    A fixed threshold of 256 MiB keeps activations on the heap, so every timing sees the steady
    state. Once per process; no-op off Linux/glibc.
    """
    global _ALLOCATOR_SET
    if _ALLOCATOR_SET or not sys.platform.startswith("linux"):
        return
    _ALLOCATOR_SET = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD (fixing it also stops its adjustment)
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD: keep freed memory for reuse
    except (OSError, AttributeError):
        pass


def _timed(fn: Callable[[], Any], number: int, sync: Callable[[], None],
           clock: Callable[[], float] = time.perf_counter) -> float:
    sync()
    start = clock()
    for _ in range(number):
        fn()
    sync()
    return clock() - start


def time_calls(fns: Sequence[Callable[[], Any]], device: torch.device, *, warmup: int = 3,
               repeats: int = 7, min_time_ms: float = 5.0, statistic: str = "median",
               clock: str = "wall", progress: Callable[[int], None] | None = None) -> list[float]:
    """Milliseconds per call of each function (median over rounds), measured interleaved.

    Args:
        fns: zero-argument callables (e.g. ``lambda: module(x)``).
        device: where they run (for synchronisation).
        warmup: untimed calls of each function first.
        repeats: rounds; each round times every function once.
        min_time_ms: each timing runs a function back to back until it lasts at least this long
            (calls per timing are fixed per function after the warm-up).
        statistic: ``median`` over the rounds, or ``min`` (robust to other processes that
            preempt this one now and then: interference only ever adds time).
        clock: ``wall`` (elapsed time), or ``thread`` (CPU time of this thread: immune to other
            processes on a shared CPU; needs the CPU device and one torch thread).
        progress: called with the number of timings just done (for a progress bar); the total is
            ``len(fns) * (repeats + 1)``.

    Returns:
        One figure per function, in milliseconds per call.
    """
    if repeats < 1 or warmup < 0:
        raise ProfileError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    if statistic not in STATISTICS:
        raise ProfileError(f"unknown statistic {statistic!r}; choose {' or '.join(STATISTICS)}")
    if clock not in CLOCKS:
        raise ProfileError(f"unknown clock {clock!r}; choose {' or '.join(CLOCKS)}")
    if clock == "thread" and (device.type != "cpu" or torch.get_num_threads() != 1):
        raise ProfileError(f"the thread clock measures one CPU thread; use it with the cpu device "
                           f"and 1 thread (got {device}, {torch.get_num_threads()} threads)")
    tick = CLOCKS[clock]
    steady_allocator()
    sync = synchronizer(device)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        numbers = []
        for fn in fns:  # warm-up, then calls per timing from one (or a few) trial timings
            for _ in range(warmup):
                fn()
            number, elapsed = 1, _timed(fn, 1, sync, tick)
            while elapsed * 1e3 < min_time_ms and number < 100_000:
                number = min(100_000, max(2 * number, math.ceil(
                    number * 1.2 * min_time_ms / max(elapsed * 1e3, 1e-6))))
                elapsed = _timed(fn, number, sync, tick)
            numbers.append(number)
            if progress:
                progress(1)
        samples: list[list[float]] = [[] for _ in fns]
        for _ in range(repeats):
            for i, fn in enumerate(fns):
                samples[i].append(_timed(fn, numbers[i], sync, tick) / numbers[i])
                if progress:
                    progress(1)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [STATISTICS[statistic](s) * 1e3 for s in samples]


def _runner(module: nn.Module, shape: Sequence[int], batch_size: int, device: torch.device,
            dtype: torch.dtype) -> Callable[[], Any]:
    module = module.to(device=device, dtype=dtype).eval()
    x = torch.randn(batch_size, *shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    return lambda: module(x)


# ---------------------------------------------------------------------------------- statistics


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b rank correlation of two equally long sequences (ties handled).

    Returns NaN when fewer than two pairs differ in ``x`` or in ``y``.
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs sequences of equal length, got {len(x)} and {len(y)}")
    score = pairs_x = pairs_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            score += dx * dy
            pairs_x += dx != 0
            pairs_y += dy != 0
    if pairs_x == 0 or pairs_y == 0:
        return math.nan
    return score / math.sqrt(pairs_x * pairs_y)


def fidelity(measured: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """How well ``predicted`` latencies match ``measured`` ones.

    Returns:
        ``mape`` (mean absolute percentage error, in %), ``within_10pct`` (share of predictions
        within +-10 % of the measurement, a fraction), ``max_ape`` (worst error, %),
        ``kendall_tau`` and ``num_archs``.
    """
    if not measured or len(measured) != len(predicted):
        raise ValueError("fidelity needs equally long, non-empty sequences")
    errors = [abs(p - m) / m * 100 for m, p in zip(measured, predicted)]
    return {"num_archs": len(errors), "mape": statistics.fmean(errors),
            "within_10pct": sum(e <= 10 for e in errors) / len(errors), "max_ape": max(errors),
            "kendall_tau": kendall_tau([float(m) for m in measured], [float(p) for p in predicted])}


def fit_constants(features: Sequence[Sequence[float]], measured: Sequence[float]) -> list[float]:
    """Least squares on the relative error: coefficients ``c`` minimising
    ``sum(((features[i] . c) - measured[i]) / measured[i])^2`` over the calibration networks.

    ``features[i]`` is ``(1, lut_sum_ms, items)``. With fewer than 6 networks only the intercept
    and the scale are fitted (``per_item = 0``); with one, only the intercept (``scale = 1``).
    """
    n = len(measured)
    if n == 0:
        return [0.0, 1.0, 0.0]
    if n == 1:
        return [measured[0] - features[0][1], 1.0, 0.0]
    cols = 3 if n >= 6 else 2
    a = torch.tensor([[f[j] / m for j in range(cols)] for f, m in zip(features, measured)],
                     dtype=torch.float64)
    b = torch.ones(n, 1, dtype=torch.float64)
    coef = torch.linalg.lstsq(a, b, driver="gelsd").solution.flatten().tolist()
    return coef + [0.0] * (3 - cols)


def predict(coef: Sequence[float], lut_sum_ms: float, items: int) -> float:
    """The table's prediction from the fitted constants (never below 1 % of the entry sum)."""
    value = coef[0] + coef[1] * lut_sum_ms + coef[2] * items
    return max(value, 0.01 * lut_sum_ms, 1e-6)


# ---------------------------------------------------------------------------------- the profile


def check_layer_list(layer_list: Any) -> None:
    """Raises ProfileError unless ``layer_list`` looks like a layer list of this version."""
    if not isinstance(layer_list, dict) or layer_list.get("format") != LAYERS_FORMAT:
        raise ProfileError(f"not a layer list (expected format {LAYERS_FORMAT!r}); write one with "
                           "`nas profile --space SPACE.yaml --export-layers FILE`")
    if layer_list.get("version") != LAYERS_VERSION:
        raise ProfileError(f"layer list version {layer_list.get('version')!r} is not supported "
                           f"(this profiler reads {LAYERS_VERSION})")
    for key in ("space", "model", "layers", "networks"):
        if key not in layer_list:
            raise ProfileError(f"layer list lacks {key!r}")
    for i, net in enumerate(layer_list["networks"]):
        if not isinstance(net, dict) or net.get("role") not in ("calibrate", "validate") or any(
                k not in net for k in ("arch", "input", "layers", "module")):
            raise ProfileError(f"layer list network {i} needs arch, role (calibrate or validate), "
                               "input, layers and module")
        missing = [k for k in net["layers"] if k not in layer_list["layers"]]
        if missing:
            raise ProfileError(f"layer list network {i} uses layers not in the list: {missing[:3]}")


def profile_layer_list(layer_list: dict, *, device: str = "cpu", batch_size: int = 1,
                       threads: int | None = None, name: str | None = None, warmup: int = 3,
                       repeats: int = 7, min_time_ms: float = 5.0, statistic: str = "median",
                       clock: str = "wall",
                       progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Times a layer list on ``device`` and returns the profile (a JSON-ready dict).

    Args:
        layer_list: a parsed layer list (see the module docstring).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        batch_size: images per forward pass.
        threads: torch intra-op threads (default: torch's current setting).
        name: the device label recorded in the profile (metric key ``latency_ms.NAME``); default
            the device type, with ``_bBATCH`` appended when the batch is not 1.
        warmup, repeats, min_time_ms, statistic, clock: see :func:`time_calls`.
        progress: called as ``progress(done, total, "timing")`` after each timing.

    Raises:
        ProfileError: a malformed layer list or an unusable device.
    """
    check_layer_list(layer_list)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ProfileError(f"batch size must be a positive integer, got {batch_size!r}")
    dev = resolve_device(device)
    dtype = torch.float32
    layers = layer_list["layers"]
    calib = [n for n in layer_list["networks"] if n["role"] == "calibrate"]
    valid = [n for n in layer_list["networks"] if n["role"] == "validate"]
    keys = sorted(layers)
    total = (len(keys) + len(calib) + len(valid)) * (repeats + 1)
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, total, "timing")

    nets = calib + valid
    with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's RNG left alone
        torch.manual_seed(0)
        layer_runs = [_runner(build_module(layers[k]["module"]), layers[k]["input"], batch_size,
                              dev, dtype) for k in keys]
        net_runs = [_runner(build_module(n["module"], layers), n["input"], batch_size, dev, dtype)
                    for n in nets]
    timing = {"warmup": warmup, "repeats": repeats, "min_time_ms": min_time_ms,
              "statistic": statistic, "clock": clock}
    with num_threads(threads), torch.inference_mode():
        used_threads = torch.get_num_threads()
        # Layers and networks in the same interleaved rounds: a change of load on the machine
        # shifts the entries and the networks the fit relates them to alike.
        times = time_calls(layer_runs + net_runs, dev, progress=tick, **timing)
    entries = dict(zip(keys, times[:len(keys)]))
    net_times = times[len(keys):]
    records = [{"arch": n["arch"], "measured_ms": t, "lut_sum_ms": sum(entries[k] for k in n["layers"]),
                "items": len(n["layers"])} for n, t in zip(nets, net_times)]
    calib_records, valid_records = records[:len(calib)], records[len(calib):]
    coef = fit_constants([(1.0, r["lut_sum_ms"], r["items"]) for r in calib_records],
                         [r["measured_ms"] for r in calib_records])
    validation = None
    if valid_records:
        for r in valid_records:
            r["predicted_ms"] = predict(coef, r["lut_sum_ms"], r["items"])
        validation = {**fidelity([r["measured_ms"] for r in valid_records],
                                 [r["predicted_ms"] for r in valid_records]), "archs": valid_records}
    return {
        "format": PROFILE_FORMAT, "version": PROFILE_VERSION,
        "space": layer_list["space"], "model": layer_list["model"],
        "device": name or (dev.type if batch_size == 1 else f"{dev.type}_b{batch_size}"),
        "device_type": str(dev), "device_name": device_description(dev),
        "platform": platform.platform(), "torch_version": torch.__version__,
        "threads": used_threads, "batch_size": batch_size, "dtype": str(dtype).replace("torch.", ""),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timing": {**timing, "rounds": "interleaved"},
        "entries": entries,
        "fit": {"features": list(FIT_FEATURES), "coef": coef, "archs": calib_records},
        "validation": validation,
    }


def write_json_atomic(path: str, data: Any) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def summary(profile: dict) -> str:
    """A few human-readable lines about a profile (entries, fit, validation)."""
    coef = profile["fit"]["coef"]
    lines = [f"device {profile['device']} ({profile['device_name']}), batch {profile['batch_size']}, "
             f"{profile['threads']} threads: {len(profile['entries'])} layer entries",
             f"fit: latency_ms = {coef[0]:.4f} + {coef[1]:.4f} * sum(entries) + "
             f"{coef[2]:.5f} * items  ({len(profile['fit']['archs'])} calibration archs)"]
    v = profile.get("validation")
    if v:
        lines.append(f"validation on {v['num_archs']} archs: MAPE {v['mape']:.2f} %, "
                     f"{v['within_10pct'] * 100:.0f} % within +-10 %, Kendall tau "
                     f"{v['kendall_tau']:.3f}, worst {v['max_ape']:.1f} %")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(
        "Build a latency lookup-table profile on this device from a layer list written by "
        "`nas profile --export-layers`. Needs only torch."))
    parser.add_argument("layers", help="the layer list JSON file")
    parser.add_argument("--out", required=True, help="the profile JSON file to write")
    parser.add_argument("--device", default="cpu", help=f"{DEVICES} (default cpu)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--name", default=None, help="device label (metric latency_ms.NAME)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time-ms", type=float, default=5.0)
    parser.add_argument("--statistic", choices=list(STATISTICS), default="median",
                        help="over the timing rounds (min: for a CPU shared with other work)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time, or this thread's CPU time (cpu, --threads 1 only: for a "
                             "CPU shared with other work)")
    args = parser.parse_args(argv)
    try:
        try:
            with open(args.layers) as f:
                layer_list = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ProfileError(f"{args.layers}: cannot read the layer list ({exc})") from None

        def progress(done: int, total: int, stage: str) -> None:
            if done == total or done % max(1, total // 20) == 0:
                print(f"\r{stage}: {done}/{total} timings", end="", file=sys.stderr, flush=True)

        profile = profile_layer_list(
            layer_list, device=args.device, batch_size=args.batch_size, threads=args.threads,
            name=args.name, warmup=args.warmup, repeats=args.repeats,
            min_time_ms=args.min_time_ms, statistic=args.statistic, clock=args.clock,
            progress=progress)
        print(file=sys.stderr)
    except ProfileError as exc:
        print(f"profile_device: error: {exc}", file=sys.stderr)
        return 2
    write_json_atomic(args.out, profile)
    print(summary(profile))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
