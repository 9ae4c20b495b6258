"""Matrix rules on stacks: same-shape parameters of a param group stepped by one rule call.

A :attr:`~optimlab.optim.base.RuleOptimizer.matrix` rule takes a stack ``(k, m, n)`` of same-shape
matrices as well as one matrix, and where :meth:`~optimlab.optim.base.RuleOptimizer.batches_matrices`
says so the eager engine stacks them (Muon's Newton–Schulz as one batched matmul chain instead of a
loop). Used on plain tensors here, and on the whole matrices a rank owns by
:mod:`~optimlab.optim.engine.spread`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from optimlab.optim.distributed import is_distributed

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer


def _stackable(optimizer: RuleOptimizer, param: Tensor, grad: Tensor, state: dict[str, Any]) -> bool:
    """Whether a parameter may join a stack: plain, dense, real, not recorded by autograd, and its
    state all parameter-shaped (a stack has no place for per-matrix scalar state)."""
    tensors = [param, grad, *state.values()]
    return (
        not torch.is_grad_enabled()
        and not any(is_distributed(t) or t.is_sparse or t.is_complex() for t in tensors)
        and all(isinstance(v, Tensor) and v.shape == param.shape for v in state.values())
        and grad.shape == param.shape
    )


def step_matrix_stacks(
    optimizer: RuleOptimizer,
    group: dict[str, Any],
    params: list[Tensor],
    grads: list[Tensor],
    extras: list[dict[str, Any]],
    hyper: dict[str, Any],
) -> tuple[list[Tensor], list[Tensor], list[dict[str, Any]]]:
    """Step same-shape parameters of a :attr:`~RuleOptimizer.matrix` rule together: their
    parameters, gradients and state stacked along a new first dimension, one rule call per shape,
    the results copied back. Returns the parameters left to step one by one (alone in their shape,
    or not stackable), with their gradients and extra arguments."""
    buckets: dict[tuple[Any, ...], list[int]] = {}
    rest: list[int] = []
    states = []
    for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
        state = {k: v for k, v in optimizer.ensure_state(param, group).items() if v is not None}
        states.append(state)
        if extras[index] or not _stackable(optimizer, param, grad, state):
            rest.append(index)
            continue
        key = (tuple(param.shape), param.dtype, param.device, grad.dtype, tuple(sorted(state)))
        buckets.setdefault(key, []).append(index)
    for members in buckets.values():
        if len(members) == 1:
            rest.extend(members)
            continue
        outcomes = rule_on_stack(optimizer, [(params[i], grads[i], states[i]) for i in members], hyper)
        for index, (new_param, new_state) in zip(members, outcomes, strict=True):
            param = params[index]
            param.copy_(new_param)
            state = optimizer.state[param]
            for key, value in new_state.items():
                if state.get(key) is not None:
                    state[key].copy_(value)
                else:  # created by the rule itself (Muon's first momentum buffer, say)
                    state[key] = torch.empty_like(param, memory_format=torch.preserve_format)
                    state[key].copy_(value)
    rest.sort()
    return [params[i] for i in rest], [grads[i] for i in rest], [extras[i] for i in rest]


def rule_on_stack(
    optimizer: RuleOptimizer, items: list[tuple[Tensor, Tensor, dict[str, Tensor]]], hyper: dict[str, Any]
) -> list[tuple[Tensor, dict[str, Tensor]]]:
    """One rule call for same-shape (parameter, gradient, state) triples, stacked along a new first
    dimension (``torch.stack``, in the order given); each triple's new parameter and state."""
    stacked_param = torch.stack([param for param, _, _ in items])
    stacked_grad = torch.stack([grad for _, grad, _ in items])
    stacked_state = {key: torch.stack([state[key] for _, _, state in items]) for key in items[0][2]}
    new_param, new_state = optimizer.rule(stacked_param, stacked_grad, stacked_state, **hyper)
    return [
        (new_param[position], {key: value[position] for key, value in new_state.items()})
        for position in range(len(items))
    ]
