"""The traced programs of the eager engine's slices and runs (optim/engine/traced.py): the rule's
bits for every elementwise rule and variant, the constants of one step never reused for another,
and the rules or operands it must not take left to the rule itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import optimlab.optim as ol
from optimlab.optim import rules
from optimlab.optim.engine import chunks, traced
from optimlab.optim.engine.traced import Program, apart, program_for

MU_PRODUCT = {"mu_product": torch.tensor(0.7)}
ASGD_SCALARS = {"eta": torch.tensor(0.01), "mu": torch.tensor(0.5)}

# (rule, parameter-sized state, 0-d or host state, hyperparameters)
VARIANTS: list[tuple[Callable[..., Any], tuple[str, ...], dict[str, Any], dict[str, Any]]] = [
    (rules.sgd, (), {}, {"lr": 0.1}),
    (rules.sgd, ("momentum_buffer",), {}, {"lr": 0.1, "momentum": 0.9}),
    (
        rules.sgd,
        ("momentum_buffer",),
        {},
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
    ),
    (rules.sgd, ("momentum_buffer",), {}, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True}),
    (rules.adam, ("exp_avg", "exp_avg_sq"), {"step": 4}, {"lr": 1e-3}),
    (rules.adam, ("exp_avg", "exp_avg_sq"), {"step": 4}, {"lr": 1e-3, "weight_decay": 0.1}),
    (
        rules.adam,
        ("exp_avg", "exp_avg_sq"),
        {"step": 4},
        {"weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    (
        rules.adam,
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        {"step": 4},
        {"amsgrad": True, "maximize": True},
    ),
    (rules.adam, ("exp_avg", "exp_avg_sq"), {"step": 4}, {"lr": 1e-3, "l1": 1e-2}),
    (rules.rmsprop, ("square_avg",), {"step": 4}, {"lr": 1e-2}),
    (
        rules.rmsprop,
        ("square_avg", "grad_avg", "momentum_buffer"),
        {"step": 4},
        {"lr": 1e-2, "centered": True, "momentum": 0.9},
    ),
    (rules.adagrad, ("sum",), {"step": 4}, {"lr": 1e-2, "lr_decay": 0.01, "weight_decay": 0.1}),
    (rules.nadam, ("exp_avg", "exp_avg_sq"), {"step": 4, **MU_PRODUCT}, {"lr": 2e-3}),
    (
        rules.nadam,
        ("exp_avg", "exp_avg_sq"),
        {"step": 4, **MU_PRODUCT},
        {"weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    (rules.radam, ("exp_avg", "exp_avg_sq"), {"step": 40}, {"lr": 1e-3}),
    (rules.radam, ("exp_avg", "exp_avg_sq"), {"step": 2}, {"lr": 1e-3}),
    (rules.adamax, ("exp_avg", "exp_inf"), {"step": 4}, {"lr": 2e-3}),
    (rules.adadelta, ("square_avg", "acc_delta"), {"step": 4}, {"lr": 1.0}),
    (rules.asgd, ("ax",), {"step": 4, **ASGD_SCALARS}, {"lr": 1e-2}),
]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _operands(state_names: tuple[str, ...], numel: int, dtype: torch.dtype) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(numel)
    param, grad = (torch.randn(numel, generator=generator).to(dtype) for _ in range(2))
    state = [torch.rand(numel, generator=generator).to(dtype) for _ in state_names]
    return [param, grad, *state]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and torch.equal(a.nan_to_num(), b.nan_to_num())
        and torch.equal(a.isnan(), b.isnan())
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_program_gives_the_rules_bits(variant: int, dtype: torch.dtype) -> None:
    """In place, into the operands, on sizes that take the kernels' vectorized loops and their
    scalar tails: the numbers of the rule evaluated op by op, bit for bit; the gradient untouched."""
    rule, names, scalars, hyper = VARIANTS[variant]
    for numel in (1, 7, 33, 1000, 4099):
        tensors = _operands(names, numel, dtype)
        state = dict(zip(names, tensors[2:], strict=True))
        program = program_for(rule, tensors[0], tensors[1], state, scalars, hyper)
        assert program is not None
        new_param, new_state = rule(tensors[0], tensors[1], {**scalars, **state}, **hyper)
        grad = tensors[1].clone()
        program.run(tensors)
        assert _same(tensors[0], new_param)
        assert torch.equal(tensors[1], grad)
        for name, tensor in zip(names, tensors[2:], strict=True):
            assert _same(tensor, new_state[name]), name
        others = {key: value for key, value in new_state.items() if key not in names}
        assert program.others.keys() == others.keys()
        for key, value in others.items():
            assert torch.equal(torch.as_tensor(program.others[key]), torch.as_tensor(value))


def test_programs_write_in_place_with_addcdiv() -> None:
    """Float32 programs: no copies at the end; Adam's v ← β₂v + (1 − β₂)g² and update θ − (s·m)/d
    each one addcdiv (8 ops, one temporary); SGD with momentum two addcdivs, μb + g and θ − γb (no
    temporary). Not in float16, whose addcdiv rounds once where the rule rounds twice."""
    param, grad = torch.zeros(8), torch.zeros(8)
    state = {"exp_avg": torch.zeros(8), "exp_avg_sq": torch.zeros(8)}
    adam = program_for(rules.adam, param, grad, state, {"step": 1}, {"lr": 1e-3})
    assert adam is not None
    functions = [step[0] for step in adam._steps]
    assert functions == [
        torch.lerp,
        torch.mul,
        torch.mul,
        torch.addcdiv,
        torch.sqrt,
        torch.div,
        torch.add,
        torch.addcdiv,
    ]
    assert adam._copies == [] and len(adam._temps) == 1
    sgd = program_for(
        rules.sgd, param, grad, {"momentum_buffer": torch.zeros(8)}, {}, {"lr": 0.1, "momentum": 0.9}
    )
    assert sgd is not None and [step[0] for step in sgd._steps] == [torch.addcdiv, torch.addcdiv]
    assert sgd._copies == [] and sgd._temps == []
    half = {key: value.half() for key, value in state.items()}
    adam_half = program_for(rules.adam, param.half(), grad.half(), half, {"step": 1}, {"lr": 1e-3})
    assert adam_half is not None and torch.addcdiv not in [step[0] for step in adam_half._steps]


def test_a_programs_constants_are_its_steps() -> None:
    """The step count and the hyperparameters are traced into the program: another step, another
    learning rate (a Python float or a 0-d tensor changed in place), a weight decay of −0.0 instead
    of 0.0 or 1 instead of 1.0 each get their own program, which gives the rule's numbers."""
    tensors = _operands(("exp_avg", "exp_avg_sq"), 100, torch.float32)
    state = dict(zip(("exp_avg", "exp_avg_sq"), tensors[2:], strict=True))
    lr = torch.tensor(1e-3)
    hyper: dict[str, Any] = {"lr": lr, "beta1": 0.9}
    seen: list[Program] = []
    for step, lr_value, beta1 in (
        (1, 1e-3, 0.9),
        (2, 1e-3, 0.9),
        (2, 5e-2, 0.9),
        (2, 5e-2, 1.0),
        (2, 5e-2, 1),
    ):
        lr.fill_(lr_value)
        hyper["beta1"] = beta1
        program = program_for(rules.adam, tensors[0], tensors[1], state, {"step": step}, hyper)
        assert program is not None and all(program is not other for other in seen)
        seen.append(program)
        expected, _ = rules.adam(tensors[0], tensors[1], {"step": step, **state}, **hyper)
        copies = [t.clone() for t in tensors]
        program.run(copies)
        assert _same(copies[0], expected)
    signed = [
        program_for(rules.sgd, tensors[0], tensors[1], {}, {}, {"lr": 0.1, "weight_decay": zero})
        for zero in (0.0, -0.0)
    ]
    assert signed[0] is not signed[1]
    assert (
        program_for(rules.sgd, tensors[0], tensors[1], {}, {}, {"lr": 0.1, "weight_decay": 0.0}) is signed[0]
    )


