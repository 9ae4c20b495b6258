"""``optimlab learn seed-formulas``: the posts' formulas run literally beside optimlab.optim — which agree to
rounding, which only up to where ε sits, which are another method, which diverge."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from learn_cases import SEEDS
from optimlab import learn
from optimlab.cli import app
from optimlab.learn.demos import seed_formulas as S

NAME = "seed-formulas"
ROUNDING = ("004.SGD", "004.Momentum", "004.AdaGrad", "004.RMSprop", "000.SGDM", "000.NAG", "002.Momentum")


@pytest.fixture(scope="module")
def outcome() -> Any:
    return learn.run(NAME)


def test_the_cli_prints_the_same_numbers_as_python(tmp_path: Path, outcome: Any) -> None:
    result = CliRunner().invoke(app, ["learn", NAME, "--json", "--no-png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(outcome.numbers))


def test_seed_004_classes_and_the_momentum_forms_match_optimlab_to_rounding(outcome: Any) -> None:
    n = outcome.numbers
    for key in ROUNDING:
        assert n["agreement"][key] == "rounding" and n["network_agreement"][key] == "rounding", key
        assert n["max_difference"][key] <= 1e-15 and n["network_max_difference"][key] <= 1e-15, key
        assert n["final_x"][key] == pytest.approx(n["reference_final_x"][key], abs=1e-15)
        assert not n["diverged"][key]
    # plain SGD on ½x² with η = 0.1: x_t = 0.9^t exactly
    assert n["final_x"]["004.SGD"] == pytest.approx(0.9**100, rel=1e-12)


def test_epsilon_placement_is_tiny_on_the_quadratic_and_not_on_small_gradients(outcome: Any) -> None:
    n = outcome.numbers
    for key in ("004.Adam", "000.Adagrad", "000.RMSProp"):
        assert n["agreement"][key] == "epsilon", key
        assert 1e-10 < n["max_difference"][key] < 1e-5, key
        assert n["network_agreement"][key] == "differs" and n["network_max_difference"][key] > 1e-3, key
    assert n["network_smallest_gradient"] == pytest.approx(1.97e-4, rel=0.01)
    # Adam's first step on ½hx², x = 1, g = h: the post divides by √(1−β₂)·g + ε, torch by g + ε (ε = 1e-7)
    eps, h, lr, root = 1e-7, n["adam_epsilon"]["h"], 0.1, math.sqrt(1 - 0.999)
    assert n["adam_epsilon"]["post_first_step"] == pytest.approx(lr * root * h / (root * h + eps), rel=1e-9)
    assert n["adam_epsilon"]["torch_first_step"] == pytest.approx(lr * h / (h + eps), rel=1e-9)
    assert n["adam_epsilon"]["ratio"] == pytest.approx(0.264, abs=0.001)


def test_the_literal_nesterov_adadelta_and_adam_of_the_posts_are_other_methods(outcome: Any) -> None:
    n = outcome.numbers
    # seed 004's Nesterov: μ²·v after v's update — its first step is (1 + μ + μ²)η·g, torch's (1 + μ)η·g
    assert n["agreement"]["004.Nesterov"] == "differs" and n["max_difference"]["004.Nesterov"] is None
    start = {"x": torch.tensor(1.0, dtype=torch.float64)}
    nesterov = S.FORMULAS[5]
    assert S.run_literal(nesterov, start, S.quadratic_loss, 1)[0, 0] == pytest.approx(1 - 2.71 * 0.1)
    assert S.run_reference(nesterov, start, S.quadratic_loss, 1)[0, 0] == pytest.approx(1 - 1.9 * 0.1)
    assert not n["diverged"]["004.Nesterov"] and abs(n["final_x"]["004.Nesterov"]) < 1e-6
    # seed 000's AdaDelta: ΔW = −√(E + ε)/√(cache + ε) < 0 every step, whatever the slope
    adadelta = S.run_literal(S.FORMULAS[10], start, S.quadratic_loss, 100)[:, 0]
    assert np.all(np.diff(np.concatenate([[1.0], adadelta])) < 0)
    assert n["diverged"]["000.AdaDelta"] and n["final_x"]["000.AdaDelta"] < -10
    assert 0.5 < n["reference_final_x"]["000.AdaDelta"] < 1  # torch's Adadelta: small, careful steps
    # seed 000's Adam: two minus signs, it climbs
    assert n["diverged"]["000.Adam"] and n["final_x"]["000.Adam"] > 10
    assert abs(n["reference_final_x"]["000.Adam"]) < 0.01
    assert n["max_difference"]["000.AdaDelta"] is None and n["max_difference"]["000.Adam"] is None


def test_the_two_momentum_forms_part_under_a_halved_learning_rate(outcome: Any) -> None:
    halved = outcome.numbers["halved_lr_max_difference"]
    assert outcome.numbers["setup"]["halve_at"] == S.HALVE_AT
    assert halved["004.Momentum"] > 0.1 and halved["000.SGDM"] == halved["004.Momentum"]
    assert halved["000.NAG"] > 0.01
    for key in ("004.SGD", "004.AdaGrad", "004.RMSprop", "002.Momentum"):  # η outside the state: no gap
        assert halved[key] <= 1e-15, key


def test_the_verdicts_follow_the_measurements(outcome: Any) -> None:
    kinds = [v.kind for v in outcome.verdicts]
    assert kinds == [
        "confirmed",  # ε against a zero denominator (seed 004)
        "confirmed",  # v ← αv − η∇: textbook momentum; the schedule difference is evidence
        "confirmed",
        "partly",  # Adam: momentum + RMSprop's average, not AdaGrad's sum
        "wrong",  # seed 004's Nesterov code
        "confirmed",
        "confirmed",  # ε inside the root also keeps the denominator off zero
        "wrong",  # seed 000's AdaDelta formula
        "wrong",
    ]
    adam = outcome.verdicts[3]
    assert adam.correction is not None and "RMSprop" in adam.correction.en and "RMSprop" in adam.correction.zh
    assert len(outcome.notes) == 2
    assert all(v.claim.quote in (SEEDS / v.claim.post).read_text() for v in outcome.verdicts
               if (SEEDS / v.claim.post).exists())  # fmt: skip
    assert len(outcome.rows) == len(S.FORMULAS) and outcome.figures
