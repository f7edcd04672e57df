"""Evolutionary searchers: NSGA-II for several objectives, regularized evolution for one.

* :class:`NSGA2` (Deb et al. 2002): a population ranked by constrained non-dominated sorting and
  crowding distance; parents by binary tournament; children by the space's uniform crossover
  and single-choice mutation; elitist survival of the best ``population`` of parents and
  children.
* :class:`RegularizedEvolution` (aging evolution, Real et al. 2019): tournament of ``sample``
  among the ``population`` most recent candidates, mutate the winner, the oldest dies.
  Constraints (a latency budget per device, ``params<=...``) are handled by Deb's rules: a
  feasible candidate beats an infeasible one, two infeasible ones compare by violation, so the
  population is pulled into the feasible region. If ``infeasible_patience`` evaluations bring no
  feasible candidate, the constraints are reported as infeasible (:class:`InfeasibleError`)
  instead of spending the budget.

Both are surrogate-assisted by default (:mod:`nas.search.surrogate`): each needed child is
drawn ``candidates_per_child`` times, a model fitted on everything evaluated so far predicts the
proposals, and only the best predicted are queried. Regularized evolution pre-selects by
predicted feasibility, then predicted objective. NSGA-II fills ``ehvi_share`` of each
generation by expected hypervolume improvement of the top-1 / cost fronts
(:mod:`nas.search.acquisition`: exact costs where they are free, top-1 as the model's normal
prediction), the rest by non-dominated sorting of the predictions (top-1 made optimistic by
``optimism`` standard deviations) together with the evaluated archive, then crowding distance.
The first reaches the steps of the fronts where a child would add most; the second keeps the
ends and the spread of the front, where a model fitted on few points is least reliable. Three
children of five by EHVI did better on NAS-Bench-201 than either rule alone
(``benchmarks/bench_nb201.py``: EHVI alone lost the most accurate end of the raspi4 front).

Both are deterministic given the ``random.Random`` they get and the metrics they receive, which
is what makes a killed search resumable by replaying its history. Torch-free.
"""
from __future__ import annotations

import random
from collections import deque

import numpy as np

from nas.candidate import Candidate
from nas.errors import NASError
from nas.pareto import crowding_distance, non_dominated_sort
from nas.search.acquisition import greedy_ehvi_batch
from nas.search.objectives import Problem
from nas.search.oracle import Oracle
from nas.search.surrogate import Surrogate
from nas.space import Arch


class InfeasibleError(NASError):
    """No evaluated candidate satisfies the constraints, and the search gave up looking."""


def check_feasible(oracle: Oracle, patience: int | None) -> None:
    """Raises :class:`InfeasibleError` once ``patience`` evaluations (or the whole budget)
    brought no candidate that satisfies the constraints."""
    problem = oracle.problem
    cands = oracle.candidates
    if not problem.constraints or not cands:
        return
    if patience is not None and len(cands) < patience and oracle.remaining > 0:
        return
    if any(problem.feasible(c.metrics) for c in cands):
        return
    closest = min(cands, key=lambda c: problem.violation(c.metrics))
    values = ", ".join(f"{c.metric.key}={closest.metrics.get(c.metric.key, float('nan')):.4g}"
                       for c in problem.constraints)
    raise InfeasibleError(
        f"no candidate satisfies {' and '.join(c.text for c in problem.constraints)} after "
        f"{len(cands)} evaluations; the closest ({closest.arch}) has {values}. The constraints "
        "look infeasible for this space and device: relax them")


