"""Batched replicas (optimlab.lab.replicas) train exactly the runs the sequential loop trains."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.optim import lr_scheduler

from optimlab.lab.replicas import (
    ReplicaSpec,
    Schedule,
    batchable,
    replica_bytes,
    replica_chunks,
    replicas,
    spec_for,
    train_batched,
    train_replicas,
    train_sequential,
)


class Curve:
    """A small parabola problem following the lab's problem protocol (fast path included)."""

    def __init__(self, n: int = 40, batch_size: int = 16, dtype: torch.dtype = torch.float64) -> None:
        noise = torch.Generator().manual_seed(0)
        self.x = torch.linspace(-1, 1, n, dtype=dtype).unsqueeze(1)
        self.y = self.x.pow(2) + 0.1 * torch.randn(self.x.shape, generator=noise, dtype=dtype)
        self.batch_size = batch_size
        self.dtype = dtype

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def build_model(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 1)).to(self.dtype)

    def epoch_order(self, seed: int, epoch: int) -> Tensor:
        return torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1000 * seed + epoch))

    def batches(self, seed: int, epoch: int):
        order = self.epoch_order(seed, epoch)
        for start in range(0, len(self.x), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output, target)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = model(self.x)
        return {"loss": float(self.loss(out, self.y)), "max_error": float((out - self.y).abs().max())}


class SlowCurve:
    """The same problem without the fast path: batches come one replica at a time."""

    def __init__(self, inner: Curve) -> None:
        self.inner = inner
        self.steps_per_epoch = inner.steps_per_epoch

    def build_model(self, seed: int) -> nn.Module:
        return self.inner.build_model(seed)

    def batches(self, seed: int, epoch: int):
        return self.inner.batches(seed, epoch)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return self.inner.loss(output, target)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self.inner.evaluate(model)


def rosenbrock(x: Tensor, y: Tensor) -> Tensor:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


class Point(nn.Module):
    """A 2-D surface's "model": θ = (x, y); ``forward(noise)`` = f(θ) + ⟨noise, θ⟩."""

    def __init__(self, start: tuple[float, float]) -> None:
        super().__init__()
        self.xy = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def forward(self, noise: Tensor) -> Tensor:
        value = rosenbrock(self.xy[0], self.xy[1])
        if noise.numel():
            value = value + (noise * self.xy).sum()
        return value


class Surface:
    """Rosenbrock as a problem: no data; with ``noise`` the gradient gets seeded N(0, σ²I) noise."""

    steps_per_epoch = 5
    empty = torch.empty(0, dtype=torch.float64)

    def __init__(self, noise: float = 0.0) -> None:
        self.noise = noise

    def build_model(self, seed: int) -> nn.Module:
        return Point((-1.2, 1.0))

    def batches(self, seed: int, epoch: int):
        if self.noise == 0:
            for _ in range(self.steps_per_epoch):
                yield self.empty, self.empty
            return
        g = torch.Generator().manual_seed(7919 * seed + epoch)
        noise = torch.randn(self.steps_per_epoch, 2, generator=g, dtype=torch.float64) * self.noise
        for row in noise:
            yield row, self.empty

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return output

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"loss": float(rosenbrock(model.xy[0], model.xy[1]))}


