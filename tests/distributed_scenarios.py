"""What tests/test_distributed.py runs inside its processes: optimlab.optim in distributed tools.

Two ranks (gloo on 127.0.0.1, one CPU thread each) are started once; each runs the scenarios of
every configuration in :data:`CONFIGS` and writes what it measured (largest difference from a
one-process run of the configuration's reference — torch.optim's class, or a reference package's —
or the error) to ``rank<r>.json``. Both ranks train on the same batch, so averaged gradients are
exactly one process's and every scenario of a configuration's ``exact`` must match the reference to
float64 rounding: FSDP2 (DTensor parameters), its distributed checkpoints saved on 2 ranks and
loaded in one process and back, FSDP1 (flat parameters, and the original parameters as views of
them), ZeroRedundancyOptimizer with and without bucket views, DDP, and the ``nonfinite`` decision
when only one rank sees a NaN. Where a wrapper splits what a rule reduces over (its ``compared``
scenarios, :data:`WRAPPERS`) ours and the reference run under the same wrapper and both outcomes
are recorded. Hogwild (``share_memory()``) runs in a child of its own.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import io
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch
import torch.distributed as dist
from torch import nn

import optimlab.optim as ol

STEPS = 5
SAVED_AT = 3  # distributed checkpoints: saved after this many steps, training continues to STEPS

#: every scenario; a configuration runs those of its ``scenarios``
EXACT = ("fsdp2", "fsdp1", "zero", "ddp", "checkpoint")
#: the tools that split what the optimizer sees: ZeRO gives each rank's optimizer a subset of the
#: parameters, FSDP1 flat parameters (one 1-D shard of several tensors concatenated, or views of it).
#: An optimizer whose step reduces over a tensor or a group (LAMB's trust ratio, Prodigy's estimate,
#: Adafactor's relative step, Muon's matrices) cannot reproduce one process there, and neither can
#: its reference: these run ours and the reference under the same wrapper and record both.
WRAPPERS = ("fsdp1", "zero")


@dataclass(frozen=True)
class Config:
    """A configuration: ``optimlab.optim.<optimizer>(engine=engine, **kwargs)`` against
    ``reference`` (``"module:Class"``; torch.optim's with ``foreach=False``) in one process."""

    name: str
    optimizer: str
    kwargs: dict[str, Any]
    engine: str
    reference: str = ""  # "" = torch.optim.<optimizer>
    bias: bool = True  # the model's Linear biases (Muon steps matrices only)
    #: scenarios that must match one process; ``compared``: scenarios run against the reference
    #: under the same wrapper instead (see :data:`WRAPPERS`)
    exact: tuple[str, ...] = EXACT
    compared: tuple[str, ...] = ()

    def reference_class(self) -> Any:
        if not self.reference:
            return getattr(torch.optim, self.optimizer)
        module, cls = self.reference.split(":")
        return getattr(importlib.import_module(module), cls)

    def reference_kwargs(self) -> dict[str, Any]:
        """The constructor arguments, with ``foreach=False`` for a torch.optim class that takes it."""
        cls = self.reference_class()
        takes_foreach = "foreach" in inspect.signature(cls).parameters
        return (
            {**self.kwargs, "foreach": False} if not self.reference and takes_foreach else dict(self.kwargs)
        )


#: the fused engine and the eager engine, an optimizer whose rule creates state on its first step,
#: one with scalar state besides step; then one of each new kind of rule against its reference:
#: per-tensor statistics (LAMB), statistics over every group (Prodigy), a matrix rule (Muon), a
#: shape-aware one (Adafactor), a modern elementwise one (Lion)
CONFIGS: list[Config] = [
    Config("adam-fused", "Adam", {"lr": 0.01, "weight_decay": 0.1}, "fused"),
    Config("adam-eager", "Adam", {"lr": 0.01, "weight_decay": 0.1}, "eager"),
    Config("sgd-fused", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, "fused"),
    Config(
        "nadam-fused", "NAdam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}, "fused"
    ),
    Config(
        "lion-fused",
        "Lion",
        {"lr": 0.01, "betas": (0.95, 0.98), "weight_decay": 0.1},
        "fused",
        "lion_pytorch:Lion",
        exact=("fsdp2", "fsdp1", "ddp", "checkpoint"),
    ),
    Config(
        "lamb-fused",
        "Lamb",
        {"lr": 0.01, "weight_decay": 0.1},
        "fused",
        "pytorch_optimizer:Lamb",
        exact=("fsdp2", "zero", "ddp", "checkpoint"),
        compared=("fsdp1",),
    ),
    Config(
        "prodigy-fused",
        "Prodigy",
        {"lr": 1.0, "weight_decay": 0.1, "d0": 1e-4},
        "fused",
        "prodigyopt:Prodigy",
        exact=("fsdp2", "ddp", "checkpoint"),
        compared=("fsdp1", "zero"),
    ),
    Config(
        "muon-eager",
        "Muon",
        {"lr": 0.02, "weight_decay": 0.1},
        "eager",
        bias=False,
        exact=("fsdp2", "zero", "ddp", "checkpoint"),
        compared=("fsdp1",),
    ),
    Config(
        "adafactor-fused",  # tensor-wise kernels where a parameter is whole (DDP, ZeRO, FSDP1's flat ones)
        "Adafactor",
        {"lr": 0.01, "weight_decay": 0.1},
        "fused",
        exact=("fsdp2", "zero", "ddp", "checkpoint"),
        compared=("fsdp1",),
    ),
]
HOGWILD_CONFIGS = ("adam-fused", "sgd-fused")


def config(name: str) -> Config:
    for candidate in CONFIGS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def make_model(seed: int = 0, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16, bias=bias), nn.Tanh(), nn.Linear(16, 3, bias=bias)).double()


