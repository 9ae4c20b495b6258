"""Checkpoints: torch.optim's state_dict format, loadable both ways mid-training (through torch.save)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

import optimlab.optim as ol
from optimlab.optim.engine import ENGINE_CHOICES
from parity_cases import (
    CASES,
    PARITY,
    TOLERANCE,
    Variant,
    assert_same_params,
    assert_same_state,
    run,
)

OUR_GROUP_KEYS = {"l1", "nonfinite", "skipped_steps"}
RTOL, ATOL = TOLERANCE["float64"]


def through_bytes(state_dict: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only: a checkpoint holds plain data only


def fresh(cls: type, variant: Variant, params: list[torch.Tensor], **extra: Any) -> torch.optim.Optimizer:
    copies = [p.detach().clone().requires_grad_() for p in params]
    return variant.build(cls, [copies[:2], copies[2:]], **extra), copies


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize(("entry", "variant"), CASES, ids=[f"{n}-{v.name}" for n, v in CASES])
def test_checkpoints_load_both_ways_mid_training(entry: str, variant: Variant, engine: str) -> None:
    """A checkpoint saved after 8 steps by torch.optim (then by optimlab) is loaded into a new
    optimlab optimizer and a new torch.optim one; both continue 8 steps and must agree with each
    other (and stay close to a run that was never interrupted)."""
    ours_cls, theirs_cls = PARITY[entry].ours, PARITY[entry].theirs
    start = PARITY[entry].params(torch.float64)
    reference, reference_params = fresh(theirs_cls, variant, start)
    run(reference, reference_params, steps=16)
    for source_cls, source_extra in ((theirs_cls, {}), (ours_cls, {"engine": engine})):
        source, source_params = fresh(source_cls, variant, start, **source_extra)
        run(source, source_params, steps=8)
        checkpoint = source.state_dict()
        ours, ours_params = fresh(ours_cls, variant, source_params, engine=engine)
        theirs, theirs_params = fresh(theirs_cls, variant, source_params)
        ours.load_state_dict(through_bytes(checkpoint))
        theirs.load_state_dict(through_bytes(checkpoint))
        run(ours, ours_params, steps=8, start=8)
        run(theirs, theirs_params, steps=8, start=8)

        assert_same_params(ours_params, theirs_params, RTOL, ATOL)
        assert_same_state(ours, theirs, RTOL, ATOL)
        # torch's load_state_dict casts floating state (not `step`) to the parameter's dtype, which
        # can change later roundings (ASGD's float32 `eta`): the uninterrupted run is close, not equal.
        assert_same_params(ours_params, reference_params, 1e-6, 1e-9)
        ours_groups, theirs_groups = ours.state_dict()["param_groups"], theirs.state_dict()["param_groups"]
        for ours_group, theirs_group in zip(ours_groups, theirs_groups, strict=True):
            assert set(ours_group) == set(theirs_group) | OUR_GROUP_KEYS | set(PARITY[entry].options)


def test_state_dict_format_matches_torch() -> None:
    """Same layout, keys, dtypes and shapes — including state created lazily and grad-less params."""
    for entry in PARITY.values():
        variant = entry.variants[-1]
        params = entry.params(torch.float64)
        ours, ours_params = fresh(entry.ours, variant, params)
        theirs, theirs_params = fresh(entry.theirs, variant, params)
        for opt, opt_params in ((ours, ours_params), (theirs, theirs_params)):
            run(opt, opt_params, steps=1)  # p2 has no gradient at step 0: no state yet (but Adagrad's)
        ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
        assert ours_sd.keys() == theirs_sd.keys() == {"state", "param_groups"}
        assert ours_sd["state"].keys() == theirs_sd["state"].keys(), entry.name
        for index, theirs_state in theirs_sd["state"].items():
            ours_state = ours_sd["state"][index]
            assert ours_state.keys() == theirs_state.keys()
            for key, value in theirs_state.items():
                if not isinstance(value, torch.Tensor):  # a Python-number counter (SparseAdam's step)
                    assert type(ours_state[key]) is type(value), (entry.name, key)
                    continue
                assert (ours_state[key].dtype, ours_state[key].shape) == (value.dtype, value.shape)
        assert [g["params"] for g in ours_sd["param_groups"]] == [
            g["params"] for g in theirs_sd["param_groups"]
        ]


def test_torch_checkpoint_gets_our_group_defaults() -> None:
    """A torch.optim checkpoint has no optimlab keys: the loading optimizer's settings fill them in."""
    p = torch.ones(3, requires_grad=True)
    theirs = torch.optim.Adam([p])
    ours = ol.Adam([torch.ones(3, requires_grad=True)], l1=0.01, nonfinite="skip")
    ours.load_state_dict(through_bytes(theirs.state_dict()))
    group = ours.param_groups[0]
    assert (group["l1"], group["nonfinite"], group["skipped_steps"]) == (0.01, "skip", 0)