def assert_same_run(batched, sequential, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    assert batched.batched and not sequential.batched
    assert batched.steps == sequential.steps
    assert batched.divergence == sequential.divergence
    assert batched.lrs == pytest.approx(sequential.lrs, rel=1e-15, abs=0)
    assert batched.losses == pytest.approx(sequential.losses, rel=rtol, abs=atol)
    assert len(batched.evals) == len(sequential.evals)
    for a, b in zip(batched.evals, sequential.evals, strict=True):
        assert a.keys() == b.keys()
        assert [a["epoch"], a["step"], a["grad_evals"]] == [b["epoch"], b["step"], b["grad_evals"]]
        assert a["loss"] == pytest.approx(b["loss"], rel=rtol, abs=atol)
    assert batched.params.keys() == sequential.params.keys()
    for name in batched.params:
        torch.testing.assert_close(
            batched.params[name], sequential.params[name], rtol=rtol, atol=atol, equal_nan=True
        )


def check_against_sequential(problem, specs, **options) -> list:
    runs = train_batched(problem, specs, **options)
    for run, spec in zip(runs, specs, strict=True):
        assert run.spec == spec
        assert_same_run(run, train_sequential(problem, spec, **options))
    return runs


MIXED = [
    *replicas("sgd", [0, 1], {"lr": [0.05, 0.2]}),
    *replicas("sgd", [2, 3], {"lr": 0.1, "momentum": [0.9, 0.5], "weight_decay": [0.0, 1e-2]}),
    *replicas("sgd", [4, 5], {"lr": [0.05, 0.1], "momentum": 0.9, "nesterov": True, "dampening": 0}),
    *replicas("adam", [6, 7], {"lr": [1e-2, 3e-2], "betas": [(0.9, 0.99), (0.8, 0.999)], "amsgrad": True}),
    *replicas("adam", [8], {"lr": 1e-2}),
    *replicas("adamw", [9, 10], {"lr": 1e-2, "weight_decay": [0.1, 0.01]}),
    *replicas("adamax", [11, 12], {"lr": [1e-2, 2e-2], "betas": [(0.9, 0.99), (0.5, 0.9)]}),
    *replicas("rmsprop", [13, 14], {"lr": [1e-3, 1e-2], "alpha": 0.9, "momentum": 0.5, "centered": True}),
    *replicas("rmsprop", [15], {"lr": 1e-2}),
    *replicas(
        "adagrad", [16, 17], {"lr": [0.05, 0.1], "lr_decay": [0.0, 0.01], "initial_accumulator_value": 0.1}
    ),
    *replicas("adadelta", [18, 19], {"lr": [1.0, 0.5], "rho": [0.9, 0.95], "weight_decay": 1e-3}),
    *replicas("nadam", [20, 21], {"lr": [2e-3, 1e-2], "momentum_decay": [4e-3, 1e-2]}),
    *replicas("radam", [22, 23], {"lr": [1e-3, 1e-2], "decoupled_weight_decay": True, "weight_decay": 0.01}),
    *replicas("rprop", [24, 25], {"lr": [1e-3, 1e-2], "etas": (0.4, 1.3), "step_sizes": (1e-5, 0.5)}),
    *replicas(
        "lion", [26, 27], {"lr": [1e-3, 3e-3], "betas": [(0.9, 0.99), (0.95, 0.98)], "weight_decay": 0.1}
    ),
    *replicas("adopt", [28, 29], {"lr": [1e-2, 3e-3], "weight_decay": 0.01, "decouple": True}),
]


def test_every_optimizer_batched_equals_its_sequential_run() -> None:
    """Different optimizers, structures, seeds and per-replica lr / weight decay / betas / momentum,
    all in one batch: each replica equals its own optimlab run (float64, to rounding)."""
    runs = check_against_sequential(Curve(), MIXED, epochs=3)
    assert all(not run.diverged and run.steps == 9 for run in runs)
    assert runs[0].evals[-1].keys() == {"epoch", "step", "grad_evals", "wall_s", "loss", "max_error"}
    assert len({run.losses[0] for run in runs}) > 10  # the seeds differ: different inits and batches


@pytest.mark.parametrize(
    ("name", "torch_class", "hyper"),
    [
        ("sgd", torch.optim.SGD, {"lr": [0.1, 0.05], "momentum": 0.9, "nesterov": True}),
        ("adam", torch.optim.Adam, {"lr": [1e-2, 3e-2], "betas": [(0.9, 0.99), (0.8, 0.9)], "amsgrad": True}),
        ("adamw", torch.optim.AdamW, {"lr": 1e-2, "weight_decay": [0.1, 0.0]}),
        ("rmsprop", torch.optim.RMSprop, {"lr": [1e-2, 1e-3], "centered": True, "momentum": 0.9}),
        ("adagrad", torch.optim.Adagrad, {"lr": [0.1, 0.02]}),
        ("adadelta", torch.optim.Adadelta, {"lr": [1.0, 2.0]}),
        ("adamax", torch.optim.Adamax, {"lr": [2e-3, 2e-2]}),
    ],
)
def test_batched_equals_plain_torch_optim(name: str, torch_class: type, hyper: dict) -> None:
    problem = Curve()
    specs = replicas(name, [3, 4], hyper)
    for run, spec in zip(train_batched(problem, specs, epochs=2), specs, strict=True):
        reference = train_sequential(
            problem, ReplicaSpec(spec.seed, torch_class, spec.hyperparameters), epochs=2
        )
        assert_same_run(run, reference, rtol=1e-9, atol=1e-11)


def test_float32_replicas_agree_with_float32_runs() -> None:
    problem = Curve(dtype=torch.float32)
    specs = replicas("adam", [0, 1, 2], {"lr": [1e-2, 3e-2, 1e-3]}) + replicas("sgd", [3], {"lr": 0.1})
    for run, spec in zip(train_batched(problem, specs, epochs=2), specs, strict=True):
        assert run.params["0.weight"].dtype == torch.float32
        assert_same_run(run, train_sequential(problem, spec, epochs=2), rtol=1e-5, atol=1e-6)


def test_data_order_is_the_problems_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast gather (epoch_order) and the generic path (each replica's own batches) feed the
    same data; a replica's result does not depend on who else is in the batch."""
    from optimlab.lab import replicas as module

    problem = Curve(n=37, batch_size=8)  # a short last batch
    specs = replicas("sgd", [5, 6, 7], {"lr": 0.1, "momentum": 0.9})
    fast = train_batched(problem, specs, epochs=2)
    slow = train_batched(SlowCurve(problem), specs, epochs=2)
    alone = train_batched(problem, specs[1:2], epochs=2)[0]
    monkeypatch.setattr(module.batched, "EPOCH_GATHER_BYTES", 0)  # gather batch by batch
    stepwise = train_batched(problem, specs, epochs=2)
    for a, b, c in zip(fast, slow, stepwise, strict=True):
        assert a.losses == b.losses == c.losses
    assert alone.losses == pytest.approx(fast[1].losses, rel=1e-12)
    reference = train_sequential(problem, specs[1], epochs=2)
    assert len(reference.losses) == 2 * 5
    assert_same_run(fast[1], reference)


def test_a_diverging_replica_is_masked_without_disturbing_the_others() -> None:
    problem = Curve()
    calm = replicas("sgd", [0, 1], {"lr": [0.05, 0.1], "momentum": 0.9})
    wild = replicas("sgd", [2], {"lr": 1e4, "momentum": 0.9})
    nan = replicas("adam", [3], {"lr": 1e300})
    runs = check_against_sequential(problem, calm + wild + nan, epochs=3)
    assert [run.diverged for run in runs] == [False, False, True, True]
    assert runs[2].divergence in ("explosion", "inf", "nan") and runs[2].steps < 9
    assert math.isinf(runs[2].final_loss)
    assert len(runs[2].losses) == len(runs[2].lrs) == runs[2].steps
    without = train_batched(problem, calm, epochs=3)
    for a, b in zip(runs[:2], without, strict=True):
        assert a.losses == b.losses
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


def test_explosion_threshold_is_a_parameter() -> None:
    problem = Curve()
    specs = replicas("sgd", [0], {"lr": 2.0})
    strict_runs = check_against_sequential(problem, specs, epochs=2, explosion_factor=1.0001)
    assert strict_runs[0].divergence == "explosion"


def test_per_replica_schedules_follow_torch() -> None:
    """StepLR per epoch, OneCycleLR per step cycling Adam's beta1, and ReduceLROnPlateau on each
    replica's own evaluated loss, with different schedules and lrs side by side."""
    problem = Curve()
    plateau = Schedule(
        lambda opt: lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=0.2),
        needs_metric=True,
    )
    step = Schedule(lambda opt: lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    cycle = Schedule(
        lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=12, cycle_momentum=True),
        interval="step",
    )
    specs = [
        *replicas("sgd", [0, 1], {"lr": [0.3, 0.01], "momentum": 0.9}, schedule=plateau),
        *replicas("sgd", [2], {"lr": 0.1, "momentum": 0.9}, schedule=step),
        *replicas("sgd", [3], {"lr": 0.1, "momentum": 0.9}),
        *replicas("adam", [4, 5], {"lr": 0.01}, schedule=cycle),
        *replicas("adam", [6], {"lr": 0.01}),
    ]
    runs = check_against_sequential(problem, specs, epochs=4)
    assert len(set(runs[0].lrs)) > 1  # the plateau schedule acted
    assert runs[0].lrs != runs[1].lrs  # on each replica's own metric
    assert runs[2].lrs[0] == 0.1 and runs[2].lrs[-1] == pytest.approx(0.1 / 8)
    assert len(set(runs[4].lrs)) > 4 and runs[3].lrs == [0.1] * 12


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_surfaces_batch_through_the_same_path(noise: float) -> None:
    problem = Surface(noise)
    specs = replicas("adam", [0, 1, 2], {"lr": [0.01, 0.05, 0.1]}) + replicas("sgd", [3], {"lr": 1e-3})
    runs = check_against_sequential(problem, specs, steps=12, trajectory=True)
    assert all(len(run.trajectory) == 13 for run in runs)
    assert runs[0].trajectory[0] == [-1.2, 1.0]
    assert runs[0].trajectory[-1] == runs[0].params["xy"].tolist()
    if noise:  # the seeds now differ only through their gradient noise
        other = train_batched(problem, replicas("adam", [9], {"lr": 0.01}), steps=12, trajectory=True)[0]
        assert runs[0].trajectory[5] != other.trajectory[5]


def test_l1_clipping_and_nonfinite_skip() -> None:
    problem = Curve()
    specs = [
        *replicas("sgd", [0, 1], {"lr": 0.1, "l1": [0.01, 0.1]}, clip_norm=0.5),
        *replicas("adam", [2], {"lr": 0.05, "l1": 0.01}),
        *replicas("adam", [3], {"lr": 0.05, "nonfinite": "skip"}, clip_norm=0.1),
    ]
    runs = check_against_sequential(problem, specs, epochs=2)
    assert any(bool((p == 0).any()) for p in runs[1].params.values())  # proximal L1: exact zeros


def test_train_replicas_dispatches_by_itself() -> None:
    problem = Curve()
    specs = [*replicas("adam", [0, 1, 2], {"lr": 0.01}), ReplicaSpec(3, "lbfgs", {"lr": 0.5, "max_iter": 3})]
    runs = train_replicas(problem, specs, epochs=1, evaluation="loss")
    assert [run.batched for run in runs] == [True, True, True, False]
    assert runs[3].grad_evals > runs[3].steps  # L-BFGS evaluates several times per step
    assert runs[0].evals[-1].keys() == {"epoch", "step", "grad_evals", "wall_s", "loss"}
    # a memory budget of two replicas' worth splits the batch; results stay the same
    per = replica_bytes(31, "adam", itemsize=8, steps=3)
    chunked = train_replicas(problem, specs[:3], epochs=1, evaluation="loss", memory_budget=2 * per + 4096)
    for a, b in zip(chunked, runs[:3], strict=True):
        assert a.losses == pytest.approx(b.losses, rel=1e-12)
    sequential = train_replicas(problem, specs[:2], epochs=1, mode="sequential")
    assert not any(run.batched for run in sequential)


def test_lbfgs_gets_the_true_gradient_whatever_clip_norm_says() -> None:
    """As lab runs document: clipping is for first-order steps; L-BFGS's line search and curvature
    pairs need the true gradient, so a clip_norm leaves its run unchanged (one shared loop)."""
    problem = Curve()
    plain, clipped = (
        train_sequential(
            problem, ReplicaSpec(0, "lbfgs", {"lr": 0.5, "max_iter": 3}, clip_norm=clip), epochs=1
        )
        for clip in (None, 1e-6)
    )
    assert plain.losses == clipped.losses and plain.grad_evals == clipped.grad_evals > plain.steps
    first_order = train_sequential(problem, ReplicaSpec(0, "sgd", {"lr": 0.1}, clip_norm=1e-6), epochs=1)
    assert (
        first_order.losses != train_sequential(problem, ReplicaSpec(0, "sgd", {"lr": 0.1}), epochs=1).losses
    )


def test_models_that_cannot_be_batched_run_sequentially() -> None:
    assert batchable(nn.Linear(2, 1))
    assert not batchable(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    assert not batchable(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))

    class Normed(Curve):
        def build_model(self, seed: int) -> nn.Module:
            torch.manual_seed(seed)
            return nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()

    runs = train_replicas(Normed(), replicas("sgd", [0, 1], {"lr": 0.1}), epochs=1)
    assert not any(run.batched for run in runs)
    with pytest.raises(ValueError, match="cannot be batched"):
        train_replicas(Normed(), replicas("sgd", [0, 1], {"lr": 0.1}), epochs=1, mode="batched")


def test_can_batch_and_chunks() -> None:
    assert batchable("adam", n_params=31, replicas=720, memory_budget=1 << 30)
    assert batchable("sgd", n_params=31, replicas=2)
    assert not batchable("lbfgs", n_params=31, replicas=720)
    assert not batchable(torch.optim.Adam, n_params=31, replicas=720)  # only optimlab's rules can be vmapped
    assert not batchable("adam", n_params=31, replicas=1)
    assert not batchable("adam", n_params=10**6, replicas=8, memory_budget=10**6)
    per = replica_bytes(1000, "adam")
    assert replica_bytes(1000, "sgd") < per  # SGD keeps no state
    chunks = replica_chunks(10, per, 3 * per)
    assert sum(chunks) == 10 and max(chunks) <= 3 and max(chunks) - min(chunks) <= 1
    assert replica_chunks(5, per, 10**12) == [5]


def test_bad_input_is_one_clear_error() -> None:
    problem = Curve()
    with pytest.raises(ValueError, match="Invalid learning rate"):
        train_batched(problem, replicas("adam", [0, 1], {"lr": [-1.0, 0.1]}), epochs=1)
    with pytest.raises(ValueError, match=r"unexpected keyword"):
        train_batched(problem, replicas("adam", [0], {"momentum": 0.9}), epochs=1)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        train_replicas(problem, replicas("adamz", [0]), epochs=1)
    with pytest.raises(ValueError, match="3 values for 2 seeds"):
        replicas("adam", [0, 1], {"lr": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="cannot be batched"):
        train_batched(problem, [ReplicaSpec(0, "lbfgs")], epochs=1)
    with pytest.raises(ValueError, match="clip_norm"):
        ReplicaSpec(0, "sgd", clip_norm=0.0)
    with pytest.raises(ValueError, match="epochs or steps"):
        train_batched(problem, replicas("sgd", [0]), epochs=1, steps=3)


def test_fast_data_path_only_when_batches_come_from_epoch_order() -> None:
    from optimlab.lab import replicas as module

    class Reversed(Curve):  # batches() overridden below epoch_order: its own order must be used
        def batches(self, seed: int, epoch: int):
            for x, y in super().batches(seed, epoch):
                yield x.flip(0), y.flip(0)

    class Shifted(Curve):  # epoch_order overridden: batches() follows it
        def epoch_order(self, seed: int, epoch: int) -> Tensor:
            return super().epoch_order(seed, epoch).roll(3)

    assert module.common.fast_data(Curve()) and module.common.fast_data(Shifted())
    assert not module.common.fast_data(Reversed()) and not module.common.fast_data(SlowCurve(Curve()))
    for problem in (Reversed(), Shifted()):
        spec = replicas("sgd", [1], {"lr": 0.1})[0]
        assert_same_run(
            train_batched(problem, [spec], epochs=2)[0], train_sequential(problem, spec, epochs=2)
        )


def test_lean_vmap_is_torch_func_vmap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's direct use of the functorch transform gives torch.func.vmap's numbers."""
    from optimlab.lab import replicas as module

    problem = Curve(dtype=torch.float32)
    specs = MIXED[:12]
    lean = train_batched(problem, specs, epochs=1)
    monkeypatch.setattr(module.lean_vmap, "LEAN_VMAP", False)
    public = train_batched(problem, specs, epochs=1)
    for a, b in zip(lean, public, strict=True):
        assert a.losses == b.losses and [e["loss"] for e in a.evals] == [e["loss"] for e in b.evals]
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


# --- against the lab's own runner, problems and schedule specs ----------------------------------


def assert_same_as_runner(run, result, rtol: float) -> None:
    """A ReplicaRun against the lab runner's RunResult of the same run."""
    assert run.batched
    assert (run.steps, run.grad_evals, run.divergence) == (result.steps, result.grad_evals, result.divergence)
    assert run.lrs == pytest.approx(result.lrs, rel=1e-12)
    assert run.losses == pytest.approx(result.losses, rel=rtol, abs=rtol)
    assert len(run.evals) == len(result.evals)
    for a, b in zip(run.evals, result.evals, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key != "wall_s":
                assert a[key] == pytest.approx(b[key], rel=rtol, abs=rtol), key
    assert run.final_loss == pytest.approx(result.final_loss, rel=rtol)
    if result.trajectory is not None:
        flat = [x for point in run.trajectory for x in point]
        assert flat == pytest.approx([x for point in result.trajectory for x in point], rel=rtol, abs=rtol)


def test_batched_replicas_reproduce_the_lab_runner() -> None:
    """The lab's parabola (float32) with seed-profile presets, per-replica regularization and the
    lab's schedule specs (plateau on the evaluated loss, per-step warm-up): every replica equals
    ``optimlab.lab.runner.train`` of the same run, evaluations (val_loss included) too."""
    from optimlab.lab.presets import make_config
    from optimlab.lab.problems import Budget, get_problem
    from optimlab.lab.runner import Regularization, train
    from optimlab.lab.schedules import parse_schedule

    problem = get_problem("parabola:n=200")
    budget = Budget(epochs=3)
    plateau = parse_schedule("plateau:factor=0.5,patience=0,threshold=0.5")
    warmup = parse_schedule("warmup:warmup_steps=5")
    runs = [
        (make_config("adam"), 0, None, None),
        (make_config("adam", {"lr": 0.05}), 1, plateau, None),
        (make_config("momentum"), 2, warmup, Regularization(weight_decay=1e-3, clip_norm=1.0)),
        (make_config("rmsprop"), 3, None, Regularization(l1=1e-3)),
        (make_config("adadelta"), 4, plateau, None),
        (make_config("nesterov", {"lr": 50.0}), 5, None, None),  # diverges
    ]
    specs = [spec_for(config, seed, schedule, reg) for config, seed, schedule, reg in runs]
    batched = train_replicas(problem, specs, epochs=3, mode="batched")
    for run, (config, seed, schedule, reg) in zip(batched, runs, strict=True):
        result = train(problem, config, seed, budget, schedule, reg)
        assert_same_as_runner(run, result, rtol=2e-5)
    assert batched[-1].diverged and not any(run.diverged for run in batched[:-1])
    assert len(set(batched[1].lrs)) > 1


def test_lab_surfaces_batch_like_the_runner() -> None:
    from optimlab.lab.presets import make_config
    from optimlab.lab.problems import Budget, get_problem
    from optimlab.lab.runner import train

    problem = get_problem("rosenbrock:noisy=true")
    configs = [make_config("adam", {"lr": 0.05}), make_config("sgd", {"lr": 1e-3}), make_config("nadam")]
    specs = [spec_for(config, seed) for seed, config in enumerate(configs)]
    batched = train_replicas(problem, specs, steps=40, trajectory=True)
    for run, spec, config in zip(batched, specs, configs, strict=True):
        assert_same_as_runner(run, train(problem, config, spec.seed, Budget(steps=40)), rtol=1e-5)
    assert "distance_to_minimum" in batched[0].evals[-1]


def test_spec_for_refuses_penalised_lbfgs() -> None:
    from optimlab.lab.presets import make_config
    from optimlab.lab.runner import Regularization

    spec = spec_for(make_config("adamw"), 3, None, Regularization(weight_decay=0.1, l1=0.01, clip_norm=2.0))
    assert spec.hyperparameters["weight_decay"] == 0.1 and spec.hyperparameters["l1"] == 0.01
    assert spec.clip_norm == 2.0 and spec.seed == 3
    with pytest.raises(ValueError, match="L-BFGS"):
        spec_for(make_config("lbfgs"), 0, None, Regularization(l1=0.01))
