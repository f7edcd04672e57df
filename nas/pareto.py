"""Pareto fronts, non-dominated sorting, crowding distance and hypervolume: pure functions.

Every function here takes points as sequences of numbers where *every objective is minimised*;
negate an objective to maximise it (e.g. ``(-top1, latency_ms)``). Points are indexed by their
position in the input, and results are lists of such indices, so callers keep their own objects.

* :func:`dominates`, :func:`pareto_front`, :func:`non_dominated_sort` (Deb et al., NSGA-II);
* :func:`crowding_distance` (NSGA-II's diversity measure within one front);
* :func:`hypervolume`: the exact volume dominated by the points and bounded by a reference point
  (a sweep in 2-D, recursive slicing in more dimensions, exponential in the dimension but exact);
  :func:`hypervolume_contributions` gives each point's exclusive share.

This module knows nothing of architectures, metrics or files; see :mod:`nas.search`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Point = Sequence[float]


def _array(points: Sequence[Point]) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"points must be a list of equal-length sequences, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError("points contain NaN")
    return arr


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` Pareto-dominates ``b`` (minimisation): no worse everywhere, better somewhere."""
    if len(a) != len(b):
        raise ValueError(f"points of different dimensions: {len(a)} and {len(b)}")
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _domination_matrix(arr: np.ndarray) -> np.ndarray:
    """``D[i, j]``: point i dominates point j. (n, n) booleans."""
    le = (arr[:, None, :] <= arr[None, :, :]).all(-1)
    lt = (arr[:, None, :] < arr[None, :, :]).any(-1)
    return le & lt


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices (ascending) of the points no other point dominates.

    Equal points do not dominate each other, so duplicates of a front point are all kept.
    """
    arr = _array(points)
    n = len(arr)
    if n == 0:
        return []
    if arr.shape[1] == 2:
        # Sweep: by first objective, then second; a point is on the front when its second
        # objective is below every earlier point's (ties in both: equal points, all kept).
        order = np.lexsort((arr[:, 1], arr[:, 0]))
        keep, best, best_pt = [], math.inf, None
        for i in order:
            x, y = arr[i]
            if y < best:
                keep.append(int(i))
                best, best_pt = y, (x, y)
            elif best_pt is not None and (x, y) == best_pt:
                keep.append(int(i))
        return sorted(keep)
    dominated = np.zeros(n, dtype=bool)
    for start in range(0, n, 1024):  # blocks keep memory at O(1024 n)
        block = arr[start:start + 1024]
        le = (block[:, None, :] <= arr[None, :, :]).all(-1)
        lt = (block[:, None, :] < arr[None, :, :]).any(-1)
        dominated |= (le & lt).any(0)
    return [int(i) for i in np.flatnonzero(~dominated)]


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Fast non-dominated sorting (Deb et al. 2002): the fronts F1, F2, ... as lists of indices.

    F1 is :func:`pareto_front`; F2 the front of the rest, and so on. Every index appears once;
    each front is in ascending index order.
    """
    arr = _array(points)
    n = len(arr)
    if n == 0:
        return []
    dom = _domination_matrix(arr)
    count = dom.sum(0)  # how many points dominate j
    done = np.zeros(n, dtype=bool)
    fronts = []
    while not done.all():
        front = np.flatnonzero((count == 0) & ~done)
        fronts.append([int(i) for i in front])
        done[front] = True
        count = count - dom[front].sum(0)
    return fronts


def crowding_distance(points: Sequence[Point], front: Sequence[int] | None = None) -> list[float]:
    """NSGA-II crowding distance of each point of ``front`` (default: all points), in its order.

    Per objective, the front is sorted; the two boundary points get infinity and each other
    point the gap between its neighbours divided by the objective's range; distances add up over
    objectives. Fronts of one or two points are all boundary (infinity).
    """
    arr = _array(points)
    idx = list(range(len(arr))) if front is None else list(front)
    if len(idx) <= 2:
        return [math.inf] * len(idx)
    sub = arr[idx]
    dist = np.zeros(len(idx))
    for m in range(sub.shape[1]):
        order = np.argsort(sub[:, m], kind="stable")
        values = sub[order, m]
        span = values[-1] - values[0]
        dist[order[0]] = dist[order[-1]] = math.inf
        if span > 0:
            dist[order[1:-1]] += (values[2:] - values[:-2]) / span
    return [float(d) for d in dist]


def hypervolume(points: Sequence[Point], ref: Point) -> float:
    """The exact hypervolume dominated by ``points`` and bounded by the reference point ``ref``.

    Points not strictly better than ``ref`` in every objective contribute nothing. 1-D and 2-D
    are exact sweeps (O(n log n)); more dimensions use recursive slicing along the last
    objective (exact, O(n^(d-1) log n): fine for fronts of a few hundred points in 3-D).

    Raises:
        ValueError: points and ``ref`` of different dimensions, or NaN.
    """
    arr = _array(points)
    ref_arr = np.asarray(ref, dtype=float)
    if len(arr) == 0:
        return 0.0
    if arr.shape[1] != len(ref_arr):
        raise ValueError(f"points have {arr.shape[1]} objectives but the reference point has "
                         f"{len(ref_arr)}")
    arr = arr[(arr < ref_arr).all(1)]
    return _hv(arr, ref_arr)


def _hv(arr: np.ndarray, ref: np.ndarray) -> float:
    n, d = arr.shape if arr.size else (0, len(ref))
    if n == 0:
        return 0.0
    if d == 1:
        return float(ref[0] - arr[:, 0].min())
    if d == 2:
        order = np.lexsort((arr[:, 1], arr[:, 0]))
        volume, best = 0.0, ref[1]
        for x, y in arr[order]:
            if y < best:
                volume += (ref[0] - x) * (best - y)
                best = y
        return float(volume)
    arr = arr[pareto_front(arr)]
    order = np.argsort(arr[:, -1], kind="stable")
    arr = arr[order]
    volume = 0.0
    for i in range(len(arr)):
        top = arr[i + 1, -1] if i + 1 < len(arr) else ref[-1]
        if top > arr[i, -1]:
            volume += _hv(arr[:i + 1, :-1], ref[:-1]) * (top - arr[i, -1])
    return float(volume)


def hypervolume_contributions(points: Sequence[Point], ref: Point) -> list[float]:
    """Each point's exclusive hypervolume: the total minus the hypervolume without it."""
    arr = _array(points)
    total = hypervolume(arr, ref)
    return [total - hypervolume(np.delete(arr, i, axis=0), ref) for i in range(len(arr))]
