"""When a run is evaluated: fully after every epoch, its loss alone within epochs, often enough for the
budget (about EVALUATIONS times) — the same in the step-by-step runner and the batched replicas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from optimlab.lab.loop import objective, plain_objective
from optimlab.lab.presets import make_config
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.replicas import ReplicaSpec, train_batched, train_sequential
from optimlab.lab.run import EPOCH_EVALUATIONS, EVALUATIONS, EvaluationSchedule, RunResult
from optimlab.lab.runner import train
from optimlab.lab.schedules import parse_schedule


@pytest.mark.parametrize(
    ("total", "per_epoch", "interval"),
    [
        (384, 32, 16),  # parabola: 12 epochs of 32 steps, 2 evaluations an epoch
        (450, 45, 23),  # digits: 10 epochs of 45 steps, at most 2 evaluations an epoch
        (90, 45, 23),  # a short budget of long epochs: still at most 2 an epoch, not every other step
        (1000, 10, 10),  # rosenbrock: 100 epochs of 10 steps, evaluated after each epoch as before
        (20_000, 32, 32),  # many epochs: after each, never more often
        (24, 4, 2),  # short: every other step
        (24, 1, 1),  # a surface: every step
        (200, 7, 4),  # an interval that does not divide the epoch: 4, 7, 11, 14, 18, ...
        (100, 32, 16),  # a budget that ends within an epoch
        (3000, 200, 100),  # long epochs: the middle of each
    ],
)
def test_the_schedule_is_adapted_to_the_budget(total: int, per_epoch: int, interval: int) -> None:
    schedule = EvaluationSchedule(total, per_epoch)
    spread = max(math.ceil(total / EVALUATIONS), math.ceil(per_epoch / EPOCH_EVALUATIONS))
    assert schedule.interval == interval == min(per_epoch, spread)
    steps = schedule.steps()
    epoch_ends = set(range(0, total + 1, per_epoch)) | {total}
    within = {e + k for e in range(0, total, per_epoch) for k in range(interval, per_epoch, interval)}
    assert steps == sorted(epoch_ends | {s for s in within if s < total})
    assert steps[0] == 0 and steps[-1] == total and schedule.count() == len(steps)
    epochs = math.ceil(total / per_epoch)
    assert len(steps) - len(epoch_ends) <= min(EVALUATIONS, (EPOCH_EVALUATIONS - 1) * epochs)
    assert all(b - a <= interval for a, b in itertools.pairwise(steps))
    # evaluated fully at epoch ends and at the last step, the loss alone in between
    assert [s for s in range(1, total + 1) if schedule.within_epoch(s)] == sorted(set(steps) - epoch_ends)


def test_a_schedule_needs_steps() -> None:
    for total, per_epoch in ((0, 10), (10, 0)):
        with pytest.raises(ValueError, match="≥ 1 step"):
            EvaluationSchedule(total, per_epoch)


def test_a_run_is_evaluated_within_epochs_by_its_loss_alone() -> None:
    problem = get_problem("parabola")
    result = train(problem, make_config("adam"), 0)
    schedule = EvaluationSchedule(384, 32)
    assert [e["step"] for e in result.evals] == schedule.steps()
    ends, within = result.epoch_evals(), [e for e in result.evals if e not in result.epoch_evals()]
    assert [e["epoch"] for e in ends] == list(range(13))
    assert [e["step"] for e in ends] == list(range(0, 385, 32))
    assert all(e.keys() == {"epoch", "step", "grad_evals", "wall_s", "loss", "val_loss"} for e in ends)
    assert len(within) == 12  # one in the middle of each epoch
    assert all(e.keys() == {"epoch", "step", "grad_evals", "wall_s", "loss"} for e in within)
    assert all(e["epoch"] == e["step"] / 32 and not float(e["epoch"]).is_integer() for e in within)
    # steps to target: the first evaluation at or below the target, within an epoch or at its end
    first = next(e for e in result.evals if e["loss"] <= problem.target_loss)
    assert result.steps_to_target == first["step"] and result.steps_to_target % 16 == 0
    assert result.final_metrics.keys() == {"loss", "val_loss"}
    assert RunResult.from_dict(result.to_dict()).epoch_evals() == ends


def test_the_loss_alone_is_the_loss_of_a_full_evaluation() -> None:
    parabola, quadratic = get_problem("parabola"), get_problem("quadratic-100d")
    assert plain_objective(parabola) and not plain_objective(quadratic)  # quadratic has its own evaluate
    for problem in (parabola, quadratic, get_problem("digits-mlp"), get_problem("booth")):
        model = problem.build_model(3)
        assert objective(problem, model) == problem.evaluate(model)["loss"]


def test_plateau_still_reads_one_loss_per_epoch() -> None:
    problem = get_problem("parabola")
    schedule = parse_schedule("plateau:factor=0.5,patience=0,threshold=0.5")
    result = train(problem, make_config("sgd"), 0, Budget(epochs=6), schedule)
    changes = [i for i in range(1, len(result.lrs)) if result.lrs[i] != result.lrs[i - 1]]
    assert changes and all(i % 32 == 0 for i in changes)  # only after a whole epoch
    assert len(result.evals) > len(result.epoch_evals()) == 7


class Cliff:
    """One weight w trained towards 1 on a constant batch ((w - 1)², never exploding), while the full
    objective it is evaluated on jumps to 1e6·w² once w passes 0.5: only an evaluation sees it."""

    steps_per_epoch = 20

    def build_model(self, seed: int) -> nn.Module:
        model = nn.Linear(1, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            model.weight.zero_()
        return model

    def batches(self, seed: int, epoch: int):
        one = torch.ones(1, 1, dtype=torch.float64)
        for _ in range(self.steps_per_epoch):
            yield one, one

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return (output - target).pow(2).mean()

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        w = float(model.weight)
        return {"loss": 1e6 * w * w if w > 0.5 else (w - 1) ** 2}


def test_an_evaluation_within_an_epoch_ends_a_diverging_run_alike_batched_or_not() -> None:
    # 200 steps of 20 an epoch: the loss alone after 10 steps of each; w = 1 − 0.9^k passes 0.5 at step 7
    specs = [ReplicaSpec(seed, "sgd", {"lr": 0.05}) for seed in (0, 1)]
    batched = train_batched(Cliff(), specs, steps=200)
    for run, spec in zip(batched, specs, strict=True):
        alone = train_sequential(Cliff(), spec, steps=200)
        for one in (run, alone):
            assert (one.steps, one.divergence, len(one.losses)) == (10, "explosion", 10)
            assert [e["step"] for e in one.evals] == [0, 10]  # not at the epoch's end (20)
            assert one.evals[-1]["epoch"] == 0.5 and one.evals[-1]["loss"] > 1e4
        assert run.losses == pytest.approx(alone.losses, rel=1e-12)


def _result(evals: list[tuple[float, int, float]], **metrics: float) -> RunResult:
    return RunResult(
        problem="p",
        optimizer="o",
        seed=0,
        final_loss=evals[-1][2],
        final_metrics={"loss": evals[-1][2]},
        losses=[1.0] * evals[-1][1],
        lrs=[0.1] * evals[-1][1],
        evals=[
            {
                "epoch": epoch,
                "step": step,
                "grad_evals": step,
                "wall_s": 0.0,
                "loss": loss,
                **({k: v for k, v in metrics.items()} if float(epoch).is_integer() else {}),
            }
            for epoch, step, loss in evals
        ],
        grad_evals=evals[-1][1],
        steps=evals[-1][1],
        wall_s=0.0,
        diverged=False,
        divergence=None,
        target_loss=0.0,
        steps_to_target=math.inf,
        evals_to_target=math.inf,
    )


def test_median_curves_align_evaluations_by_step() -> None:
    from optimlab.lab.results import median_curve

    new = _result([(0, 0, 4.0), (0.5, 2, 3.0), (1, 4, 2.0), (1.5, 6, 1.0), (2, 8, 0.5)], val_loss=1.0)
    short = _result([(0, 0, 4.0), (0.5, 2, 5.0)])  # stopped (diverged) after 2 steps
    old = _result([(0, 0, 4.0), (1, 4, 4.0), (2, 8, 1.5)], val_loss=3.0)  # record version 1: per epoch
    curve = median_curve([new, short, old])
    assert curve["steps"] == [0, 2, 4, 6, 8]
    # step 2: new and short (old was not evaluated there); step 4: all three, short as +∞ from then on
    assert curve["median"] == [4.0, 4.0, 4.0, None, 1.5]
    assert median_curve([new, old], "val_loss") == {
        "steps": [0, 4, 8],
        "median": [2.0, 2.0, 2.0],
        "q25": [1.5, 1.5, 1.5],
        "q75": [2.5, 2.5, 2.5],
    }


def test_loss_figures_align_evaluations_by_step_and_draw_the_steps_all_runs_share() -> None:
    from optimlab.reports.figures.loss import eval_curves

    new = _result([(0, 0, 4.0), (0.5, 2, 3.0), (1, 4, 2.0), (1.5, 6, 1.0), (2, 8, 0.5)])
    old = _result([(0, 0, 4.0), (1, 4, 4.0), (2, 8, 1.5)])  # record version 1: evaluated per epoch
    short = _result([(0, 0, 4.0), (0.5, 2, 5.0)])  # stopped after 2 steps
    mixed = eval_curves([new, old])  # only the steps both were evaluated at, each value at its step
    assert mixed.steps[0].tolist() == [0, 4, 8] and mixed.loss.tolist() == [[4.0, 2.0, 0.5], [4.0, 4.0, 1.5]]
    stopped = eval_curves([new, short])  # every step of the finer record; the stopped run +∞ after it
    assert stopped.steps[0].tolist() == [0, 2, 4, 6, 8]
    assert stopped.loss[1].tolist() == [4.0, 5.0, math.inf, math.inf, math.inf]


def test_the_loss_of_many_replicas_is_evaluated_at_once_or_one_by_one_alike(monkeypatch) -> None:
    from optimlab.lab.replicas import sizing

    problem = get_problem("parabola:n=64")
    assert sizing.evaluation_chunk(problem, problem.build_model(0), 0) == sizing.EVALUATION_CHUNK
    cnn = get_problem("digits-cnn")  # a pass on the whole data set outgrows the cache: one by one
    assert sizing.evaluation_chunk(cnn, cnn.build_model(0), 0) == 1
    specs = [ReplicaSpec(seed, "adam", {"lr": lr}) for seed, lr in ((0, 0.01), (1, 0.05), (2, 0.1))]
    together = train_batched(problem, specs, epochs=3)
    monkeypatch.setattr(sizing, "EVALUATION_BYTES", 0)
    apart = train_batched(problem, specs, epochs=3)
    for a, b, spec in zip(together, apart, specs, strict=True):
        alone = train_sequential(problem, spec, epochs=3)
        assert len(a.evals) == len(b.evals) == len(alone.evals) > 3 + 1
        for x, y, z in zip(a.evals, b.evals, alone.evals, strict=True):
            assert x["loss"] == pytest.approx(z["loss"], rel=1e-5) and y["loss"] == pytest.approx(
                z["loss"], rel=1e-5
            )


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("parabola:n=64", ["loss", "val_loss"]),
        ("digits-mlp", ["loss", "accuracy", "val_loss", "val_accuracy"]),  # classification
    ],
)
def test_every_metric_of_many_replicas_is_evaluated_at_once_or_one_by_one_alike(
    monkeypatch, spec: str, names: list[str]
) -> None:
    """A problem evaluated by ``TensorProblem.evaluate`` from its tensors alone gives every replica's
    full evaluation (training loss and accuracy, validation loss and accuracy) in one vmapped pass:
    the same metrics, in the same order, as one replica after another and as the sequential run."""
    from optimlab.lab.loop import plain_metrics
    from optimlab.lab.replicas import sizing

    problem = get_problem(spec)
    assert plain_metrics(problem)
    specs = [ReplicaSpec(seed, "adam", {"lr": lr}) for seed, lr in ((0, 0.01), (1, 0.05))]
    steps = problem.steps_per_epoch + 3  # full evaluations at the start, an epoch's end and the last step
    calls = []
    evaluate = problem.evaluate
    problem.evaluate = lambda model: calls.append(1) or evaluate(model)  # type: ignore[method-assign]
    together = train_batched(problem, specs, steps=steps)
    assert not calls  # every replica at once, without a call per replica
    monkeypatch.setattr(sizing, "EVALUATION_BYTES", 0)
    apart = train_batched(problem, specs, steps=steps)
    assert calls
    for a, b, replica in zip(together, apart, specs, strict=True):
        alone = train_sequential(problem, replica, steps=steps)
        full = [e for e in alone.evals if float(e["epoch"]).is_integer()]
        assert len(full) >= 3
        for x, y, z in zip(a.evals, b.evals, alone.evals, strict=True):
            assert list(x) == list(y) == list(z)
            for name in names if z in full else ["loss"]:
                assert x[name] == pytest.approx(z[name], rel=1e-5) and y[name] == pytest.approx(
                    z[name], rel=1e-5
                )
        assert [list(e)[4:] for e in full] == [names] * len(full)


def test_a_problem_with_metrics_of_its_own_is_evaluated_one_replica_at_a_time() -> None:
    """A problem that adds metrics (or evaluates its own way) is not evaluated from its tensors alone:
    the batched replicas call its ``evaluate`` on each replica, and its metrics are recorded."""
    from optimlab.lab.loop import plain_metrics

    class WithNorm(type(get_problem("parabola:n=64"))):  # type: ignore[misc]
        def metrics(self, model: nn.Module) -> dict[str, float]:
            return {"weight_norm": float(sum(p.norm() ** 2 for p in model.parameters()) ** 0.5)}

    problem = WithNorm({"n": 64})
    assert not plain_metrics(problem) and plain_metrics(get_problem("parabola:n=64"))
    specs = [ReplicaSpec(seed, "sgd", {"lr": 0.05}) for seed in (0, 1)]
    runs = train_batched(problem, specs, steps=problem.steps_per_epoch)
    for run, replica in zip(runs, specs, strict=True):
        alone = train_sequential(problem, replica, steps=problem.steps_per_epoch)
        assert run.evals[-1]["weight_norm"] == pytest.approx(alone.evals[-1]["weight_norm"], rel=1e-5)
        assert list(run.evals[-1]) == list(alone.evals[-1])
