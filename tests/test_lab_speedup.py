"""The speed-up estimator against a baseline (optimlab.lab.speedup): planted cases whose answer is
known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimlab.lab.run import RunResult
from optimlab.lab.speedup import Curve, curve_of, reach, seed_speedup, speedup, speedup_of_runs

STEPS = 200


def _curve(loss_at, steps: int = STEPS, every: int = 1, grad_evals_per_step: float = 1.0) -> Curve:
    """A run evaluated every ``every`` steps with loss ``loss_at(step)``; one second per 10 steps."""
    at = np.arange(0, steps + 1, every, dtype=float)
    return Curve(
        losses=np.array([loss_at(t) for t in at]),
        costs={"steps": at, "grad_evals": at * grad_evals_per_step, "seconds": at / 10},
    )


def _baseline(rate: float, steps: int = STEPS, every: int = 1) -> tuple[Curve, float]:
    curve = _curve(lambda t: math.exp(-rate * t), steps, every)
    return curve, float(curve.losses[-1])


@pytest.mark.parametrize("k", [2.0, 4.0, 0.5])
def test_a_planted_k_times_faster_optimizer_comes_out_at_k_within_its_ci(k: float) -> None:
    # seed s: the baseline's loss is f_s(t) = exp(−a_s·t), the candidate's f_s(k·t): exactly k× faster
    rates = {s: 0.01 * (1 + 0.3 * s) for s in range(5)}
    baseline = {s: _baseline(a) for s, a in rates.items()}
    candidate = {
        s: _curve(lambda t, a=a: math.exp(-a * k * t), steps=int(STEPS * 2)) for s, a in rates.items()
    }
    result = speedup(baseline, candidate)
    assert result.seeds == list(range(5)) and result.reached == list(range(5))
    low, high = result.ci95["steps"]
    assert low <= k <= high
    assert result.median["steps"] == pytest.approx(k, rel=1e-3)
    assert result.median["grad_evals"] == pytest.approx(k, rel=1e-3)
    assert result.median["seconds"] == pytest.approx(k, rel=1e-3)
    assert result.inside_noise is (low <= 1 <= high)


def test_planted_k_with_seed_to_seed_noise_and_coarse_evaluations() -> None:
    # every seed k·e^{ε_s}, ε symmetric around 0 (median k), evaluated only every 10 steps: the
    # crossing is interpolated between evaluations; the CI spans the noise and contains k
    k = 3.0
    noise = [-0.2, -0.1, 0.0, 0.1, 0.2, -0.05, 0.05]
    baseline = {s: _baseline(0.02, every=10) for s in range(len(noise))}
    candidate = {
        s: _curve(lambda t, e=e: math.exp(-0.02 * k * math.exp(e) * t), every=10) for s, e in enumerate(noise)
    }
    result = speedup(baseline, candidate)
    low, high = result.ci95["steps"]
    assert low <= k <= high and high - low > 0.1
    assert result.median["steps"] == pytest.approx(k, rel=0.03)
    assert result.inside_noise is False  # well above 1
    again = speedup(baseline, candidate)  # the bootstrap is seeded: the same interval
    assert again.ci95 == result.ci95


def test_the_baseline_against_itself_is_exactly_one() -> None:
    baseline = {s: _baseline(0.01 * (s + 1)) for s in range(3)}
    result = speedup(baseline, {s: curve for s, (curve, _) in baseline.items()})
    assert result.per_seed["steps"] == [1.0, 1.0, 1.0]
    assert result.ci95["steps"] == (1.0, 1.0) and result.inside_noise is True


def test_never_reaching_is_a_speedup_of_zero_not_a_crash() -> None:
    baseline = {s: _baseline(0.02) for s in range(4)}
    stuck = {s: _curve(lambda t: 1.0) for s in range(4)}  # never learns
    result = speedup(baseline, stuck)
    assert result.per_seed["steps"] == [0.0] * 4 and result.reached == []
    assert result.median["steps"] == 0.0 and result.ci95["steps"] == (0.0, 0.0)
    assert result.inside_noise is False
    data = result.as_dict()
    assert data["median"] == 0.0 and data["reached"] == 0.0
    # reaching on half the seeds: those count at their speed-up, the others at 0
    mixed = {**stuck, 0: baseline[0][0], 1: baseline[1][0]}
    half = speedup(baseline, mixed)
    assert half.per_seed["steps"] == [1.0, 1.0, 0.0, 0.0] and half.reached == [0, 1]
    assert half.as_dict()["reached"] == 0.5


def test_a_diverging_candidate_counts_only_what_it_reached_before() -> None:
    baseline = {0: _baseline(0.02)}
    # reaches the baseline's final loss at step 50, then diverges (its loss NaN from step 60)
    curve = _curve(lambda t: math.exp(-0.08 * t) if t < 60 else math.nan)
    result = speedup(baseline, {0: curve})
    assert result.per_seed["steps"][0] == pytest.approx(4.0, rel=1e-3)
    late = _curve(lambda t: math.exp(-0.005 * t) if t < 60 else math.nan)
    assert speedup(baseline, {0: late}).per_seed["steps"] == [0.0]


def test_a_diverged_baseline_seed_has_no_target_and_is_left_out() -> None:
    good = _baseline(0.02)
    diverged = (_curve(lambda t: math.exp(-0.02 * t)), math.inf)
    result = speedup({0: good, 1: diverged}, {0: good[0], 1: good[0]})
    assert result.seeds == [0] and result.excluded == [1]
    nothing = speedup({1: diverged}, {1: good[0]})
    assert nothing.seeds == [] and math.isnan(nothing.median["steps"])
    data = nothing.as_dict()
    assert data["median"] is None and data["ci95"] == [None, None] and data["reached"] is None
    assert nothing.inside_noise is None


def test_ties_and_one_seed() -> None:
    assert seed_speedup(0.0, 0.0) == 1.0  # both start at the target
    assert seed_speedup(5.0, 0.0) == math.inf  # only the candidate does
    assert seed_speedup(5.0, None) == 0.0
    one = speedup({0: _baseline(0.02)}, {0: _curve(lambda t: math.exp(-0.04 * t))})
    assert one.median["steps"] == pytest.approx(2.0, rel=1e-3)
    assert one.ci95["steps"][0] == one.ci95["steps"][1] == one.median["steps"]
    assert one.inside_noise is None  # one seed: no interval to judge the noise by
    # a candidate that equals the baseline on every seed ties at 1: inside the noise
    tied = speedup({s: _baseline(0.02) for s in range(3)}, {s: _baseline(0.02)[0] for s in range(3)})
    assert tied.inside_noise is True and tied.median["steps"] == 1.0


def test_interpolation_between_evaluations() -> None:
    curve = Curve(
        losses=np.array([4.0, 2.0, 1.0]),
        costs={"steps": np.array([0.0, 10.0, 20.0]), "grad_evals": np.array([0.0, 30.0, 60.0])},
    )
    assert reach(curve, 1.5) == {"steps": 15.0, "grad_evals": 45.0}
    assert reach(curve, 4.0) == {"steps": 0.0, "grad_evals": 0.0}
    assert reach(curve, 0.5) is None


def test_gradient_evaluations_speedup_differs_from_steps_for_lbfgs_like_runs() -> None:
    baseline = {0: _baseline(0.02)}
    lbfgs = _curve(lambda t: math.exp(-0.08 * t), grad_evals_per_step=8)  # 4× fewer steps, 8 evals each
    result = speedup(baseline, {0: lbfgs})
    assert result.per_seed["steps"][0] == pytest.approx(4.0, rel=1e-3)
    assert result.per_seed["grad_evals"][0] == pytest.approx(0.5, rel=1e-3)


def _result(seed: int, losses: list[float], diverged: bool = False) -> RunResult:
    evals = [
        {"epoch": float(i), "step": 10.0 * i, "grad_evals": 10.0 * i, "wall_s": float(i), "loss": v}
        for i, v in enumerate(losses)
    ]
    return RunResult(
        losses=[],
        lrs=[],
        evals=evals,
        grad_evals=10 * (len(losses) - 1),
        steps=10 * (len(losses) - 1),
        wall_s=float(len(losses) - 1),
        divergence="nan" if diverged else None,
        problem="p",
        optimizer="o",
        seed=seed,
        final_loss=math.inf if diverged else losses[-1],
        final_metrics={"loss": losses[-1]},
        diverged=diverged,
        target_loss=0.0,
        steps_to_target=math.inf,
        evals_to_target=math.inf,
    )


def test_from_stored_runs_paired_by_seed() -> None:
    baseline = [_result(0, [8.0, 4.0, 2.0, 1.0]), _result(1, [8.0, 6.0, 4.0, 2.0])]
    candidate = [_result(1, [8.0, 2.0, 1.0, 0.5]), _result(0, [8.0, 1.0, 0.5, 0.25])]
    result = speedup_of_runs(baseline, candidate)
    # seed 0: the baseline needs 30 steps to 1.0, the candidate 10; seed 1: 30 to 2.0 against 10
    assert result.per_seed["steps"] == [3.0, 3.0]
    assert result.per_seed["seconds"] == [3.0, 3.0]
    nan_run = _result(0, [8.0, 4.0, math.nan], diverged=True)
    assert curve_of(nan_run).losses.tolist() == [8.0, 4.0]


def test_loss_ratio_says_how_far_short_a_candidate_stays() -> None:
    baseline = [_result(0, [8.0, 4.0, 2.0, 1.0]), _result(1, [8.0, 6.0, 4.0, 2.0])]
    short = [_result(0, [8.0, 6.0, 4.0, 1.5]), _result(1, [8.0, 7.0, 6.0, 3.0])]
    result = speedup_of_runs(baseline, short)
    assert result.per_seed["steps"] == [0.0, 0.0] and result.loss_ratio == pytest.approx(1.5)
    assert result.as_dict()["loss_ratio"] == pytest.approx(1.5)
    diverged = speedup_of_runs(baseline, [_result(0, [8.0, math.nan], diverged=True)])
    assert diverged.loss_ratio == math.inf and diverged.as_dict()["loss_ratio"] is None  # null: +∞
    negative = speedup_of_runs([_result(0, [1.0, -1.0])], [_result(0, [1.0, -2.0])])
    # the candidate crosses −1 two thirds of the way from 1 to −2: at step 6⅔ against the baseline's 10
    assert negative.loss_ratio is None and negative.per_seed["steps"] == [pytest.approx(1.5)]
    assert speedup({0: _baseline(0.02)}, {0: _baseline(0.02)[0]}).loss_ratio is None  # no finals given
