"""The searchers' only window on the world: ask for archs' metrics, within a budget, never twice.

An :class:`Oracle` wraps whatever computes metrics (a supernet or table evaluator plus latency
models, a history replayed on resume: see :mod:`nas.search.runner`) behind one call,
:meth:`Oracle.evaluate`, that

* refuses an arch already queried (a searcher bug: no query is ever repeated),
* evaluates at most the remaining budget,
* records every :class:`~nas.candidate.Candidate` in query order.

:meth:`Oracle.known_metrics` answers, for free, what needs no evaluation (latency from a lookup
table, a per-arch table or the FLOPs proxy), so that searchers rank proposals on exact costs.

:meth:`Oracle.propose` is the shared helper that draws distinct, never-queried archs from a
searcher's generator, falling back to uniform samples, and returns fewer (none at all) only when
the space has no unqueried arch left, so that small spaces end the search instead of looping.

This module is torch-free and does not decide which archs to query (see the searchers).
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

from nas.candidate import Candidate
from nas.search.objectives import Problem
from nas.space import Arch, SearchSpace

# evaluate(archs, order) -> one metrics dict per arch. ``order`` ranks a list of metrics dicts
# best first (the problem's ranking), for evaluators that promote the best (successive halving).
EvaluateFn = Callable[[list[Arch], Callable], list[dict]]


class Oracle:
    """Evaluates archs for a searcher (see the module docstring).

    Args:
        space: the search space.
        problem: objectives and constraints (searchers read it to rank candidates).
        evaluate: computes the metrics of a list of archs (see ``EvaluateFn``).
        budget: the most archs that may be evaluated.
        on_batch: called with the new candidates after every :meth:`evaluate` (progress bars,
            logs).
        known: metrics that cost nothing to obtain (a latency table), for archs not evaluated:
            ``known(archs) -> {metric key: one value per arch}``; see :meth:`known_metrics`.
    """

    def __init__(self, space: SearchSpace, problem: Problem, evaluate: EvaluateFn, budget: int,
                 on_batch: Callable[[list[Candidate]], None] | None = None,
                 known: Callable[[list[Arch]], dict[str, list[float]]] | None = None):
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be a positive integer, got {budget!r}")
        self.space = space
        self.problem = problem
        self.budget = budget
        self.candidates: list[Candidate] = []
        self._evaluate = evaluate
        self._on_batch = on_batch
        self._known = known
        self._seen: set[Arch] = set()
        self._size = space.size()

    @property
    def remaining(self) -> int:
        """Evaluations left in the budget (0 also when the space is exhausted)."""
        return 0 if self.exhausted else self.budget - len(self.candidates)

    @property
    def exhausted(self) -> bool:
        """Whether every arch of the space has been evaluated."""
        return len(self._seen) >= self._size

    def seen(self, arch: Arch) -> bool:
        """Whether ``arch`` was already evaluated."""
        return arch in self._seen

    def evaluate(self, archs: Sequence[Arch]) -> list[Candidate]:
        """Evaluates new archs, at most :attr:`remaining` of them (the rest are dropped).

        Raises:
            ValueError: an arch already evaluated, or twice in ``archs`` (a searcher bug).
        """
        archs = list(archs)[:self.remaining]
        fresh: set[Arch] = set()
        for arch in archs:
            if arch in self._seen or arch in fresh:
                raise ValueError(f"arch {arch} was already queried; searchers must not repeat "
                                 "queries (use Oracle.propose)")
            fresh.add(arch)
        if not archs:
            return []
        metrics = self._evaluate(archs, self.problem.order)
        batch = [Candidate(a, dict(m)) for a, m in zip(archs, metrics)]
        self._seen.update(archs)
        self.candidates.extend(batch)
        if self._on_batch is not None:
            self._on_batch(batch)
        return batch

    def known_metrics(self, archs: list[Arch]) -> dict[str, list[float]]:
        """The metrics of ``archs`` that are known without evaluating them (e.g. latency from a
        lookup table), by key; neither a query nor counted in the budget."""
        return self._known(archs) if self._known is not None else {}

    def propose(self, make: Callable[[], Arch], n: int, rng: random.Random, *,
                tries_per_arch: int = 50) -> list[Arch]:
        """Up to ``n`` distinct never-evaluated archs, drawn from ``make()``.

        When ``make`` keeps returning known archs (a converged population), uniform samples from
        ``rng`` fill the rest. Fewer than ``n`` (possibly none) come back only when the space runs
        out of unevaluated archs.
        """
        n = min(n, self.remaining)
        out: list[Arch] = []
        taken: set[Arch] = set()

        def take(arch: Arch) -> None:
            if arch not in self._seen and arch not in taken:
                out.append(arch)
                taken.add(arch)

        for _ in range(n * tries_per_arch):
            if len(out) >= n:
                return out
            take(make())
        # Uniform sampling finds an unseen arch within a few draws unless the space is almost
        # exhausted; the cap makes missing a remaining arch astronomically unlikely (e^-50).
        cap = max(1000, 50 * min(self._size, 10**6))
        for _ in range(cap):
            if len(out) >= n or len(self._seen) + len(out) >= self._size:
                break
            take(self.space.sample(rng))
        return out
