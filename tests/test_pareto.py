"""Pareto fronts, NSGA-II sorting and crowding, hypervolume: hand-made cases and known values."""
import itertools
import math
import random

import pytest

from nas.pareto import (
    crowding_distance, dominates, hypervolume, hypervolume_contributions, non_dominated_sort,
    pareto_front,
)


def test_dominates_needs_strictly_better_somewhere():
    assert dominates((1, 2), (2, 2))
    assert dominates((1, 1), (2, 3))
    assert not dominates((1, 2), (1, 2))  # equal points do not dominate each other
    assert not dominates((1, 3), (2, 2))  # a trade-off
    assert not dominates((2, 2), (1, 2))
    with pytest.raises(ValueError):
        dominates((1, 2), (1, 2, 3))


def test_pareto_front_hand_made():
    points = [(1, 5), (2, 4), (3, 3), (2, 5), (4, 4), (5, 5), (3, 3)]
    assert pareto_front(points) == [0, 1, 2, 6]  # the duplicate of (3, 3) is kept too
    assert pareto_front([]) == []
    # 3 objectives (matrix path): (1, 1, 5) and (5, 1, 1) trade off; (2, 2, 6) is dominated.
    assert pareto_front([(1, 1, 5), (5, 1, 1), (2, 2, 6), (1, 1, 5)]) == [0, 1, 3]


def test_pareto_front_2d_matches_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        points = [(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(rng.randint(1, 25))]
        brute = [i for i, p in enumerate(points)
                 if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]
        assert pareto_front(points) == brute


def test_non_dominated_sort_hand_made():
    points = [(1, 5), (2, 4), (3, 3), (2, 5), (4, 4), (5, 5)]
    assert non_dominated_sort(points) == [[0, 1, 2], [3, 4], [5]]


def test_non_dominated_sort_fronts_are_consistent():
    rng = random.Random(1)
    points = [(rng.random(), rng.random(), rng.random()) for _ in range(60)]
    fronts = non_dominated_sort(points)
    assert sorted(i for f in fronts for i in f) == list(range(60))
    rank = {i: r for r, f in enumerate(fronts) for i in f}
    for i, j in itertools.permutations(range(60), 2):
        if dominates(points[i], points[j]):
            assert rank[i] < rank[j]
    for r, front in enumerate(fronts[1:], start=1):  # every point is dominated by the front above
        for j in front:
            assert any(dominates(points[i], points[j]) for i in fronts[r - 1])


def test_crowding_distance_hand_made():
    # Three points on a line: ends are infinite, the middle gets (3-1)/2 + (5-3)/2 = 2.
    assert crowding_distance([(1, 5), (2, 4), (3, 3)]) == [math.inf, 2.0, math.inf]
    # Four evenly spaced: the inner two get 2/3 + 2/3.
    d = crowding_distance([(0, 3), (1, 2), (2, 1), (3, 0)])
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx(4 / 3) and d[2] == pytest.approx(4 / 3)
    # Unevenly spaced: the point in the sparse region is less crowded.
    d = crowding_distance([(0, 10), (1, 9), (2, 8), (9, 1), (10, 0)])
    assert d[3] > d[1]
    # A subset by index, returned in the subset's order; one or two points are all boundary.
    points = [(0, 9), (5, 5), (1, 8), (2, 2), (9, 0)]
    assert crowding_distance(points, [4, 2, 0])[0] == math.inf
    assert crowding_distance(points, [2, 4]) == [math.inf, math.inf]


def test_hypervolume_known_values():
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    assert hypervolume([(0, 0)], (2, 3)) == pytest.approx(6.0)
    assert hypervolume([(0, 0, 0)], (1, 2, 3)) == pytest.approx(6.0)
    # two overlapping boxes in 3-D: 4 + 2 - 1
    assert hypervolume([(0, 0, 1), (1, 1, 0)], (2, 2, 2)) == pytest.approx(5.0)
    # points outside the reference box, dominated points and duplicates add nothing
    assert hypervolume([(1, 3), (2, 2), (3, 1), (5, 0), (3, 3), (2, 2)], (4, 4)) == pytest.approx(6.0)
    assert hypervolume([], (1, 1)) == 0.0
    assert hypervolume([(1,)], (3,)) == 2.0
    with pytest.raises(ValueError):
        hypervolume([(1, 2)], (3, 3, 3))


def _inclusion_exclusion(points, ref):
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            corner = [max(p[d] for p in subset) for d in range(len(ref))]
            total += (-1) ** (k + 1) * math.prod(max(0.0, r - c) for r, c in zip(ref, corner))
    return total


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(dim):
    rng = random.Random(dim)
    for _ in range(10):
        points = [tuple(rng.random() for _ in range(dim)) for _ in range(rng.randint(1, 7))]
        ref = tuple(1.0 for _ in range(dim))
        assert hypervolume(points, ref) == pytest.approx(_inclusion_exclusion(points, ref))


def test_hypervolume_contributions():
    points = [(1, 3), (2, 2), (3, 1), (3, 3)]
    assert hypervolume_contributions(points, (4, 4)) == pytest.approx([1.0, 1.0, 1.0, 0.0])
