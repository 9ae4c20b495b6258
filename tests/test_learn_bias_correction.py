"""``optimlab learn bias-correction``: Adam's uncorrected first step is (1 − β₁)/√(1 − β₂)·lr (3.16·lr at
β₂ = 0.999, exactly lr at 0.99), the corrected one is lr; seed 004's η-form is torch's Adam up to ε's place;
without correction a well-chosen lr = 0.1 collapses the parabola's ReLU network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app


def _uncorrected_constant(beta2: float, t: np.ndarray) -> np.ndarray:
    """Uncorrected Adam on a constant gradient: lr·(1 − β₁ᵗ)/√(1 − β₂ᵗ), in units of lr."""
    return (1 - 0.9**t) / np.sqrt(1 - beta2**t)


def test_adams_bias_correction_makes_the_first_step_lr(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["learn", "bias-correction", "--json", "--no-png", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    outcome = learn.run("bias-correction")
    assert numbers == json.loads(json.dumps(outcome.numbers))  # the CLI and Python agree (seeded)

    first = numbers["first_step_over_lr"]
    # uncorrected first step (from Adam's state): (1 − β₁)/√(1 − β₂)·lr = 3.16·lr at β₂ = 0.999, lr at 0.99
    assert first["0.999"]["uncorrected"] == pytest.approx(0.1 / math.sqrt(0.001), rel=1e-4)
    assert first["0.999"]["uncorrected"] == pytest.approx(3.162, abs=1e-3)
    assert first["0.99"]["uncorrected"] == pytest.approx(1.0, abs=1e-5)
    for beta2 in ("0.999", "0.99"):  # corrected (the class's real step): lr from the first step on
        assert first[beta2]["corrected"] == pytest.approx(1.0, abs=1e-6)
        assert numbers["peak_step_over_lr"][beta2]["corrected"] == pytest.approx(1.0, abs=1e-6)
        curve = _uncorrected_constant(float(beta2), np.arange(1, 1001))
        assert numbers["peak_step_over_lr"][beta2]["uncorrected"] == pytest.approx(curve.max(), rel=1e-4)
        assert numbers["peak_step_at"][beta2] == int(curve.argmax()) + 1
        for t, value in numbers["uncorrected_step_over_lr_at"][beta2].items():
            assert value == pytest.approx(curve[int(t) - 1], rel=1e-4)
    assert numbers["peak_step_over_lr"]["0.999"]["uncorrected"] == pytest.approx(6.57, abs=0.01)
    assert numbers["peak_step_at"] == {"0.999": 12, "0.99": 13}

    # seed 004's η_t = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) form is torch's step but for ε's place: the gap is that bound
    bound = 1e-8 * (1 / math.sqrt(0.001) - 1) / numbers["smallest_gradient"]
    assert numbers["seed_004_eps_bound"] == pytest.approx(bound, rel=1e-9)
    assert 0.9 * bound <= numbers["seed_004_form_max_diff_over_lr"] <= 1.01 * bound < 1e-3
    # the uncorrected training run (the class with lr_t, ε_t scheduled) steps exactly lr·m/(√v + ε)
    assert numbers["uncorrected_schedule_max_diff_over_lr"] < 1e-10
    assert numbers["adam_default_betas"] == [0.9, 0.999]

    training, seeds = numbers["training"], numbers["seeds"]
    hot, cool, mild = training["0.1"]["0.999"], training["0.1"]["0.99"], training["0.01"]["0.999"]
    assert seeds == 4 and hot["corrected"]["collapsed"] == 0 and hot["uncorrected"]["collapsed"] >= 2
    assert max(hot["corrected"]["final_losses"]) < 0.02 and hot["uncorrected"]["final_loss"] > 0.05
    assert hot["uncorrected"]["peak_loss_first_50"] > 3 * hot["corrected"]["peak_loss_first_50"]
    assert cool["uncorrected"]["collapsed"] == 0 == cool["corrected"]["collapsed"]  # β₂ = 0.99: 2.1× at most
    assert max(mild["corrected"]["final_losses"] + mild["uncorrected"]["final_losses"]) < 0.02
    assert mild["uncorrected"]["loss_at_50"] < mild["corrected"]["loss_at_50"]  # at a small lr it helps

    kinds = [(v.claim.post[:3], v.kind) for v in outcome.verdicts]
    assert kinds == [("000", "confirmed"), ("000", "wrong"), ("004", "partly")]
    assert all(v.correction is not None and v.reference for v in outcome.verdicts if v.kind != "confirmed")
    assert "3.162" in outcome.verdicts[0].evidence.en and "3.162" in outcome.verdicts[0].evidence.zh
