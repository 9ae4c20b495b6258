"""The lab batches by itself: a comparison trained as batched replicas stores what the sequential
runs store (same keys, same numbers up to float rounding), resumes after an interruption, and
keeps L-BFGS and models that cannot be batched sequential."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from batched_cases import RTOL, assert_close, assert_same_curves, stored_runs
from optimlab.lab.executor import MAX_BATCH, cut_units
from optimlab.lab.presets import parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.problems.parabola import Parabola
from optimlab.lab.protocol import Comparison, RunEvent, planned_runs, run_comparison
from optimlab.lab.run import RunSpec
from optimlab.lab.schedules import parse_schedule
from optimlab.lab.storage import Store


def _comparison() -> Comparison:
    # parabola: 4 steps per epoch, 6 epochs; rosenbrock: 10 steps per epoch, 3 epochs (the last
    # partial). nesterov at lr 50 explodes on the parabola; sgd, momentum and nesterov blow up
    # on rosenbrock at their default lr. The plateau schedule gives each run its own lr curve.
    return Comparison(
        problems=[get_problem("parabola:n=128"), get_problem("rosenbrock")],
        optimizers=parse_optimizers("sgd,momentum,nesterov:lr=50,adagrad,rmsprop,adam,adamw,nadam,lbfgs"),
        seeds=2,
        budget=Budget(steps=24),
        schedule=parse_schedule("plateau:factor=0.5,patience=0,threshold=0.2"),
    )


def test_a_batched_comparison_stores_what_the_sequential_one_stores(tmp_path: Path) -> None:
    comparison = _comparison()
    sequential = stored_runs(tmp_path / "off.db", comparison, "off")
    batched = stored_runs(tmp_path / "auto.db", comparison, "auto")
    assert batched.keys() == sequential.keys() and len(batched) == planned_runs(comparison) == 9 * 2 + 9
    diverged = set()
    for key, seq in sequential.items():
        run = batched[key]
        assert run.extra.get("batched", False) == (seq.optimizer != "lbfgs"), seq.optimizer
        assert "batched" not in seq.extra
        assert (run.diverged, run.divergence) == (seq.diverged, seq.divergence), (seq.problem, seq.optimizer)
        assert run.steps == seq.steps and run.grad_evals == seq.grad_evals
        assert run.steps_to_target == seq.steps_to_target and run.evals_to_target == seq.evals_to_target
        assert_close(run.final_loss, seq.final_loss)
        assert_same_curves(run, seq)
        assert run.final_metrics.keys() == seq.final_metrics.keys()
        if seq.trajectory is not None:
            assert run.trajectory is not None and len(run.trajectory) == len(seq.trajectory)
            flat = [x for point in run.trajectory for x in point]
            assert flat == pytest.approx([x for point in seq.trajectory for x in point], rel=RTOL, abs=1e-6)
        if seq.diverged:
            diverged.add((seq.problem, seq.optimizer))
    # the comparison covers divergence on both problems and per-run plateau schedules
    assert ("parabola:n=128", "nesterov:lr=50") in diverged and ("rosenbrock", "sgd") in diverged
    assert any(len(set(r.lrs)) > 1 for r in batched.values() if r.extra.get("batched"))


def test_an_interrupted_batch_keeps_what_was_committed_and_resumes(tmp_path: Path) -> None:
    comparison = Comparison(
        problems=[get_problem("parabola:n=64")],
        optimizers=parse_optimizers("sgd,adam,lbfgs"),
        seeds=2,
        budget=Budget(epochs=2),
    )
    done: list[str] = []

    def interrupt(event: RunEvent) -> None:
        if event.kind == "done":
            done.append(event.kind)
            if len(done) == 3:
                raise KeyboardInterrupt

    with Store(tmp_path / "lab.db") as store:
        with pytest.raises(KeyboardInterrupt):
            run_comparison(comparison, store, progress=interrupt)
        # the L-BFGS runs (the costliest units, first) and the first run of the sgd/adam batch
        # were committed before the interruption; they are kept, the rest of the batch is not
        assert store.count() == 3
        assert sorted(bool(r.result.extra.get("batched")) for r in store.runs()) == [False, False, True]
        events: list[str] = []
        run_comparison(comparison, store, progress=lambda event: events.append(event.kind))
        assert events.count("reused") == 3 and events.count("done") == 3 and store.count() == 6


class _NormedParabola(Parabola):
    """A parabola whose model keeps running statistics (a buffer): replicas cannot share it."""

    def make_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))


def test_units_batch_first_order_runs_per_problem_and_keep_the_rest_alone(tmp_path: Path) -> None:
    parabola, normed = get_problem("parabola:n=64"), _NormedParabola({"n": 64})
    normed.name = "normed-parabola"
    comparison = Comparison(
        problems=[parabola, normed], optimizers=parse_optimizers("sgd,adam,lbfgs"), seeds=3
    )
    problems = {p.spec: p for p in comparison.problems}
    budget = Budget(epochs=1)
    runs = [
        RunSpec.of(p, c, s, budget)
        for p in comparison.problems
        for c in comparison.optimizers
        for s in range(3)
    ]
    units = cut_units(runs, problems)
    batched = [u for u in units if len(u) > 1]
    assert len(batched) == 1 and {(t.problem, t.config.label) for t in batched[0]} == {
        ("parabola:n=64", "sgd"),
        ("parabola:n=64", "adam"),
    }
    assert sum(len(u) == 1 for u in units) == 3 + 9  # parabola's L-BFGS; every normed run
    assert all(len(u) == 1 for u in cut_units(runs, problems, "off"))
    many = [runs[0]] * (MAX_BATCH + 1)
    assert [len(u) for u in cut_units(many, problems)] == [(MAX_BATCH + 2) // 2, (MAX_BATCH + 1) // 2]
    with pytest.raises(ValueError, match="replicas"):
        cut_units(runs, problems, "sometimes")  # type: ignore[arg-type]
    with Store(tmp_path / "lab.db") as store:
        # a model that cannot be batched still trains (sequentially) through the comparison
        small = Comparison(
            problems=[normed], optimizers=parse_optimizers("adam"), seeds=2, budget=Budget(epochs=1)
        )
        run_comparison(small, store)
        assert store.count() == 2
        assert not any(r.result.extra for r in store.runs(problem=normed.spec))


def test_compare_replicas_option(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from optimlab.cli import app

    args = [
        "compare",
        "-p",
        "parabola:n=64",
        "-o",
        "sgd,adam",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--jobs",
        "1",
    ]
    args += ["--db", str(tmp_path / "lab.db"), "--out", str(tmp_path / "out")]
    runner = CliRunner()
    alone = runner.invoke(app, [*args, "--replicas", "off"])
    assert alone.exit_code == 0, alone.output
    assert "4 runs trained, 0 reused" in alone.stdout
    with Store(tmp_path / "lab.db") as store:
        assert not any(run.result.extra for run in store.runs())
    # the same runs under the same keys: batching finds them all stored
    batched = runner.invoke(app, [*args, "--replicas", "auto"])
    assert batched.exit_code == 0 and "0 runs trained, 4 reused" in batched.stdout
    bad = runner.invoke(app, [*args, "--replicas", "sometimes"])
    assert bad.exit_code == 2