class _Assisted:
    """Shared by the evolutionary searchers: the surrogate and the proposal pre-selection."""

    def __init__(self, surrogate: bool, candidates_per_child: int, floor_quantile: float,
                 infeasible_patience: int | None, seed_extremes: bool = False):
        if candidates_per_child < 1:
            raise ValueError(f"candidates_per_child must be >= 1, got {candidates_per_child}")
        if not 0.0 <= floor_quantile <= 1.0:
            raise ValueError(f"floor_quantile must be in [0, 1], got {floor_quantile}")
        self.surrogate = surrogate
        self.floor_quantile = floor_quantile
        self.seed_extremes = seed_extremes
        self.candidates_per_child = candidates_per_child if surrogate else 1
        self.infeasible_patience = infeasible_patience

    def _model(self, oracle: Oracle) -> Surrogate | None:
        """A new surrogate for one run (None when surrogate assistance is off)."""
        if not self.surrogate:
            return None
        return Surrogate(oracle.space, oracle.problem.keys, floor_quantile=self._floor(oracle.problem))

    def _children(self, oracle: Oracle, make, n: int, rng: random.Random,
                  model: Surrogate | None) -> list[Arch]:
        """``n`` children to evaluate: drawn ``candidates_per_child`` times over and pre-selected
        by the surrogate ``model`` (refitted on everything evaluated so far) when there is one;
        metrics the oracle knows for free (a latency table) replace the model's guesses."""
        proposals = oracle.propose(make, n * self.candidates_per_child, rng)
        if len(proposals) <= n or model is None or not model.fit(oracle.candidates):
            return proposals[:n]
        pred = model.predict(proposals)
        for key, values in oracle.known_metrics(proposals).items():
            if key in pred:  # exact, where a model answers for free (a latency table)
                pred[key] = (np.asarray(values, dtype=float), np.zeros(len(values)))
        order = self._preselect(oracle, proposals, pred, n)
        return [proposals[i] for i in order[:n]]

    def _floor(self, problem: Problem) -> dict[str, float]:
        """The surrogate's floors: top-1 targets below ``floor_quantile`` are raised to it."""
        top = _maximised(problem)
        return {top.key: self.floor_quantile} if top is not None and self.floor_quantile else {}

    def _preselect(self, oracle: Oracle, proposals: list[Arch], pred: dict, n: int) -> list[int]:
        """Proposals' indices, those to query (the first ``n``) first."""
        raise NotImplementedError

    def _initial(self, oracle: Oracle, n: int, rng: random.Random) -> list[Arch]:
        """The initial population: uniform samples, led by the smallest arch when there are
        constraints (it is the likeliest to fit a budget, and tells early if none can), and by
        the smallest and the largest with ``seed_extremes`` (the two ends of a front; in a
        supernet trained with the sandwich rule, the best-trained subnets)."""
        space = oracle.space
        first = [space.min_arch()] if oracle.problem.constraints or self.seed_extremes else []
        first += [space.max_arch()] if self.seed_extremes else []
        first = [a for a in dict.fromkeys(first) if not oracle.seen(a)][:n]
        taken = set(first)
        rest = oracle.propose(lambda: space.sample(rng), n, rng)
        return (first + [a for a in rest if a not in taken])[:n]


def _maximised(problem: Problem):
    """The problem's one maximised objective (top-1), or None when there is not exactly one."""
    top = [o for o in problem.objectives if o.maximize]
    return top[0] if len(top) == 1 else None


def _predicted_metrics(pred: dict, i: int, optimism: float, problem: Problem) -> dict[str, float]:
    """The i-th proposal's predicted metrics; maximised objectives (top-1: noisy and hard to
    predict) are raised by ``optimism`` standard deviations, costs (latency, params, FLOPs,
    whose models are near exact) are taken as predicted."""
    out = {key: float(mean[i]) for key, (mean, std) in pred.items()}
    for o in problem.objectives:
        if o.maximize:
            mean, std = pred[o.key]
            out[o.key] = float(mean[i] + optimism * std[i])
    return out


