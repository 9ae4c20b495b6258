"""The eager engine's slices and runs (optim/engine/chunks.py) give the eager engine's numbers bit for
bit: large tensors evaluated in slices, small ones gathered into runs, against the same rule on every
whole tensor on its own (the paths switched off), and against torch.optim's for-loop to rounding."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

import optimlab.optim as ol
import reference_cases
from optimlab.optim.engine import chunks, eager, traced
from parity_cases import CASES, COMPLEX, DTYPES, PARITY, build_pair, run
from reference_cases import REFERENCES

ELEMENTWISE_CASES = [
    (name, variant, dtype)
    for name, variant in CASES
    if PARITY[name].ours.elementwise and not PARITY[name].ours.sparse_entries
    for dtype in variant.dtypes
]


def _whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eager engine as it was: every tensor whole, on its own."""
    monkeypatch.setattr(eager, "_sliceable_rule", lambda optimizer: False)


def _snapshot(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> list[torch.Tensor]:
    state = [v for p in params for v in optimizer.state[p].values() if isinstance(v, torch.Tensor)]
    return [t.detach().clone() for t in (*params, *state)]


def _assert_identical(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    assert len(ours) == len(reference)
    for index, (a, b) in enumerate(zip(ours, reference, strict=True)):
        assert a.dtype == b.dtype and a.shape == b.shape, index
        assert torch.equal(a, b) or (
            (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())
        )


class Spy:
    """Counts the slices and runs the engine evaluates."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sliced = self.gathered = 0
        in_chunks, evaluate = chunks.step_in_chunks, chunks.SmallTensorRuns._evaluate

        def step_in_chunks(*args, **kwargs):
            others = in_chunks(*args, **kwargs)
            self.sliced += others is not None
            return others

        def _evaluate(runs, run):
            self.gathered += len(run.params)
            return evaluate(runs, run)

        monkeypatch.setattr(eager, "step_in_chunks", step_in_chunks)
        monkeypatch.setattr(chunks.SmallTensorRuns, "_evaluate", _evaluate)


def _whole_then_sliced(monkeypatch: pytest.MonkeyPatch, train: Callable[[], list[torch.Tensor]]) -> Spy:
    """Run ``train`` with every tensor whole, then with slices and runs of at most 4 elements — their
    rule evaluated op by op, and by its traced program (engine/traced.py) where it can be traced;
    assert that all give the same bits and that slices were taken; the spy of the last run."""
    with monkeypatch.context() as patch:
        _whole(patch)
        whole = train()
    for trace_from in (None, 0):  # never traced, and traced whatever the size
        with monkeypatch.context() as patch:
            patch.setattr(chunks, "CHUNK_NUMEL", 4)
            patch.setattr(chunks, "RUN_NUMEL", 4)
            patch.setattr(traced, "TRACE_MIN_NUMEL", trace_from if trace_from is not None else 1 << 62)
            spy = Spy(patch)
            sliced = train()
        _assert_identical(sliced, whole)
        assert spy.sliced > 0
    return spy


@pytest.mark.parametrize(
    ("entry", "variant", "dtype"),
    ELEMENTWISE_CASES,
    ids=[f"{n}-{v.name}-{d}" for n, v, d in ELEMENTWISE_CASES],
)
def test_slices_and_runs_match_whole_tensors_bit_for_bit(
    entry: str, variant, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole parity table (every elementwise optimizer and flag, several groups, gradients that
    skip steps, so counters differ between parameters) with slices of 2 elements and runs of at most
    4: bit for bit the eager engine's numbers with every tensor whole."""

    def train() -> list[torch.Tensor]:
        _, _, ours, params = build_pair(entry, variant, DTYPES[dtype], "eager")
        run(ours, params)
        return _snapshot(ours, params)

    spy = _whole_then_sliced(monkeypatch, train)  # runs of ≤ 4 elements; (3, 2) and (5,) in slices
    assert spy.gathered > 0 or dtype == COMPLEX  # complex parameters are sliced, never gathered


MODERN_CASES = [
    (name, variant) for name, variant in reference_cases.CASES if REFERENCES[name].ours.elementwise
]


@pytest.mark.parametrize(("entry", "variant"), MODERN_CASES, ids=[f"{n}-{v.name}" for n, v in MODERN_CASES])
def test_modern_optimizers_in_slices_and_runs_bit_for_bit(
    entry: str, variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference table's elementwise optimizers (Lion, ADOPT, AdEMAMix), as the parity table."""

    def train() -> list[torch.Tensor]:
        optimizer, params = reference_cases.build(REFERENCES[entry].ours, variant, engine="eager")
        if callable(getattr(optimizer, "train", None)):
            optimizer.train()
        reference_cases.run(optimizer, params, steps=12)
        return _snapshot(optimizer, params)

    _whole_then_sliced(monkeypatch, train)


@pytest.mark.parametrize("name", ["Lamb", "Prodigy", "AdamWScheduleFree", "SGDScheduleFree"])
def test_statistics_and_schedule_free_in_slices_and_runs_bit_for_bit(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LAMB's per-tensor and Prodigy's step-wide statistics reach every slice as the same scalars
    (parameters with statistics are never gathered); Schedule-Free's state, as any other."""

    def train() -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(3, 5), (7,), (2,)]]
        optimizer = getattr(ol, name)(params, engine="eager")
        if callable(getattr(optimizer, "train", None)):
            optimizer.train()
        _train(optimizer, params, steps=6)
        return _snapshot(optimizer, params)

    _whole_then_sliced(monkeypatch, train)


def _large(dtype: torch.dtype = torch.float32, numel: int | None = None) -> list[torch.Tensor]:
    """Parameters larger than a slice (odd sizes: the last slice is shorter), one of a single slice,
    and small ones."""
    big = numel or 2 * chunks.CHUNK_NUMEL + 4097
    gen = torch.Generator().manual_seed(0)
    shapes = [(big // 7, 7), (big + 3,), (chunks.CHUNK_NUMEL,), (chunks.RUN_NUMEL,), (33, 5), (3,), ()]
    return [torch.randn(shape, generator=gen, dtype=dtype) for shape in shapes]


def _train(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], steps: int = 3) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        optimizer.step()


LARGE = {
    "SGD": {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    "Adam": {"lr": 1e-3, "amsgrad": True},
    "NAdam": {"lr": 2e-3, "decoupled_weight_decay": True, "weight_decay": 1e-2},
    "RMSprop": {"lr": 1e-2, "centered": True, "momentum": 0.5},
}


@pytest.mark.parametrize("name", list(LARGE))
def test_large_tensors_in_slices_bit_for_bit(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the real sizes: tensors of several slices (odd sizes) are stepped in slices, small ones in a
    run, bit for bit as whole, and to float32 rounding torch.optim's for-loop."""
    results = []
    for mode in ("whole", "sliced", "torch"):
        params = [torch.nn.Parameter(p) for p in _large()]
        with monkeypatch.context() as patch:
            if mode == "whole":
                _whole(patch)
            elif mode == "sliced":
                spy = Spy(patch)
            cls = getattr(torch.optim, name) if mode == "torch" else getattr(ol, name)
            extra = {"foreach": False} if mode == "torch" else {"engine": "eager"}
            optimizer = cls(params, **copy.deepcopy(LARGE[name]), **extra)
            _train(optimizer, params)
        results.append(_snapshot(optimizer, params))
    whole, sliced, theirs = results
    _assert_identical(sliced, whole)
    assert spy.sliced == 2 * 3 - (name == "SGD") * 2  # SGD's first step creates its buffers whole
    # gathered: the (RUN_NUMEL,) tensor and two small ones; whole: (CHUNK_NUMEL,), one slice, and 0-d
    assert spy.gathered == 3 * 3
    for a, b in zip(sliced, theirs, strict=True):  # a few float32 ulps on rare elements of 500k
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_float64_and_complex_in_slices() -> None:
    """Complex parameters are sliced through their real views (twice the elements); float64 too."""
    for dtype in (torch.float64, torch.complex64):
        results = []
        for whole in (True, False):
            params = [torch.nn.Parameter(p) for p in _large(dtype, numel=chunks.CHUNK_NUMEL + 1)]
            with pytest.MonkeyPatch.context() as patch:
                if whole:
                    _whole(patch)
                else:
                    spy = Spy(patch)
                optimizer = ol.Adam(params, lr=1e-2, weight_decay=0.1, engine="eager")
                _train(optimizer, params)
            results.append(_snapshot(optimizer, params))
        _assert_identical(results[1], results[0])
        # at each of 3 steps the (numel + 3,) tensor; complex: the three largest (real views, twice)
        assert spy.sliced == (3 if dtype == torch.float64 else 9)


def test_non_contiguous_parameters_are_stepped_whole_or_gathered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large transposed parameter is stepped whole (no slices of it); a small one is gathered (its
    values read in order and written back where they live): the same numbers either way."""
    results = []
    for whole in (True, False):
        gen = torch.Generator().manual_seed(0)
        large = torch.randn(7, 2 * chunks.CHUNK_NUMEL // 7 + 5, generator=gen).t()
        small = torch.randn(9, 4, generator=gen).t()
        params = [torch.nn.Parameter(large), torch.nn.Parameter(small)]
        with monkeypatch.context() as patch:
            if whole:
                _whole(patch)
            else:
                spy = Spy(patch)
            optimizer = ol.Adam(params, lr=1e-2, engine="eager")
            _train(optimizer, params)
        assert not params[0].is_contiguous() and params[0].stride() == large.stride()
        results.append(_snapshot(optimizer, params))
    _assert_identical(results[1], results[0])
    assert spy.sliced == 0 and spy.gathered == 3


def test_runs_keep_counters_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parameters whose step counters differ (one joined late) are never in one run: each gets the
    bias correction of its own count."""
    results = []
    for whole in (True, False):
        params = [torch.nn.Parameter(torch.full((5,), 1.0)), torch.nn.Parameter(torch.full((5,), 1.0))]
        with monkeypatch.context() as patch:
            if whole:
                _whole(patch)
            optimizer = ol.Adam(params, lr=0.1, engine="eager")
            params[0].grad = torch.ones(5)
            optimizer.step()
            for p in params:
                p.grad = torch.ones(5)
            optimizer.step()
        assert optimizer.state[params[0]]["step"] == 2 and optimizer.state[params[1]]["step"] == 1
        results.append(_snapshot(optimizer, params))
    _assert_identical(results[1], results[0])
    assert not torch.equal(results[1][0], results[1][1])


def test_state_identity_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices and runs write into torch.optim's state tensors and the parameters' own storage."""
    params = [torch.nn.Parameter(p) for p in _large()]
    optimizer = ol.Adam(params, engine="eager")
    _train(optimizer, params, steps=1)
    held = {id(p): {k: (v, v.data_ptr()) for k, v in optimizer.state[p].items()} for p in params}
    pointers = [p.data_ptr() for p in params]
    _train(optimizer, params, steps=2)
    assert [p.data_ptr() for p in params] == pointers
    for p in params:
        for key, (tensor, pointer) in held[id(p)].items():
            assert optimizer.state[p][key] is tensor and tensor.data_ptr() == pointer


@pytest.mark.parametrize("setting", ["stochastic_rounding", "differentiable", "dispatch_mode"])
def test_watched_or_rounded_steps_stay_whole(setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stochastic rounding (bits drawn per tensor), autograd and dispatch modes see whole tensors."""
    spy = Spy(monkeypatch)
    params = [torch.nn.Parameter(p) for p in _large()]
    kwargs = {"state_dtype": torch.bfloat16} if setting == "stochastic_rounding" else {}
    if setting == "differentiable":  # the step is recorded on non-leaf parameters, as torch.optim's
        kwargs["differentiable"] = True
        params = [p.clone() for p in params]
    optimizer = ol.Adam(params, engine="eager", **kwargs)
    if setting == "dispatch_mode":
        from torch.utils._python_dispatch import TorchDispatchMode

        class Watch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                return func(*args, **(kwargs or {}))

        with Watch():
            _train(optimizer, params, steps=1)
    else:
        _train(optimizer, params, steps=1)
    assert spy.sliced == 0 and spy.gathered == 0


def test_rules_without_l1_compute_no_threshold() -> None:
    """Without l1 a rule evaluates no L1 threshold (for Adam: 2 parameter-sized ops fewer); with it
    the threshold is the one it always was."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from optimlab.optim import rules

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if any(isinstance(a, torch.Tensor) and a.numel() > 1 for a in args):
                self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    param, grad = torch.randn(8), torch.randn(8)
    state = {"step": 3.0, "exp_avg": torch.randn(8), "exp_avg_sq": torch.rand(8)}
    counts = {}
    for l1 in (None, 1e-3):
        with Count() as count:
            rules.adam(param, grad, state, lr=1e-3, l1=l1)
        counts[l1] = len(count.ops)
    assert counts[None] == 11  # m: lerp; v: 4; D: sqrt, ÷, +ε; θ: ×, ÷, −
    assert counts[1e-3] >= counts[None] + 2 + 4  # γ/D, its product with l1, and the proximal step