def model_for(name: str, seed: int = 0) -> nn.Module:
    return make_model(seed, config(name).bias)


def ours(name: str, params: Any) -> torch.optim.Optimizer:
    c = config(name)
    return getattr(ol, c.optimizer)(params, engine=c.engine, **c.kwargs)


def theirs(name: str, params: Any) -> torch.optim.Optimizer:
    """The configuration's reference optimizer (torch.optim's, or a reference package's)."""
    c = config(name)
    return c.reference_class()(params, **c.reference_kwargs())


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return (
        torch.randn(8, 8, generator=generator, dtype=torch.float64),
        torch.randn(8, 3, generator=generator, dtype=torch.float64),
    )


def train(model: nn.Module, optimizer: torch.optim.Optimizer, start: int, stop: int) -> None:
    for step in range(start, stop):
        x, y = batch(step)
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Parameters and optimizer state, whole and keyed by parameter name, however they are split."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(
        model, optimizer, options=options
    )


def reference(name: str, steps: int = STEPS) -> tuple[dict, dict]:
    """torch.optim in one process: what every scenario must reproduce."""
    model = model_for(name)
    optimizer = theirs(name, model.parameters())
    train(model, optimizer, 0, steps)
    return full_state(model, optimizer)


def _whole(value: Any) -> Any:
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def difference(got: tuple[dict, dict], expected: tuple[dict, dict]) -> float:
    """Largest difference between two (parameters, optimizer state) pairs; torch.optim's keys must
    all be there with equal non-tensor values (optimlab's own group keys are ignored)."""
    params, optim = got
    expected_params, expected_optim = expected
    largest = 0.0

    def compare(a: Any, b: Any, where: str) -> None:
        nonlocal largest
        a, b = _whole(a), _whole(b)
        if isinstance(b, torch.Tensor):
            a = torch.as_tensor(a)
            if a.shape != b.shape:
                raise AssertionError(f"{where}: shape {tuple(a.shape)} != {tuple(b.shape)}")
            if b.numel():
                largest = max(largest, (a.double() - b.double()).abs().max().item())
        elif isinstance(a, float) and isinstance(b, float):  # host bookkeeping (Prodigy's d)
            largest = max(largest, abs(a - b))
        elif a != b:
            raise AssertionError(f"{where}: {a!r} != {b!r}")

    assert params.keys() == expected_params.keys(), (sorted(params), sorted(expected_params))
    for key, value in expected_params.items():
        compare(params[key], value, key)
    assert optim["state"].keys() == expected_optim["state"].keys()
    for key, state in expected_optim["state"].items():
        assert optim["state"][key].keys() == state.keys(), (key, sorted(optim["state"][key]), sorted(state))
        for name, value in state.items():
            compare(optim["state"][key][name], value, f"state {key}.{name}")
    for group, expected_group in zip(optim["param_groups"], expected_optim["param_groups"], strict=True):
        for name, value in expected_group.items():
            if name not in ("foreach", "fused"):
                compare(group[name], value, f"param_groups.{name}")
    return largest


