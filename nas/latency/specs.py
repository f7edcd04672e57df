"""Plain modules described as JSON, for the device-side profiler.

:func:`module_spec` turns a plain module of an extracted subnet (``Conv2d``, ``BatchNorm2d``,
``Linear``, pooling, ``ReLU``, ``Sequential``, the subnet's ``Cell`` and ``ResBlock``) into the
MODULE spec that :func:`nas.latency.target.build_module` builds back with the same state-dict
layout (schema in :mod:`nas.latency.target`). :class:`Ref` and :class:`NodeOp` are placeholders
for a lookup-table entry inside a network spec and for a node-sum op.

This module does not walk archs or time anything.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from nas.dynamic import ResBlock
from nas.supernet import Cell


class NodeOp(nn.Module):
    """A placeholder for a node-sum op in a layer spec (timed by the target's modules)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind


class Ref(nn.Module):
    """A placeholder for the layer ``key`` in a network spec."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key


def _single(value: Any) -> int:
    """``3`` or ``(3, 3)`` -> 3 (the specs describe square kernels, strides and paddings)."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square value {value!r} cannot be described")
        return int(value[0])
    return int(value)


def module_spec(module: nn.Module) -> dict[str, Any]:
    """The JSON spec of a plain module, as :func:`nas.latency.target.build_module` reads it.

    Raises:
        ValueError: a module type (or setting) the device profiler cannot build; add it both
            here and to ``target.build_module``.
    """
    m = module
    if isinstance(m, Ref):
        return {"type": "ref", "key": m.key}
    if isinstance(m, NodeOp):
        return {"type": f"node_{m.kind}"}
    if type(m) is nn.Conv2d:
        if m.groups != 1 or _single(m.dilation) != 1 or m.padding_mode != "zeros":
            raise ValueError(f"cannot describe {m} (groups, dilation or padding mode)")
        return {"type": "conv2d", "in": m.in_channels, "out": m.out_channels,
                "kernel": _single(m.kernel_size), "stride": _single(m.stride),
                "padding": _single(m.padding), "bias": m.bias is not None}
    if type(m) is nn.BatchNorm2d:
        return {"type": "batchnorm2d", "features": m.num_features, "eps": m.eps}
    if type(m) is nn.Linear and m.bias is not None:
        return {"type": "linear", "in": m.in_features, "out": m.out_features}
    if type(m) is nn.AvgPool2d and not m.ceil_mode and m.divisor_override is None:
        return {"type": "avgpool2d", "kernel": _single(m.kernel_size), "stride": _single(m.stride),
                "padding": _single(m.padding), "count_include_pad": m.count_include_pad}
    if type(m) is nn.AdaptiveAvgPool2d:
        return {"type": "adaptive_avgpool2d", "size": _single(m.output_size)}
    if type(m) is nn.Flatten and (m.start_dim, m.end_dim) == (1, -1):
        return {"type": "flatten"}
    if type(m) in (nn.ReLU, nn.Identity) and not getattr(m, "inplace", False):
        return {"type": "relu" if type(m) is nn.ReLU else "identity"}
    if isinstance(m, nn.Sequential):  # also SubNet
        return {"type": "sequential", "children": [module_spec(c) for c in m]}
    if type(m) is ResBlock:
        return {"type": "resblock", **{k: module_spec(getattr(m, k))
                                       for k in ("conv_a", "conv_b", "shortcut")}}
    if type(m) is Cell:
        return {"type": "cell", "nodes": m.num_nodes,
                "edges": [[s, d, module_spec(e)] for (s, d), e in zip(m.wiring, m.edges)]}
    raise ValueError(f"the device profiler cannot build {type(m).__name__} ({m}); describe it in "
                     "nas.latency.specs.module_spec and nas.latency.target.build_module")
