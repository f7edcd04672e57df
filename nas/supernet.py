"""The weight-sharing supernet and the extraction of plain subnets.

``Supernet(space, num_classes=..., in_channels=...)`` holds one dynamic layer per (position, op)
at the largest size, created from :meth:`SearchSpace.walk` of the largest architecture with each
op on every edge. ``supernet(x, arch)`` runs the subnet ``arch``: the first ``depth`` cells of each
stage, the first ``width`` channels and the centre ``kernel`` of every shared weight.

``supernet.extract(arch)`` (and :func:`build_subnet`) produce a :class:`SubNet`: a
``nn.Sequential`` of standard layers (``Conv2d``, ``BatchNorm2d``, ``Linear``, pooling) arranged in
:class:`Cell` containers, with copies of the inherited weights and no reference to the supernet.

This module does not train, evaluate or time anything.
"""
from __future__ import annotations

import dataclasses
import torch
from torch import nn

from nas import ops
from nas.space import Arch, Layer, SearchSpace


class Cell(nn.Module):
    """A cell DAG of plain layers: node ``j`` is the sum of its incoming edges' outputs (zeros
    when all of them are the zero op); the cell's output is its last node."""

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


class SubNet(nn.Sequential):
    """An extracted subnet: stem, cells and reduction blocks, head, all of plain layers."""


def _assemble(space: SearchSpace, layers: list[Layer], modules: list[nn.Module | None]) -> SubNet:
    """Arranges per-layer plain modules (in walk order) into a SubNet."""
    blocks: list[nn.Module | list] = []
    for layer, module in zip(layers, modules):
        if layer.edge < 0:
            blocks.append(module)
            continue
        if layer.edge == 0:  # the first edge of a new cell
            blocks.append([])
        if module is not None:  # zero edges are left out; a cell of zero edges still exists
            src, dst = space.edges[layer.edge]
            blocks[-1].append((src, dst, module))
    return SubNet(*[Cell(space.num_nodes, b) if isinstance(b, list) else b for b in blocks])


def build_subnet(space: SearchSpace, arch: Arch, *, in_channels: int, num_classes: int,
                 source: "Supernet | None" = None) -> SubNet:
    """Builds the plain model of ``arch``.

    Args:
        space: the search space of ``arch``.
        arch: the architecture.
        in_channels: image channels.
        num_classes: classifier outputs.
        source: a supernet to copy the inherited weights from; without it the layers are freshly
            initialised (e.g. to load an exported state dict into).

    Raises:
        ArchError: ``arch`` is not a point of ``space``.
    """
    space.check(arch)
    layers = list(space.walk(arch, in_channels=in_channels, num_classes=num_classes))
    modules = []
    for layer in layers:
        spec = ops.get(layer.op)
        if spec.is_zero:
            modules.append(None)
            continue
        if source is not None:
            dynamic_layer = source.layers[layer.name]
        else:  # a dynamic layer of exactly this size: extraction then copies it whole
            dynamic_layer = spec.make_dynamic(layer.c_in, layer.c_out, layer.kernel or 1, layer.stride)
        modules.append(dynamic_layer.extract(layer.c_in, layer.c_out, layer.kernel))
    return _assemble(space, layers, modules)


class Supernet(nn.Module):
    """The once-for-all supernet of a search space.

    Args:
        space: the search space.
        num_classes: classifier outputs.
        in_channels: image channels (1 for grey images, 3 for RGB).
    """

    def __init__(self, space: SearchSpace, *, num_classes: int, in_channels: int):
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        self.space = space
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.layers = nn.ModuleDict()
        largest = space.max_arch()
        for op in space.ops:  # the largest arch with `op` on every edge: the union has them all
            arch = dataclasses.replace(largest, cell=(op,) * len(space.edges))
            for layer in space.walk(arch, in_channels=in_channels, num_classes=num_classes):
                spec = ops.get(layer.op)
                if layer.name not in self.layers and not spec.is_zero:
                    self.layers[layer.name] = spec.make_dynamic(
                        layer.c_in, layer.c_out, layer.kernel or 1, layer.stride)
        # Plain-list views for a cheap forward (lists, so nn.Module does not register the
        # modules twice): _edges[s][i][e] maps op -> module.
        layers = dict(self.layers.items())
        self._reduce = [layers[f"reduce{s}"] for s in range(len(space.stages) - 1)]
        self._edges = [[[{op: layers.get(f"stage{s}_cell{i}_edge{e}_{op}") for op in space.ops}
                         for e in range(len(space.edges))]
                        for i in range(stage.cells)]
                       for s, stage in enumerate(space.stages)]

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        """Runs the subnet ``arch`` on ``x`` (B, in_channels, H, W) and returns logits (B, classes).

        The input is used at its own resolution; resizing to ``arch.resolution`` is the data
        pipeline's job.
        """
        x = self.layers["stem"](x, arch.width[0], 3)
        num_nodes = self.space.num_nodes
        specs = [ops.get(op) for op in arch.cell]
        for s, cells in enumerate(self._edges):
            c = arch.width[s]
            kernels = [arch.kernel[s] if sp.elastic_kernel else sp.kernel for sp in specs]
            for i in range(arch.depth[s]):
                edges = cells[i]
                nodes = [x]
                e = 0
                for dst in range(1, num_nodes):
                    acc = None
                    for src in range(dst):
                        if not specs[e].is_zero:
                            y = edges[e][arch.cell[e]](nodes[src], c, kernels[e])
                            acc = y if acc is None else acc + y
                        e += 1
                    nodes.append(torch.zeros_like(x) if acc is None else acc)
                x = nodes[-1]
            if s < len(self._reduce):
                x = self._reduce[s](x, arch.width[s + 1])
        return self.layers["head"](x)

    def extract(self, arch: Arch) -> SubNet:
        """The subnet ``arch`` as a standalone model of plain layers with inherited weights.

        In eval mode its output equals ``self(x, arch)``.
        """
        return build_subnet(self.space, arch, in_channels=self.in_channels,
                            num_classes=self.num_classes, source=self)
