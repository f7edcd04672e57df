"""The search stage's config: one strict, frozen dataclass, resolved before a search starts.

:class:`SearchConfig` holds what a search *is* (where metrics come from, objectives,
constraints, searcher and its hyperparameters, budget, seed). ``None`` fields mean "the
default for this searcher / problem"; :func:`resolve` fills them in, and the resolved config is
what ``DIR/config.yaml`` records and what a restart into the same folder must match.

Defaults (tuned on NAS-Bench-201 with ``benchmarks/bench_nb201.py``, on the 12-epoch
validation signal only):

=================  ==========================================================================
objectives         top1, plus the latency of every device that has no latency constraint (a
                   constrained device is a budget, not an objective); with neither a latency
                   model nor a constraint: top1 and params
searcher           ``random``: batches of 10; ``evolution``: regularized evolution for one
                   objective (population 50, tournament 10, 20 initial samples, 10 proposals
                   per child), NSGA-II for several (population 40, 5 children per generation,
                   crossover 0.5, 10 proposals per child, 3 of 5 children by expected
                   hypervolume improvement with the reference top-1 at the initial
                   population's 30th percentile, the others by optimism 0.5; surrogate
                   targets floored at the 30th percentile); regularized evolution queries one
                   child at a time on a table, 10 on a supernet
halving            on (eta 3, 3 rungs) for a supernet checkpoint; a table has one fidelity
=================  ==========================================================================

This module is torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nas.errors import ConfigError

SEARCHERS = ("random", "evolution")

# option -> {searcher kind: default}; kinds: random, rea (one objective), nsga2 (several)
_OPTIONS: dict[str, dict[str, Any]] = {
    "batch_size": {"random": 10, "rea": 1},
    "population": {"rea": 50, "nsga2": 40},
    "sample": {"rea": 10},
    "initial": {"rea": 20},
    "offspring": {"nsga2": 5},
    "crossover_prob": {"nsga2": 0.5},
    "candidates_per_child": {"rea": 10, "nsga2": 10},
    "optimism": {"nsga2": 0.5},
    "ehvi_share": {"nsga2": 0.6},
    "reference_quantile": {"nsga2": 0.3},
    "floor_quantile": {"rea": 0.5, "nsga2": 0.3},
}


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search (see the module docstring).

    Exactly one source of accuracy: ``checkpoint`` (a supernet) or ``table`` (a CSV with
    ``accuracy_column``; ``latency_columns`` become latency models).
    """

    space: str | None = None
    checkpoint: str | None = None
    table: str | None = None
    accuracy_column: str | None = None
    latency_columns: tuple[str, ...] = ()
    latency: tuple[str, ...] = ()
    objectives: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    searcher: str = "evolution"
    budget: int = 100
    seed: int = 0
    surrogate: bool = True
    device: str = "cpu"
    calib_images: int | None = None
    halving_eta: int | None = None
    halving_rungs: int = 3
    infeasible_patience: int = 30
    batch_size: int | None = None
    population: int | None = None
    sample: int | None = None
    initial: int | None = None
    offspring: int | None = None
    crossover_prob: float | None = None
    candidates_per_child: int | None = None
    optimism: float | None = None
    ehvi_share: float | None = None
    reference_quantile: float | None = None
    floor_quantile: float | None = None

    def __post_init__(self):
        if self.searcher not in SEARCHERS:
            raise ValueError(f"searcher: unknown searcher {self.searcher!r}; choose one of "
                             f"{', '.join(SEARCHERS)}")
        if (self.checkpoint is None) == (self.table is None):
            raise ValueError("give exactly one of checkpoint (a supernet) and table (a CSV)")
        if self.table is not None and not self.accuracy_column:
            raise ValueError("table: needs accuracy_column (the column read as top-1)")
        if self.table is None and (self.accuracy_column or self.latency_columns):
            raise ValueError("accuracy_column and latency_columns only apply to a table")
        if self.table is not None and self.space is None:
            raise ValueError("space: a table search needs the search-space YAML file")
        if self.table is not None and self.halving_eta:
            raise ValueError("halving_eta: a table has a single fidelity; successive halving "
                             "needs a supernet checkpoint")
        for name in ("budget", "halving_rungs", "infeasible_patience", "batch_size", "population",
                     "sample", "initial", "offspring", "candidates_per_child", "calib_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        if self.halving_eta not in (None, 0) and self.halving_eta < 2:
            raise ValueError(f"halving_eta: must be 0 (off) or >= 2, got {self.halving_eta}")
        for name in ("crossover_prob", "ehvi_share", "reference_quantile", "floor_quantile"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {value}")

    def kind(self) -> str:
        """``random``, ``rea`` (evolution, one objective) or ``nsga2`` (several); needs
        resolved objectives."""
        if self.searcher == "random":
            return "random"
        return "rea" if len(self.objectives) == 1 else "nsga2"

    def searcher_options(self) -> dict[str, Any]:
        """The keyword arguments of the searcher class (resolved config only)."""
        kind = self.kind()
        out = {name: getattr(self, name) for name, table in _OPTIONS.items() if kind in table}
        if kind != "random":
            out["surrogate"] = self.surrogate
            out["infeasible_patience"] = self.infeasible_patience
            # A supernet's best-trained subnets are its largest and smallest (sandwich rule):
            # they lead the initial population. A table has no such bias.
            out["seed_extremes"] = self.checkpoint is not None
        return out


def default_objectives(devices: tuple[str, ...], constraints: tuple[str, ...],
                       constrained_devices: tuple[str, ...]) -> tuple[str, ...]:
    """top1 + the latency of each unconstrained device; top1 + params without any latency
    model or constraint."""
    objectives = ("top1",) + tuple(f"latency:{d}" for d in devices if d not in constrained_devices)
    if len(objectives) == 1 and not devices and not constraints:
        objectives += ("params",)
    return objectives


def resolve(config: SearchConfig, *, objectives: tuple[str, ...]) -> SearchConfig:
    """Fills the ``None`` fields in: the objectives given, the searcher's defaults, halving.

    Raises:
        ConfigError: an option set that does not apply to the chosen searcher.
    """
    config = replace(config, objectives=tuple(objectives))
    kind = config.kind()
    updates: dict[str, Any] = {}
    for name, table in _OPTIONS.items():
        value = getattr(config, name)
        if kind not in table:
            if value is not None:
                applies = sorted(k for k in table)
                raise ConfigError(f"option {name!r} does not apply to the {kind} searcher "
                                  f"(it applies to: {', '.join(applies)})")
            continue
        if value is None:
            updates[name] = table[kind]
    if kind == "rea" and config.batch_size is None and config.checkpoint is not None:
        updates["batch_size"] = 10  # a supernet evaluates children in parallel / by halving
    if config.halving_eta is None:
        updates["halving_eta"] = 3 if config.checkpoint is not None else 0
    return replace(config, **updates)
