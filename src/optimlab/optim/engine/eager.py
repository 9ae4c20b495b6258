"""The eager engine: the rule applied parameter by parameter with ordinary torch ops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer


def as_real(tensor: Tensor) -> Tensor:
    """Complex tensors are updated through their real view, as torch.optim does."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def dense_grad(param: Tensor) -> Tensor:
    """``param.grad``, densified when sparse: torch.optim's SGD and Adagrad accept sparse gradients,
    and the rule applied to the dense gradient gives their numbers (zero entries change nothing)."""
    grad = param.grad
    return grad.to_dense() if grad.is_sparse else grad


def apply_rule(
    optimizer: RuleOptimizer, group: dict[str, Any], param: Tensor, hyper: dict[str, Any]
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run the rule (and the L1 proximal step) for one parameter; return the new values."""
    state = optimizer.ensure_state(param, group)
    real_state = {key: as_real(value) for key, value in state.items()}
    step = real_state.get("step")
    if optimizer.host_step and step is not None and step.dim() == 0:
        # The counter's value on the host, as torch.optim's for-loop reads it: the rule's scalar
        # bookkeeping is then Python arithmetic instead of a dozen tiny tensor operations.
        real_state["step"] = step.item()
    grad = as_real(dense_grad(param))
    new_param, new_state = optimizer.rule(as_real(param), grad, real_state, **hyper)
    return new_param, new_state


def write_back(
    optimizer: RuleOptimizer, param: Tensor, new_param: Tensor, new_state: dict[str, Tensor]
) -> None:
    as_real(param).copy_(new_param)
    if not new_state:
        return
    state = optimizer.state[param]
    for key, value in new_state.items():
        if not isinstance(value, Tensor):  # the step counter, advanced on the host
            state[key].fill_(value)
        elif key in state:
            as_real(state[key]).copy_(value)
        else:  # state created by the rule itself (SGD's first momentum buffer)
            state[key] = torch.view_as_complex(value) if param.is_complex() else value


class EagerEngine:
    """Applies the rule parameter by parameter; the reference path, exact to torch.optim."""

    name = "eager"

    def step_group(self, optimizer: RuleOptimizer, group: dict[str, Any], params: list[Tensor]) -> None:
        hyper = optimizer.rule_hyperparameters(group)
        for param in params:
            new_param, new_state = apply_rule(optimizer, group, param, hyper)
            write_back(optimizer, param, new_param, new_state)
