"""The fused engine's paths for rules that are not elementwise: tensor-wise kernels (Adafactor's whole
rule, reductions included, compiled per number of dimensions) and the statistics pass of LAMB and
Prodigy — their numbers against torch.optim's and the eager engine's, the path each parameter took,
and what falls back to eager."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import optimlab.optim as ol
from optimlab.optim.engine import fused, kernels

#: a matrix, a stack of matrices (3-D, factored over the last two dims) and a vector, all fused
FUSED_SHAPES = ((12, 20), (3, 8, 10), (20,))


def adafactor_pair(shapes, dtype=torch.float32, **kwargs):
    """(ours with engine="fused", our parameters, torch.optim's for-loop Adafactor, its parameters)."""
    gen = torch.Generator().manual_seed(0)
    ours_params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]
    theirs_params = [p.detach().clone().requires_grad_() for p in ours_params]
    ours = ol.Adafactor(ours_params, engine="fused", **kwargs)
    theirs = torch.optim.Adafactor(theirs_params, foreach=False, **kwargs)
    return ours, ours_params, theirs, theirs_params


def step_both(ours, ours_params, theirs, theirs_params, steps: int = 6, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for a, b in zip(ours_params, theirs_params, strict=True):
            grad = torch.randn(a.shape, generator=gen, dtype=a.dtype)
            a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()


def assert_close_params(ours_params, theirs_params, dtype) -> None:
    tolerance = {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 1e-6}
    for a, b in zip(ours_params, theirs_params, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), **tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adafactor_runs_tensorwise_kernels_with_torchs_numbers(dtype: torch.dtype) -> None:
    """Every parameter of FUSED_SHAPES is stepped by a compiled tensor-wise kernel called directly,
    with torch.optim.Adafactor's numbers (its state included), weight decay and maximize on."""
    kwargs = {"lr": 0.03, "weight_decay": 0.1, "maximize": True, "d": 1.5}
    ours, ours_params, theirs, theirs_params = adafactor_pair(FUSED_SHAPES, dtype, **kwargs)
    step_both(ours, ours_params, theirs, theirs_params)
    assert ours.engine.counts == {"fused": 6 * len(FUSED_SHAPES), "eager": 0}
    assert_close_params(ours_params, theirs_params, dtype)
    for a, b in zip(ours_params, theirs_params, strict=True):
        for key, value in theirs.state[b].items():
            torch.testing.assert_close(ours.state[a][key].to(value.dtype), value, rtol=2e-5, atol=1e-12)
    used = [k for k in fused._KERNELS.values() if k.key.rule is ol.Adafactor.rule and k.key.dtype == dtype]
    assert {k.key.shapes[0] for k in used} >= {kernels.probe_shape(n) for n in (1, 2, 3)}
    assert all(k.direct is not None for k in used)


def test_adafactor_steps_eagerly_what_a_kernel_cannot_take_whole() -> None:
    """A size-1 dimension (the kernels assume sizes of at least 2), a 0-d parameter, a transposed
    (non-contiguous) parameter and a step a dispatch mode watches go to the eager engine, with
    torch's numbers all the same."""
    shapes = ((1, 16), (16, 1), (), (12, 20))
    ours, ours_params, theirs, theirs_params = adafactor_pair(shapes, lr=0.05)
    step_both(ours, ours_params, theirs, theirs_params, steps=2)
    assert ours.engine.counts == {"fused": 2, "eager": 6}

    class Watching(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Watching():
        step_both(ours, ours_params, theirs, theirs_params, steps=1, seed=2)
    assert ours.engine.counts == {"fused": 2, "eager": 10}
    assert_close_params(ours_params, theirs_params, torch.float32)

    base = torch.randn(20, 12, generator=torch.Generator().manual_seed(3))
    transposed = base.clone().t().requires_grad_()  # (12, 20), strides (1, 12)
    reference = transposed.detach().clone().requires_grad_()
    ours = ol.Adafactor([transposed], engine="fused", lr=0.05)
    theirs = torch.optim.Adafactor([reference], foreach=False, lr=0.05)
    step_both(ours, [transposed], theirs, [reference], steps=2)
    assert ours.engine.counts == {"fused": 0, "eager": 2}
    assert_close_params([transposed], [reference], torch.float32)


def test_adafactor_state_of_another_shape_steps_eagerly() -> None:
    """State the kernel's sizes do not describe (loaded from elsewhere, edited by hand) is never read
    by generated code: the eager engine takes that parameter, and fails as it would."""
    ours, ours_params, theirs, theirs_params = adafactor_pair(((12, 20),), lr=0.05)
    step_both(ours, ours_params, theirs, theirs_params, steps=1)
    state = ours.state[ours_params[0]]
    state["row_var"] = state["row_var"].reshape(12)  # (12,) instead of (12, 1)
    ours_params[0].grad = torch.ones(12, 20)
    with pytest.raises(RuntimeError):
        ours.step()  # the rule's own shape error, from the eager engine
    assert ours.engine.counts == {"fused": 1, "eager": 1}


def test_tensorwise_kernel_maps_the_callers_sizes_onto_its_state() -> None:
    """A tensor-wise kernel's state shapes follow the parameter's sizes (row_var (m, 1), col_var
    (1, n)), and its probe has one distinct size per dimension, none of them 1."""
    for ndim in range(1, 6):
        shape = kernels.probe_shape(ndim)
        assert len(shape) == ndim and len(set(shape)) == ndim and min(shape) > 1
    with pytest.raises(ValueError, match="no tensor-wise probe"):
        kernels.probe_shape(0)
    ours, ours_params, theirs, theirs_params = adafactor_pair(((12, 20),), lr=0.05)
    step_both(ours, ours_params, theirs, theirs_params, steps=1)
    kernel = next(
        k
        for k in fused._KERNELS.values()
        if k.key.rule is ol.Adafactor.rule and k.key.shapes and len(k.key.shapes[0]) == 2
    )
    assert dict(zip(kernel.key.state_keys, kernel.state_shapes((64, 96)), strict=True)) == {
        "row_var": (64, 1),
        "col_var": (1, 96),
    }


# --- statistics evaluated by kernels: LAMB's inside the step's kernel, Prodigy's by their own -------

MODERN_SHAPES = ((12, 20), (20,), (3, 8, 10))


def reference_pair(name: str, dtype: torch.dtype, engine: str = "fused", **kwargs):
    """(ours, our parameters, the reference package's optimizer, its parameters)."""
    import prodigyopt
    import pytorch_optimizer

    reference = {"Lamb": pytorch_optimizer.Lamb, "Prodigy": prodigyopt.Prodigy}[name]
    gen = torch.Generator().manual_seed(0)
    ours_params = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in MODERN_SHAPES]
    theirs_params = [p.detach().clone().requires_grad_() for p in ours_params]
    ours = getattr(ol, name)(ours_params, engine=engine, **kwargs)
    theirs = reference(theirs_params, **kwargs)
    return ours, ours_params, theirs, theirs_params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["Lamb", "Prodigy"])
