"""Search spaces: the YAML language, the architecture type, and the one walk of an architecture.

A :class:`SearchSpace` is loaded and validated from a YAML file (see ``search_spaces/`` and the
README for the schema). Its points are :class:`Arch` objects: frozen, hashable, with a canonical
string that round-trips through :meth:`SearchSpace.parse`. For a space without elastic
dimensions the string is exactly the NAS-Bench-201 cell string, so public tables can be joined.

:meth:`SearchSpace.walk` is the single place that lists the layers an architecture is made of.
The supernet, the parameter and FLOP counts and the latency lookup tables are all built on it.

This module does not build tensors; see :mod:`nas.supernet` for that.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from nas import ops
from nas.errors import ArchError, SpaceError

# The elastic dimensions, in the order they appear in an arch string.
STAGE_DIMS = ("depth", "width", "kernel")
DIMS = STAGE_DIMS + ("resolution",)


@dataclass(frozen=True)
class Arch:
    """One point of a search space.

    Attributes:
        cell: the op of every cell edge, in NAS-Bench-201 edge order ((1,0), (2,0), (2,1), ...).
        depth: cells run in each stage (the first ``depth[s]`` of the stage).
        width: channels of each stage.
        kernel: kernel size of kernel-elastic ops (``nor_conv_3x3``) in each stage.
        resolution: input image side in pixels.
        elastic: the dimensions written in the string (those with more than one choice in the
            space); not part of equality.
    """

    cell: tuple[str, ...]
    depth: tuple[int, ...]
    width: tuple[int, ...]
    kernel: tuple[int, ...]
    resolution: int
    elastic: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def cell_string(self) -> str:
        """The NAS-Bench-201 cell string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        groups, e, node = [], 0, 1
        while e < len(self.cell):
            groups.append("|" + "|".join(f"{self.cell[e + i]}~{i}" for i in range(node)) + "|")
            e += node
            node += 1
        return "+".join(groups)

    def __str__(self) -> str:
        parts = [self.cell_string()]
        for dim in DIMS:
            if dim in self.elastic:
                value = getattr(self, dim)
                text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                parts.append(f"{dim}={text}")
        return ";".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form; :meth:`SearchSpace.from_dict` reverses it."""
        return {"cell": list(self.cell), "depth": list(self.depth), "width": list(self.width),
                "kernel": list(self.kernel), "resolution": self.resolution}


@dataclass(frozen=True)
class Stage:
    """Choices of one stage: ``cells`` cells built, of which the first ``depth`` run."""

    cells: int
    depth: tuple[int, ...]
    width: tuple[int, ...]
    kernel: tuple[int, ...]


@dataclass(frozen=True)
class Layer:
    """One layer instance of an architecture, as yielded by :meth:`SearchSpace.walk`.

    ``name`` is the key of the layer's shared weights in the supernet; ``res_in`` is the side of
    the input feature map; for the classifier ``c_out`` is the number of classes.
    """

    name: str
    op: str
    c_in: int
    c_out: int
    kernel: int
    stride: int
    res_in: int
    stage: int = -1
    cell: int = -1
    edge: int = -1

    @property
    def params(self) -> int:
        return ops.get(self.op).params(self.c_in, self.c_out, self.kernel)

    @property
    def flops(self) -> int:
        return ops.get(self.op).flops(self.c_in, self.c_out, self.kernel, self.stride, self.res_in)


_TOP_KEYS = {"name", "description", "cell", "stages", "resolution", "reduction"}
_CELL_KEYS = {"nodes", "ops"}
_STAGE_KEYS = {"cells", "depth", "width", "kernel"}


class SearchSpace:
    """A cell-based, once-for-all search space.

    Build one with :meth:`from_yaml` (or :meth:`from_dict` for a parsed mapping). See the module
    docstring and README for the YAML schema.
    """

    def __init__(self, *, name: str, num_nodes: int, ops_: tuple[str, ...], stages: tuple[Stage, ...],
                 resolution: tuple[int, ...], description: str = "", reduction: str = "resblock"):
        self.name = name
        self.reduction = reduction  # the op of the blocks between stages (ops.REDUCTIONS)
        self.description = description
        self.num_nodes = num_nodes
        self.ops = ops_
        self.stages = stages
        self.resolution = resolution
        # Edge e goes from node src to node dst, in NAS-Bench-201 order.
        self.edges: tuple[tuple[int, int], ...] = tuple(
            (src, dst) for dst in range(1, num_nodes) for src in range(dst))
        self.elastic = tuple(d for d in DIMS if self._choice_count(d) > 1)
        self.source: str | None = None  # the YAML file, when loaded from one

    # ------------------------------------------------------------------ loading and validation

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        """Loads and validates a search space.

        Raises:
            SpaceError: the file is missing, is not YAML, or breaks the schema (the message names
                the file, the key path and what is allowed).
        """
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise SpaceError(f"{path}: search-space file not found") from None
        except yaml.YAMLError as exc:
            raise SpaceError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
        space = cls.from_config(raw, source=str(path))
        space.source = str(path)
        return space

    @classmethod
    def from_config(cls, raw: Any, source: str = "<config>") -> "SearchSpace":
        """Validates a parsed YAML mapping (see :meth:`from_yaml`)."""
        check = _Checker(source)
        check.mapping(raw, "", _TOP_KEYS, required={"cell", "stages"})
        cell = raw["cell"]
        check.mapping(cell, "cell", _CELL_KEYS, required={"ops"})
        num_nodes = check.int(cell.get("nodes", 4), "cell.nodes", minimum=2)
        valid_ops = ops.cell_ops()
        op_names = check.choices(cell["ops"], "cell.ops", str)
        for i, op in enumerate(op_names):
            if op not in valid_ops:
                check.fail(f"cell.ops[{i}]", f"unknown op {op!r}; valid ops: {', '.join(valid_ops)}")
        if not isinstance(raw["stages"], list) or not raw["stages"]:
            check.fail("stages", "must be a non-empty list of stages")
        stages = []
        for s, st in enumerate(raw["stages"]):
            where = f"stages[{s}]"
            check.mapping(st, where, _STAGE_KEYS, required={"cells", "width"})
            cells = check.int(st["cells"], f"{where}.cells", minimum=1)
            depth = check.choices(st.get("depth", [cells]), f"{where}.depth", int, minimum=1)
            for i, d in enumerate(depth):
                if d > cells:
                    check.fail(f"{where}.depth[{i}]",
                               f"depth {d} is larger than the stage's {cells} cells (allowed 1..{cells})")
            width = check.choices(st["width"], f"{where}.width", int, minimum=1)
            kernel = check.choices(st.get("kernel", [3]), f"{where}.kernel", int, minimum=1)
            for i, k in enumerate(kernel):
                if k % 2 == 0:
                    check.fail(f"{where}.kernel[{i}]", f"kernel {k} is even; allowed: odd sizes (3, 5, 7)")
            stages.append(Stage(cells, depth, width, kernel))
        resolution = check.choices(raw.get("resolution", [32]), "resolution", int, minimum=1)
        factor = 2 ** (len(stages) - 1)
        for i, r in enumerate(resolution):
            if r % factor:
                check.fail(f"resolution[{i}]", f"{r} is not divisible by {factor} "
                           f"(each of the {len(stages) - 1} reduction blocks halves it)")
        reduction = raw.get("reduction", "resblock")
        if reduction not in ops.REDUCTIONS:
            check.fail("reduction", f"unknown reduction block {reduction!r}; "
                       f"allowed: {', '.join(ops.REDUCTIONS)}")
        description = raw.get("description", "")
        if not isinstance(description, str):
            check.fail("description", "must be a string")
        name = raw.get("name", Path(source).stem)
        if not isinstance(name, str):
            check.fail("name", "must be a string")
        return cls(name=name, num_nodes=num_nodes, ops_=op_names, stages=tuple(stages),
                   resolution=resolution, description=description, reduction=reduction)

    def to_config(self) -> dict[str, Any]:
        """The YAML mapping of this space (``from_config(to_config())`` is an equal space)."""
        return {
            "name": self.name, "description": self.description,
            "cell": {"nodes": self.num_nodes, "ops": list(self.ops)},
            "stages": [{"cells": s.cells, "depth": list(s.depth), "width": list(s.width),
                        "kernel": list(s.kernel)} for s in self.stages],
            "resolution": list(self.resolution),
            "reduction": self.reduction,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(str(self.to_config()))

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {self.size()} archs, elastic={list(self.elastic)})"

    # ------------------------------------------------------------------ choices

    def _stage_choices(self, dim: str) -> list[tuple[int, ...]]:
        return [getattr(s, dim) for s in self.stages]

    def _choice_count(self, dim: str) -> int:
        if dim == "resolution":
            return len(self.resolution)
        return max(len(c) for c in self._stage_choices(dim))

    def _genes(self) -> list[tuple[str, int, tuple]]:
        """Every independent choice as (dimension, index, allowed values)."""
        genes = [("cell", e, self.ops) for e in range(len(self.edges))]
        for dim in STAGE_DIMS:
            genes += [(dim, s, c) for s, c in enumerate(self._stage_choices(dim))]
        genes.append(("resolution", 0, self.resolution))
        return genes

    def _make(self, values: dict[str, list]) -> Arch:
        return Arch(cell=tuple(values["cell"]), depth=tuple(values["depth"]),
                    width=tuple(values["width"]), kernel=tuple(values["kernel"]),
                    resolution=values["resolution"][0], elastic=self.elastic)

    def _values(self, arch: Arch) -> dict[str, list]:
        return {"cell": list(arch.cell), "depth": list(arch.depth), "width": list(arch.width),
                "kernel": list(arch.kernel), "resolution": [arch.resolution]}

    def size(self) -> int:
        """The exact number of architectures (the product of all choice counts)."""
        return math.prod(len(allowed) for _, _, allowed in self._genes())

    def max_arch(self) -> Arch:
        """The largest subnet: deepest, widest, largest kernel and resolution, every edge the
        op with the most parameters (ties broken by FLOPs, then list order)."""
        return self._extreme(max, max(self.ops, key=_op_size))

    def min_arch(self) -> Arch:
        """The smallest subnet: shallowest, narrowest, smallest kernel and resolution, every edge
        the op with the fewest parameters and FLOPs that is not the zero op (if any)."""
        nonzero = [o for o in self.ops if not ops.get(o).is_zero] or list(self.ops)
        return self._extreme(min, min(nonzero, key=_op_size))

    def _extreme(self, pick, op: str) -> Arch:
        values = {dim: [pick(c) for c in self._stage_choices(dim)] for dim in STAGE_DIMS}
        values["cell"] = [op] * len(self.edges)
        values["resolution"] = [pick(self.resolution)]
        return self._make(values)

    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random architecture, drawn from ``rng`` only."""
        values = {"cell": [], "depth": [], "width": [], "kernel": [], "resolution": []}
        for dim, _, allowed in self._genes():
            values[dim].append(rng.choice(allowed))
        return self._make(values)

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """Changes exactly one choice of ``arch`` to another allowed value."""
        self.check(arch)
        genes = [g for g in self._genes() if len(g[2]) > 1]
        if not genes:
            raise ArchError(f"space {self.name!r} has a single architecture; nothing to mutate")
        dim, i, allowed = rng.choice(genes)
        values = self._values(arch)
        values[dim][i] = rng.choice([v for v in allowed if v != values[dim][i]])
        return self._make(values)

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Uniform crossover: every choice is taken from ``a`` or ``b`` with equal probability."""
        self.check(a)
        self.check(b)
        va, vb = self._values(a), self._values(b)
        return self._make({dim: [x if rng.random() < 0.5 else y for x, y in zip(va[dim], vb[dim])]
                           for dim in va})

    def live_cell(self, cell: tuple[str, ...]) -> tuple[str, ...]:
        """``cell`` with ``none`` on every edge whose target node never reaches the cell's
        output (a node whose out-edges are all ``none`` or lead only to such nodes).

        Such an edge's op is computed and thrown away: it does not change what the network
        computes, so two cells equal up to dead edges are the same function (and score the same
        accuracy up to training noise). NAS-Bench-201 has 12,205 live cells for 15,625 strings.
        """
        sink = self.num_nodes - 1
        reaches = {sink}
        for node in range(sink - 1, -1, -1):
            if any(op != "none" and src == node and dst in reaches
                   for op, (src, dst) in zip(cell, self.edges)):
                reaches.add(node)
        return tuple(op if dst in reaches else "none" for op, (_, dst) in zip(cell, self.edges))

    def encode(self, arch: Arch) -> list[float]:
        """A numeric encoding for predictors: one-hot ops per edge of the live cell (dead edges
        read as ``none``, see :meth:`live_cell`), then each other choice with more than one
        value as its index scaled to [0, 1]. Archs that compute the same function share a
        code, so a surrogate learns from one what it needs for the other."""
        self.check(arch)
        values = self._values(arch)
        live = self.live_cell(arch.cell)
        out: list[float] = []
        for dim, i, allowed in self._genes():
            if dim == "cell":
                out += [1.0 if live[i] == op else 0.0 for op in allowed]
            elif len(allowed) > 1:
                out.append(allowed.index(values[dim][i]) / (len(allowed) - 1))
        return out

    # ------------------------------------------------------------------ strings and JSON

    def check(self, arch: Arch) -> None:
        """Raises ArchError if ``arch`` is not a point of this space."""
        if not isinstance(arch, Arch):
            raise ArchError(f"expected an Arch, got {type(arch).__name__}")
        values = self._values(arch)
        for dim, i, allowed in self._genes():
            if len(values[dim]) != sum(1 for g in self._genes() if g[0] == dim):
                raise ArchError(f"arch {arch} has {len(values[dim])} {dim} values; space "
                                f"{self.name!r} expects one per {'edge' if dim == 'cell' else 'stage'}")
            if values[dim][i] not in allowed:
                where = f"edge {i}" if dim == "cell" else f"stage {i}" if dim != "resolution" else "input"
                raise ArchError(f"arch {arch}: {dim} {values[dim][i]!r} at {where} is not in "
                                f"space {self.name!r} (allowed: {', '.join(map(str, allowed))})")

    def parse(self, text: str) -> Arch:
        """Parses a canonical arch string (or a NAS-Bench-201 cell string for spaces without
        elastic dimensions).

        Raises:
            ArchError: malformed string or a choice the space does not allow.
        """
        if not isinstance(text, str) or not text.strip():
            raise ArchError("empty arch string; expected e.g. "
                            f"{str(self.max_arch())!r}")
        cell_text, *rest = text.strip().split(";")
        values = self._values(self.max_arch())
        values["cell"] = self._parse_cell(cell_text.strip(), text)
        given = set()
        for part in rest:
            key, sep, val = part.partition("=")
            key = key.strip()
            if not sep or key not in DIMS:
                raise ArchError(f"arch {text!r}: bad part {part!r}; expected KEY=VALUES with KEY "
                                f"one of {', '.join(DIMS)}")
            try:
                nums = [int(v) for v in val.split(",")]
            except ValueError:
                raise ArchError(f"arch {text!r}: {key} values {val!r} must be integers") from None
            expected = 1 if key == "resolution" else len(self.stages)
            if len(nums) != expected:
                raise ArchError(f"arch {text!r}: {key} needs {expected} value(s), got {len(nums)}")
            values[key] = nums
            given.add(key)
        missing = [d for d in self.elastic if d not in given]
        if missing:
            raise ArchError(f"arch {text!r}: missing {', '.join(missing)} (space {self.name!r} "
                            f"is elastic in {', '.join(self.elastic)})")
        arch = self._make(values)
        self.check(arch)
        return arch

    def _parse_cell(self, cell_text: str, text: str) -> list[str]:
        groups = cell_text.split("+")
        if len(groups) != self.num_nodes - 1:
            raise ArchError(f"arch {text!r}: the cell needs {self.num_nodes - 1} '+'-separated "
                            f"node groups like |op~0|+|op~0|op~1|..., got {len(groups)}")
        cell = []
        for node, group in enumerate(groups, start=1):
            if not (group.startswith("|") and group.endswith("|")):
                raise ArchError(f"arch {text!r}: node group {group!r} must start and end with '|'")
            entries = group[1:-1].split("|")
            if len(entries) != node:
                raise ArchError(f"arch {text!r}: node {node} needs {node} inputs, got {group!r}")
            for src, entry in enumerate(entries):
                op, sep, idx = entry.partition("~")
                if not sep or idx != str(src):
                    raise ArchError(f"arch {text!r}: expected 'op~{src}' in node {node}, got {entry!r}")
                if op not in self.ops:
                    raise ArchError(f"arch {text!r}: op {op!r} is not in space {self.name!r} "
                                    f"(allowed: {', '.join(self.ops)})")
                cell.append(op)
        return cell

    def from_dict(self, data: dict[str, Any]) -> Arch:
        """Reverses :meth:`Arch.to_dict`.

        Raises:
            ArchError: missing keys or values the space does not allow.
        """
        try:
            arch = Arch(cell=tuple(data["cell"]), depth=tuple(data["depth"]),
                        width=tuple(data["width"]), kernel=tuple(data["kernel"]),
                        resolution=int(data["resolution"]), elastic=self.elastic)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchError(f"arch mapping {data!r} is malformed: {exc}") from None
        self.check(arch)
        return arch

    # ------------------------------------------------------------------ the walk

    def walk(self, arch: Arch, *, in_channels: int = 3, num_classes: int = 10) -> Iterator[Layer]:
        """Yields every layer of ``arch`` in execution order: the stem, each cell edge (zero
        edges included, they cost nothing), the reduction blocks, and the classifier head.

        This is the one walk of the architecture: the supernet's weights, the parameter and
        FLOP counts and the latency lookup tables are all derived from it.
        """
        res = arch.resolution
        yield Layer("stem", "stem", in_channels, arch.width[0], 3, 1, res)
        last = len(self.stages) - 1
        for s in range(len(self.stages)):
            c = arch.width[s]
            for i in range(arch.depth[s]):
                for e, op in enumerate(arch.cell):
                    spec = ops.get(op)
                    k = arch.kernel[s] if spec.elastic_kernel else spec.kernel
                    yield Layer(f"stage{s}_cell{i}_edge{e}_{op}", op, c, c, k, 1, res, s, i, e)
            if s < last:
                yield Layer(f"reduce{s}", self.reduction, c, arch.width[s + 1], 3, 2, res, s)
                res //= 2
        yield Layer("head", "classifier", arch.width[last], num_classes, 0, 1, res)

    def params(self, arch: Arch, *, in_channels: int = 3, num_classes: int = 10) -> int:
        """Number of parameters of the subnet ``arch`` (equal to its extracted model's)."""
        return sum(l.params for l in self.walk(arch, in_channels=in_channels, num_classes=num_classes))

    def flops(self, arch: Arch, *, in_channels: int = 3, num_classes: int = 10) -> int:
        """FLOPs of one image through ``arch`` (2 x MACs of conv and linear layers, the
        convention of torch.utils.flop_counter)."""
        return sum(l.flops for l in self.walk(arch, in_channels=in_channels, num_classes=num_classes))


def _op_size(op: str) -> tuple[int, int]:
    """(params, FLOPs) of one instance of ``op`` at a nominal size, to rank ops by cost."""
    spec = ops.get(op)
    return spec.params(8, 8, spec.kernel), spec.flops(8, 8, spec.kernel, 1, 8)


class _Checker:
    """Validation helpers that raise SpaceError naming the file and the key path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str):
        raise SpaceError(f"{self.source}: {where or '<top level>'}: {message}")

    def mapping(self, value: Any, where: str, allowed: set[str], required: set[str]) -> None:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping with keys {', '.join(sorted(allowed))}, "
                             f"got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                self.fail(f"{where}.{key}".lstrip("."),
                          f"unknown key {key!r}; allowed keys: {', '.join(sorted(allowed))}")
        for key in sorted(required - set(value)):
            self.fail(f"{where}.{key}".lstrip("."), "required key is missing")

    def int(self, value: Any, where: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer >= {minimum}, got {value!r}")
        if value < minimum:
            self.fail(where, f"must be an integer >= {minimum}, got {value}")
        return value

    def choices(self, value: Any, where: str, kind: type, minimum: int = 1) -> tuple:
        if not isinstance(value, list):
            self.fail(where, f"must be a list of choices, got {type(value).__name__} {value!r}")
        if not value:
            self.fail(where, "the choice list is empty; give at least one value")
        out = []
        for i, v in enumerate(value):
            if kind is str:
                if not isinstance(v, str):
                    self.fail(f"{where}[{i}]", f"must be a string, got {v!r}")
                out.append(v)
            else:
                out.append(self.int(v, f"{where}[{i}]", minimum))
        if len(set(out)) != len(out):
            self.fail(where, f"duplicate choices in {value!r}")
        return tuple(out)

