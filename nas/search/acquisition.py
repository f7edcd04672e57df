"""Expected hypervolume improvement (EHVI) of a top-1 / cost front, for the surrogate's choices.

A proposal whose cost (latency, params, FLOPs) is known and whose top-1 is predicted as a normal
``N(mean, std)`` would add to the front the area it dominates and nothing dominates yet. For two
objectives that area is a sum over the steps of the front's staircase: on a step of width ``w``
whose best top-1 is ``g``, it adds ``w * max(0, top1 - g)``, of expectation
``w * E[max(0, top1 - g)]`` (the expected improvement of Bayesian optimisation, closed form).
:func:`expected_hypervolume_improvement` computes it for many proposals at once (numpy).

:func:`greedy_ehvi_batch` picks several proposals for one evaluator call: the best by EHVI, then
the best given that the first scored its predicted mean ("kriging believer"), and so on, so
that one batch spreads over the front instead of piling onto one step.

Several costs (one latency per device) add up each device's two-objective EHVI, divided by that
front's hypervolume so that milliseconds and parameters weigh alike: the searchers report one
top-1 / cost front per device, and this is what each of them gains. Torch-free.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from nas.pareto import hypervolume


def expected_improvement(mean: np.ndarray, std: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``E[max(0, y - level)]`` for ``y ~ N(mean, std)`` (broadcast); ``max(0, mean - level)``
    where ``std`` is 0."""
    std = np.asarray(std, dtype=float)
    safe = np.maximum(std, 1e-12)
    z = (mean - level) / safe
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return np.where(std > 0, safe * (pdf + z * cdf), np.maximum(0.0, mean - level))


def expected_hypervolume_improvement(front_top1: Sequence[float], front_cost: Sequence[float],
                                     cost: np.ndarray, mean: np.ndarray, std: np.ndarray,
                                     ref_top1: float, ref_cost: float) -> np.ndarray:
    """The EHVI of proposals (exact ``cost``, top-1 ``N(mean, std)``; arrays of one length)
    over the points ``(front_top1, front_cost)`` (any points: dominated ones add nothing),
    within the reference point ``(ref_top1, ref_cost)`` (top-1 maximised, cost minimised)."""
    top1 = np.asarray(front_top1, dtype=float)
    costs = np.asarray(front_cost, dtype=float)
    keep = costs < ref_cost
    top1, costs = top1[keep], costs[keep]
    order = np.argsort(costs, kind="stable")
    top1, costs = top1[order], costs[order]
    # step k spans [edges[k], edges[k + 1]) and is dominated up to level[k]
    edges = np.concatenate([[-np.inf], costs, [ref_cost]])
    level = np.maximum.accumulate(np.concatenate([[ref_top1], np.maximum(top1, ref_top1)]))
    cost = np.asarray(cost, dtype=float)[:, None]
    width = np.maximum(0.0, edges[None, 1:] - np.maximum(edges[None, :-1], cost))
    gain = expected_improvement(np.asarray(mean, dtype=float)[:, None],
                                np.asarray(std, dtype=float)[:, None], level[None, :])
    return (width * gain).sum(1)


def greedy_ehvi_batch(k: int, front_top1: Sequence[float], front_costs: Sequence[Sequence[float]],
                      costs: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray,
                      ref_top1: float, ref_costs: Sequence[float]) -> list[int]:
    """Indices of ``k`` proposals (fewer if there are fewer), chosen one at a time by the sum
    over cost objectives of EHVI / the front's hypervolume, each choice then added to the fronts
    at its predicted mean.

    Args:
        front_top1: top-1 of the evaluated points.
        front_costs: per cost objective, the evaluated points' costs.
        costs: per cost objective, the proposals' costs.
        mean, std: the proposals' predicted top-1.
        ref_top1, ref_costs: the reference point.
    """
    top1 = list(front_top1)
    fronts = [list(c) for c in front_costs]
    left = np.ones(len(mean), dtype=bool)
    chosen: list[int] = []
    for _ in range(min(k, len(mean))):
        score = np.zeros(len(mean))
        for front, cost, ref in zip(fronts, costs, ref_costs):
            volume = hypervolume([(-a, c) for a, c in zip(top1, front)], (-ref_top1, ref)) or 1.0
            score += expected_hypervolume_improvement(top1, front, cost, mean, std, ref_top1,
                                                      ref) / volume
        score[~left] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        left[best] = False
        top1.append(float(mean[best]))
        for front, cost in zip(fronts, costs):
            front.append(float(cost[best]))
    return chosen