# --- the scenarios (each runs on both ranks; returns the largest difference) -----------------


def fully_shard(module: nn.Module, **kwargs: Any) -> nn.Module:
    from torch.distributed.fsdp import fully_shard as shard

    return shard(module, **kwargs)


def fully_shard_model(model: nn.Module, mesh: Any, reshard_after_forward: bool = True) -> nn.Module:
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)


def fsdp2(name: str, world: int, reshard_after_forward: bool) -> float:
    from torch.distributed.device_mesh import init_device_mesh

    model = fully_shard_model(model_for(name), init_device_mesh("cpu", (world,)), reshard_after_forward)
    optimizer = ours(name, model.parameters())
    train(model, optimizer, 0, STEPS)
    return difference(full_state(model, optimizer), reference(name))


def fsdp1_run(name: str, use_orig_params: bool, make: Callable[[str, Any], Any] = ours) -> tuple[dict, dict]:
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    model = FullyShardedDataParallel(
        model_for(name),
        device_id=torch.device("cpu"),
        use_orig_params=use_orig_params,
        auto_wrap_policy=ModuleWrapPolicy({nn.Linear}),
    )
    optimizer = make(name, model.parameters())
    train(model, optimizer, 0, STEPS)
    return full_state(model, optimizer)


def fsdp1(name: str, use_orig_params: bool) -> float:
    return difference(fsdp1_run(name, use_orig_params), reference(name))


