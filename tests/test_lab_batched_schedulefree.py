"""Schedule-Free trains as batched replicas (issue 13, part 5): each replica keeps its own param group,
whose bookkeeping (k, warmup, lr_max, the averaging weights) advances at every step, and is evaluated
at its averaged weights x, as the sequential run is — the stored runs equal the sequential ones up to
float rounding, with an lr grid, the optimizer's own warmup and the lab's schedules. AdEMAMix, whose
group-level step count is declared the same way, batches alongside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from batched_cases import RTOL, assert_same_curves, stored_runs
from optimlab.lab.executor import cut_units
from optimlab.lab.presets import parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.problems.parabola import Parabola
from optimlab.lab.protocol import Comparison, planned_runs
from optimlab.lab.replicas import ReplicaSpec, batchable, train_batched, train_sequential
from optimlab.lab.run import RunSpec
from optimlab.lab.schedules import parse_schedule
from optimlab.optim import AdamWScheduleFree, SGDScheduleFree
from optimlab.optim.base import RuleOptimizer
from optimlab.optim.modern.schedulefree import averaged_point, gradient_point

#: both Schedule-Free presets (one with its own warmup) and AdEMAMix with its α, β₃ warm-up
OPTIMIZERS = "adamw-schedulefree:warmup_steps=3,sgd-schedulefree:weight_decay=0.001,ademamix:t_alpha_beta3=10"


def _assert_same_runs(batched: dict[str, Any], sequential: dict[str, Any]) -> None:
    assert batched.keys() == sequential.keys()
    for key, seq in sequential.items():
        run = batched[key]
        assert run.extra.get("batched") is True and "batched" not in seq.extra, seq.optimizer
        assert (run.diverged, run.divergence, run.steps) == (seq.diverged, seq.divergence, seq.steps)
        assert_same_curves(run, seq)


SCHEDULES = [None, "warmup-cosine:warmup_steps=4", "onecycle", "plateau:factor=0.5,patience=0,threshold=0.2"]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_free_lr_grid_batches_as_the_sequential_runs(tmp_path: Path, schedule: str | None) -> None:
    comparison = Comparison(
        problems=[get_problem("parabola:n=128")],
        optimizers=parse_optimizers(OPTIMIZERS),
        seeds=2,
        lr_grid=3,
        budget=Budget(steps=20),
        schedule=parse_schedule(schedule) if schedule else None,
    )
    sequential = stored_runs(tmp_path / "off.db", comparison, "off")
    batched = stored_runs(tmp_path / "auto.db", comparison, "auto")
    assert len(batched) == planned_runs(comparison) == 3 * 3 * 2
    _assert_same_runs(batched, sequential)
    # the grid gives each replica its own lr, and the schedules change it during the run
    assert len({r.lrs[0] for r in batched.values()}) >= 3
    if schedule is not None:  # (a plateau run whose loss keeps falling keeps its lr)
        assert any(len(set(r.lrs)) > 1 for r in batched.values())
        assert schedule.startswith("plateau") or all(len(set(r.lrs)) > 1 for r in batched.values())


TINY_LM = "tiny-lm:batch=8,context=8,heads=2,layers=1,sequences=32,steps=8,width=16"


@pytest.mark.parametrize(("problem", "steps"), [("digits-mlp", 6), (TINY_LM, 6)])
def test_schedule_free_on_networks_batches_as_the_sequential_runs(
    tmp_path: Path, problem: str, steps: int
) -> None:
    comparison = Comparison(
        problems=[get_problem(problem)],
        optimizers=parse_optimizers("adamw-schedulefree:warmup_steps=3,sgd-schedulefree"),
        seeds=2,
        budget=Budget(steps=steps),
    )
    _assert_same_runs(
        stored_runs(tmp_path / "auto.db", comparison, "auto"),
        stored_runs(tmp_path / "off.db", comparison, "off"),
    )


def test_a_batched_replica_is_evaluated_at_x_and_trains_at_y() -> None:
    problem = get_problem("parabola:n=64")
    specs = [ReplicaSpec(0, AdamWScheduleFree, {"lr": lr, "warmup_steps": 2}) for lr in (0.01, 0.05)]
    batched = train_batched(problem, specs, steps=6, evaluation="loss", trajectory=True)
    for spec, run in zip(specs, batched, strict=True):
        alone = train_sequential(problem, spec, steps=6, evaluation="loss", trajectory=True)
        assert run.batched and not alone.batched
        torch.testing.assert_close(torch.tensor(run.trajectory), torch.tensor(alone.trajectory))
        for name, value in alone.params.items():  # left at y, where the next gradient is taken
            torch.testing.assert_close(run.params[name], value)
        assert run.evals[-1]["loss"] == pytest.approx(alone.evals[-1]["loss"], rel=1e-5)
    # x is not y: the evaluated loss is not the loss of the parameters left at y
    model = problem.build_model(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(batched[1].params[name])
        at_y = float(problem.loss(model(problem.x), problem.y))
    assert abs(at_y - batched[1].evals[-1]["loss"]) > 1e-6


def test_the_mode_switch_is_one_pure_formula() -> None:
    y, z = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    param = torch.nn.Parameter(y.clone())
    optimizer = SGDScheduleFree([param], momentum=0.8)
    optimizer.state[param]["z"] = z.clone()
    optimizer.param_groups[0]["train_mode"] = True
    optimizer.eval()
    assert torch.equal(param.detach(), averaged_point(y, z, 0.8))
    torch.testing.assert_close(param.detach(), (y - 0.2 * z) / 0.8)
    optimizer.train()
    assert torch.equal(param.detach(), gradient_point(averaged_point(y, z, 0.8), z, 0.8))


def test_schedule_free_forms_batched_units_and_statistics_rules_do_not() -> None:
    assert SGDScheduleFree.hyperparameters_per_step and AdamWScheduleFree.hyperparameters_per_step
    assert not RuleOptimizer.hyperparameters_per_step
    problem = get_problem("parabola:n=64")
    configs = parse_optimizers("adamw-schedulefree,sgd-schedulefree,lamb,prodigy,adafactor,muon,adam")
    assert [batchable(c) for c in configs] == [True, True, False, False, False, False, True]
    runs = [RunSpec.of(problem, c, s, Budget(epochs=1)) for c in configs for s in range(2)]
    units = cut_units(runs, {problem.spec: problem})
    together = [u for u in units if len(u) > 1]
    assert len(together) == 1
    assert sorted({t.config.label for t in together[0]}) == ["adam", "adamw-schedulefree", "sgd-schedulefree"]
    assert sum(len(u) == 1 for u in units) == 4 * 2


class _SometimesInfiniteGradient(Parabola):
    """A parabola whose gradient is infinite on the batches whose first target is above 0.3 (the
    loss stays the MSE): ``nonfinite="skip"`` skips those steps."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        offset = (target.reshape(-1)[0] <= 0.3).to(output.dtype)  # 0: √ at 0, an infinite slope
        moved = output.sum() - output.sum().detach()  # 0, with a gradient
        return super().loss(output, target) + (moved + offset).sqrt() - offset.sqrt()


def test_a_skipped_step_does_not_count_in_the_averaging_weights() -> None:
    problem = _SometimesInfiniteGradient({"n": 64})
    specs = [
        ReplicaSpec(seed, SGDScheduleFree, {"lr": 0.05, "warmup_steps": 4, "nonfinite": "skip"})
        for seed in (0, 1)
    ]
    batched = train_batched(problem, specs, steps=12, evaluation="loss")
    for spec, run in zip(specs, batched, strict=True):
        alone = train_sequential(problem, spec, steps=12, evaluation="loss")
        assert 0 < run.skipped_steps == alone.skipped_steps < 12
        assert run.losses == pytest.approx(alone.losses, rel=RTOL, abs=1e-7)
        assert [e["loss"] for e in run.evals] == pytest.approx([e["loss"] for e in alone.evals], rel=RTOL)
