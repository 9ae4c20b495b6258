"""Learning-rate schedule specs: each builds torch's scheduler; the lambda evaluator is safe."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler

from optimlab.lab.schedules import SCHEDULES, SafeExpression, lr_curve, parse_schedule


def _build(spec: str, epochs: int = 12, steps_per_epoch: int = 4):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    parsed = parse_schedule(spec)
    return parsed, parsed.build(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)


@pytest.mark.parametrize(
    ("spec", "cls", "interval"),
    [
        ("step:step_size=4,gamma=0.5", lr_scheduler.StepLR, "epoch"),
        ("multistep:milestones=8/24/28,gamma=0.5", lr_scheduler.MultiStepLR, "epoch"),
        ("exponential:gamma=0.5", lr_scheduler.ExponentialLR, "epoch"),
        ("cosine:T_max=32,eta_min=1e-4", lr_scheduler.CosineAnnealingLR, "epoch"),
        ("plateau:factor=0.1,patience=5", lr_scheduler.ReduceLROnPlateau, "epoch"),
        ("lambda:0.95**epoch", lr_scheduler.LambdaLR, "epoch"),
        ("onecycle:max_lr=0.5", lr_scheduler.OneCycleLR, "step"),
        ("warmup:warmup_steps=5", lr_scheduler.LinearLR, "step"),
        ("warmup-cosine:warmup_steps=5", lr_scheduler.SequentialLR, "step"),
    ],
)
def test_each_spec_builds_the_torch_scheduler(spec: str, cls: type, interval: str) -> None:
    parsed, scheduler = _build(spec)
    assert isinstance(scheduler, cls)
    assert parsed.interval == interval
    assert parsed.needs_metric == (cls is lr_scheduler.ReduceLROnPlateau)
    assert parse_schedule(parsed.text) == parsed  # the canonical text parses back to the same spec
    assert parsed.kind in SCHEDULES


def test_parameters_reach_torch() -> None:
    _, step = _build("step:step_size=4,gamma=0.5")
    assert (step.step_size, step.gamma) == (4, 0.5)
    _, multi = _build("multistep:milestones=8/24/28,gamma=0.5")
    assert sorted(multi.milestones) == [8, 24, 28]
    _, cosine = _build("cosine")
    assert cosine.T_max == 12  # defaults to the run's epochs
    _, plateau = _build("plateau:factor=0.1,patience=5")
    assert (plateau.factor, plateau.patience) == (0.1, 5)


def test_lr_curves() -> None:
    assert lr_curve(None, 0.1, 3, 2) == [0.1] * 6
    step = lr_curve("step:step_size=2,gamma=0.5", 0.1, 6, 2)
    assert step == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025] * 4)
    lam = lr_curve("lambda:0.5**epoch", 1.0, 3, 1)
    assert lam == pytest.approx([1.0, 0.5, 0.25])
    warm = lr_curve("warmup-cosine:warmup_steps=10,start_factor=0.1", 1.0, 10, 10)
    assert warm[0] == pytest.approx(0.1) and max(warm) == pytest.approx(1.0, abs=1e-3)
    assert warm.index(max(warm)) == 10 and warm[-1] < 0.01
    one = lr_curve("onecycle", 0.4, 10, 10)
    assert max(one) == pytest.approx(0.4, rel=1e-3) and one[0] == pytest.approx(0.4 / 25)
    plateau = lr_curve("plateau:patience=1,factor=0.5", 1.0, 5, 1, metrics=[1, 1, 1, 1, 1])
    assert plateau == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5])


def test_safe_expression_evaluates_arithmetic_of_epoch() -> None:
    expr = SafeExpression("min(1, (epoch + 1) / 5) * 0.9 ** max(0, epoch - 5) if epoch < 100 else 0")
    assert expr(0) == pytest.approx(0.2) and expr(4) == 1.0 and expr(7) == pytest.approx(0.81)
    assert expr(150) == 0.0
    assert SafeExpression("exp(-epoch) + sqrt(4) - abs(-1) + cos(0) - sin(0) + log(1)")(0) == pytest.approx(
        3.0
    )


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "().__class__.__bases__",
        "epoch.real",
        "open('/etc/passwd')",
        "[epoch for epoch in range(3)]",
        "(lambda: 1)()",
        "x",
        "'a' * 3",
        "eval('1')",
        "globals()",
        "min(1, key=abs)",
        "epoch[0]",
        "epoch and 1",
        "10 ** 10 ** 10",
        "1 / (epoch - epoch)",
        "-1",
    ],
)
def test_lambda_evaluator_refuses_unsafe_or_bad_code(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_schedule(f"lambda:{text}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sometimes", "unknown schedule"),
        ("step:size=3", "has no parameter 'size'"),
        ("step:gamma=", "malformed"),
        ("step:gamma", "gamma must be a factor"),  # a bare key is a flag (gamma=true)
        ("cosine:T_max=abc", "cosine"),
        ("lambda:", "needs an expression"),
        ("multistep:milestones=5/2", "milestones"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(spec)


def test_schedule_that_does_not_fit_the_run_is_rejected() -> None:
    parsed = parse_schedule("warmup:warmup_steps=100")
    parsed.check_for(epochs=20, steps_per_epoch=10)
    with pytest.raises(ValueError, match="warmup_steps"):
        parsed.check_for(epochs=5, steps_per_epoch=10)
    assert parse_schedule("none") is None and parse_schedule("") is None


def test_a_lambda_is_checked_at_every_epoch_of_the_run() -> None:
    late = parse_schedule("lambda:1-epoch/12")  # fine at epochs 0, 1 and 10 (what parsing tries)
    late.check_for(epochs=12, steps_per_epoch=5)  # the factor at epoch 12 is 0: allowed
    with pytest.raises(ValueError, match=r"gives -0\.08\d* at epoch 13") as info:
        late.check_for(epochs=20, steps_per_epoch=5)
    assert "over a run of 20 epochs" in str(info.value)
    with pytest.raises(ValueError, match="fails at epoch 30"):
        parse_schedule("lambda:1/(epoch-30) + 1").check_for(epochs=40, steps_per_epoch=1)
    with pytest.raises(ValueError, match="fails at epoch 710: math range error"):  # exp overflows
        parse_schedule("lambda:exp(epoch) / exp(epoch)").check_for(epochs=1000, steps_per_epoch=1)


def test_a_warmup_error_names_the_runs_length_not_a_probes() -> None:
    long = parse_schedule("warmup:warmup_steps=2000000")  # parsing alone cannot judge a length
    with pytest.raises(ValueError, match=r"between 1 and 99 \(the run has 100 steps\)") as info:
        long.check_for(epochs=10, steps_per_epoch=10)
    assert "1000000" not in str(info.value)


def test_a_comparison_refuses_a_schedule_that_fails_late_before_training() -> None:
    from optimlab.lab.presets import parse_optimizers
    from optimlab.lab.problems import Budget, get_problem
    from optimlab.lab.protocol import Comparison

    problems = [get_problem("parabola:n=64"), get_problem("booth")]
    schedule = parse_schedule("lambda:1-epoch/12")
    with pytest.raises(ValueError, match=r"at epoch 13.*\(problem parabola:n=64\)"):
        Comparison(problems, parse_optimizers("sgd"), seeds=1, budget=Budget(epochs=20), schedule=schedule)
    # booth's own budget (1000 steps = 100 epochs of 10) is too long for it as well
    with pytest.raises(ValueError, match=r"\(problem booth\)"):
        Comparison(problems[1:], parse_optimizers("sgd"), seeds=1, schedule=schedule)
    Comparison(problems[:1], parse_optimizers("sgd"), seeds=1, budget=Budget(epochs=12), schedule=schedule)
