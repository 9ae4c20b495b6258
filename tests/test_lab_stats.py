"""The one implementation of each statistic: quantiles with diverged runs as +∞, and performance profiles
(Dolan & Moré 2002) with their AlgoPerf-style score, on hand-made examples."""

import math

import numpy as np
import pytest

from optimlab.lab.stats import (
    performance_profile,
    performance_ratios,
    profile_scores,
    profile_values,
    quantiles,
)

INF = math.inf
# Three problems, three solvers. Costs are steps to target; inf = never reached.
COSTS = {
    "p1": {"A": 10, "B": 20, "C": INF},
    "p2": {"A": 30, "B": 15, "C": 15},
    "p3": {"A": None, "B": 40, "C": 10},
}
# ratios r[p, s] = t / min_s t:  p1: 1, 2, inf;  p2: 2, 1, 1;  p3: inf, 4, 1
RATIOS = np.array([[1, 2, INF], [2, 1, 1], [INF, 4, 1]], dtype=float)


def test_ratios_by_hand():
    p = performance_profile(COSTS)
    assert p.solvers == ("A", "B", "C")
    assert p.problems == ("p1", "p2", "p3")
    np.testing.assert_array_equal(p.ratios, RATIOS)


def test_profile_values_by_hand():
    p = performance_profile(COSTS)
    rho = p.rho([1.0, 1.5, 2.0, 3.99, 4.0, 1e9])
    np.testing.assert_allclose(rho[0], [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])  # A never solves p3
    np.testing.assert_allclose(rho[1], [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(rho[2], [2 / 3] * 6)  # C wins twice, fails once


def test_scores_by_hand_and_by_integration():
    p = performance_profile(COSTS, tau_max=4.0)
    # B_s = mean_p max(0, 4 - r) / 3:  A: (3 + 2 + 0) / 9;  B: (2 + 3 + 0) / 9;  C: (0 + 3 + 3) / 9
    assert p.scores == pytest.approx({"A": 5 / 9, "B": 5 / 9, "C": 6 / 9})
    # the closed form equals the area under the step function, integrated numerically
    taus = np.linspace(1.0, 4.0, 300_001)
    rho = profile_values(RATIOS, taus)
    area = ((rho[:, 1:] + rho[:, :-1]) / 2 * np.diff(taus)).sum(axis=1) / 3.0
    np.testing.assert_allclose(profile_scores(RATIOS, 4.0), area, atol=1e-4)


def test_steps_are_right_continuous_and_end_past_the_data():
    p = performance_profile(COSTS)
    end = p.tau_end()
    assert end > 4.0
    taus, rho = p.steps("B")
    np.testing.assert_allclose(taus, [1.0, 2.0, 4.0, end])
    np.testing.assert_allclose(rho, [1 / 3, 2 / 3, 1.0, 1.0])
    taus, rho = p.steps("C")
    np.testing.assert_allclose(taus, [1.0, end])
    np.testing.assert_allclose(rho, [2 / 3, 2 / 3])


def test_ties_count_for_every_tied_solver_and_all_fail_problems_count_for_none():
    r = performance_ratios([[5, 5], [INF, math.nan]])
    np.testing.assert_array_equal(r, [[1, 1], [INF, INF]])
    assert profile_scores(r, 4.0).tolist() == [0.5, 0.5]


def test_array_input_with_names():
    p = performance_profile(np.array([[1.0, 2.0]]), solvers=["x", "y"], problems=["only"])
    assert p.scores == pytest.approx({"x": 1.0, "y": 2 / 3})


@pytest.mark.parametrize(
    ("costs", "message"),
    [
        ({"p": {"A": 0.0, "B": 1.0}}, "positive"),
        ({"p": {"A": -3, "B": 1.0}}, "positive"),
        ({"p": {"A": 1.0, "B": 2.0}, "q": {"A": 1.0}}, "no cost for solver"),
        ({}, "at least one problem"),
    ],
)
def test_bad_costs_are_rejected(costs, message):
    with pytest.raises(ValueError, match=message):
        performance_profile(costs)


def test_bad_tau_max_and_shapes():
    with pytest.raises(ValueError, match="tau_max"):
        performance_profile(COSTS, tau_max=1.0)
    with pytest.raises(ValueError, match="names"):
        performance_profile(np.ones((2, 2)), solvers=["a"])
    with pytest.raises(ValueError, match="problems, solvers"):
        performance_ratios(np.ones(3))


def test_quantiles_match_numpy_on_finite_data():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(7, 13))
    for q, got in zip((0.1, 0.25, 0.5, 0.75, 1.0), quantiles(v, (0.1, 0.25, 0.5, 0.75, 1.0)), strict=True):
        np.testing.assert_allclose(got, np.quantile(v, q, axis=0))


def test_quantiles_count_diverged_seeds_as_worst():
    v = np.array([[1.0, 1.0], [2.0, np.nan], [np.inf, -np.inf]])  # column 1: two of three diverged
    q25, med, q75 = quantiles(v)
    np.testing.assert_allclose(q25, [1.5, np.inf])
    np.testing.assert_allclose(med, [2.0, np.inf])
    assert q75[0] == np.inf  # interpolating towards a diverged seed is diverged
    with pytest.raises(ValueError):
        quantiles(np.zeros((0, 3)))


def test_floor_raises_small_costs_so_a_target_met_at_the_start_costs_one_step():
    p = performance_profile({"p": {"A": 0.0, "B": 4.0}}, floor=1.0)
    np.testing.assert_array_equal(p.ratios, [[1.0, 4.0]])
    assert p.ratio_table() == {"A": {"p": 1.0}, "B": {"p": 4.0}}
    with pytest.raises(ValueError, match="floor"):
        performance_profile(COSTS, floor=0.0)
