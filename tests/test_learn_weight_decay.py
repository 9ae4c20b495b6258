"""``optimlab learn weight-decay``: weight decay shrinks the weights and the validation gap of an MLP
overfitting 10 points; it equals L2 for SGD exactly, not for Adam (Adam + L2 vs AdamW)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app

runner = CliRunner()


def test_weight_decay_shrinks_weights_and_gap_and_is_l2_only_for_sgd(tmp_path: Path) -> None:
    result = runner.invoke(app, ["learn", "weight-decay", "--json", "--no-png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    outcome = learn.run("weight-decay")
    assert numbers == json.loads(json.dumps(outcome.numbers))  # the CLI and Python agree
    assert [v.kind for v in outcome.verdicts] == ["confirmed", "partly", "partly"]
    gap, norm, val, tr = (
        numbers["val_gap"],
        numbers["weight_norm"],
        numbers["val_loss"],
        numbers["train_loss"],
    )
    assert set(gap) == {"sgd", "sgd+l2", "adam", "adam+l2", "adamw"}
    # without decay both optimizers interpolate the 10 points and overfit
    assert tr["sgd"] < 1e-2 and tr["adam"] < 1e-3 and gap["sgd"] > 0.4 and gap["adam"] > 0.4
    # seed 001's weight_decay=1e-2: half the norm, a higher training and a lower validation loss
    assert norm["sgd+l2"] < 0.6 * norm["sgd"] and tr["sgd+l2"] > 0.05 and val["sgd+l2"] < val["sgd"] - 0.05
    assert gap["sgd+l2"] < 0.65 * gap["sgd"]
    # SGD's weight_decay is exactly the gradient of ½λ‖θ‖² added to the loss
    assert numbers["sgd_l2_vs_loss_penalty_max_diff"] < 1e-5
    # the same λ decays far more through Adam's L2 (divided by √v̂) than through AdamW's γλθ at λ ≤ 1
    for lam in ("0.01", "0.1", "1"):
        assert (
            numbers["sweep"]["adam+l2"][lam]["weight_norm"]
            < 0.5 * numbers["sweep"]["adamw"][lam]["weight_norm"]
        )
    assert numbers["best_lambda"] == {"adam+l2": 0.1, "adamw": 10.0}
    for variant in ("adam+l2", "adamw"):  # tuned, both regularize: smaller weights and gap than Adam
        assert norm[variant] < 0.4 * norm["adam"] and gap[variant] < 0.2 * gap["adam"]
        assert numbers["noise_variance"] < val[variant] < val["adam"] - 0.1
    assert val["adam+l2"] == pytest.approx(0.281, abs=0.01) and val["adamw"] == pytest.approx(0.309, abs=0.01)
