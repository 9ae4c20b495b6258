"""Training one run: what is recorded, divergence as a result, L-BFGS evaluations, regularization."""

from __future__ import annotations

import math

import pytest
import torch

from optimlab.lab.presets import make_config, parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.run import EvaluationSchedule
from optimlab.lab.runner import Regularization, RunResult, train
from optimlab.lab.schedules import parse_schedule


def test_a_run_records_losses_lrs_evaluations_and_reaches_the_target() -> None:
    problem = get_problem("booth")
    result = train(problem, make_config("adam", {"lr": 0.5}), seed=0, budget=Budget(steps=200))
    assert result.steps == len(result.losses) == len(result.lrs) == result.grad_evals == 200
    # fully before the first step and after every epoch (10 steps), the loss alone 5 steps into each
    assert [e["step"] for e in result.epoch_evals()] == list(range(0, 201, 10))
    within = set(range(5, 200, 10))
    assert [e["step"] for e in result.evals] == sorted({*range(0, 201, 10), *within})
    assert [e["step"] for e in result.evals] == EvaluationSchedule(200, 10).steps()
    assert result.evals[0]["loss"] == pytest.approx(problem.evaluate(problem.build_model(0))["loss"])
    assert result.final_loss == result.evals[-1]["loss"] < problem.target_loss
    assert not result.diverged and result.divergence is None
    first = next(e for e in result.evals if e["loss"] <= problem.target_loss)
    assert result.steps_to_target == first["step"] and result.evals_to_target == first["grad_evals"]
    assert len(result.trajectory) == 201 and result.trajectory[0] == [-5.0, -5.0]
    assert result.trajectory[-1] == pytest.approx([1.0, 3.0], abs=1e-2)
    assert RunResult.from_dict(result.to_dict()) == result


def test_steps_to_target_is_infinite_on_a_miss() -> None:
    result = train(get_problem("booth"), make_config("sgd", {"lr": 1e-4}), 0, Budget(steps=20))
    assert math.isinf(result.steps_to_target) and math.isinf(result.evals_to_target)
    assert math.isfinite(result.final_loss) and not result.diverged


@pytest.mark.parametrize(("spec", "lr"), [("booth", 10.0), ("parabola", 1e6)])
def test_divergence_is_recorded_not_raised(spec: str, lr: float) -> None:
    result = train(get_problem(spec), make_config("sgd", {"lr": lr}), 0, Budget(epochs=3))
    assert result.diverged and result.divergence in ("nan", "inf", "explosion")
    assert math.isinf(result.final_loss) and math.isinf(result.steps_to_target)
    assert result.steps < Budget(epochs=3).total_steps(get_problem(spec).steps_per_epoch)


def test_nan_loss_is_divergence_nan() -> None:
    problem = get_problem("booth")

    class NaNAfter:
        def __getattr__(self, name):
            return getattr(problem, name)

        def loss(self, output, target):
            return output * float("nan") if output.detach() < 50 else output

    result = train(NaNAfter(), make_config("adam", {"lr": 0.5}), 0, Budget(steps=100))
    assert result.diverged and result.divergence == "nan"


def test_lbfgs_counts_every_gradient_evaluation() -> None:
    result = train(get_problem("rosenbrock"), parse_optimizers("lbfgs:lr=1")[0], 0, Budget(steps=5))
    assert result.steps == 5 and result.grad_evals > 5
    assert result.final_loss < result.evals[0]["loss"]


def test_runs_are_reproducible_and_seeds_differ() -> None:
    problem = get_problem("parabola:n=128")
    config = make_config("momentum")
    a, b, c = (train(problem, config, seed, Budget(epochs=2)) for seed in (1, 1, 2))
    assert a.losses == b.losses and a.final_loss == b.final_loss
    assert a.losses != c.losses


def test_schedule_drives_the_recorded_lr() -> None:
    problem = get_problem("parabola:n=64")  # 2 steps per epoch
    result = train(
        problem,
        make_config("sgd", {"lr": 0.1}),
        0,
        Budget(epochs=4),
        schedule=parse_schedule("step:step_size=2,gamma=0.5"),
    )
    assert result.lrs == pytest.approx([0.1] * 4 + [0.05] * 4)
    per_step = train(
        problem,
        make_config("sgd", {"lr": 0.1}),
        0,
        Budget(epochs=2),
        schedule=parse_schedule("warmup:warmup_steps=3,start_factor=0.1"),
    )
    assert per_step.lrs == pytest.approx([0.01, 0.04, 0.07, 0.1])
    plateau = train(
        get_problem("booth"),
        make_config("sgd", {"lr": 1e-6}),
        0,
        Budget(steps=60),
        schedule=parse_schedule("plateau:patience=0,factor=0.5,threshold=0.5"),
    )
    assert plateau.lrs[-1] < 1e-6  # no 50 % improvement per epoch: the lr was cut


def test_l1_gives_exact_zeros_and_l2_does_not() -> None:
    problem = get_problem("sparse-regression")
    config = make_config("sgd", {"lr": 0.05})  # proximal SGD
    budget = Budget(epochs=30)
    l1 = train(problem, config, 0, budget, regularization=Regularization(l1=0.1))
    l2 = train(problem, config, 0, budget, regularization=Regularization(weight_decay=0.1))
    assert l1.final_metrics["zero_fraction"] > 0.5
    assert l1.final_metrics["support_recall"] == 1.0
    assert l2.final_metrics["zero_fraction"] == 0.0


def test_gradient_clipping_bounds_the_first_step() -> None:
    problem = get_problem("booth")
    config = make_config("sgd", {"lr": 1.0})
    clipped = train(problem, config, 0, Budget(steps=1), regularization=Regularization(clip_norm=0.5))
    moved = torch.tensor(clipped.trajectory[1]) - torch.tensor(clipped.trajectory[0])
    assert float(moved.norm()) == pytest.approx(0.5, rel=1e-4)
    lbfgs = train(
        problem,
        make_config("lbfgs", {"lr": 1.0}),
        0,
        Budget(steps=3),
        regularization=Regularization(l1=0.1, weight_decay=0.1, clip_norm=1.0),
    )
    assert not lbfgs.diverged


def test_bad_regularization() -> None:
    with pytest.raises(ValueError, match="l1"):
        Regularization(l1=-1)
    with pytest.raises(ValueError, match="clip_norm"):
        Regularization(clip_norm=0)