def _reads_old_state(param: torch.Tensor, grad: torch.Tensor, state: dict, *, lr: float) -> tuple:
    """The new momentum first, then the old one read again."""
    momentum = state["momentum"] * 0.9 + grad
    update = momentum + state["momentum"] * 0.5
    return param - lr * update, {"momentum": momentum, "kept": state["kept"]}


def _stores_twice(param: torch.Tensor, grad: torch.Tensor, state: dict, *, lr: float) -> tuple:
    """One value stored in two entries, one entry returned as it is."""
    momentum = state["momentum"] * 0.9 + grad
    return param - lr * momentum, {"other": momentum, "momentum": momentum, "kept": state["kept"]}


@pytest.mark.parametrize("rule", [_reads_old_state, _stores_twice], ids=lambda r: r.__name__)
def test_values_still_read_keep_their_memory(rule: Callable[..., Any]) -> None:
    """An entry's new value is not written over its old one while a later op reads the old one; a
    value stored in two entries and an entry the rule returns as it is come out right."""
    names = ("momentum", "other", "kept") if rule is _stores_twice else ("momentum", "kept")
    tensors = _operands(names, 50, torch.float32)
    state = dict(zip(names, tensors[2:], strict=True))
    program = program_for(rule, tensors[0], tensors[1], state, {}, {"lr": 0.1})
    assert program is not None
    new_param, new_state = rule(tensors[0], tensors[1], state, lr=0.1)
    program.run(tensors)
    assert _same(tensors[0], new_param)
    for name, tensor in zip(names, tensors[2:], strict=True):
        assert _same(tensor, new_state[name]), name


