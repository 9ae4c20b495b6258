"""``optimlab learn clipping``: unclipped SGD and momentum blow up at lr 0.01 on Rosenbrock; clipped by
norm or by value they stay bounded — each step within its theoretical bound — but do not converge."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app
from optimlab.lab.presets import make_config
from optimlab.lab.problems import get_problem
from optimlab.lab.runner import Regularization, train

runner = CliRunner()
LR, CLIP = 0.01, 1.0
CLIPPED = ("sgd+norm", "sgd+value", "momentum+norm", "momentum+value")


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("clipping")
    result = runner.invoke(app, ["learn", "clipping", "--json", "--no-png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def outcome() -> learn.Outcome:
    return learn.run("clipping")


def test_the_cli_and_python_agree(numbers: dict, outcome: learn.Outcome) -> None:
    assert numbers == json.loads(json.dumps(outcome.numbers).replace("Infinity", "null"))


def test_unclipped_runs_blow_up_and_clipped_ones_stay_bounded(numbers: dict) -> None:
    diverged, final, at = numbers["diverged"], numbers["final_loss"], numbers["diverged_at_step"]
    for name in ("sgd", "momentum"):
        assert diverged[name] and final[name] is None and at[name] <= 10  # ∞ is null in JSON
    for name in CLIPPED:
        assert not diverged[name] and at[name] is None and math.isfinite(final[name])
        assert numbers["clipped_fraction"][name] >= 0.99  # at this lr clipping acts at almost every step
    # the first gradient at (−1.2, 1): (−2·2.2 − 400·(−1.2)·(−0.44), 200·(−0.44)) = (−215.6, −88)
    assert numbers["initial_grad_norm"] == pytest.approx(math.hypot(215.6, 88.0), rel=1e-5)
    assert numbers["clipping_enlarged_a_gradient"] is False


def test_each_step_stays_within_its_bound(numbers: dict) -> None:
    step = numbers["max_step"]
    assert step["sgd+norm"] == pytest.approx(LR * CLIP, rel=1e-4)  # ‖Δθ‖ = lr·min(‖g‖, c) ≤ lr·c
    assert step["sgd+value"] == pytest.approx(LR * CLIP * math.sqrt(2), rel=1e-4)  # both coordinates at ±c
    for name in ("momentum+norm", "momentum+value"):  # ‖Δθ‖ ≤ lr·c·√d/(1 − β)
        assert LR * CLIP < step[name] <= LR * CLIP * math.sqrt(2) / (1 - 0.9)


def test_bounded_is_not_converged(numbers: dict) -> None:
    final, target = numbers["final_loss"], get_problem("rosenbrock").target_loss
    assert all(final[name] > target for name in CLIPPED)
    assert final["sgd+norm"] == pytest.approx(0.02904, rel=1e-3)
    assert final["momentum+norm"] < 0.2 and final["momentum+norm"] > 10 * target
    low, high = numbers["last_100_range"]["momentum+norm"]
    assert high > 5 * low  # momentum with norm clipping still oscillates at this lr
    for name in ("sgd+value", "momentum+value"):  # clipping by value bends the direction: stalled
        assert final[name] > 4.0 and final[name] > 50 * final[name.replace("value", "norm")]
        assert numbers["distance_to_minimum"][name] > 1.5
    ref = numbers["reference_final_loss"]
    assert ref["momentum"] < target < ref["sgd"]  # at lr 0.001, unclipped: momentum converges


def test_the_labs_runner_clips_the_same_way(numbers: dict) -> None:
    problem = get_problem("rosenbrock")
    for preset in ("sgd", "momentum"):
        config = make_config(preset, {"lr": LR})
        result = train(problem, config, 0, None, None, Regularization(clip_norm=CLIP))
        assert not result.diverged and result.final_loss == pytest.approx(
            numbers["final_loss"][f"{preset}+norm"], rel=1e-6
        )


def test_the_verdict_follows_the_numbers(outcome: learn.Outcome) -> None:
    (verdict,) = outcome.verdicts
    assert (
        verdict.kind == "partly" and verdict.correction is not None and "Pascanu" in (verdict.reference or "")
    )
    assert "step 4" in verdict.evidence.en and "4.27" in verdict.evidence.zh
