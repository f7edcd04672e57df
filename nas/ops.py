"""The op registry: one entry per op, and what an op *is* lives on its spec.

An :class:`OpSpec` says whether the op is the zero op, whether it has weights, whether its kernel
is elastic, how many parameters and FLOPs one instance has, and how to build it twice: as a
weight-sharing dynamic module (largest size, sliced at run time) for the supernet, and as a plain
``torch.nn`` module for an extracted subnet. Nothing else in the package branches on op names.

Cell ops (``cell_op=True``) are the choices a search space may list on a cell edge; the other
entries are the fixed blocks of the macro skeleton (stem, reduction block, classifier head), kept
here so that counting and latency tables treat every layer the same way.

FLOPs are counted as 2 x multiply-accumulates of convolutions and linear layers only, the
convention of ``torch.utils.flop_counter.FlopCounterMode`` (BatchNorm, ReLU and pooling are not
counted).

This module does not know the network's topology; see :mod:`nas.space` (the walk) for that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from nas import dynamic


@dataclass(frozen=True)
class OpSpec:
    """What one op is.

    Attributes:
        name: the registry key, as written in YAML and arch strings.
        cell_op: whether a search space may put it on a cell edge.
        is_zero: the op outputs zeros (the edge is absent).
        has_weights: the op holds parameters.
        elastic_kernel: the op's kernel follows the stage's kernel choice.
        kernel: the kernel size when not elastic (or the base kernel).
        make_dynamic: ``(c_in_max, c_out_max, k_max, stride) -> nn.Module`` for the supernet.
        params: ``(c_in, c_out, k, num_classes) -> int`` parameter count of one instance.
        flops: ``(c_in, c_out, k, stride, res_in, num_classes) -> int`` FLOPs for one image.
    """

    name: str
    cell_op: bool
    is_zero: bool
    has_weights: bool
    elastic_kernel: bool
    kernel: int
    make_dynamic: Callable[..., nn.Module] | None
    params: Callable[..., int]
    flops: Callable[..., int]


_REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Adds an op to the registry.

    Raises:
        ValueError: the name is already registered.
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"op {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> OpSpec:
    """Returns the spec of a registered op.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def cell_ops() -> list[str]:
    """Names of the ops a search space may put on a cell edge, in registration order."""
    return [name for name, spec in _REGISTRY.items() if spec.cell_op]


def _out_res(res: int, stride: int) -> int:
    # Every strided layer here pads so that the output is ceil(res / stride).
    return (res + stride - 1) // stride


def _conv_flops(c_in: int, c_out: int, k: int, res_out: int) -> int:
    return 2 * c_in * c_out * k * k * res_out * res_out


def _relu_conv_bn_params(c_in: int, c_out: int, k: int, *_: int) -> int:
    return c_in * c_out * k * k + 2 * c_out


def _relu_conv_bn_flops(c_in: int, c_out: int, k: int, stride: int, res: int, *_: int) -> int:
    return _conv_flops(c_in, c_out, k, _out_res(res, stride))


def _no_params(*_: int) -> int:
    return 0


def _conv_op(name: str, kernel: int, elastic_kernel: bool) -> OpSpec:
    return OpSpec(
        name=name, cell_op=True, is_zero=False, has_weights=True, elastic_kernel=elastic_kernel,
        kernel=kernel,
        make_dynamic=lambda c_in, c_out, k, stride: dynamic.DynamicReLUConvBN(c_in, c_out, k, stride),
        params=_relu_conv_bn_params, flops=_relu_conv_bn_flops,
    )


register(OpSpec("none", cell_op=True, is_zero=True, has_weights=False, elastic_kernel=False,
                kernel=0, make_dynamic=None, params=_no_params, flops=_no_params))
register(OpSpec("skip_connect", cell_op=True, is_zero=False, has_weights=False,
                elastic_kernel=False, kernel=0,
                make_dynamic=lambda *_: dynamic.Identity(), params=_no_params, flops=_no_params))
register(_conv_op("nor_conv_1x1", kernel=1, elastic_kernel=False))
register(_conv_op("nor_conv_3x3", kernel=3, elastic_kernel=True))
register(OpSpec("avg_pool_3x3", cell_op=True, is_zero=False, has_weights=False,
                elastic_kernel=False, kernel=3,
                make_dynamic=lambda *_: dynamic.AvgPool3x3(), params=_no_params, flops=_no_params))

# The fixed blocks of the macro skeleton.
register(OpSpec(
    "stem", cell_op=False, is_zero=False, has_weights=True, elastic_kernel=False, kernel=3,
    make_dynamic=lambda c_in, c_out, k, stride: dynamic.DynamicConvBN(c_in, c_out, k),
    params=lambda c_in, c_out, k, *_: c_in * c_out * k * k + 2 * c_out,
    flops=lambda c_in, c_out, k, stride, res, *_: _conv_flops(c_in, c_out, k, res),
))


def _resblock_params(c_in: int, c_out: int, *_: int) -> int:
    # conv_a (3x3, stride 2) + conv_b (3x3) + 1x1 shortcut conv, two BNs.
    return 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out + c_in * c_out


def _resblock_flops(c_in: int, c_out: int, k: int, stride: int, res: int, *_: int) -> int:
    return (_conv_flops(c_in, c_out, 3, _out_res(res, 2)) + _conv_flops(c_out, c_out, 3, _out_res(res, 2))
            + _conv_flops(c_in, c_out, 1, res // 2))


register(OpSpec(
    "resblock", cell_op=False, is_zero=False, has_weights=True, elastic_kernel=False, kernel=3,
    make_dynamic=lambda c_in, c_out, k, stride: dynamic.DynamicResBlock(c_in, c_out),
    params=_resblock_params, flops=_resblock_flops,
))
register(OpSpec(  # the same with BatchNorm after the shortcut conv (see DynamicResBlock)
    "resblock_bn", cell_op=False, is_zero=False, has_weights=True, elastic_kernel=False, kernel=3,
    make_dynamic=lambda c_in, c_out, k, stride: dynamic.DynamicResBlock(c_in, c_out, shortcut_bn=True),
    params=lambda c_in, c_out, *_: _resblock_params(c_in, c_out) + 2 * c_out, flops=_resblock_flops,
))
REDUCTIONS = ("resblock", "resblock_bn")
register(OpSpec(
    "classifier", cell_op=False, is_zero=False, has_weights=True, elastic_kernel=False, kernel=0,
    make_dynamic=lambda c_in, num_classes, k, stride: dynamic.DynamicHead(c_in, num_classes),
    # BN (2c) + Linear (c * classes + classes); c_out is the number of classes.
    params=lambda c_in, c_out, *_: 2 * c_in + c_in * c_out + c_out,
    flops=lambda c_in, c_out, *_: 2 * c_in * c_out,
))
