"""What a search optimises: objectives, constraints, and the ranking they imply.

An :class:`Objective` names one metric of a candidate (see :mod:`nas.candidate` for the keys) and
its direction; a :class:`Constraint` bounds one metric. A :class:`Problem` holds both and turns a
candidate's metrics into what the searchers compare:

* ``losses(metrics)``: the objectives as a tuple to *minimise* (maximised ones negated);
* ``violation(metrics)``: 0.0 when every constraint holds, else the sum of relative excesses;
* ``order(metrics_list)``: the candidates best first, by Deb's constrained domination (feasible
  before infeasible; feasible by non-dominated front then crowding distance, infeasible by
  violation).

Text forms (command line and config files)::

    objectives   top1 | loss | params | flops | latency:DEVICE
    constraints  METRIC<=VALUE or METRIC>=VALUE, e.g. latency:cpu<=5ms, params<=1e6, params<=1.5M,
                 flops<=300M, top1>=0.8 or top1>=80%

This module is torch-free and knows nothing of evaluators or files.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from nas.candidate import FLOPS, LATENCY_PREFIX, LOSS, PARAMS, TOP1, latency_key
from nas.errors import ConfigError
from nas.pareto import crowding_distance, non_dominated_sort

Metrics = Mapping[str, float]

# metric name -> (metric key, maximised?, axis label with unit)
_PLAIN = {
    "top1": (TOP1, True, "top-1 (%)"),
    "loss": (LOSS, False, "validation loss"),
    "params": (PARAMS, False, "parameters (M)"),
    "flops": (FLOPS, False, "FLOPs (M)"),
}
METRIC_FORMS = "top1, loss, params, flops or latency:DEVICE"
_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


@dataclass(frozen=True)
class Objective:
    """One objective: the metric ``key`` of a candidate, maximised or minimised.

    Attributes:
        name: the text form (``top1``, ``latency:raspi4``, ...).
        key: the metric key (``top1``, ``latency_ms.raspi4``, ...).
        maximize: True for top-1, False for costs.
        label: an axis label with its unit (top-1 is shown in percent, params/FLOPs in millions).
    """

    name: str
    key: str
    maximize: bool
    label: str

    @property
    def device(self) -> str | None:
        """The latency device of a ``latency:DEVICE`` objective, else None."""
        return self.key[len(LATENCY_PREFIX):] if self.key.startswith(LATENCY_PREFIX) else None

    def value(self, metrics: Metrics) -> float:
        """The metric's value (KeyError naming the missing key when it was not measured)."""
        try:
            return float(metrics[self.key])
        except KeyError:
            raise KeyError(f"metric {self.key!r} (objective {self.name}) was not measured; "
                           f"measured: {', '.join(sorted(metrics))}") from None

    def loss(self, metrics: Metrics) -> float:
        """The value in minimisation form (negated when maximised)."""
        v = self.value(metrics)
        return -v if self.maximize else v

    def display(self, value: float) -> float:
        """The value in the unit of :attr:`label` (top-1 in %, params and FLOPs in millions)."""
        if self.key == TOP1:
            return 100.0 * value
        if self.key in (PARAMS, FLOPS):
            return value / 1e6
        return value


