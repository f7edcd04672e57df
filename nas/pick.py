"""Pick rules: choose one candidate from a Pareto front.

A rule is ``GOAL[:CONSTRAINT[,CONSTRAINT...]]`` where GOAL is one of

- ``most-accurate``: the highest ``top1``;
- ``fastest``: the lowest latency on the front's device;
- ``smallest``: the fewest parameters;

and each CONSTRAINT is ``METRIC OP VALUE`` with METRIC ``top1`` (a fraction: 0.88 is 88%),
``latency`` (milliseconds on the front's device; a trailing ``ms`` is allowed), ``params`` or
``flops``, and OP one of ``<=``, ``<``, ``>=``, ``>``. Examples: ``most-accurate:latency<=5ms``,
``fastest:top1>=0.88``, ``smallest:top1>=0.85,latency<3``.

This module only reads front rows (dicts of metrics); it does not load models.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

from nas.errors import ConfigError

GOALS = {"most-accurate": ("top1", max), "fastest": ("latency", min), "smallest": ("params", min)}
METRICS = ("top1", "latency", "params", "flops")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*([0-9.eE+-]+)\s*(ms)?\s*$")


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    value: float

    def holds(self, row: dict[str, float]) -> bool:
        return _OPS[self.op](row[self.metric], self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class PickRule:
    goal: str
    constraints: tuple[Constraint, ...]

    def __str__(self) -> str:
        return self.goal + (":" + ",".join(map(str, self.constraints)) if self.constraints else "")


def parse_rule(text: str) -> PickRule:
    """Parses a pick rule (see the module docstring).

    Raises:
        ConfigError: unknown goal or metric, bad operator or number, ``top1`` above 1.
    """
    goal, _, rest = text.strip().partition(":")
    if goal not in GOALS:
        raise ConfigError(f"--pick {text!r}: unknown goal {goal!r}; use one of "
                          f"{', '.join(GOALS)} (optionally followed by :CONSTRAINTS)")
    constraints = []
    for part in filter(None, (p.strip() for p in rest.split(","))):
        match = _CONSTRAINT.match(part)
        if not match:
            raise ConfigError(f"--pick {text!r}: constraint {part!r} is not METRIC OP VALUE "
                              f"(e.g. latency<=5ms, top1>=0.88)")
        metric, op, number, _ = match.groups()
        if metric not in METRICS:
            raise ConfigError(f"--pick {text!r}: unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        try:
            value = float(number)
        except ValueError:
            raise ConfigError(f"--pick {text!r}: {number!r} is not a number") from None
        if metric == "top1" and value > 1:
            raise ConfigError(f"--pick {text!r}: top1 is a fraction; write {value / 100:g} for {value:g}%")
        constraints.append(Constraint(metric, op, value))
    return PickRule(goal, tuple(constraints))


def pick(rows: list[dict[str, Any]], rule: PickRule) -> dict[str, Any]:
    """Returns the row of ``rows`` that ``rule`` selects.

    Each row must have the metrics the rule names (``latency`` is the front's device latency).

    Raises:
        ConfigError: no row satisfies the constraints (the message gives the front's range).
    """
    if not rows:
        raise ConfigError("the front is empty; nothing to pick")
    needed = {GOALS[rule.goal][0]} | {c.metric for c in rule.constraints}
    missing = sorted(m for m in needed if any(m not in r for r in rows))
    if missing:
        raise ConfigError(f"the front has no {', '.join(missing)} values for rule {rule}")
    feasible = [r for r in rows if all(c.holds(r) for c in rule.constraints)]
    if not feasible:
        spans = ", ".join(f"{m} {min(r[m] for r in rows):.4g}..{max(r[m] for r in rows):.4g}"
                          for m in sorted({c.metric for c in rule.constraints}))
        raise ConfigError(f"no candidate of the front satisfies {rule} (the front spans {spans})")
    metric, best = GOALS[rule.goal]
    return best(feasible, key=lambda r: r[metric])