def zero_run(
    name: str, rank: int, bucket_view: bool, make: Callable[[str, Any], Any] = ours
) -> tuple[dict, dict | None]:
    """Parameters after training under ZeroRedundancyOptimizer, and (on rank 0) the consolidated
    optimizer state keyed by parameter name (None on rank 1)."""
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    c = config(name)
    if make is ours:
        optimizer_class, kwargs = getattr(ol, c.optimizer), {"engine": c.engine, **c.kwargs}
    else:
        optimizer_class, kwargs = c.reference_class(), c.reference_kwargs()
    model = DistributedDataParallel(model_for(name))
    optimizer = ZeroRedundancyOptimizer(
        model.parameters(), optimizer_class=optimizer_class, parameters_as_bucket_view=bucket_view, **kwargs
    )
    train(model, optimizer, 0, STEPS)
    params = {k: v.detach() for k, v in model.module.state_dict().items()}
    optimizer.consolidate_state_dict(to=0)
    if rank != 0:
        return params, None
    names = [n for n, _ in model.module.named_parameters()]  # the consolidated state, by name
    saved = optimizer.state_dict()
    optim = {
        "state": {names[i]: s for i, s in saved["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in saved["param_groups"]],
    }
    return params, optim


def _difference_or_params(got: tuple[dict, dict | None], expected: tuple[dict, dict | None]) -> float:
    """difference(), of the parameters only where either side has no optimizer state (ZeRO, rank 1)."""
    if got[1] is None or expected[1] is None:
        state = expected[1] if expected[1] is not None else got[1]
        state = state if state is not None else {"state": {}, "param_groups": []}
        return difference((got[0], state), (expected[0], state))
    return difference(got, expected)  # type: ignore[arg-type]


def zero(name: str, rank: int, bucket_view: bool) -> float:
    return _difference_or_params(zero_run(name, rank, bucket_view), reference(name))


def _outcome(work: Callable[[], Any]) -> tuple[Any, str | None]:
    try:
        return work(), None
    except Exception as error:  # a refusal, recorded
        return None, f"{type(error).__name__}: {error}"


def compared(name: str, run: Callable[[Callable[[str, Any], Any]], Any]) -> dict[str, Any]:
    """Ours and the reference under the same wrapper (``run(make)``): both outcomes (an error's
    type and message), how far ours is from the reference's run there and from one process."""
    got, our_error = _outcome(lambda: run(ours))
    expected, their_error = _outcome(lambda: run(theirs))
    record: dict[str, Any] = {"ours_error": our_error, "theirs_error": their_error}
    if got is not None and expected is not None:
        record["vs_reference_wrapped"] = _difference_or_params(got, expected)
    if got is not None:
        expected_params = reference(name)[0]
        empty = {"state": {}, "param_groups": []}
        record["params_vs_one_process"] = difference((got[0], empty), (expected_params, empty))
        record["vs_one_process"], error = _outcome(lambda: _difference_or_params(got, reference(name)))
        if error is not None:
            record["vs_one_process"] = error
    return record


def ddp(name: str) -> float:
    from torch.nn.parallel import DistributedDataParallel

    model = DistributedDataParallel(model_for(name))
    optimizer = ours(name, model.parameters())
    train(model, optimizer, 0, STEPS)
    return difference(full_state(model, optimizer), reference(name))


def nonfinite(name: str, rank: int, world: int, policy: str) -> dict[str, Any]:
    """Only rank 1's shard of one gradient holds a NaN: every rank must decide alike."""
    from torch.distributed.device_mesh import init_device_mesh

    model = fully_shard_model(make_model(), init_device_mesh("cpu", (world,)))
    optimizer = ours(name, model.parameters())
    optimizer.param_groups[0]["nonfinite"] = policy
    train(model, optimizer, 0, 2)
    before = {k: v.full_tensor() for k, v in model.state_dict().items()}
    x, y = batch(2)
    optimizer.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    weight = model[0].weight
    if rank == 1:
        weight.grad._local_tensor.view(-1)[0] = float("nan")
    raised = False
    try:
        optimizer.step()
    except FloatingPointError:
        raised = True
    after = {k: v.full_tensor() for k, v in model.state_dict().items()}
    moved = {k: bool((after[k] != before[k]).any()) for k in before}
    return {"raised": raised, "moved": moved, "skipped_steps": optimizer.param_groups[0]["skipped_steps"]}


def differentiable_on_dtensors(world: int) -> float:
    """``differentiable=True`` with DTensor parameters: the step, the gradient through it with
    respect to the initial parameters and a tensor learning rate, as torch.optim's (a local shard
    is outside the DTensor's graph, so these steps use DTensor ops)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    results = []
    for module in (ol, torch.optim):
        lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
        w0 = distribute_tensor(
            torch.linspace(1, 2, 8, dtype=torch.float64), mesh, [Shard(0)]
        ).requires_grad_()
        w = w0 * 1.0
        optimizer = module.SGD([w], lr=lr, weight_decay=0.5, differentiable=True)
        for step in range(2):
            w.grad = distribute_tensor(torch.full((8,), 2.0 + step, dtype=torch.float64), mesh, [Shard(0)])
            optimizer.step()
        grad_w0, grad_lr = torch.autograd.grad((w.full_tensor() ** 2).sum(), (w0, lr))
        results.append([w.full_tensor().detach(), grad_w0.full_tensor(), _whole(grad_lr)])
    return max((a - b).abs().max().item() for a, b in zip(*results, strict=True))


# --- Muon's matrices spread over the ranks (each orthogonalized whole by one rank) -----------------

SPREAD_STEPS = 4
#: this matrix has no gradient at this step (on every rank, in every run: set to None after backward)
SPREAD_NO_GRAD = ("b.weight", 2)
#: the runs (see :func:`spread_optimizer`); "torch-muon/dim1" shards the matrices along their columns,
#: "torch-muon/bfloat16" has bfloat16 parameters, "lazy-muon" creates its state in the rule
SPREAD_RUNS = (
    "muon-groups",
    "torch-muon",
    "torch-muon/dim1",
    "torch-muon/bfloat16",
    "lazy-muon",
    "muon-with-adamw",
)


class SpreadNet(nn.Module):
    """Matrices of several shapes: a convolution (3, 2, 3, 3) whose 3 output channels do not split
    evenly over 2 ranks (nor does its flattened (3, 18) matrix), a (32, 48) matrix, two (32, 32) ones
    for a stack, an uneven (5, 32) head and a (1, 5) tail, whose second shard is empty."""

    def __init__(self, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=bias)
        self.a = nn.Linear(48, 32, bias=bias)
        self.b = nn.Linear(32, 32, bias=bias)
        self.c = nn.Linear(32, 32, bias=bias)
        self.head = nn.Linear(32, 5, bias=bias)
        self.tail = nn.Linear(5, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.a(torch.tanh(self.conv(x)).flatten(1)))
        return self.tail(torch.tanh(self.head(torch.tanh(self.c(torch.tanh(self.b(hidden)))))))


def spread_model(run: str) -> nn.Module:
    torch.manual_seed(7)
    model = SpreadNet(bias=run == "muon-with-adamw")
    return model.bfloat16() if run.endswith("/bfloat16") else model


def spread_optimizer(run: str, model: nn.Module, reference: bool = False) -> torch.optim.Optimizer:
    """The run's optimizer on ``model`` (plain or sharded: the same param groups either way);
    ``reference``: torch.optim.Muon for the "torch-muon" runs, else the same as the run's."""
    linears = [model.a.weight, model.b.weight, model.c.weight, model.head.weight, model.tail.weight]
    if run == "muon-groups":  # conv flattened, one at a time; the rest stacked by shape
        groups = [{"params": [model.conv.weight], "flatten": True}, {"params": linears, "lr": 0.03}]
        return ol.Muon(groups, lr=0.02, weight_decay=0.1, batch_matrices=True, engine="eager")
    if run.startswith("torch-muon"):
        return (torch.optim.Muon if reference else ol.Muon)(linears, lr=0.02, weight_decay=0.1)
    if run == "lazy-muon":
        return LazyMuon(linears, lr=0.02, weight_decay=0.1)
    return ol.MuonWithAdamW(ol.muon_param_groups(model, head="tail"), lr=0.02, adamw_lr=0.01)


def spread_train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: range,
    dropped: dict[int, str | None] | None = None,
) -> None:
    """Steps on fixed batches; at SPREAD_NO_GRAD's step its matrix has no gradient — or, with
    ``dropped``, the matrix it names for each rank, if any (the ranks then disagree)."""
    name, step_without = SPREAD_NO_GRAD
    for step in steps:
        generator = torch.Generator().manual_seed(2000 + step)
        dtype = next(model.parameters()).dtype
        x = torch.randn(6, 2, 4, 4, generator=generator).to(dtype)
        y = torch.randn(6, 1, generator=generator).to(dtype)
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        without = name if dropped is None else dropped[dist.get_rank()]
        if step == step_without and without is not None:
            model.get_parameter(without).grad = None
        optimizer.step()


def sharded_spread_model(run: str, mesh: Any) -> nn.Module:
    """The run's model, every layer and the root under FSDP2 (along dim 1 for "…/dim1", where even)."""
    from torch.distributed.tensor import Shard

    model = spread_model(run)
    world = mesh.size()

    def along_columns(param: nn.Parameter) -> Shard:  # where FSDP2 can: it refuses uneven dims but 0
        return Shard(1) if param.dim() > 1 and param.shape[1] % world == 0 else Shard(0)

    placement = along_columns if run.endswith("/dim1") else None
    for module in model.children():
        fully_shard(module, mesh=mesh, shard_placement_fn=placement)
    return fully_shard(model, mesh=mesh)


class CountedNewtonSchulz:
    """Records the shape of every matrix ``rules.newton_schulz`` orthogonalizes (a stack: each of its
    matrices), while it is installed."""

    def __init__(self) -> None:
        self.matrices: list[list[int]] = []

    def __enter__(self) -> CountedNewtonSchulz:
        self.original = ol.rules.newton_schulz

        def counted(matrix: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            self.matrices.extend([list(matrix.shape[-2:])] * (matrix.shape[0] if matrix.dim() == 3 else 1))
            return self.original(matrix, *args, **kwargs)

        ol.rules.newton_schulz = counted
        return self

    def __exit__(self, *exc: object) -> None:
        ol.rules.newton_schulz = self.original


def _params_and_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Every parameter and state tensor, whole, by name (``state/<param>/<key>``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    values = {n: _whole(p.detach()).clone() for n, p in model.named_parameters()}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            values[f"state/{names[id(param)]}/{key}"] = _whole(value).clone()
    return values


def _bitwise(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Which tensors differ at all (names), the largest difference, and how many were compared."""
    assert got.keys() == expected.keys(), (sorted(got), sorted(expected))
    differ = sorted(k for k in expected if not torch.equal(got[k], expected[k]))
    largest = max((float((got[k] - expected[k]).abs().max()) for k in differ), default=0.0)
    return {"differ": differ, "largest": largest, "compared": len(expected)}


def spread(world: int) -> dict[str, Any]:
    """Muon's matrices spread over the ranks, in float32: each run under FSDP2 against the same run in
    one process (the "torch-muon" runs against torch.optim.Muon), with the shapes each rank
    orthogonalized and those the one-process run did; then a step where the ranks disagree (a
    gradient on rank 1 only), which every rank must refuse, moving nothing."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (world,))
    record: dict[str, Any] = {}
    for run in SPREAD_RUNS:
        model = sharded_spread_model(run, mesh)
        optimizer = spread_optimizer(run, model)
        with CountedNewtonSchulz() as counted:
            spread_train(model, optimizer, range(SPREAD_STEPS))
        one = spread_model(run)
        one_optimizer = spread_optimizer(run, one, reference=True)
        with CountedNewtonSchulz() as one_counted:
            spread_train(one, one_optimizer, range(SPREAD_STEPS))
        record[run] = {
            **_bitwise(_params_and_state(model, optimizer), _params_and_state(one, one_optimizer)),
            "matrices": counted.matrices,
            "one_process_matrices": one_counted.matrices,
            "placements": sorted({str(p.placements) for p in model.parameters()}),  # type: ignore[attr-defined]
        }
    # rank 1 steps one matrix fewer; each rank a different one of the same shape (b, c); rank 1 none
    # of the last param group, which holds only b (so it has no gradient there at all: it must still
    # take part, or rank 0 would wait for it)
    for case, dropped in (
        ("disagree", {0: None, 1: "b.weight"}),
        ("swapped", {0: "b.weight", 1: "c.weight"}),
        ("empty-group", {0: None, 1: "b.weight"}),
    ):
        model = sharded_spread_model("torch-muon", mesh)
        optimizer = spread_optimizer("torch-muon", model)
        if case == "empty-group":
            rest = [model.a.weight, model.c.weight, model.head.weight, model.tail.weight]
            optimizer = ol.Muon([{"params": rest}, {"params": [model.b.weight]}], lr=0.02, weight_decay=0.1)
        step_without = SPREAD_NO_GRAD[1]
        spread_train(model, optimizer, range(step_without))
        before = _params_and_state(model, optimizer)
        outcome: dict[str, Any] = {"error": None}
        try:
            spread_train(model, optimizer, range(step_without, step_without + 1), dropped)
        except RuntimeError as error:
            outcome["error"] = str(error)
        outcome["moved"] = _bitwise(_params_and_state(model, optimizer), before)["differ"]
        record[case] = outcome
    record["failing"] = failing_rule(mesh)
    return record


def _forgetful_rule(param: torch.Tensor, grad: torch.Tensor, state: Any, **hyper: Any) -> Any:
    return ol.rules.muon(param, grad, state, **hyper)[0], {}


class ForgetfulMuon(ol.Muon):
    """A matrix rule that drops the state it is given: it cannot be spread (its owner fails)."""

    rule = staticmethod(_forgetful_rule)


def _lazy_rule(param: torch.Tensor, grad: torch.Tensor, state: Any, **hyper: Any) -> Any:
    if "momentum_buffer" not in state:
        state = {"momentum_buffer": torch.zeros_like(param)}
    return ol.rules.muon(param, grad, state, **hyper)


class LazyMuon(ol.Muon):
    """Muon whose momentum buffer is created by the rule on its first step (as SGD's is)."""

    rule = staticmethod(_lazy_rule)

    def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {}


def failing_rule(mesh: Any) -> dict[str, Any]:
    """One matrix (so rank 0 owns it, rank 1 nothing) whose rule fails on its owner: every rank must
    raise — the owner its error, the other that the owner failed — and nothing may move."""
    from torch.distributed.tensor import Shard, distribute_tensor

    generator = torch.Generator().manual_seed(5)
    param = distribute_tensor(torch.randn(5, 4, generator=generator), mesh, [Shard(0)])
    before = param.full_tensor().clone()
    optimizer = ForgetfulMuon([param], lr=0.05)
    param.grad = distribute_tensor(torch.randn(5, 4, generator=generator), mesh, [Shard(0)])
    try:
        optimizer.step()
        error = None
    except RuntimeError as raised:
        error = str(raised)
    moved = not torch.equal(param.full_tensor(), before) or bool(
        optimizer.state[param]["momentum_buffer"].full_tensor().any()
    )
    return {"error": error, "moved": moved}


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    # On a fresh optimizer this steps once with zero gradients and lr 0 to create the state.
    return {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, path: str) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save(checkpoint_state(model, optimizer), checkpoint_id=path, no_dist=not dist.is_initialized())


def load_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, path: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    state = checkpoint_state(model, optimizer)
    dcp.load(state, checkpoint_id=path, no_dist=not dist.is_initialized())
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])


def save_in_one_process(name: str, path: str) -> None:
    """A plain model trained SAVED_AT steps in one process, saved (before the ranks start)."""
    model = model_for(name)
    optimizer = ours(name, model.parameters())
    train(model, optimizer, 0, SAVED_AT)
    save_checkpoint(model, optimizer, path)


def checkpoint_two_ranks(name: str, world: int, folder: str) -> float:
    """Save after SAVED_AT steps on 2 ranks (for the one-process load later), and load the
    one-process checkpoint into a differently initialised sharded model: training then continues
    exactly as without the round trip."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (world,))
    model = fully_shard_model(model_for(name), mesh)
    optimizer = ours(name, model.parameters())
    train(model, optimizer, 0, SAVED_AT)
    save_checkpoint(model, optimizer, os.path.join(folder, f"{name}-2ranks"))
    model = fully_shard_model(model_for(name, seed=123), mesh)
    optimizer = ours(name, model.parameters())
    load_checkpoint(model, optimizer, os.path.join(folder, f"{name}-1process"))
    train(model, optimizer, SAVED_AT, STEPS)
    return difference(full_state(model, optimizer), reference(name))


def checkpoint_one_process(name: str, folder: str) -> dict[str, float]:
    """The 2-rank checkpoint loaded in one process — a plain model with no process group, and a
    one-rank FSDP2 mesh — then trained on: the same as training without the round trip."""
    from torch.distributed.device_mesh import init_device_mesh

    path = os.path.join(folder, f"{name}-2ranks")
    results = {}
    model = model_for(name, seed=123)
    optimizer = ours(name, model.parameters())
    load_checkpoint(model, optimizer, path)
    train(model, optimizer, SAVED_AT, STEPS)
    results["plain"] = difference(full_state(model, optimizer), reference(name))
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        model = fully_shard_model(model_for(name, seed=123), init_device_mesh("cpu", (1,)))
        optimizer = ours(name, model.parameters())
        load_checkpoint(model, optimizer, path)
        train(model, optimizer, SAVED_AT, STEPS)
        results["fsdp2-mesh-1"] = difference(full_state(model, optimizer), reference(name))
    finally:
        gc.collect()
        dist.destroy_process_group()
    return results


# --- processes -------------------------------------------------------------------------------


def _attempt(results: dict[str, Any], key: str, work: Callable[[], Any]) -> None:
    try:
        results[key] = work()
    except Exception:  # recorded for the test to report, so one failure does not hide the others
        results[key] = {"error": traceback.format_exc(limit=6)}


def rank_main(rank: int, world: int, folder: str) -> None:
    """One rank: every scenario for every configuration; results to ``folder/rank<rank>.json``.
    The ranks meet through a file in ``folder`` (no port to pick) and talk over loopback."""
    torch.set_num_threads(1)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group(
        "gloo",
        rank=rank,
        world_size=world,
        init_method=f"file://{folder}/rendezvous",
        timeout=timedelta(seconds=120),
    )
    results: dict[str, Any] = {}
    for c in CONFIGS:
        name = c.name
        if "fsdp2" in c.exact:
            for reshard in (True, False):
                _attempt(
                    results, f"fsdp2/{name}/reshard={reshard}", lambda n=name, r=reshard: fsdp2(n, world, r)
                )
        for use_orig in (False, True):
            key = f"fsdp1/{name}/use_orig_params={use_orig}"
            if "fsdp1" in c.exact:
                _attempt(results, key, lambda n=name, u=use_orig: fsdp1(n, u))
            elif "fsdp1" in c.compared:
                run = lambda make, n=name, u=use_orig: fsdp1_run(n, u, make)  # noqa: E731
                _attempt(results, key, lambda n=name, r=run: compared(n, r))
        for bucket_view in (False, True):
            key = f"zero/{name}/bucket_view={bucket_view}"
            if "zero" in c.exact:
                _attempt(results, key, lambda n=name, b=bucket_view: zero(n, rank, b))
            elif "zero" in c.compared:
                run = lambda make, n=name, b=bucket_view: zero_run(n, rank, b, make)  # noqa: E731
                _attempt(results, key, lambda n=name, r=run: compared(n, r))
        if "ddp" in c.exact:
            _attempt(results, f"ddp/{name}", lambda n=name: ddp(n))
        if "checkpoint" in c.exact:
            _attempt(
                results,
                f"checkpoint/{name}/1process-to-2ranks",
                lambda n=name: checkpoint_two_ranks(n, world, folder),
            )
    _attempt(results, "differentiable/dtensor", lambda: differentiable_on_dtensors(world))
    _attempt(results, "spread/muon", lambda: spread(world))
    for policy in ("skip", "raise", "propagate"):
        _attempt(results, f"nonfinite/{policy}", lambda p=policy: nonfinite("adam-fused", rank, world, p))
    gc.collect()  # distributed objects in reference cycles must not outlive the process group
    dist.destroy_process_group()
    gc.collect()
    if rank == 0:
        for c in CONFIGS:
            if "checkpoint" in c.exact:
                _attempt(
                    results,
                    f"checkpoint/{c.name}/2ranks-to-1process",
                    lambda n=c.name: checkpoint_one_process(n, folder),
                )
    Path(folder, f"rank{rank}.json").write_text(json.dumps(results))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: gloo's threads can abort it after every check passed


def hogwild_child(name: str, model: nn.Module, queue: Any) -> None:
    """Trains the shared model in place; the parent must see the result."""
    torch.set_num_threads(1)
    optimizer = ours(name, model.parameters())
    train(model, optimizer, 0, STEPS)
    buffer = io.BytesIO()
    torch.save(full_state(model, optimizer)[1], buffer)
    queue.put((all(p.is_shared() for p in model.parameters()), buffer.getvalue()))
