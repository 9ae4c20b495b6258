"""``optimlab learn rare-features``: Adagrad learns the weights of features present in 1 % of rows that
SGD, at its best learning rate, leaves half-learnt after one pass; the learning rate still needs tuning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app

runner = CliRunner()


def test_rare_features_adagrad_learns_the_rare_weights_sgd_does_not(tmp_path: Path) -> None:
    result = runner.invoke(app, ["learn", "rare-features", "--json", "--no-png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    outcome = learn.run("rare-features")
    assert numbers == json.loads(json.dumps(outcome.numbers))  # the CLI and Python agree
    rare, common, floor = numbers["rare_weight_error"], numbers["common_weight_error"], numbers["floor"]
    assert 0.008 < numbers["presence"] < 0.012  # the rare features are present in ~1 % of the rows
    assert floor["loss"] == pytest.approx(0.1**2 / 2, rel=0.05)  # least squares leaves the noise, σ²/2
    assert floor["rare"] < 0.02 and floor["common"] < 0.002  # the data determine every weight
    # each optimizer at the lr of the grid with the lowest total loss, that lr inside the grid
    assert numbers["lr"] == {"SGD": 1.0, "Adagrad": 3.0, "Adam": 0.1}
    assert numbers["grid"]["SGD"]["3"]["total_loss"] is None  # SGD's lr is capped: it diverges above 1
    # after one pass: every optimizer has the common weights; only the per-coordinate ones the rare ones
    assert max(common.values()) < 0.012
    assert rare["SGD"] > 0.3 and rare["Adagrad"] < 0.06 and rare["Adam"] < 0.06
    assert rare["SGD"] / rare["Adagrad"] > 6
    assert all(loss >= floor["loss"] for loss in numbers["total_loss"].values())
    # SGD catches up given 5 passes: the advantage is speed
    assert numbers["sgd_more_epochs"]["rare_weight_error"] < rare["Adagrad"]
    # the lr still matters: torch's default 0.01 leaves Adagrad nearly where it started
    assert numbers["adagrad_default_lr"]["rare_weight_error"] > 0.9
    assert numbers["adagrad_default_lr"]["total_loss"] > 100 * numbers["total_loss"]["Adagrad"]
    assert numbers["good_lrs"]["Adagrad"] > numbers["good_lrs"]["SGD"]
    assert [v.kind for v in outcome.verdicts] == ["confirmed", "partly"]