def test_kernels_evaluate_the_statistics_with_the_references_numbers(name: str, dtype: torch.dtype) -> None:
    """LAMB's norms are evaluated inside each parameter's kernel and Prodigy's sums by statistics-only
    kernels called directly (one per parameter, into one buffer); the numbers are the reference's."""
    kwargs = {"lr": 0.05, "weight_decay": 0.1}
    ours, ours_params, theirs, theirs_params = reference_pair(name, dtype, **kwargs)
    step_both(ours, ours_params, theirs, theirs_params, steps=8)
    n = len(MODERN_SHAPES)
    # LAMB's first step creates its 0-d state (trust ratio, ...) in the rule: eager, statistics too
    first_eager = n if name == "Lamb" else 0
    assert ours.engine.counts == {"fused": 8 * n - first_eager, "eager": first_eager}
    assert ours.engine.statistics_counts == {"fused": 8 * n - first_eager, "eager": first_eager}
    assert_close_params(ours_params, theirs_params, dtype)
    rule = type(ours).rule
    # this test's kernels (weight decay on): other tests' configurations share the process-wide cache,
    # and a kernel whose probe step writes nothing (LAMB's rectified warm-up without decay) is never
    # trusted with a direct call — the guarded call is then its exact, slower path
    with_statistics = [
        k
        for k in fused._KERNELS.values()
        if k.key.rule is rule
        and k.key.dtype == dtype
        and k.key.statistics
        and ("weight_decay", None) not in k.key.static
    ]
    assert with_statistics and all(k.direct is not None for k in with_statistics)
    assert all(k.key.statistics_only == (name == "Prodigy") for k in with_statistics)


