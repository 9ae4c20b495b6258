"""``optimlab learn effective-lr``: Adagrad's per-coordinate step shrinks as 1/√t on a stationary noisy
gradient, SGD's, RMSprop's and Adam's do not, and RMSprop's uncorrected first step is 1/√(1 − α) = 10·lr."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app


def test_adagrad_decays_as_one_over_root_t_and_the_others_do_not(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["learn", "effective-lr", "--json", "--no-png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    outcome = learn.run("effective-lr")
    assert numbers == json.loads(json.dumps(outcome.numbers))  # the CLI and Python agree (seeded)

    ratio, first, late = numbers["step_ratio"], numbers["first_step_over_lr"], numbers["late_step_over_lr"]
    # Adagrad: step ∝ 1/√t, so 10³ → 10⁴ shrinks it by ≈ 1/√10 (exactly: the windows' mean of 1/√s)
    window_theory = numbers["theory"]["step_ratio"]["Adagrad"]
    assert window_theory == pytest.approx(0.30896, abs=1e-4)
    assert ratio["Adagrad"] == pytest.approx(window_theory, rel=0.02)
    assert ratio["Adagrad"] == pytest.approx(1 / math.sqrt(10), rel=0.04)
    for name in ("SGD", "RMSprop", "Adam"):  # no decay on a stationary gradient
        assert ratio[name] == pytest.approx(1.0, abs=0.03), name
    # the steps still add up without bound: the path grows √10× for Adagrad, 10× for SGD
    assert numbers["path_growth"]["Adagrad"] == pytest.approx(math.sqrt(10), rel=0.03)
    assert numbers["path_growth"]["SGD"] == pytest.approx(10, rel=0.02)
    # first steps: Adagrad and (bias-corrected) Adam step exactly lr, RMSprop 1/√(1 − 0.99) = 10·lr
    assert first["Adagrad"] == pytest.approx(1.0, abs=1e-6)
    assert first["Adam"] == pytest.approx(1.0, abs=1e-6)
    assert first["RMSprop"] == pytest.approx(10.0, abs=1e-4)
    assert first["SGD"] == pytest.approx(math.sqrt(2 / math.pi), rel=0.03)  # E|g| for g ~ N(0, 1)
    # late steps: SGD lr·E|g|; Adam's momentum averages the noise: √(2/π)·√((1 − β₁)/(1 + β₁)) ≈ 0.183
    assert late["SGD"] == pytest.approx(math.sqrt(2 / math.pi), rel=0.02)
    assert late["Adam"] == pytest.approx(math.sqrt(2 / math.pi) * math.sqrt(0.1 / 1.9), rel=0.03)
    assert late["RMSprop"] == pytest.approx(late["SGD"], rel=0.03)
    assert late["Adagrad"] == pytest.approx(math.sqrt(2 / math.pi) / 100, rel=0.03)  # lr·E|g|/√(10⁴)

    kinds = {v.claim.post[:3]: v.kind for v in outcome.verdicts}
    assert kinds == {"000": "partly", "002": "partly"}
    assert all(v.correction is not None and v.reference for v in outcome.verdicts)
    assert f"{ratio['Adagrad']:.3f}" in outcome.verdicts[0].evidence.en  # the evidence quotes the measurement
