"""``optimlab learn schedules``: every decay ends below the constant lr, and only plateau reads the loss."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("schedules")
    result = runner.invoke(app, ["learn", "schedules", "--json", "--no-png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def outcome() -> learn.Outcome:
    return learn.run("schedules")


def test_the_cli_and_python_agree(numbers: dict, outcome: learn.Outcome) -> None:
    again = json.loads(json.dumps(outcome.numbers))
    assert again["final_loss"] == pytest.approx(numbers["final_loss"], rel=1e-6)
    assert again["plateau_cut_epochs"] == numbers["plateau_cut_epochs"]


def test_every_decay_beats_the_constant_lr_on_every_seed(numbers: dict) -> None:
    final, per_seed, floor = numbers["final_loss"], numbers["final_loss_per_seed"], numbers["noise_floor"]
    assert floor == pytest.approx(0.0094284, abs=1e-6)  # mean((y − x²)²) of the parabola's data
    assert final["constant"] == pytest.approx(0.011115, abs=2e-4)
    for name in ("step", "cosine", "plateau"):
        assert final[name] == pytest.approx(0.00984, abs=1.5e-4)
        assert all(d < c for d, c in zip(per_seed[name], per_seed["constant"], strict=True)), name
    # every run ends above the noise floor; the decays close most of the constant lr's gap to it
    assert all(v > floor for runs in per_seed.values() for v in runs)
    excess = numbers["excess_over_floor"]
    assert max(excess[n] for n in ("step", "cosine", "plateau")) < 0.35 * excess["constant"]


def test_the_learning_rates_follow_seed_001s_settings(numbers: dict) -> None:
    last = numbers["final_lr"]
    assert last["constant"] == 0.1
    assert last["step"] == pytest.approx(0.1 * 0.5 ** (31 // 4))  # StepLR(step_size=4, gamma=0.5), epoch 31
    eta_min = 1e-4  # CosineAnnealingLR(T_max=32, eta_min=1e-4) at epoch 31
    assert last["cosine"] == pytest.approx(
        eta_min + 0.5 * (0.1 - eta_min) * (1 + math.cos(math.pi * 31 / 32))
    )
    assert last["plateau"] in (pytest.approx(0.01), pytest.approx(0.001))  # factor 0.1, once or twice


def test_only_plateau_depends_on_the_loss(numbers: dict) -> None:
    cuts = numbers["plateau_cut_epochs"]
    assert list(cuts) == ["0", "1", "2"] and all(cuts.values())
    assert len({tuple(c) for c in cuts.values()}) > 1  # seed-dependent: it reacts to each run's loss
    assert all(c[0] >= 6 for c in cuts.values())  # patience 5: never before 6 epochs without progress
    schedulers = numbers["torch_schedulers"]
    six = {"StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau", "LambdaLR"}
    assert six <= set(schedulers["names"]) and schedulers["count"] == len(schedulers["names"]) > 6
    assert {"OneCycleLR", "LinearLR", "SequentialLR"} <= set(schedulers["names"])


def test_the_verdicts_follow_the_numbers(outcome: learn.Outcome) -> None:
    assert [v.kind for v in outcome.verdicts] == ["partly", "partly"]
    assert "0.0111" in outcome.verdicts[1].evidence.en and "0.0098" in outcome.verdicts[1].evidence.zh
