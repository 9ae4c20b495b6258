"""The trainers' progress hook: ``on_steps(n)`` hears of the steps trained as they are, its calls adding
up to the steps trained (a batched step of R runs counts R), every so often rather than every step."""

from __future__ import annotations

from optimlab.lab.lr_find import problem_range_test, range_test
from optimlab.lab.presets import make_config, parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.replicas import ReplicaSpec, train_replicas
from optimlab.lab.run import RunSpec
from optimlab.lab.runner import train, train_batch


class Counter:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, steps: int) -> None:
        assert isinstance(steps, int) and steps > 0
        self.calls.append(steps)

    @property
    def total(self) -> int:
        return sum(self.calls)


def test_a_run_reports_its_steps_at_its_evaluations() -> None:
    counter = Counter()
    result = train(get_problem("parabola"), make_config("adam"), 0, on_steps=counter)
    assert counter.total == result.steps == 384
    assert len(counter.calls) == len(result.evals) - 1  # once an evaluation, not once a step
    # the step-by-step trainer with a closure (L-BFGS), and a run that ends early (divergence)
    for config in (make_config("lbfgs"), make_config("sgd", {"lr": 1e6})):
        counter = Counter()
        result = train(get_problem("parabola:n=64"), config, 0, Budget(epochs=3), on_steps=counter)
        assert counter.total == result.steps
    assert result.diverged and 0 < result.steps < 6


def test_a_batch_reports_every_run_step_of_its_replicas() -> None:
    problem = get_problem("parabola:n=128")
    configs = parse_optimizers("sgd,adam,nesterov:lr=50,lbfgs")  # nesterov at lr 50 explodes
    runs = [RunSpec.of(problem, c, seed, Budget(steps=24)) for c in configs for seed in (0, 1)]
    counter = Counter()
    results = train_batch(problem, runs, on_steps=counter)
    assert any(r.diverged for r in results) and any(r.extra.get("batched") for r in results)
    assert counter.total == sum(r.steps for r in results)
    # evaluated every other step (4 steps an epoch): two batched steps of the 6 first-order runs count
    # 12, 8 once the two nesterov runs have exploded; two steps of L-BFGS (alone) count 2
    assert counter.calls[0] == 12 and 8 in counter.calls and 2 in counter.calls


def test_replicas_report_every_step_batched_or_alone() -> None:
    problem = get_problem("rosenbrock")
    specs = [ReplicaSpec(seed, "adam", {"lr": lr}) for seed, lr in ((0, 0.01), (1, 0.02), (2, 50.0))]
    specs.append(ReplicaSpec(3, "lbfgs", {"lr": 0.5, "max_iter": 3}))
    for mode in ("auto", "sequential"):
        counter = Counter()
        runs = train_replicas(problem, specs, steps=300, mode=mode, on_steps=counter)
        assert counter.total == sum(run.steps for run in runs)
        assert len(counter.calls) <= sum(len(run.evals) for run in runs)


def test_the_range_test_reports_its_steps() -> None:
    counter = Counter()
    result = problem_range_test(get_problem("parabola"), make_config("sgd"), 0, steps=300, on_steps=counter)
    assert counter.total == len(result.losses) and len(counter.calls) <= 51
    counter = Counter()
    stopped = range_test(lambda lr: lr, min_lr=1.0, max_lr=1e6, steps=200, on_steps=counter)
    assert stopped.diverged and counter.total == len(stopped.losses) < 200


def test_surface_and_lr_find_show_their_steps_with_an_eta(tmp_path) -> None:
    from typer.testing import CliRunner

    from optimlab.cli import app

    runner = CliRunner()
    out = ["--out", str(tmp_path)]
    surface = runner.invoke(
        app, ["surface", "-p", "booth", "-o", "sgd,adam,lbfgs", "--steps", "40", "--no-gif", *out]
    )
    assert surface.exit_code == 0, surface.output
    assert "3 optimizers on booth" in surface.stdout and "120/120 steps" in surface.stdout
    lr_find = runner.invoke(
        app, ["lr-find", "-p", "parabola:n=64", "-o", "sgd,adam", "--steps", "50", "--seeds", "2", *out]
    )
    assert lr_find.exit_code == 0, lr_find.output
    assert "lr range test · adam (2/2)" in lr_find.stdout and "200/200 steps" in lr_find.stdout
