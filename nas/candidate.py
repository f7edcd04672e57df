"""The Candidate type: an architecture and the metrics measured for it.

A :class:`Candidate` is what an evaluator returns and what searchers, the Pareto front and the
history files pass around. Its metrics use a small set of keys, defined here once:

=====================  ==========================================================================
key                    meaning
=====================  ==========================================================================
``top1``               validation top-1 accuracy with inherited weights, a fraction in [0, 1]
``loss``               mean validation cross-entropy
``params``             parameter count of the extracted subnet
``flops``              FLOPs of one image (2 x multiply-accumulates, see :mod:`nas.ops`)
``latency_ms.DEVICE``  latency in milliseconds on DEVICE (:func:`latency_key`), from a latency
                       model (see :mod:`nas.latency`); ``latency_ms.flops`` is a FLOPs proxy
=====================  ==========================================================================

This module is torch-free: searchers import it without importing torch. It does not compute any
metric.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from nas.errors import ArchError

if TYPE_CHECKING:  # only for annotations: keeps this module free of torch imports
    from nas.space import Arch, SearchSpace

TOP1 = "top1"
LOSS = "loss"
PARAMS = "params"
FLOPS = "flops"
LATENCY_PREFIX = "latency_ms."


def latency_key(device: str) -> str:
    """The metric key of the latency on ``device``: ``latency_ms.DEVICE``.

    Raises:
        ValueError: ``device`` is empty.
    """
    if not isinstance(device, str) or not device:
        raise ValueError(f"a latency device name must be a non-empty string, got {device!r}")
    return LATENCY_PREFIX + device


@dataclass(frozen=True)
class Candidate:
    """An architecture with its measured metrics (keys: see the module docstring).

    Attributes:
        arch: the architecture.
        metrics: metric key -> value (floats; counts are stored as floats too).
    """

    arch: "Arch"
    metrics: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        """``candidate["top1"]``: a metric by key.

        Raises:
            KeyError: the metric was not measured (the message lists those that were).
        """
        try:
            return self.metrics[key]
        except KeyError:
            raise KeyError(f"candidate {self.arch} has no metric {key!r}; it has "
                           f"{', '.join(sorted(self.metrics)) or 'none'}") from None

    def latency_ms(self, device: str) -> float:
        """The latency on ``device`` in milliseconds (``self[latency_key(device)]``)."""
        return self[latency_key(device)]

    def with_metrics(self, **metrics: float) -> "Candidate":
        """A copy with ``metrics`` added (or replaced); keys with dots go through ``**{...}``."""
        return Candidate(self.arch, {**self.metrics, **metrics})

    def to_json(self) -> dict[str, Any]:
        """A flat JSON-serialisable dict: ``{"arch": str(arch), "top1": ..., ...}``."""
        return {"arch": str(self.arch), **{k: float(v) for k, v in self.metrics.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], space: "SearchSpace") -> "Candidate":
        """Reverses :meth:`to_json`, parsing the arch string with ``space``.

        Raises:
            ArchError: the arch string is missing, malformed or not a point of ``space``.
            ValueError: a metric value is not a number.
        """
        if not isinstance(data, Mapping) or "arch" not in data:
            raise ArchError(f"candidate record {data!r} has no 'arch' key")
        arch = space.parse(data["arch"])
        metrics = {}
        for key, value in data.items():
            if key == "arch":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"candidate {data['arch']}: metric {key!r} must be a number, "
                                 f"got {value!r}")
            metrics[key] = float(value)
        return cls(arch, metrics)