class RegularizedEvolution(_Assisted):
    """Aging evolution maximising one objective under constraints (see the module docstring).

    Args:
        population: candidates kept (the most recent).
        sample: tournament size.
        initial: uniform samples evaluated first (in one batch).
        batch_size: children per evaluator call (> 1 for parallel or successive-halving
            evaluation).
        surrogate: rank proposals with the surrogate.
        candidates_per_child: proposals drawn per child queried when the surrogate is on.
        floor_quantile: the surrogate's targets below this quantile are raised to it (it
            then ranks the top of the distribution well instead of broken archs).
        infeasible_patience: evaluations without a feasible candidate before giving up.
        seed_extremes: the initial population starts with the smallest and largest archs.
    """

    name = "regularized_evolution"

    def __init__(self, *, population: int = 50, sample: int = 10, initial: int = 20,
                 batch_size: int = 1, surrogate: bool = True, candidates_per_child: int = 10,
                 floor_quantile: float = 0.5, infeasible_patience: int | None = 30,
                 seed_extremes: bool = False):
        super().__init__(surrogate, candidates_per_child, floor_quantile, infeasible_patience,
                         seed_extremes)
        if not 1 <= sample <= population:
            raise ValueError(f"need 1 <= sample <= population, got {sample} and {population}")
        if initial < 1 or batch_size < 1:
            raise ValueError("initial and batch_size must be >= 1")
        self.population, self.sample, self.initial = population, sample, initial
        self.batch_size = batch_size

    def _key(self, problem: Problem, metrics) -> tuple[float, float]:
        return problem.violation(metrics), problem.objectives[0].loss(metrics)

    def run(self, oracle: Oracle, rng: random.Random) -> None:
        """Evolves until the budget (or the space) is exhausted."""
        problem, space = oracle.problem, oracle.space
        if len(problem.objectives) != 1:
            raise ValueError("regularized evolution optimises one objective; use NSGA2")
        model = self._model(oracle)
        pop: deque[Candidate] = deque(maxlen=self.population)
        pop.extend(oracle.evaluate(self._initial(oracle, self.initial, rng)))

        def make() -> Arch:
            contenders = rng.sample(list(pop), min(self.sample, len(pop)))
            parent = min(contenders, key=lambda c: self._key(problem, c.metrics))
            return space.mutate(parent.arch, rng)

        while oracle.remaining > 0 and pop:
            check_feasible(oracle, self.infeasible_patience)
            children = self._children(oracle, make, min(self.batch_size, oracle.remaining), rng,
                                      model)
            if not children:
                return
            pop.extend(oracle.evaluate(children))
        check_feasible(oracle, self.infeasible_patience)

    def _preselect(self, oracle: Oracle, proposals: list[Arch], pred: dict, n: int) -> list[int]:
        problem = oracle.problem
        keys = [self._key(problem, _predicted_metrics(pred, i, 0.0, problem))
                for i in range(len(proposals))]
        return sorted(range(len(proposals)), key=lambda i: (keys[i], i))


