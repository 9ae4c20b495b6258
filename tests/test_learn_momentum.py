"""``optimlab learn momentum``: heavy-ball momentum down the ravine and off the saddle, its numbers
checked against the closed forms of plain gradient descent and the heavy ball's growth rate."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app
from optimlab.learn.demo import Outcome
from optimlab.learn.demos.momentum import RAVINE_LR, SADDLE_LR, escape_growth

KEYS = ("0", "0.5", "0.9", "0.99")


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("momentum")
    result = CliRunner().invoke(app, ["learn", "momentum", "--json", "--no-png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def outcome() -> Outcome:
    return learn.run("momentum")


def test_the_cli_and_python_agree(numbers: dict, outcome: Outcome) -> None:
    assert numbers == json.loads(json.dumps(outcome.numbers))
    assert list(numbers["steps_to_target"]) == list(KEYS) and list(numbers["steps_to_escape"]) == list(KEYS)


def test_momentum_is_faster_down_the_ravine_until_it_has_too_little_friction(numbers: dict) -> None:
    steps = numbers["steps_to_target"]
    # plain descent: x_t = −4(1 − γ)^t, so ½x² ≤ 1e-3 after ⌈ln(8000) / (−2 ln(1 − γ))⌉ steps
    assert steps["0"] == math.ceil(math.log(8 / 1e-3) / (-2 * math.log(1 - RAVINE_LR)))
    assert steps == {"0": 248, "0.5": 119, "0.9": 90, "0.99": 665}
    assert steps["0.9"] < steps["0.5"] < steps["0"] < steps["0.99"]


def test_momentum_widens_the_swing_across_the_ravine(numbers: dict) -> None:
    sideways = numbers["sideways"]
    # plain descent: y_t = 0.5·(1 − 100γ)^t = 0.5·(−0.8)^t, so Σ|Δy| = 0.5·1.8 / (1 − 0.8) = 4.5
    assert sideways["0"] == pytest.approx(4.5, rel=1e-9)
    assert sideways["0.5"] < sideways["0"] < sideways["0.9"] < sideways["0.99"]
    assert sideways["0.99"] > 20 * sideways["0"]
    crossings = numbers["floor_crossings"]  # less friction, more rolling through the floor x = 0
    assert crossings["0"] == crossings["0.5"] == 0 < crossings["0.9"] < crossings["0.99"]


def test_momentum_escapes_the_saddle_faster_only_with_a_y_component(numbers: dict) -> None:
    escape = numbers["steps_to_escape"]
    # plain descent: y_t = 0.001·(1 + 2γ)^t reaches |y| = 1 (with x → 0) after ⌈ln 1000 / ln 1.04⌉
    assert escape["0"] == math.ceil(math.log(1000) / math.log(1 + 2 * SADDLE_LR)) == 177
    assert escape["0"] > escape["0.5"] > escape["0.9"] > escape["0.99"]
    assert escape["0"] / escape["0.9"] > 3.5
    growth = numbers["escape_growth"]
    for key in KEYS:  # the measured growth a step is the heavy ball's largest root
        assert growth["theory"][key] == pytest.approx(escape_growth(float(key), SADDLE_LR), rel=1e-12)
        assert growth["measured"][key] == pytest.approx(growth["theory"][key], rel=1e-6)
    ridge = numbers["ridge"]  # from (1, 0) exactly: no μ leaves the ridge y = 0
    assert all(ridge["steps_to_escape"][k] is None for k in KEYS)
    assert ridge["crossings"]["0"] == 0 and ridge["crossings"]["0.9"] > 10
    assert max(ridge["distance"][k] for k in ("0", "0.5", "0.9")) < 1e-5
    # the post's averaged form (dampening = μ) at the same lr: no faster than plain descent
    averaged = numbers["steps_to_escape_averaged"]
    assert averaged["0"] == escape["0"] and all(
        averaged[k] is None or averaged[k] >= escape["0"] for k in ("0.5", "0.9", "0.99")
    )


def test_the_verdicts_follow_the_numbers(outcome: Outcome) -> None:
    assert [v.kind for v in outcome.verdicts] == ["partly", "partly", "confirmed"]
    assert "46 at μ = 0.9" in outcome.verdicts[0].evidence.en
    assert "665 at μ = 0.99" in outcome.verdicts[1].evidence.en
