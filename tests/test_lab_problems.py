"""The lab's problems: registry, known minima, seeded batches, batch regimes, options, user problems."""

from __future__ import annotations

import math
import socket
import textwrap

import pytest
import torch

from optimlab.lab.problems import PROBLEMS, Budget, Problem, get_problem, problem_names
from optimlab.lab.problems.surfaces import SURFACES


@pytest.mark.parametrize("name", problem_names())
def test_every_problem_follows_the_protocol(name: str) -> None:
    problem = get_problem(name)
    assert isinstance(problem, Problem)
    assert problem.spec == name and problem.description and PROBLEMS[name].description
    assert isinstance(problem.default_budget, Budget)
    model = problem.build_model(0)
    batches = list(problem.batches(0, 0))
    assert len(batches) == problem.steps_per_epoch
    inputs, target = batches[0]
    loss = problem.loss(model(inputs), target)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    metrics = problem.evaluate(model)
    assert math.isfinite(metrics["loss"])


@pytest.mark.parametrize("name", ["parabola", "digits-mlp", "sparse-regression", "rosenbrock:noise=1"])
def test_batches_and_init_are_reproducible_per_seed(name: str) -> None:
    problem = get_problem(name)
    first = [b[0] for b in problem.batches(3, 1)]
    again = [b[0] for b in problem.batches(3, 1)]
    other_seed = [b[0] for b in problem.batches(4, 1)]
    other_epoch = [b[0] for b in problem.batches(3, 2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other_seed, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other_epoch, strict=True))
    if not name.startswith("rosenbrock"):
        p0 = [p.detach() for p in problem.build_model(0).parameters()]
        p0_again = [p.detach() for p in problem.build_model(0).parameters()]
        p1 = [p.detach() for p in problem.build_model(1).parameters()]
        assert all(torch.equal(a, b) for a, b in zip(p0, p0_again, strict=True))
        assert not all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))


def _value_and_grad(spec: str, point: tuple[float, float]) -> tuple[float, torch.Tensor]:
    sep = "," if ":" in spec else ":"
    problem = get_problem(f"{spec}{sep}start={point[0]}/{point[1]}")
    model = problem.build_model(0).double()
    (inputs, _), *_ = problem.batches(0, 0)
    value = model(inputs.double())
    value.backward()
    return float(value.detach()), model.xy.grad


@pytest.mark.parametrize("name", [n for n in SURFACES if n != "saddle"])
def test_known_minima_have_zero_gradient_and_the_minimum_value(name: str) -> None:
    surface = SURFACES[name]
    for point in surface.minima:
        value, grad = _value_and_grad(name, point)
        assert value == pytest.approx(surface.min_value, abs=1e-6)
        assert float(grad.norm()) < 1e-3, (name, point, grad)
    start_value, _ = _value_and_grad(name, surface.start)
    assert start_value > surface.target_loss  # the start is not already solved


def test_saddle_is_a_saddle() -> None:
    value, grad = _value_and_grad("saddle", (0.0, 0.0))
    assert value == 0 and float(grad.norm()) == 0
    problem = get_problem("saddle")
    assert problem.evaluate(problem.build_model(0))["loss"] > problem.target_loss
    xy = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    hessian = torch.autograd.functional.hessian(lambda v: SURFACES["saddle"](v[0], v[1]), xy)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert eigenvalues.min() < 0 < eigenvalues.max()


def test_ravine_condition_number_is_configurable() -> None:
    value, grad = _value_and_grad("ravine:condition=1000", (0.0, 1.0))
    assert value == pytest.approx(500.0)
    assert grad.tolist() == pytest.approx([0.0, 1000.0])
    with pytest.raises(ValueError, match="condition"):
        get_problem("ravine:condition=0.5")


def test_noisy_variant_gives_unbiased_stochastic_gradients_and_a_noiseless_loss() -> None:
    exact = get_problem("booth")
    noisy = get_problem("booth:noisy")
    assert noisy.noise == SURFACES["booth"].noise and noisy.deterministic is False and exact.deterministic
    model = noisy.build_model(0)
    grads = []
    for epoch in range(40):
        for noise, _ in noisy.batches(0, epoch):
            model.zero_grad()
            model(noise).backward()
            grads.append(model.xy.grad.clone())
    model.zero_grad()
    model(torch.empty(0)).backward()
    true_grad = model.xy.grad
    stacked = torch.stack(grads)
    assert stacked.std(0).min() > 0.5  # really noisy
    assert torch.allclose(stacked.mean(0), true_grad, atol=0.25)  # unbiased (400 samples, σ = 1)
    assert noisy.evaluate(model)["loss"] == exact.evaluate(exact.build_model(0))["loss"]


