"""``optimlab learn nesterov``: SGD(nesterov=True) against heavy-ball momentum and plain SGD — less
overshoot and faster at a small step, divergence at a step the heavy ball and plain descent survive."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app
from optimlab.learn.demo import Outcome
from optimlab.learn.demos.nesterov import RAVINE_LR

VARIANTS = ("sgd", "momentum", "nesterov")


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("nesterov")
    result = CliRunner().invoke(app, ["learn", "nesterov", "--json", "--no-png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def outcome() -> Outcome:
    return learn.run("nesterov")


def test_the_cli_and_python_agree(numbers: dict, outcome: Outcome) -> None:
    assert numbers == json.loads(json.dumps(outcome.numbers))
    for key in ("overshoot", "steps_to_target", "diverged"):
        assert tuple(numbers[key]) == VARIANTS


def test_nesterov_overshoots_less_than_the_heavy_ball(numbers: dict) -> None:
    over = numbers["overshoot"]
    assert over["sgd"] == 0.0  # γ = 0.1 on ½θ²: θ_t = 0.9^t never crosses 0
    assert over["momentum"] == pytest.approx(0.6037, abs=1e-3)
    assert over["nesterov"] == pytest.approx(0.3940, abs=1e-3)
    assert over["nesterov"] < 0.7 * over["momentum"]


def test_nesterov_is_fastest_down_the_ravine_at_a_small_step(numbers: dict) -> None:
    steps = numbers["steps_to_target"]
    assert steps["sgd"] == math.ceil(math.log(8 / 1e-3) / (-2 * math.log(1 - RAVINE_LR))) == 448
    assert steps == {"sgd": 448, "momentum": 86, "nesterov": 24}


def test_nesterov_diverges_where_plain_sgd_and_the_heavy_ball_converge(numbers: dict) -> None:
    assert numbers["diverged"] == {"sgd": False, "momentum": False, "nesterov": True}
    assert numbers["steps_to_target_large_lr"] == {"sgd": 298, "momentum": 70, "nesterov": None}
    limits = numbers["lr_limit"]
    assert limits["theory"] == pytest.approx({"sgd": 0.02, "momentum": 0.038, "nesterov": 0.038 / 2.8})
    assert limits["theory"]["nesterov"] < numbers["lr"]["large"] < limits["theory"]["sgd"]
    assert all(limits["holds"].values())  # converges at 0.97× the limit, diverges at 1.03×


def test_the_verdicts_follow_the_numbers(outcome: Outcome) -> None:
    assert [v.kind for v in outcome.verdicts] == ["partly", "partly"]
    assert "nesterov diverges" in outcome.verdicts[0].evidence.en
    assert outcome.notes and "1212.0901" in outcome.notes[0].en