def _sums(param: torch.Tensor, grad: torch.Tensor, state: dict, *, lr: float) -> tuple:
    return param - lr * grad.sum(), {}


def _branches(param: torch.Tensor, grad: torch.Tensor, state: dict, *, lr: float) -> tuple:
    return (param - lr * grad if bool((grad > 0).all()) else param), {}


def _aliases(param: torch.Tensor, grad: torch.Tensor, state: dict, *, lr: float) -> tuple:
    old = param.detach()
    return param - lr * grad, {"previous": old}


def _creates(param: torch.Tensor, grad: torch.Tensor, state: dict, *, lr: float) -> tuple:
    return param - lr * grad, {"momentum_buffer": grad.clone()}


@pytest.mark.parametrize("rule", [_sums, _branches, _aliases, _creates], ids=lambda r: r.__name__)
def test_rules_it_cannot_take_get_none(rule: Callable[..., Any]) -> None:
    """A reduction, a value read on the host, a view of an operand kept past its update, state the
    rule creates: no program (the caller evaluates the rule as before)."""
    tensors = _operands(("previous",), 10, torch.float32)
    state = {"previous": tensors[2]} if rule is _aliases else {}
    assert program_for(rule, tensors[0], tensors[1], state, {}, {"lr": 0.1}) is None


def test_tensor_hyperparameters_of_other_shapes_get_none() -> None:
    tensors = _operands((), 10, torch.float32)
    assert program_for(rules.sgd, tensors[0], tensors[1], {}, {}, {"lr": torch.full((10,), 0.1)}) is None


def test_apart() -> None:
    base = torch.zeros(20)
    assert apart([base[:10], base[10:], torch.zeros(3)])
    assert not apart([base[:11], base[10:]])
    assert not apart([base, base])


