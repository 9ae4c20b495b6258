"""The modern optimizers against their reference packages (the table in tests/reference_cases.py):
numbers, checkpoints both ways, signatures, group defaults, errors, float32, l1, nonfinite, functional."""

from __future__ import annotations

import inspect
import io
from typing import Any

import pytest
import torch

import optimlab.optim as ol
from optimlab.optim import functional as F
from parity_cases import FLOAT32, FLOAT64, Variant, gradient, initial_params
from reference_cases import CASES, REFERENCES, STEPS, TOLERANCE, assert_same, build, run

# torch-adopt 0.1.0 calls deprecated torch functions at every step
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch._utils.is_compiling` is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:Use _accelerator_graph_capture_health_check:DeprecationWarning"),
]

ENGINES = ("eager", "fused", "auto")
OURS_EXTRA = ("l1", "nonfinite", "engine", "state_dtype", "stochastic_rounding")
IDS = [f"{name}-{variant.name}" for name, variant in CASES]
RTOL, ATOL = TOLERANCE[FLOAT64]


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("entry", "variant"), CASES, ids=IDS)
def test_same_numbers_as_the_reference(entry: str, variant: Variant, engine: str) -> None:
    """Parameters, state and param groups after 50 float64 steps, two groups, grad-less steps."""
    theirs, theirs_params = build(REFERENCES[entry].theirs, variant)
    ours, ours_params = build(REFERENCES[entry].ours, variant, engine=engine)
    run(theirs, theirs_params, STEPS)
    run(ours, ours_params, STEPS)
    assert_same(ours, ours_params, theirs, theirs_params, RTOL, ATOL)
    if engine == "fused":  # the rules are elementwise: every step with a gradient ran compiled
        assert ours.engine.counts["eager"] == 0


FLOAT32_CASES = [(name, variant) for name, variant in CASES if FLOAT32 in variant.dtypes]


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize(("entry", "variant"), FLOAT32_CASES, ids=[f"{n}-{v.name}" for n, v in FLOAT32_CASES])
def test_float32(entry: str, variant: Variant, engine: str) -> None:
    rtol, atol = TOLERANCE[FLOAT32]
    theirs, theirs_params = build(REFERENCES[entry].theirs, variant, torch.float32)
    ours, ours_params = build(REFERENCES[entry].ours, variant, torch.float32, engine=engine)
    run(theirs, theirs_params, STEPS)
    run(ours, ours_params, STEPS)
    assert_same(ours, ours_params, theirs, theirs_params, rtol, atol)


# --- checkpoints --------------------------------------------------------------------------------


def through_bytes(state_dict: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only: a checkpoint holds plain data only


# every variant eagerly, and each optimizer's last variant with the fused engine (compiling is slow)
CHECKPOINT_CASES = [(n, v, "eager") for n, v in CASES] + [
    (name, entry.variants[-1], "fused") for name, entry in REFERENCES.items()
]


@pytest.mark.parametrize(
    ("entry", "variant", "engine"),
    CHECKPOINT_CASES,
    ids=[f"{n}-{v.name}-{e}" for n, v, e in CHECKPOINT_CASES],
)
def test_checkpoints_load_both_ways_mid_training(entry: str, variant: Variant, engine: str) -> None:
    """20 steps with one, its state_dict loaded into the other, 30 more: the same as 50 uninterrupted
    steps of the reference, both ways."""
    ours_cls, theirs_cls = REFERENCES[entry].ours, REFERENCES[entry].theirs
    reference, reference_params = build(theirs_cls, variant)
    run(reference, reference_params, STEPS)
    split = 20
    for source_cls, target_cls in ((theirs_cls, ours_cls), (ours_cls, theirs_cls)):
        extra = {"engine": engine}
        source, source_params = build(source_cls, variant, **(extra if source_cls is ours_cls else {}))
        run(source, source_params, split)
        target, target_params = build(target_cls, variant, **(extra if target_cls is ours_cls else {}))
        with torch.no_grad():
            for p, q in zip(target_params, source_params, strict=True):
                p.copy_(q)
        target.load_state_dict(through_bytes(source.state_dict()))
        run(target, target_params, STEPS - split, start=split)
        if target_cls is ours_cls:
            assert_same(target, target_params, reference, reference_params, RTOL, ATOL)
        else:
            for index, (a, b) in enumerate(zip(target_params, reference_params, strict=True)):
                torch.testing.assert_close(
                    a, b, rtol=RTOL, atol=ATOL, msg=lambda m, i=index: f"param {i}: {m}"
                )


# --- the constructor: signature, group defaults, errors ------------------------------------------


def _same_default(ours: Any, theirs: Any) -> bool:
    if inspect.isfunction(ours) and inspect.isfunction(theirs):  # ADOPT's clip_lambda: a function vs a lambda
        return all(ours(float(t)) == theirs(float(t)) for t in (1, 2, 7, 100))
    return ours == theirs


@pytest.mark.parametrize("entry", REFERENCES)
def test_same_signature(entry: str) -> None:
    ours, theirs = REFERENCES[entry].ours, REFERENCES[entry].theirs
    assert issubclass(ours, torch.optim.Optimizer)
    ours_params = list(inspect.signature(ours.__init__).parameters.values())
    theirs_params = list(inspect.signature(theirs.__init__).parameters.values())
    extra = [p for p in ours_params if p.name in OURS_EXTRA]
    shared = [p for p in ours_params if p.name not in OURS_EXTRA]
    assert [(p.name, p.kind) for p in shared] == [(p.name, p.kind) for p in theirs_params]
    for a, b in zip(shared, theirs_params, strict=True):
        assert _same_default(a.default, b.default), a.name
    assert [(p.name, p.kind, p.default) for p in extra] == [
        (name, inspect.Parameter.KEYWORD_ONLY, default)
        for name, default in zip(OURS_EXTRA, (0.0, "propagate", None, None, False), strict=True)
    ]


@pytest.mark.parametrize("entry", REFERENCES)
def test_same_defaults_in_param_groups(entry: str) -> None:
    ours = REFERENCES[entry].ours([torch.zeros(3, requires_grad=True)]).param_groups[0]
    theirs = REFERENCES[entry].theirs([torch.zeros(3, requires_grad=True)]).param_groups[0]
    assert set(ours) == set(theirs) | {"l1", "nonfinite", "skipped_steps"}
    for key, value in theirs.items():
        if key != "params":
            assert ours[key] == value, key


INVALID = [(name, kwargs) for name, entry in REFERENCES.items() for kwargs in entry.invalid]


def _raised(cls: type, kwargs: dict[str, Any]) -> BaseException:
    with pytest.raises(Exception) as info:  # the type is compared below
        cls([torch.zeros(3, requires_grad=True)], **kwargs)
    return info.value


@pytest.mark.parametrize(("entry", "kwargs"), INVALID, ids=[f"{n}-{k}" for n, k in INVALID])
def test_same_error_as_the_reference(entry: str, kwargs: dict[str, Any]) -> None:
    theirs = _raised(REFERENCES[entry].theirs, kwargs)
    ours = _raised(REFERENCES[entry].ours, kwargs)
    if type(theirs).__module__ == "builtins":
        assert type(ours) is type(theirs)
    else:  # the package's own exception class: mirrored by name (optimlab does not import the package)
        assert type(ours).__name__ == type(theirs).__name__
    assert str(ours) == str(theirs)


# --- optimlab's extras: l1, nonfinite, functional ------------------------------------------------


@pytest.mark.parametrize("entry", REFERENCES)
def test_l1_zero_changes_nothing_and_l1_makes_exact_zeros(entry: str) -> None:
    variant = REFERENCES[entry].variants[0]
    plain, plain_params = build(REFERENCES[entry].ours, variant, engine="eager")
    zero, zero_params = build(REFERENCES[entry].ours, variant, engine="eager", l1=0.0)
    sparse, sparse_params = build(REFERENCES[entry].ours, variant, engine="eager", l1=10.0)
    for optimizer, params in ((plain, plain_params), (zero, zero_params), (sparse, sparse_params)):
        run(optimizer, params, 20)
    assert all(torch.equal(a, b) for a, b in zip(plain_params, zero_params, strict=True))
    assert sum(int((p == 0).sum()) for p in sparse_params) > 0
    assert sum(int((p == 0).sum()) for p in plain_params) == 0


@pytest.mark.parametrize("entry", REFERENCES)
def test_nonfinite_skip_leaves_the_step_out(entry: str) -> None:
    """NaN gradients at step 5 with nonfinite="skip": the same as a reference that never took it."""
    variant = REFERENCES[entry].variants[-1]
    ours, ours_params = build(REFERENCES[entry].ours, variant, engine="eager", nonfinite="skip")
    theirs, theirs_params = build(REFERENCES[entry].theirs, variant)
    run(ours, ours_params, 5)
    run(ours, ours_params, 1, start=5, nan_at=5)
    run(ours, ours_params, 10, start=6)
    run(theirs, theirs_params, 5)
    run(theirs, theirs_params, 10, start=6)
    assert [group["skipped_steps"] for group in ours.param_groups] == [1, 1]
    assert_same(ours, ours_params, theirs, theirs_params, RTOL, ATOL)


@pytest.mark.parametrize("entry", REFERENCES)
def test_functional_update_is_the_class(entry: str) -> None:
    """functional.update by name, on named tensors, gives the class's numbers."""
    reference = REFERENCES[entry]
    hyper = dict(reference.variants[-1].kwargs)
    params = dict(zip("abc", initial_params(torch.float64), strict=True))
    states = None
    for step in range(12):
        grads = {k: gradient(step, i, p) for i, (k, p) in enumerate(params.items())}
        counted = {"step": step + 1} if reference.group_step else {}
        params, states = F.update(entry.lower(), params, grads, states, **hyper, **counted)
    optimizer, class_params = build(reference.ours, Variant("one group", hyper))
    optimizer.param_groups[1].update(
        optimizer.param_groups[0] | {"params": optimizer.param_groups[1]["params"]}
    )
    run(optimizer, class_params, 12)
    for a, b in zip(params.values(), class_params, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)
    assert F.optimizer_class(entry.lower()) is reference.ours


# --- what is particular to one optimizer ---------------------------------------------------------


def test_lion_use_triton_selects_the_fused_engine() -> None:
    assert ol.Lion([torch.zeros(2, requires_grad=True)], use_triton=True).engine.name == "fused"


def test_ademamix_refuses_what_is_not_elementwise_and_counts_like_the_reference() -> None:
    for option in ("cautious", "stable_adamw"):
        with pytest.raises(ValueError, match=option):
            ol.AdEMAMix([torch.zeros(2, requires_grad=True)], **{option: True})
    with pytest.raises(ValueError, match="step=t"):
        F.update("ademamix", {"w": torch.ones(2)}, {"w": torch.ones(2)})
    p = torch.zeros(2, dtype=torch.complex128, requires_grad=True)
    p.grad = torch.ones_like(p)
    with pytest.raises(Exception, match=r"AdEMAMix does not support complex parameter\.") as info:
        ol.AdEMAMix([p]).step()
    assert type(info.value).__name__ == "NoComplexParameterError"
    assert "step" not in ol.AdEMAMix([p]).param_groups[0]  # the failed step left no count behind
