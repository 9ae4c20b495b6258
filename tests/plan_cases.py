"""What the planned-step tests share (the fused engine's plans, the eager engine's planned runs): a
tiny MLP trained side by side with optimlab and torch.optim's for-loop, and a stand-in OpenMP
runtime that records the thread counts it is asked for."""

from __future__ import annotations

import copy

import torch
from torch import nn

import optimlab.optim as ol

DATA = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))

Side = tuple[nn.Module, torch.optim.Optimizer]


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def pair(name: str = "Adam", engine: str = "fused", **kwargs) -> tuple[Side, Side]:
    """The same MLP with optimlab's ``name`` on ``engine`` and torch.optim's for-loop."""
    ours_model = mlp()
    theirs_model = copy.deepcopy(ours_model)
    ours = getattr(ol, name)(ours_model.parameters(), engine=engine, **kwargs)
    theirs = getattr(torch.optim, name)(theirs_model.parameters(), foreach=False, **kwargs)
    return (ours_model, ours), (theirs_model, theirs)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    model(DATA).square().mean().backward()
    optimizer.step()


def both_steps(ours: Side, theirs: Side) -> None:
    train_step(*ours)
    train_step(*theirs)


def transposed_gradient_step(*sides: Side) -> None:
    """A step whose first weight's gradient has the same values in another layout."""
    for model, optimizer in sides:
        optimizer.zero_grad()
        model(DATA).square().mean().backward()
        weight = model[0].weight
        weight.grad = weight.grad.t().contiguous().t()
        optimizer.step()


def new_parameter_step(ours: Side, theirs: Side) -> None:
    """A step with a parameter added to both optimizers' first group; both give it the same values."""
    extra = [nn.Parameter(torch.ones(5)) for _ in range(2)]
    ours[1].param_groups[0]["params"].append(extra[0])
    theirs[1].param_groups[0]["params"].append(extra[1])
    for p in extra:
        p.grad = torch.full((5,), 0.5)
    ours[1].step()
    theirs[1].step()
    torch.testing.assert_close(extra[0], extra[1])


def replace_first_weight_storage(*sides: Side) -> None:
    """Swap the first weight's ``.data`` for a copy (same metadata, other storage) and its
    ``exp_avg`` for a copy: what a plan holding tensors would miss."""
    for model, optimizer in sides:
        weight = model[0].weight
        weight.data = weight.data.clone()
        state = optimizer.state[weight]
        state["exp_avg"] = state["exp_avg"].clone()


class Threads:
    """A stand-in OpenMP runtime (``set``, ``get``) that records what it is asked."""

    def __init__(self, count: int) -> None:
        self.count, self.asked = count, []

    def set(self, count: int) -> None:
        self.asked.append(count)
        self.count = count

    def get(self) -> int:
        return self.count
