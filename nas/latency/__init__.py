"""Latency models: one interface, ``model.latency_ms(arch) -> float`` and ``model.device``.

Four kinds, chosen by a spec string through :func:`make_latency_model`:

=========================  =========================================================================
spec                       model
=========================  =========================================================================
``measured:DEVICE``        :class:`MeasuredLatency`: times the extracted subnet on DEVICE (``cpu``,
                           ``cuda``, ``cuda:N``, ``mps``) of this machine
``lut:PATH`` / ``PATH``    :class:`LookupTableLatency`: a device profile (``*.json``) built by
                           ``nas profile`` or ``scripts/profile_device.py``
``table:PATH:COLUMN``      :class:`TableLatency`: a per-arch CSV table, e.g. NAS-Bench-201's
                           ``lat_ms_pixel2`` column (``.csv.gz`` read directly)
``flops``                  :class:`FlopsLatency`: a FLOPs proxy, not a latency (see its docstring)
=========================  =========================================================================

Any spec may end in ``@LABEL`` to set the device label, hence the metric key
``latency_ms.LABEL`` (e.g. ``measured:cpu@cpu_measured`` next to a ``cpu`` profile).

Device profile file (JSON), format ``ofa-nas-latency-profile`` version 1::

    format          "ofa-nas-latency-profile"
    version         1
    space           {"name": str, "config": the space's YAML mapping}; must match the space
                    it is used with (description aside)
    model           {"in_channels": int, "num_classes": int} the layers were built for
    device          the label: metric key "latency_ms.<device>" (default "cpu", "cuda",
                    "cpu_b64" for batch 64...)
    device_type     the torch device timed ("cpu", "cuda:0", "mps")
    device_name     the hardware (CPU model, GPU name)
    platform        platform.platform() of the host
    torch_version   torch.__version__ on the host
    threads         torch intra-op threads while timing
    batch_size      images per forward pass
    dtype           "float32"
    date            ISO 8601, UTC
    timing          {"warmup", "repeats", "min_time_ms", "statistic" ("median" or "min" over
                     the rounds), "clock" ("wall", or "thread": CPU time of one thread),
                     "rounds": "interleaved"}
    entries         {key: milliseconds}, one per distinct layer configuration of the space
                    (key "OP/cC_IN-C_OUT/kK/sSTRIDE/rRES", nas.latency.lut.layer_key) and per
                    elementwise op of the cells' node sums ("node_add/cC/rRES",
                    "node_zeros/cC/rRES"), each timed alone on a random input
    fit             {"features": ["intercept", "lut_sum_ms", "items"], "coef": [3 floats],
                     "archs": [{"arch", "measured_ms", "lut_sum_ms", "items"}, ...]}:
                    latency_ms = coef . (1, sum of the arch's entries, their number), fitted
                    (least squares on the relative error) on the calibration archs listed
    validation      null, or {"num_archs", "mape" (%), "within_10pct" (fraction), "max_ape" (%),
                     "kendall_tau", "archs": [{..., "predicted_ms"}]} on archs not in the fit

What this package does not do: accuracy (see :mod:`nas.evaluate`) or choosing archs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from nas.errors import CheckpointError, ConfigError
from nas.latency.base import LatencyModel, default_label, resolve_device
from nas.latency.lut import (
    LookupTableLatency, build_profile, export_layer_list, layer_configs, layer_key, load_profile,
)
from nas.latency.models import PROXY_GFLOPS, FlopsLatency, MeasuredLatency, TableLatency
from nas.latency.target import fidelity, kendall_tau
from nas.space import Arch, SearchSpace

__all__ = [
    "FlopsLatency", "LatencyModel", "LookupTableLatency", "MeasuredLatency", "PROXY_GFLOPS",
    "TableLatency", "build_profile", "default_label", "export_layer_list", "fidelity",
    "kendall_tau", "layer_configs", "layer_key", "load_profile", "make_latency_model",
    "resolve_device",
]

SPEC_FORMS = ("measured:DEVICE, lut:PROFILE.json (or a .json path), table:CSV:COLUMN or flops, "
              "each optionally followed by @LABEL")


class _CallableLatency(LatencyModel):
    kind = "callable"

    def __init__(self, fn: Callable[[Arch], float], device: str):
        self.fn, self.device = fn, device

    def latency_ms(self, arch: Arch) -> float:
        return float(self.fn(arch))


def make_latency_model(spec: str | LatencyModel | Callable[[Arch], float], space: SearchSpace, *,
                       in_channels: int | None = None, num_classes: int | None = None,
                       batch_size: int = 1, threads: int | None = None) -> LatencyModel:
    """The one place where a latency spec becomes a latency model.

    Args:
        spec: a spec string (see the module docstring; ``@LABEL`` sets the device label), a
            :class:`LatencyModel` (returned as is), or a callable ``arch -> ms`` (its device
            label is its ``__name__``).
        space: the search space the archs come from.
        in_channels, num_classes: the model's; a profile built for other values is refused.
            Default 3 and 10 for the models that build layers.
        batch_size, threads: for ``measured`` and ``flops`` (a profile records its own).

    Raises:
        ConfigError: an unknown spec form, or an unknown or unavailable device.
        CheckpointError: a missing or unreadable profile or table, a profile of another space,
            format or model.
    """
    if isinstance(spec, LatencyModel):
        return spec
    if callable(spec):
        return _CallableLatency(spec, getattr(spec, "__name__", "custom"))
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"latency spec {spec!r}: expected {SPEC_FORMS}")
    spec, at, label = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if at and not (spec and label):
        raise ConfigError(f"latency spec {spec + at + label!r}: expected SPEC@LABEL")
    model = _from_spec(spec, space, in_channels, num_classes, batch_size, threads)
    if label:
        model.device = label
    return model


def _from_spec(spec: str, space: SearchSpace, in_channels: int | None, num_classes: int | None,
               batch_size: int, threads: int | None) -> LatencyModel:
    kind, _, rest = spec.partition(":")
    model_args = {"in_channels": in_channels or 3, "num_classes": num_classes or 10}
    if spec == "flops":
        return FlopsLatency(space, batch_size=batch_size, **model_args)
    if kind == "measured" and rest:
        return MeasuredLatency(space, device=rest, batch_size=batch_size, threads=threads,
                               **model_args)
    if kind == "table":
        path, _, column = rest.rpartition(":")
        if not path or not column:
            raise ConfigError(f"latency spec {spec!r}: expected table:CSV:COLUMN")
        return TableLatency(space, path, column)
    if kind == "lut" or spec.endswith(".json") or Path(spec).is_file():
        path = rest if kind == "lut" else spec
        model = LookupTableLatency(space, load_profile(path, space))
        _check_model(model, path, in_channels, num_classes)
        return model
    raise ConfigError(f"unknown latency spec {spec!r}; expected {SPEC_FORMS}")


def _check_model(model: LookupTableLatency, path: str, in_channels: int | None,
                 num_classes: int | None) -> None:
    for what, wanted, got in (("in_channels", in_channels, model.in_channels),
                              ("num_classes", num_classes, model.num_classes)):
        if wanted is not None and wanted != got:
            raise CheckpointError(f"{path}: latency profile built for {what}={got}, but the model "
                                  f"has {what}={wanted}; rebuild it with `nas profile`")