def test_statistics_of_watched_steps_and_sliced_state_are_evaluated_eagerly() -> None:
    """A step a dispatch mode watches evaluates the statistics with the eager ops it sees; Prodigy's
    ``slice_p`` > 1 keeps s on every p-th entry, which no flat kernel reads: eager statistics and
    steps, with the reference's numbers."""
    ours, ours_params, theirs, theirs_params = reference_pair("Prodigy", torch.float64, lr=0.05)
    step_both(ours, ours_params, theirs, theirs_params, steps=1)

    class Watching(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Watching():
        step_both(ours, ours_params, theirs, theirs_params, steps=1, seed=2)
    n = len(MODERN_SHAPES)
    assert ours.engine.statistics_counts == {"fused": n, "eager": 0}  # the watched step never asked
    assert ours.engine.counts == {"fused": n, "eager": n}
    assert_close_params(ours_params, theirs_params, torch.float64)

    ours, ours_params, theirs, theirs_params = reference_pair("Prodigy", torch.float64, lr=0.05, slice_p=2)
    step_both(ours, ours_params, theirs, theirs_params, steps=3)
    assert ours.engine.statistics_counts == {"fused": 0, "eager": 3 * n}
    assert ours.engine.counts == {"fused": 0, "eager": 3 * n}
    assert_close_params(ours_params, theirs_params, torch.float64)


def test_a_statistics_kernel_that_disagrees_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe check covers a statistics kernel's outputs: one that disagrees with the statistics
    run eagerly is refused with one warning, and the statistics are evaluated eagerly."""
    real_close = kernels._close

    def outputs_disagree(a, b, eps=None):
        return real_close(a, b, eps) and eps is None  # every statistic "wrong"

    monkeypatch.setattr(kernels, "_close", outputs_disagree)
    monkeypatch.setattr(fused, "_KERNELS", {})
    monkeypatch.setattr(fused, "_FAILED", {})
    ours, ours_params, theirs, theirs_params = reference_pair("Prodigy", torch.float64, lr=0.05)
    with pytest.warns(RuntimeWarning, match="disagrees with the rule run eagerly"):
        step_both(ours, ours_params, theirs, theirs_params, steps=2)
    n = len(MODERN_SHAPES)
    assert ours.engine.statistics_counts == {"fused": 0, "eager": 2 * n}
    assert ours.engine.counts == {"fused": 2 * n, "eager": 0}
    assert_close_params(ours_params, theirs_params, torch.float64)


def test_sum_statistics_stacks_alike_values_and_adds_the_rest() -> None:
    from optimlab.optim.engine.statistics import sum_statistics

    alike = [{"a": torch.tensor(float(i), dtype=torch.float64)} for i in range(5)]
    assert sum_statistics(alike)["a"].item() == 10.0
    mixed = [{"a": torch.tensor(1.0)}, {"a": torch.tensor(2.0, dtype=torch.float64), "b": torch.tensor(3.0)}]
    totals = sum_statistics(mixed)
    assert totals["a"].item() == 3.0 and totals["b"].item() == 3.0
    assert sum_statistics([]) == {}


def test_a_matrix_rule_declared_tensorwise_is_compiled_whole() -> None:
    """A tensor-wise rule that only takes matrices (a matrix product, a norm over both dims; no 1-D
    form to probe) is compiled for 2-D parameters and gives the eager engine's numbers; the state its
    first step creates is made eagerly."""
    from test_optim_rule_kinds import Polar, _grads, _params

    class TensorwisePolar(Polar):
        tensorwise = True

    runs = []
    for engine in ("fused", "eager"):
        params = _params([(6, 4), (5, 7)])
        optimizer = TensorwisePolar(params, lr=0.05, batch=False, engine=engine)
        for step in range(4):
            _grads(params, step)
            optimizer.step()
        runs.append((optimizer, params))
    (fused_opt, fused_params), (_, eager_params) = runs
    assert fused_opt.engine.counts == {"fused": 6, "eager": 2}
    for a, b in zip(fused_params, eager_params, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)