class NSGA2(_Assisted):
    """NSGA-II over several objectives, with constraints (see the module docstring).

    Args:
        population: parents kept each generation (and the initial uniform sample), at most a
            fifth of the budget.
        offspring: children per generation (one evaluator call).
        crossover_prob: probability that a child is a crossover of two parents (then mutated).
        surrogate: pre-select children with the surrogate.
        candidates_per_child: proposals drawn per child queried when the surrogate is on.
        optimism: predicted top-1 is raised by this many standard deviations before
            the non-dominated pre-selection (explores where the model is unsure).
        ehvi_share: the share of each generation's children chosen by expected hypervolume
            improvement (the rest by the non-dominated pre-selection); needs top-1 and at
            least one cost among the objectives.
        reference_quantile: the hypervolume's reference top-1 is this quantile of the initial
            population's top-1 (a uniform sample: "better than most archs"); its reference
            costs are the largest seen or known (the space's largest arch, when free).
        floor_quantile: the surrogate's top-1 targets below this quantile are raised to it
            (below the reference nothing counts; the model then ranks the rest better).
        infeasible_patience: evaluations without a feasible candidate before giving up.
        seed_extremes: the initial population starts with the smallest and largest archs.
    """

    name = "nsga2"

    def __init__(self, *, population: int = 40, offspring: int = 5, crossover_prob: float = 0.5,
                 surrogate: bool = True, candidates_per_child: int = 10, optimism: float = 0.5,
                 ehvi_share: float = 0.6, reference_quantile: float = 0.3,
                 floor_quantile: float = 0.3, infeasible_patience: int | None = 30,
                 seed_extremes: bool = False):
        super().__init__(surrogate, candidates_per_child, floor_quantile, infeasible_patience,
                         seed_extremes)
        for name, value in (("ehvi_share", ehvi_share), ("reference_quantile", reference_quantile)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.ehvi_share, self.reference_quantile = ehvi_share, reference_quantile
        if population < 2 or offspring < 1:
            raise ValueError(f"need population >= 2 and offspring >= 1, got {population}, "
                             f"{offspring}")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ValueError(f"crossover_prob must be in [0, 1], got {crossover_prob}")
        self.population, self.offspring = population, offspring
        self.crossover_prob, self.optimism = crossover_prob, optimism

    def run(self, oracle: Oracle, rng: random.Random) -> None:
        """Evolves generation by generation until the budget (or the space) is exhausted."""
        problem, space = oracle.problem, oracle.space
        model = self._model(oracle)
        size = self._size(oracle)
        pop = oracle.evaluate(self._initial(oracle, size, rng))
        while oracle.remaining > 0 and pop:
            check_feasible(oracle, self.infeasible_patience)
            rank, crowd = problem.rank_and_crowding([c.metrics for c in pop])

            def tournament() -> Candidate:
                a, b = rng.randrange(len(pop)), rng.randrange(len(pop))
                return pop[min((a, b), key=lambda i: (rank[i], -crowd[i]))]

            def make() -> Arch:
                child = tournament().arch
                if rng.random() < self.crossover_prob:
                    child = space.crossover(child, tournament().arch, rng)
                return space.mutate(child, rng)

            children = self._children(oracle, make, min(self.offspring, oracle.remaining), rng,
                                      model)
            if not children:
                return
            merged = pop + oracle.evaluate(children)
            pop = [merged[i] for i in problem.order([c.metrics for c in merged])[:size]]
        check_feasible(oracle, self.infeasible_patience)

    def _size(self, oracle: Oracle) -> int:
        """The population of a run: ``population``, at most a fifth of the budget (at least 2),
        so that a small budget is not spent on the initial uniform sample."""
        return min(self.population, max(2, oracle.budget // 5))

    def _preselect(self, oracle: Oracle, proposals: list[Arch], pred: dict, n: int) -> list[int]:
        """``round(ehvi_share * n)`` proposals by expected hypervolume improvement, then the
        rest in the non-dominated order (see the class docstring)."""
        picked = self._by_ehvi(oracle, proposals, pred, round(self.ehvi_share * n))
        taken = set(picked)
        return picked + [i for i in self._by_rank(oracle, proposals, pred) if i not in taken]

    def _by_ehvi(self, oracle: Oracle, proposals: list[Arch], pred: dict, k: int) -> list[int]:
        """Up to ``k`` predicted-feasible proposals, greedily by expected hypervolume
        improvement of the feasible top-1 / cost fronts (one per cost objective)."""
        problem = oracle.problem
        top = _maximised(problem)
        costs = [o for o in problem.objectives if not o.maximize]
        evaluated = [c.metrics for c in oracle.candidates if problem.feasible(c.metrics)]
        if k < 1 or top is None or not costs or not evaluated:
            return []
        key = top.key
        guesses = [_predicted_metrics(pred, i, 0.0, problem) for i in range(len(proposals))]
        ok = [i for i, g in enumerate(guesses) if problem.violation(g) == 0.0]
        initial = [c.metrics[key] for c in oracle.candidates[:self._size(oracle)]
                   if problem.feasible(c.metrics)]
        ref_top1 = float(np.quantile(initial or [m[key] for m in evaluated],
                                     self.reference_quantile))
        front_costs = [[m[o.key] for m in evaluated] for o in costs]
        cost_values = [np.array([guesses[i][o.key] for i in ok]) for o in costs]
        largest = oracle.known_metrics([oracle.space.max_arch()])
        ref_costs = [max(front + list(values) + largest.get(o.key, []))
                     for o, front, values in zip(costs, front_costs, cost_values)]
        mean, std = pred[key]
        picked = greedy_ehvi_batch(k, [m[key] for m in evaluated], front_costs, cost_values,
                                   mean[ok], std[ok], ref_top1, ref_costs)
        return [ok[j] for j in picked]

    def _by_rank(self, oracle: Oracle, proposals: list[Arch], pred: dict) -> list[int]:
        """Proposals ordered by where their optimistic prediction would land among everything
        evaluated so far: non-dominated first, then by crowding distance in that front;
        predicted-infeasible proposals last, by predicted violation."""
        problem = oracle.problem
        archive = [problem.losses(c.metrics) for c in oracle.candidates
                   if problem.feasible(c.metrics)]
        guesses = [_predicted_metrics(pred, i, self.optimism, problem) for i in range(len(proposals))]
        viol = [problem.violation(g) for g in guesses]
        ok = [i for i in range(len(proposals)) if viol[i] == 0.0]
        points = archive + [problem.losses(guesses[i]) for i in ok]
        order: list[int] = []
        for front in non_dominated_sort(points):
            mine = [j for j in front if j >= len(archive)]
            if mine:
                dist = dict(zip(front, crowding_distance(points, front)))
                order += [ok[j - len(archive)] for j in sorted(mine, key=lambda j: (-dist[j], j))]
        return order + sorted((i for i in range(len(proposals)) if viol[i] > 0.0),
                              key=lambda i: (viol[i], i))


def make_evolution(problem: Problem, **options) -> RegularizedEvolution | NSGA2:
    """The evolutionary searcher for ``problem``: regularized evolution for one objective,
    NSGA-II for several. ``options`` are the chosen class's keyword arguments."""
    cls = RegularizedEvolution if len(problem.objectives) == 1 else NSGA2
    return cls(**options)

