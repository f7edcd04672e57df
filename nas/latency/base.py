"""The latency model interface and device names shared by all latency models.

This module does not time anything; see :mod:`nas.latency.target` for the timing code.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from nas.errors import ConfigError
from nas.latency import target
from nas.space import Arch


class LatencyModel(ABC):
    """Answers ``latency_ms(arch)`` for one device.

    Attributes:
        device: the device label; the metric key is ``latency_ms.DEVICE``
            (:func:`nas.candidate.latency_key`).
        kind: how the latency is obtained: ``measured``, ``lut``, ``table`` or ``flops``.
        cheap: answers without running anything (a table, a sum, a formula), so searchers may
            ask it about archs they only consider, not just those they evaluate.
    """

    device: str
    kind: str
    cheap: bool = False

    @abstractmethod
    def latency_ms(self, arch: Arch) -> float:
        """The latency of one forward pass of ``arch`` in milliseconds.

        Raises:
            ArchError: ``arch`` is not a point of the model's search space.
        """

    def latencies_ms(self, archs: list[Arch]) -> list[float]:
        """:meth:`latency_ms` of several archs (measured models time them interleaved)."""
        return [self.latency_ms(a) for a in archs]

    def __call__(self, arch: Arch) -> float:
        return self.latency_ms(arch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a torch device that exists on this machine.

    Raises:
        ConfigError: an unknown device name, or one this machine does not have.
    """
    try:
        return target.resolve_device(name)
    except target.ProfileError as exc:
        raise ConfigError(str(exc)) from None


def default_label(device: torch.device | str, batch_size: int) -> str:
    """The default device label: the device type, plus ``_bN`` when the batch is not 1."""
    kind = torch.device(device).type
    return kind if batch_size == 1 else f"{kind}_b{batch_size}"
