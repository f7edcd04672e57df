"""Expected hypervolume improvement: exact where top-1 is known, the Monte Carlo mean otherwise."""
import numpy as np
import pytest

from nas.pareto import hypervolume
from nas.search.acquisition import (
    expected_hypervolume_improvement, expected_improvement, greedy_ehvi_batch,
)

REF = (0.5, 10.0)  # reference top-1 and cost


def _front(rng, n=8):
    return list(rng.uniform(0.3, 0.9, n)), list(rng.uniform(1.0, 12.0, n))


def _hv(top1, cost):
    return hypervolume([(-a, c) for a, c in zip(top1, cost)], (-REF[0], REF[1]))


def test_expected_improvement_closed_form_matches_sampling():
    rng = np.random.default_rng(0)
    samples = rng.normal(0.7, 0.05, 400_000)
    for level in (0.6, 0.7, 0.8):
        mc = np.maximum(0.0, samples - level).mean()
        assert expected_improvement(np.array(0.7), np.array(0.05), np.array(level)) == \
            pytest.approx(mc, rel=0.02)
    assert expected_improvement(np.array(0.7), np.array(0.0), np.array(0.6)) == pytest.approx(0.1)
    assert expected_improvement(np.array(0.7), np.array(0.0), np.array(0.8)) == 0.0


def test_with_a_known_top1_it_is_the_exact_hypervolume_gain():
    rng = np.random.default_rng(1)
    for _ in range(20):
        top1, cost = _front(rng)
        new_top1, new_cost = rng.uniform(0.2, 1.0, 30), rng.uniform(0.0, 13.0, 30)
        got = expected_hypervolume_improvement(top1, cost, new_cost, new_top1, np.zeros(30), *REF)
        want = [_hv(top1 + [a], cost + [c]) - _hv(top1, cost) for a, c in zip(new_top1, new_cost)]
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_with_an_uncertain_top1_it_is_the_mean_gain():
    rng = np.random.default_rng(2)
    top1, cost = _front(rng)
    base = _hv(top1, cost)
    for mean, std, c in [(0.8, 0.05, 4.0), (0.6, 0.1, 2.0), (0.95, 0.02, 9.0)]:
        draws = rng.normal(mean, std, 4000)
        mc = np.mean([_hv(top1 + [a], cost + [c]) - base for a in draws])
        got = expected_hypervolume_improvement(top1, cost, np.array([c]), np.array([mean]),
                                               np.array([std]), *REF)[0]
        assert got == pytest.approx(mc, rel=0.05, abs=1e-4)


def test_greedy_batch_spreads_over_the_front():
    # two proposals at the same cost and top-1, one elsewhere: the second pick must not be
    # the twin of the first (it adds nothing once the first is on the front)
    top1, cost = [0.6, 0.8], [2.0, 8.0]
    costs = [np.array([4.0, 4.0, 3.0])]
    mean, std = np.array([0.9, 0.9, 0.7]), np.zeros(3)
    assert greedy_ehvi_batch(2, top1, [cost], costs, mean, std, 0.5, [10.0]) == [0, 2]
    assert greedy_ehvi_batch(5, top1, [cost], costs, mean, std, 0.5, [10.0])[:2] == [0, 2]
    assert sorted(greedy_ehvi_batch(5, top1, [cost], costs, mean, std, 0.5, [10.0])) == [0, 1, 2]