def test_trajectory_points_are_the_surface_coordinates() -> None:
    problem = get_problem("himmelblau:start=1/2")
    assert problem.trajectory_point(problem.build_model(0)) == [1.0, 2.0]


def test_digits_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the digits problem tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    from optimlab.lab.problems import digits

    digits._digits.cache_clear()
    mlp, cnn = get_problem("digits-mlp"), get_problem("digits-cnn")
    assert mlp.x.shape == (1438, 64) and mlp.x_val.shape == (359, 64)
    assert cnn.x.shape == (1438, 1, 8, 8)
    assert set(mlp.y.tolist()) == set(range(10)) and set(mlp.y_val.tolist()) == set(range(10))
    metrics = mlp.evaluate(mlp.build_model(0))
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(metrics)
    assert 0.0 <= metrics["val_accuracy"] <= 0.3  # an untrained network guesses


def test_quadratic_minimum_and_sparse_regression_metrics() -> None:
    quad = get_problem("quadratic-100d")
    model = quad.build_model(0)
    assert quad.evaluate(model)["loss"] > 10
    with torch.no_grad():
        model.theta.zero_()
    assert quad.evaluate(model)["loss"] == 0.0
    sparse = get_problem("sparse-regression")
    model = sparse.build_model(0)
    with torch.no_grad():
        model.linear.weight.zero_()
        model.linear.weight[0, sparse.support] = sparse.w_true[sparse.support]
    metrics = sparse.evaluate(model)
    assert metrics["zero_fraction"] == pytest.approx(0.95)
    assert metrics["support_recall"] == 1.0
    assert metrics["loss"] < 0.02


@pytest.mark.parametrize(
    ("spec", "steps"),
    [
        ("parabola:batch=full", 1),
        ("parabola:batch=1", 1000),
        ("parabola", 32),
        ("sparse-regression:batch=50", 4),
    ],
)
def test_batch_regimes(spec: str, steps: int) -> None:
    problem = get_problem(spec)
    assert problem.steps_per_epoch == steps
    assert sum(len(x) for x, _ in problem.batches(0, 0)) == len(problem.x)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown problem 'nope'"),
        ("parabola:colour=red", "has no option 'colour'"),
        ("parabola:batch=0", "batch must be"),
        ("parabola:batch=abc", "batch must be"),
        ("rosenbrock:noise=-1", "noise must be"),
        ("rosenbrock:start=1", "start must be x/y"),
        ("parabola:=3", "malformed option"),
        ("no_such_module_xyz.sub:make", "cannot import problem module"),
    ],
)
def test_bad_problem_specs_are_one_clear_value_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        get_problem(spec)
    assert "\n" not in str(info.value)


def test_a_users_problem_is_loaded_by_module_path(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_lab_problem.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn
        from optimlab.lab.problems import Budget, TensorProblem

        class Line(TensorProblem):
            name, description, target_loss = "line", "fit y = 3x", 1e-3
            default_budget = Budget(epochs=3)

            def __init__(self, slope=3.0):
                super().__init__({"slope": slope})
                self.x = torch.linspace(-1, 1, 64).unsqueeze(1)
                self.y = float(slope) * self.x
                self.batch_size = 16

            def make_model(self):
                return nn.Linear(1, 1)

            def loss(self, output, target):
                return nn.functional.mse_loss(output, target)

        def make_problem(**options):
            return Line(**options)

        def broken(**options):
            return object()
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = get_problem("my_lab_problem:make_problem:slope=2")
    assert problem.spec == "my_lab_problem:make_problem:slope=2"
    assert problem.name == "line" and problem.steps_per_epoch == 4
    assert float(problem.y[-1, 0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="without name"):
        get_problem("my_lab_problem:broken")
    with pytest.raises(ValueError, match="has no callable 'missing'"):
        get_problem("my_lab_problem:missing")
    with pytest.raises(
        ValueError, match=r"make_problem:colour=red: TypeError: .*unexpected keyword argument 'colour'"
    ):
        get_problem("my_lab_problem:make_problem:colour=red")
