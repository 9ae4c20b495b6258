"""optimlab.optim inside the tools people train with: torch.compile, accelerate, safetensors.

Each test runs the same training with optimlab's class and with torch.optim's and requires the same
numbers — and, where the tool saves or loads the model, every tensor saved and loaded intact (the
engines never make parameters share storage). Distributed tools are in tests/test_distributed.py.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import optimlab.optim as ol
from optimlab.optim.engine import ENGINE_CHOICES

NAMES = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam"]
ARGUMENTS: dict[str, dict[str, Any]] = {"SGD": {"lr": 0.05, "momentum": 0.9}, "Adadelta": {"lr": 1.0}}


def twin_layers(seed: int = 0, same_shapes: bool = False) -> nn.Module:
    """Weights of one shape (state mixed up between parameters is silently wrong) and, unless
    ``same_shapes``, parameters of other shapes (mixed-up state is a crash)."""
    torch.manual_seed(seed)
    if same_shapes:
        return nn.Sequential(
            nn.Linear(4, 4, bias=False),
            nn.Tanh(),
            nn.Linear(4, 4, bias=False),
            nn.Tanh(),
            nn.Linear(4, 4, bias=False),
        )
    return nn.Sequential(
        nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 2)
    )


X = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
Y = torch.randn(16, 4, generator=torch.Generator().manual_seed(2))


def loss_of(model: nn.Module) -> torch.Tensor:
    out = model(X)
    return ((out - Y[:, : out.shape[1]]) ** 2).mean()


def plain_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    loss_of(model).backward()
    optimizer.step()


def assert_same(a: nn.Module, b: nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def pair(
    name: str, engine: str, same_shapes: bool = False
) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module, torch.optim.Optimizer]:
    model = twin_layers(same_shapes=same_shapes)
    their_model = copy.deepcopy(model)
    kwargs = ARGUMENTS.get(name, {"lr": 0.01})
    ours = getattr(ol, name)(model.parameters(), engine=engine, **kwargs)
    theirs = getattr(torch.optim, name)(their_model.parameters(), foreach=False, **kwargs)
    return model, ours, their_model, theirs


# --- torch.compile ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_dynamo() -> None:
    """Every test compiles from scratch: what dynamo cached for another test must not decide this one."""
    torch._dynamo.reset()


@pytest.mark.parametrize("same_shapes", [True, False], ids=["same-shapes", "mixed-shapes"])
@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize("name", NAMES)
def test_compiled_training_step_gives_torch_numbers(name: str, engine: str, same_shapes: bool) -> None:
    """A training step compiled as a whole (forward, backward and ``optimizer.step()``): dynamo
    breaks the graph at the step, which runs as it is, with every engine."""
    model, ours, their_model, theirs = pair(name, engine, same_shapes)

    @torch.compile(backend="eager")
    def compiled_step() -> torch.Tensor:
        ours.zero_grad()
        loss = loss_of(model)
        loss.backward()
        ours.step()
        return loss

    for _ in range(4):
        compiled_step()
        plain_step(their_model, theirs)
    assert_same(model, their_model)


@pytest.mark.parametrize("same_shapes", [True, False], ids=["same-shapes", "mixed-shapes"])
@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize("name", NAMES)
def test_compiled_optimizer_step_gives_torch_numbers(name: str, engine: str, same_shapes: bool) -> None:
    """``torch.compile(optimizer.step)``, as torch's tutorials suggest for torch.optim."""
    model, ours, their_model, theirs = pair(name, engine, same_shapes)
    compiled_step = torch.compile(ours.step)
    for _ in range(6):
        for m, o in ((model, ours), (their_model, theirs)):
            o.zero_grad()
            loss_of(m).backward()
        compiled_step()
        theirs.step()
    assert_same(model, their_model)


def test_inductor_compiled_training_step_with_the_fused_engine() -> None:
    """The same with inductor compiling the model's forward and backward around the fused step."""
    model, ours, their_model, theirs = pair("AdamW", "fused")

    @torch.compile
    def compiled_step() -> None:
        ours.zero_grad()
        loss_of(model).backward()
        ours.step()

    for _ in range(4):
        compiled_step()
        plain_step(their_model, theirs)
    assert_same(model, their_model)
    assert ours.engine.counts["fused"] == 16


# --- saving and loading -------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
def test_safetensors_saves_and_loads_a_trained_model(engine: str, tmp_path: Path) -> None:
    """After steps with any engine, safetensors' save_model/load_model and save_file take the model
    (its parameters share no storage) and give back every tensor."""
    from safetensors.torch import load_file, load_model, save_file, save_model

    model, ours, their_model, theirs = pair("Adam", engine)
    for _ in range(3):
        plain_step(model, ours)
        plain_step(their_model, theirs)
    save_model(model, str(tmp_path / "model.safetensors"))
    restored = twin_layers(seed=1)
    missing, unexpected = load_model(restored, str(tmp_path / "model.safetensors"))
    assert not missing and not unexpected
    assert_same(restored, their_model)
    save_file(model.state_dict(), str(tmp_path / "state.safetensors"))
    loaded = load_file(str(tmp_path / "state.safetensors"))
    assert loaded.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_accelerate_saves_every_tensor_and_resumes_exactly(tmp_path: Path) -> None:
    """accelerate's ``save_model`` (safetensors by default) writes every parameter after fused
    steps, and ``save_state``/``load_state`` resume training as if it had never stopped."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file

    def run(steps: int, resume_from: Path | None = None, save_to: Path | None = None) -> nn.Module:
        AcceleratorState._reset_state(reset_partial_state=True)
        accelerator = Accelerator(cpu=True)
        model = twin_layers()
        optimizer = ol.AdamW(model.parameters(), lr=0.01, engine="fused")
        model, optimizer = accelerator.prepare(model, optimizer)
        if resume_from is not None:
            accelerator.load_state(str(resume_from))
        for _ in range(steps):
            optimizer.zero_grad()
            accelerator.backward(loss_of(model))
            optimizer.step()
        if save_to is not None:
            accelerator.save_state(str(save_to))
            accelerator.save_model(model, str(save_to / "model"))
        return accelerator.unwrap_model(model)

    torch.manual_seed(0)
    first = run(3, save_to=tmp_path / "checkpoint")
    saved = load_file(str(tmp_path / "checkpoint" / "model" / "model.safetensors"))
    assert saved.keys() == first.state_dict().keys()  # all 4 tensors, not 1 of them
    for key, value in first.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)
    resumed = run(3, resume_from=tmp_path / "checkpoint")
    uninterrupted = twin_layers()
    reference = torch.optim.AdamW(uninterrupted.parameters(), lr=0.01, foreach=False)
    for _ in range(6):
        plain_step(uninterrupted, reference)
    assert_same(resumed, uninterrupted)
    AcceleratorState._reset_state(reset_partial_state=True)