def parse_objective(text: str) -> Objective:
    """``top1``, ``loss``, ``params``, ``flops`` or ``latency:DEVICE`` -> :class:`Objective`.

    Raises:
        ConfigError: any other text (the message lists the allowed forms).
    """
    name = text.strip() if isinstance(text, str) else ""
    if name in _PLAIN:
        key, maximize, label = _PLAIN[name]
        return Objective(name, key, maximize, label)
    kind, sep, device = name.partition(":")
    if kind == "latency" and sep and re.fullmatch(r"[\w.\-]+", device):
        return Objective(name, latency_key(device), False, f"latency on {device} (ms)")
    raise ConfigError(f"unknown objective {text!r}; allowed: {METRIC_FORMS}")


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``, in the metric's own unit (top-1 a fraction,
    latency in ms, params and FLOPs as counts)."""

    text: str
    metric: Objective
    op: str
    bound: float

    def satisfied(self, metrics: Metrics) -> bool:
        return self.violation(metrics) == 0.0

    def violation(self, metrics: Metrics) -> float:
        """0.0 when satisfied, else the excess relative to the bound (comparable across units)."""
        v = self.metric.value(metrics)
        excess = v - self.bound if self.op == "<=" else self.bound - v
        return max(0.0, excess) / max(abs(self.bound), 1e-12)


_CONSTRAINT = re.compile(r"^\s*([\w:.\-]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*([a-zA-Z%]*)\s*$")


def parse_constraint(text: str) -> Constraint:
    """Parses ``METRIC<=VALUE[UNIT]`` or ``METRIC>=VALUE[UNIT]`` (see the module docstring).

    Units: ``ms`` for latency (optional), ``%`` for top-1 (else a fraction in [0, 1]), ``k``,
    ``M``, ``G`` for params and FLOPs.

    Raises:
        ConfigError: bad syntax, an unknown metric, or a unit that does not fit the metric.
    """
    m = _CONSTRAINT.match(text) if isinstance(text, str) else None
    if not m:
        raise ConfigError(f"bad constraint {text!r}; expected METRIC<=VALUE or METRIC>=VALUE with "
                          f"METRIC one of {METRIC_FORMS}, e.g. latency:cpu<=5ms, params<=1e6, "
                          "top1>=0.8")
    name, op, number, unit = m.groups()
    metric = parse_objective(name)
    try:
        bound = float(number)
    except ValueError:
        raise ConfigError(f"constraint {text!r}: {number!r} is not a number") from None
    if metric.device is not None:
        if unit not in ("", "ms"):
            raise ConfigError(f"constraint {text!r}: latency bounds are in ms, got unit {unit!r}")
    elif metric.key == TOP1:
        if unit == "%":
            bound /= 100.0
        elif unit:
            raise ConfigError(f"constraint {text!r}: top1 takes a fraction or a percent (80%)")
        if not 0.0 <= bound <= 1.0:
            raise ConfigError(f"constraint {text!r}: top1 bound {bound} is not a fraction in "
                              "[0, 1] (write 80% for a percent)")
    elif metric.key in (PARAMS, FLOPS) and unit in _SUFFIX:
        bound *= _SUFFIX[unit]
    elif unit:
        raise ConfigError(f"constraint {text!r}: unknown unit {unit!r} for {name}")
    if not math.isfinite(bound):
        raise ConfigError(f"constraint {text!r}: the bound must be finite")
    return Constraint(text.strip(), metric, op, bound)


@dataclass(frozen=True)
class Problem:
    """The objectives (at least one) and constraints of a search."""

    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()

    def __post_init__(self):
        if not self.objectives:
            raise ConfigError("a search needs at least one objective")
        names = [o.name for o in self.objectives]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"objective {name!r} is given twice")

    @classmethod
    def parse(cls, objectives: Sequence[str], constraints: Sequence[str] = ()) -> "Problem":
        """From text forms (see the module docstring)."""
        return cls(tuple(parse_objective(o) for o in objectives),
                   tuple(parse_constraint(c) for c in constraints))

    @property
    def keys(self) -> tuple[str, ...]:
        """Every metric key the objectives and constraints read, objectives first."""
        keys = [o.key for o in self.objectives] + [c.metric.key for c in self.constraints]
        return tuple(dict.fromkeys(keys))

    @property
    def devices(self) -> tuple[str, ...]:
        """The latency devices the objectives and constraints name."""
        out = [o.device for o in self.objectives] + [c.metric.device for c in self.constraints]
        return tuple(dict.fromkeys(d for d in out if d))

    def losses(self, metrics: Metrics) -> tuple[float, ...]:
        return tuple(o.loss(metrics) for o in self.objectives)

    def violation(self, metrics: Metrics) -> float:
        return sum(c.violation(metrics) for c in self.constraints)

    def feasible(self, metrics: Metrics) -> bool:
        return self.violation(metrics) == 0.0

    def fronts(self, metrics_list: Sequence[Metrics]) -> list[list[int]]:
        """Constrained non-dominated sorting (Deb 2002): the feasible candidates' fronts, then the
        infeasible ones in groups of equal violation, smallest first."""
        viol = [self.violation(m) for m in metrics_list]
        feasible = [i for i, v in enumerate(viol) if v == 0.0]
        fronts = [[feasible[j] for j in f]
                  for f in non_dominated_sort([self.losses(metrics_list[i]) for i in feasible])]
        infeasible = sorted((i for i, v in enumerate(viol) if v > 0.0), key=lambda i: viol[i])
        for i in infeasible:
            if fronts and fronts[-1] and viol[fronts[-1][0]] == viol[i] and viol[i] > 0.0:
                fronts[-1].append(i)
            else:
                fronts.append([i])
        return fronts

    def rank_and_crowding(self, metrics_list: Sequence[Metrics]) -> tuple[list[int], list[float]]:
        """Each candidate's front number (0 = best) and crowding distance within its front."""
        n = len(metrics_list)
        rank, crowd = [0] * n, [0.0] * n
        losses = [self.losses(m) for m in metrics_list]
        for r, front in enumerate(self.fronts(metrics_list)):
            for i, d in zip(front, crowding_distance(losses, front)):
                rank[i], crowd[i] = r, d
        return rank, crowd

    def order(self, metrics_list: Sequence[Metrics]) -> list[int]:
        """Indices best first: by front, then by decreasing crowding distance, then index."""
        rank, crowd = self.rank_and_crowding(metrics_list)
        return sorted(range(len(metrics_list)), key=lambda i: (rank[i], -crowd[i], i))
