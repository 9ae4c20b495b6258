"""The LR range test on synthetic loss-vs-lr curves whose answers are known."""

import math

import numpy as np
import pytest

from optimlab.lab.lr_find import (
    lr_ramp,
    range_test,
    smooth,
    suggest,
    suggest_minimum,
    suggest_steepest,
    suggest_valley,
    summarize,
)


def curve(lr):
    """A typical range-test shape in u = log10(lr): a plateau at 2, a sigmoid descent of 1.5 centred at
    u = -3 (steepest there, slope -0.94 per decade), then a blow-up exp(2 (u + 0.5))."""
    u = np.log10(lr)
    return 2.0 - 1.5 / (1.0 + np.exp(-2.5 * (u + 3.0))) + np.exp(2.0 * (u + 0.5))


FINE = np.geomspace(1e-6, 10.0, 4001)
TRUE_MIN = float(FINE[np.argmin(curve(FINE))])  # about 1.7e-2


def test_ramp_is_exponential():
    lrs = lr_ramp(1e-5, 1.0, 6)
    np.testing.assert_allclose(lrs, [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    for bad in [(0.0, 1.0, 5), (1.0, 1e-3, 5), (1e-3, 1.0, 1), (1e-3, math.inf, 5)]:
        with pytest.raises(ValueError):
            lr_ramp(*bad)


def test_smoothing_is_bias_corrected():
    x = np.array([3.0, 1.0, 2.0, 5.0])
    beta = 0.8
    m, expected = 0.0, []
    for i, v in enumerate(x):
        m = beta * m + (1 - beta) * v
        expected.append(m / (1 - beta ** (i + 1)))
    np.testing.assert_allclose(smooth(x, beta), expected)
    assert smooth(x, beta)[0] == 3.0  # not pulled towards zero
    np.testing.assert_allclose(smooth(np.full(50, 7.0), 0.98), 7.0)
    np.testing.assert_array_equal(smooth(x, 0.0), x)
    with pytest.raises(ValueError):
        smooth(x, 1.0)


def test_rules_on_the_exact_curve():
    s = suggest(FINE, curve(FINE))
    assert set(s) == {"steepest", "valley", "minimum/10"}
    assert s["steepest"] == pytest.approx(1e-3, rel=0.05)  # the blow-up term tilts it slightly left
    assert s["minimum/10"] == pytest.approx(TRUE_MIN / 10, rel=1e-9)
    # valley: two thirds of the descent done -- after the steepest point, before the minimum
    assert s["steepest"] < s["valley"] < TRUE_MIN
    y = curve(np.array([s["valley"]]))[0]
    top, bottom = curve(FINE[:1])[0], curve(np.array([TRUE_MIN]))[0]
    assert (top - y) / (top - bottom) == pytest.approx(2 / 3, abs=0.01)


def test_range_test_calls_step_along_the_ramp_and_stops_on_blow_up():
    seen = []

    def step(lr):
        seen.append(lr)
        return float(curve(np.array([lr]))[0])

    r = range_test(step, min_lr=1e-6, max_lr=10.0, steps=200, beta=0.0, diverge_factor=4.0)
    np.testing.assert_allclose(seen, lr_ramp(1e-6, 10.0, 200)[: len(seen)])
    assert r.diverged
    assert r.lrs.size == len(seen) < 200
    best = r.smoothed[:-1].min()
    assert r.smoothed[-1] > 4.0 * best  # the step that triggered the stop is kept and is a blow-up
    assert np.all(r.smoothed[:-1] <= 4.0 * best)
    assert r.suggestions["steepest"] == pytest.approx(1e-3, rel=0.1)


def test_range_test_stops_on_non_finite_loss_and_runs_to_the_end_otherwise():
    r = range_test(lambda lr: math.nan if lr > 1e-2 else 1.0 - lr, min_lr=1e-4, max_lr=1.0, steps=20)
    assert r.diverged and not math.isfinite(r.losses[-1]) and r.lrs[-1] > 1e-2
    r = range_test(lambda lr: 1.0 / (1.0 + lr), min_lr=1e-4, max_lr=1.0, steps=20)
    assert not r.diverged and r.lrs.size == 20


def test_a_spike_at_the_start_and_mini_batch_noise_do_not_pass_for_the_descent():
    """Real curves: the first mini-batches' losses are high and the plateau is noisy; the bias-corrected
    average follows the spike down over its first points. Steepest and valley still find the descent."""
    rng = np.random.default_rng(3)
    noise = iter(0.02 * rng.standard_normal(100))

    def step(lr):
        loss = float(curve(np.array([lr]))[0]) + next(noise)
        return loss + (0.6 if lr < 2e-6 else 0.0)  # the first three losses of the ramp

    r = range_test(step, min_lr=1e-6, max_lr=10.0, steps=100)
    assert r.smoothed[0] > r.smoothed[15] + 0.3  # the spike is in the curve ...
    assert 3e-4 < r.suggestions["steepest"] < 3e-3  # ... but not in the answers
    assert r.suggestions["steepest"] < r.suggestions["valley"] < TRUE_MIN


def test_flat_curve_gives_no_steepest_or_valley():
    lrs = lr_ramp(1e-4, 1.0, 30)
    s = suggest(lrs, np.ones(30))
    assert "steepest" not in s and "valley" not in s
    assert s["minimum/10"] == pytest.approx(1e-5)
    assert suggest_steepest(lrs[:2], np.ones(2)) is None
    assert suggest_valley(lrs, np.linspace(1.0, 2.0, 30)) is None  # only rises
    assert suggest_minimum([], []) is None


def test_seeds_give_a_band_and_suggestions_near_the_truth():
    rng = np.random.default_rng(0)
    results = []
    for _ in range(5):
        results.append(
            range_test(
                lambda lr: float(curve(np.array([lr]))[0]) * (1 + 0.02 * rng.standard_normal()),
                min_lr=1e-6,
                max_lr=10.0,
                steps=150,
            )
        )
    s = summarize(results)
    assert s.seeds == 5
    assert s.lrs.size == s.median.size == s.q25.size == s.q75.size > 100
    assert np.all(s.q25 <= s.median) and np.all(s.median <= s.q75)
    assert np.any(s.q75 > s.q25)  # the noise shows as a band
    # smoothing (beta = 0.9) delays the curve by ~9 ramp steps (0.6 decade): suggestions move right
    # a little, but stay in the descent, in order, and close to the exact curve's.
    assert 1e-3 <= s.suggestions["steepest"] <= 10**-2.2
    assert s.suggestions["steepest"] < s.suggestions["valley"] < TRUE_MIN * 5
    assert TRUE_MIN / 10 <= s.suggestions["minimum/10"] <= TRUE_MIN / 10 * 6
    for rule in ("steepest", "valley", "minimum/10"):
        per_seed = s.seed_suggestions[rule]
        assert per_seed.shape == (5,) and np.all(np.isfinite(per_seed))


def test_summary_ends_where_half_the_seeds_have_stopped():
    ramp = lr_ramp(1e-3, 1.0, 10)
    stops = [4, 6, 10]  # two seeds stop (diverge) early

    def make(n):
        calls = []

        def step(lr):  # a finite loss for the first n - 1 steps, then a blow-up
            calls.append(lr)
            return 1.0 if len(calls) < n else math.inf

        return range_test(step, min_lr=1e-3, max_lr=1.0, steps=10, beta=0.0)

    results = [make(n) for n in stops]
    assert [r.lrs.size for r in results] == [4, 6, 10]
    s = summarize(results)
    # the stopping step is dropped: seed 0 has 3 usable points, seed 1 five, seed 2 ten -> the median
    # (second of three) is finite for the first five points
    np.testing.assert_allclose(s.lrs, ramp[:5])


def test_summarize_rejects_mixed_ramps_and_nothing():
    a = range_test(lambda lr: 1.0, min_lr=1e-3, max_lr=1.0, steps=5)
    b = range_test(lambda lr: 1.0, min_lr=1e-4, max_lr=1.0, steps=5)
    with pytest.raises(ValueError, match="ramp"):
        summarize([a, b])
    with pytest.raises(ValueError):
        summarize([])
