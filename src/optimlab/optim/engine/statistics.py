"""A rule's declared statistics: the reductions it needs beyond its own tensor's elements.

A rule like LAMB's scales each update by a trust ratio ‖θ‖ / ‖u‖, and Prodigy's distance estimate
sums dot products over a whole param group. Such a rule declares a pure ``statistics`` function
returning additive partial results (sums of squares, dot products) as 0-d tensors; the engines
evaluate it before the rule and hand the results to the rule as keyword arguments (see
:attr:`optimlab.optim.base.RuleOptimizer.statistics`). The math stays in the rule's module: this
only decides where the statistics are evaluated and how they are combined.

The statistics are evaluated on whole tensors: for a DTensor parameter (FSDP2) its DTensor ops
reduce the partial sums over the shard group, so every rank gets the whole tensor's value — what
one process computes — and the rule itself may then run on the local shards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from optimlab.optim.distributed import is_distributed
from optimlab.optim.engine.tensors import as_real, dense

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer


def _value(result: Tensor) -> Tensor:
    """A statistic as a plain tensor: a DTensor's full value (its partial sums reduced)."""
    if is_distributed(result):
        return result.full_tensor()  # type: ignore[attr-defined]
    return result


def rule_statistics(
    optimizer: RuleOptimizer,
    group: dict[str, Any],
    params: list[Tensor],
    grads: list[Tensor],
    hyper: dict[str, Any],
) -> list[dict[str, Any]]:
    """Per parameter of ``params``, the extra keyword arguments its rule call takes: its own
    statistics (``statistics_scope = "tensor"``), or what :meth:`~RuleOptimizer.group_statistics`
    makes of the group's sums (``"group"``; it is called once per step). Empty without statistics.
    (With ``"step"`` the caller evaluates them for all groups at once: :func:`step_statistics`.)"""
    if type(optimizer).statistics is None:
        return [{} for _ in params]
    per_tensor = tensor_statistics(optimizer, group, params, grads, hyper)
    if optimizer.statistics_scope == "tensor":
        return per_tensor
    totals = sum_statistics(per_tensor)
    extra = optimizer.group_statistics(group, totals)
    return [extra for _ in params]


def sum_statistics(per_tensor: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Each statistic summed over the tensors (or over partial totals): one stacked sum where its values
    share a dtype and a device (hundreds of 0-d additions cost more than the statistics themselves)."""
    values: dict[str, list[Tensor]] = {}
    for found in per_tensor:
        for name, value in found.items():
            values.setdefault(name, []).append(value)
    totals: dict[str, Tensor] = {}
    for name, parts in values.items():
        first = parts[0]
        if all(isinstance(v, Tensor) and v.dim() == 0 for v in parts) and all(
            v.dtype == first.dtype and v.device == first.device for v in parts
        ):
            totals[name] = torch.stack(parts).sum() if len(parts) > 1 else first
        else:
            total = first
            for value in parts[1:]:
                total = total + value
            totals[name] = total
    return totals


def tensor_statistics(
    optimizer: RuleOptimizer,
    group: dict[str, Any],
    params: list[Tensor],
    grads: list[Tensor],
    hyper: dict[str, Any],
) -> list[dict[str, Tensor]]:
    """The rule's :attr:`~RuleOptimizer.statistics` of each parameter of ``params``, as plain tensors."""
    measure = type(optimizer).statistics
    per_tensor = []
    for param, grad in zip(params, grads, strict=True):
        state = {k: v for k, v in optimizer.ensure_state(param, group).items() if v is not None}
        real_state = {k: as_real(v) if isinstance(v, Tensor) else v for k, v in state.items()}
        param, grad, real_state = optimizer.readable(param, grad, real_state)  # low-precision storage
        values = measure(as_real(param), as_real(dense(grad)), real_state, **hyper)
        per_tensor.append({name: _value(value) for name, value in values.items()})
    return per_tensor


def step_statistics(
    optimizer: RuleOptimizer,
    groups: list[dict[str, Any]],
    work: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]],
) -> dict[int, list[dict[str, Any]]]:
    """``statistics_scope = "step"``: the statistics of every parameter that steps, summed over all
    the param groups ``work`` lists (group, parameters, gradients), in order, and turned once into the
    rule's extra arguments by :meth:`~RuleOptimizer.step_statistics` (``groups``: the param groups that
    step this time). Returns, per ``id(group)``, the extra arguments of each of its parameters."""
    # the engine's own evaluation where it has one (the fused engine's statistics-only kernels)
    summed = getattr(optimizer.engine, "summed_statistics", None)
    per_group = []
    for group, params, grads in work:
        hyper = optimizer.hyperparameters(group)
        if summed is not None:
            per_group.append(summed(optimizer, group, params, grads, hyper))
        else:
            per_group.append(sum_statistics(tensor_statistics(optimizer, group, params, grads, hyper)))
    extra = optimizer.step_statistics(groups, sum_statistics(per_group))
    return {id(group): [extra for _ in params] for group, params, _ in work}


__all__ = ["rule_statistics", "step_statistics", "sum_statistics", "tensor_statistics"]
