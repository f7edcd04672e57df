"""Searching a space for good archs: searchers, objectives, evaluation, outputs.

The searchers (:class:`RandomSearch`, :class:`RegularizedEvolution`, :class:`NSGA2`) are
torch-free: they take an explicit ``random.Random``, ask an :class:`Oracle` for metrics (which
enforces the query budget and refuses repeated queries), and may rank proposals with a
:class:`Surrogate`. :func:`run_search` wires a :class:`SearchConfig` to an evaluator (a supernet
checkpoint or a :class:`TableEvaluator`), latency models, the history file (resume) and the
output files (fronts, plots, logs).

Modules: ``objectives`` (what is optimised), ``oracle`` (budget, no repeats), ``random`` /
``evolution`` (searchers), ``surrogate`` (the online predictor), ``halving`` (successive halving
of a generation), ``table`` (tabular evaluator), ``config`` (the strict config), ``runner``
(history, resume, outputs), ``report`` (fronts, plots, summary).
"""
from nas.search.config import SEARCHERS, SearchConfig
from nas.search.evolution import NSGA2, InfeasibleError, RegularizedEvolution, make_evolution
from nas.search.halving import Halving, successive_halving
from nas.search.objectives import Constraint, Objective, Problem, parse_constraint, parse_objective
from nas.search.oracle import Oracle
from nas.search.random import RandomSearch
from nas.search.runner import SearchResult, load_history, run_search, summary_text
from nas.search.surrogate import KernelRidge, Surrogate
from nas.search.table import Table, TableEvaluator, TableLatency

__all__ = [
    "Constraint", "Halving", "InfeasibleError", "KernelRidge", "NSGA2", "Objective", "Oracle",
    "Problem", "RandomSearch", "RegularizedEvolution", "SEARCHERS", "SearchConfig",
    "SearchResult", "Surrogate", "Table", "TableEvaluator", "TableLatency", "load_history",
    "make_evolution", "parse_constraint", "parse_objective", "run_search", "successive_halving",
    "summary_text",
]