def test_our_keys_round_trip() -> None:
    p = torch.ones(3, requires_grad=True)
    ours = ol.SGD([p], lr=0.1, l1=0.5, nonfinite="skip")
    p.grad = torch.tensor([1.0, float("nan"), 0.0])
    ours.step()
    loaded = ol.SGD([torch.ones(3, requires_grad=True)], lr=0.1)
    loaded.load_state_dict(through_bytes(ours.state_dict()))
    group = loaded.param_groups[0]
    assert (group["l1"], group["nonfinite"], group["skipped_steps"]) == (0.5, "skip", 1)
    theirs = torch.optim.SGD([torch.ones(3, requires_grad=True)], lr=0.1)
    theirs.load_state_dict(through_bytes(ours.state_dict()))  # torch ignores the extra keys


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_checkpoints_load_both_ways(line_search_fn: str | None) -> None:
    target = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)

    def closure_for(opt: torch.optim.Optimizer, x: torch.Tensor):
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = ((x - target) ** 4).sum() + (x[0] * x[1]) ** 2
            loss.backward()
            return loss

        return closure

    def make(cls: type, x0: torch.Tensor):
        x = x0.detach().clone().requires_grad_()
        opt = cls([x], line_search_fn=line_search_fn, max_iter=4, history_size=5)
        return opt, x

    reference, xr = make(torch.optim.LBFGS, torch.zeros(3, dtype=torch.float64))
    for _ in range(4):
        reference.step(closure_for(reference, xr))
    for source_cls, target_cls in ((torch.optim.LBFGS, ol.LBFGS), (ol.LBFGS, torch.optim.LBFGS)):
        source, xs = make(source_cls, torch.zeros(3, dtype=torch.float64))
        for _ in range(2):
            source.step(closure_for(source, xs))
        loaded, xl = make(target_cls, xs)
        loaded.load_state_dict(through_bytes(source.state_dict()))
        for _ in range(2):
            loaded.step(closure_for(loaded, xl))
        assert torch.equal(xl.detach(), xr.detach())
        assert (
            loaded.state_dict()["state"][0]["func_evals"] == reference.state_dict()["state"][0]["func_evals"]
        )


def test_plain_number_step_counters_load_as_torch_loads_them() -> None:
    """A checkpoint with Python-number step counters (older torch versions) loads them as float32
    tensors whatever the default dtype but float64 — never as a half-precision counter that would
    stop at 256, as a bfloat16 default would make it."""
    previous = torch.get_default_dtype()
    try:
        for default in (torch.bfloat16, torch.float32, torch.float64):
            torch.set_default_dtype(default)
            runs = []
            for cls in (ol.Adam, torch.optim.Adam):
                param = torch.nn.Parameter(torch.ones(3, dtype=torch.float32))
                optimizer = cls([param], lr=0.01)
                param.grad = torch.ones(3, dtype=torch.float32)
                optimizer.step()
                saved = optimizer.state_dict()
                saved["state"][0]["step"] = 300
                optimizer.load_state_dict(saved)
                for _ in range(3):
                    optimizer.step()
                runs.append(optimizer.state[param]["step"])
            assert (
                runs[0].dtype
                == runs[1].dtype
                == (torch.float64 if default == torch.float64 else torch.float32)
            )
            assert float(runs[0]) == float(runs[1]) == 303
    finally:
        torch.set_default_dtype(previous)