def test_the_eager_engine_runs_programs_on_slices_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eager engine evaluates Adam's slices and runs with programs, and (with a scheduler
    changing the learning rate at every step) gives the numbers of each tensor stepped whole."""
    calls = []
    run = Program.run

    def counting(self: Program, tensors: list[torch.Tensor], temporaries: Any = None) -> None:
        calls.append(tensors[0].numel())
        run(self, tensors, temporaries)

    def train(sliced: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(shape)) for shape in ((37, 5), (3,), (4, 4), (11,))]
        optimizer = ol.Adam(params, lr=1e-2, engine="eager")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
        for _ in range(4):
            for param in params:
                param.grad = torch.randn_like(param)
            optimizer.step()
            scheduler.step()
        return [t.detach().clone() for p in params for t in (p, *optimizer.state[p].values())]

    with monkeypatch.context() as patch:
        patch.setattr("optimlab.optim.engine.eager._sliceable_rule", lambda optimizer: False)
        whole = train(False)
    monkeypatch.setattr(chunks, "CHUNK_NUMEL", 16)
    monkeypatch.setattr(chunks, "RUN_NUMEL", 20)
    monkeypatch.setattr(traced, "TRACE_MIN_NUMEL", 0)
    monkeypatch.setattr(Program, "run", counting)
    sliced = train(True)
    assert len(calls) > 4 and 16 in calls  # slices of the (37, 5) parameter, and runs
    for a, b in zip(sliced, whole, strict=True):
        assert torch.equal(a, b)


def test_a_program_is_traced_only_for_a_step_large_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adam's constants change at every step, so its program is traced at every step: not for a step
    of fewer than TRACE_MIN_NUMEL elements (its rule then runs op by op, even where a program is
    kept), but for one of more."""
    monkeypatch.setattr(traced, "_cache", type(traced._cache)())
    traces, runs = [], []
    trace, run = traced._trace, Program.run

    def tracing(*args: Any) -> Any:
        traces.append(args[1].numel())
        return trace(*args)

    def running(self: Program, tensors: list[torch.Tensor], temporaries: Any = None) -> None:
        runs.append(tensors[0].numel())
        run(self, tensors, temporaries)

    monkeypatch.setattr(traced, "_trace", tracing)
    monkeypatch.setattr(Program, "run", running)
    monkeypatch.setattr(chunks, "RUN_NUMEL", 20)
    monkeypatch.setattr(chunks, "CHUNK_NUMEL", 16)
    monkeypatch.setattr(traced, "TRACE_MIN_NUMEL", 100)

    def adam(shapes: list[tuple[int, ...]]) -> ol.Adam:
        params = [torch.randn(shape) for shape in shapes]
        for param in params:
            param.grad = torch.randn_like(param)
        return ol.Adam(params, lr=1e-2, engine="eager")

    torch.manual_seed(0)
    small, other_small = adam([(3, 5), (3,), (4, 4)]), adam([(3, 5), (3,), (4, 4)])  # 34 elements
    large = adam([(37, 5), (11,)])  # 196
    small.step()
    assert traces == [] and runs == []
    large.step()
    assert traces and runs  # the large step's runs and slices: traced, and run
    traced_count, run_count = len(traces), len(runs)
    other_small.step()  # a first step too: the same constants as the large one's
    assert len(traces) == traced_count and len(runs) == run_count


def test_the_cache_is_bounded() -> None:
    tensors = _operands((), 4, torch.float32)
    for step in range(3 * traced.CACHE_SIZE):
        program_for(rules.sgd, tensors[0], tensors[1], {}, {}, {"lr": 0.1 + step})
    assert len(traced._cache) <= traced.CACHE_SIZE


def _swaps(param: torch.Tensor, grad: torch.Tensor, state: dict, *, lr: float) -> tuple:
    return param - lr * grad, {"first": state["second"], "second": state["first"] + grad}


def test_an_entry_taking_anothers_old_value_gets_none() -> None:
    tensors = _operands(("first", "second"), 10, torch.float32)
    state = dict(zip(("first", "second"), tensors[2:], strict=True))
    assert program_for(_swaps, tensors[0], tensors[1], state, {}, {"lr": 0.1}) is None
