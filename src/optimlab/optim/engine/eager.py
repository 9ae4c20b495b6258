"""The eager engine: the rule applied parameter by parameter with ordinary torch ops.

It is the reference path, exact to torch.optim's for-loop, and the one every other path falls back
to. It reads each parameter's gradient and state where they are and writes the parameter and the
state back in place (``copy_``), so it works on any tensor the rule's ops work on: complex
parameters through their real views, sparse gradients densified (or, for a rule declaring
``sparse_entries``, applied to the entries they touch: :mod:`~optimlab.optim.engine.sparse`), DTensor
parameters through their local shards (for elementwise rules; a matrix rule's sharded matrices are
each stepped whole on one rank, spread over the ranks: :mod:`~optimlab.optim.engine.spread`), and —
with ``differentiable=True`` — tensors in an autograd graph, whose in-place updates autograd records.

An elementwise rule is evaluated on cache-sized slices of a large parameter and on runs of gathered
small parameters (:mod:`~optimlab.optim.engine.chunks`), which gives the whole-tensor numbers bit for
bit without parameter-sized temporaries; anything those paths cannot take exactly is stepped whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from optimlab.optim.distributed import local, same_layout
from optimlab.optim.engine import chunks
from optimlab.optim.engine.chunks import SmallTensorRuns, keep_temporaries_mapped, step_in_chunks
from optimlab.optim.engine.run_plans import RunPlan, RunRecorder
from optimlab.optim.engine.sparse import step_sparse_entries
from optimlab.optim.engine.spread import step_spread_matrices
from optimlab.optim.engine.stacks import step_matrix_stacks
from optimlab.optim.engine.statistics import rule_statistics
from optimlab.optim.engine.tensors import as_real, dense, recorded

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer


def shards(optimizer: RuleOptimizer, param: Tensor, grad: Tensor, state: dict[str, Any]) -> bool:
    """Whether the rule may run on the local shards of a (DTensor) parameter, its gradient and its
    state: the rule is elementwise, all of them are distributed alike, and autograd is not recording
    (a local shard is outside the DTensor's graph: differentiable steps use DTensor ops)."""
    if not optimizer.elementwise or torch.is_grad_enabled():
        return False
    return same_layout(param, grad) and all(
        same_layout(param, value) for value in state.values() if isinstance(value, Tensor) and value.dim() > 0
    )


def rule_operands(
    optimizer: RuleOptimizer, group: dict[str, Any], param: Tensor, grad: Tensor
) -> tuple[bool, Tensor, Tensor, dict[str, Any]]:
    """What the rule reads for one parameter: whether it runs on the local shards (see
    :func:`shards`), and the parameter, gradient and state as real tensors in the step's precision
    (views of the stored ones, unless autograd records the step)."""
    # A state entry of None is no entry (torch 1.x saved SGD's momentum_buffer as None).
    state = {k: v for k, v in optimizer.ensure_state(param, group).items() if v is not None}
    on_shards = shards(optimizer, param, grad, state)
    real_state = {key: as_real(local(value) if on_shards else value) for key, value in state.items()}
    step = real_state.get("step")
    if optimizer.host_step and step is not None and step.dim() == 0 and not step.requires_grad:
        # The counter's value on the host, as torch.optim's for-loop reads it: the rule's scalar
        # bookkeeping is then Python arithmetic instead of a dozen tiny tensor operations.
        real_state["step"] = step.item()
    if on_shards:
        param, grad = local(param), local(grad)
    param = as_real(param)
    param, grad, real_state = optimizer.readable(param, grad, real_state)  # low-precision storage
    if torch.is_grad_enabled():
        # Autograd records the step (differentiable=True): the rule's graph must keep the values it
        # read, not the tensors that write_back is about to overwrite in place.
        param = param.clone()
        real_state = {k: v.clone() if isinstance(v, Tensor) else v for k, v in real_state.items()}
    return on_shards, param, as_real(dense(grad)), real_state


def _sliceable_rule(optimizer: RuleOptimizer) -> bool:
    """Whether the rule may be evaluated on slices and runs of elements
    (:mod:`~optimlab.optim.engine.chunks`): declared elementwise, its results stored as they are
    (stochastic rounding draws its random bits per tensor) and nothing recording the step's ops."""
    return optimizer.elementwise and not optimizer.rounds and not recorded()


def step_parameter(
    optimizer: RuleOptimizer,
    group: dict[str, Any],
    param: Tensor,
    grad: Tensor,
    hyper: dict[str, Any],
    trace_numel: int = 0,
) -> None:
    """Step one parameter: a large one whose operands allow it in slices
    (:func:`~optimlab.optim.engine.chunks.step_in_chunks`, the same numbers without parameter-sized
    temporaries; ``trace_numel``: the elements of the step it is part of), any other whole."""
    on_shards, real_param, real_grad, state = rule_operands(optimizer, group, param, grad)
    if not grad.is_sparse and real_param.numel() > chunks.CHUNK_NUMEL and _sliceable_rule(optimizer):
        others = step_in_chunks(optimizer.rule, real_param, real_grad, state, hyper, trace_numel=trace_numel)
        if others is not None:
            written(param, on_shards)
            write_state(optimizer, param, on_shards, others)
            return
    new_param, new_state = optimizer.rule(real_param, real_grad, state, **hyper)
    write_back(optimizer, param, on_shards, new_param, new_state)


def _target(tensor: Tensor, on_shards: bool) -> Tensor:
    return as_real(local(tensor) if on_shards else tensor)


def _store(optimizer: RuleOptimizer, tensor: Tensor, value: Tensor, on_shards: bool) -> None:
    tensor = _target(tensor, on_shards)
    tensor.copy_(optimizer.storable(value, tensor.dtype))


def written(param: Tensor, on_shards: bool) -> None:
    """Tell autograd that a DTensor parameter changed with its local shard, which was written."""
    if on_shards and local(param) is not param:
        torch.autograd.graph.increment_version(param)


def write_back(
    optimizer: RuleOptimizer, param: Tensor, on_shards: bool, new_param: Tensor, new_state: dict[str, Tensor]
) -> None:
    """Copy the rule's results into the parameter and its state (their local shards if the rule
    ran on them); state the rule created (SGD's first momentum buffer) gets the parameter's layout."""
    _store(optimizer, param, new_param, on_shards)
    written(param, on_shards)
    write_state(optimizer, param, on_shards, new_state)


def write_state(optimizer: RuleOptimizer, param: Tensor, on_shards: bool, new_state: dict[str, Any]) -> None:
    """Copy the rule's new state into ``param``'s (see :func:`write_back`)."""
    if not new_state:
        return
    state = optimizer.state[param]
    for key, value in new_state.items():
        if not isinstance(value, Tensor):  # the step counter, advanced on the host
            state[key].fill_(value)
        elif state.get(key) is not None:
            _store(optimizer, state[key], value, on_shards)
        elif value.dim() == 0 and param.dim() != 0:  # a 0-d value the rule adds (LAMB's trust ratio)
            state[key] = value.detach().clone() if not torch.is_grad_enabled() else value.clone()
        else:  # created by the rule itself: a tensor like the parameter (a DTensor for a DTensor)
            holder = torch.empty_like(param, memory_format=torch.preserve_format, dtype=optimizer.state_dtype)
            _store(optimizer, holder, value, on_shards)
            state[key] = holder


class EagerEngine:
    """Applies the rule parameter by parameter; the reference path, exact to torch.optim."""

    name = "eager"

    def __init__(self) -> None:
        #: per param group (by id), the runs of its small parameters (engine/run_plans.py)
        self._run_plans: dict[int, RunPlan] = {}
        #: parameter steps taken in runs a plan formed
        self.planned_steps = 0

    def step_group(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        extras: list[dict[str, Any]] | None = None,
    ) -> None:
        """Step ``params`` with their gradients ``grads`` (``extras``: the rule's statistics, when the
        caller has already evaluated them — a group's are evaluated once per step)."""
        keep_temporaries_mapped()
        hyper = optimizer.hyperparameters(group)
        if extras is None:
            extras = rule_statistics(optimizer, group, params, grads, hyper)
        if optimizer.matrix and optimizer.steps_matrices(group) and not optimizer.rounds:
            # sharded matrices: each stepped whole on one rank (every rank calls this for the group);
            # stochastically rounded storage is written parameter by parameter, with the step's bits
            params, grads, extras = step_spread_matrices(optimizer, group, params, grads, extras, hyper)
            if optimizer.batches_matrices(group):
                params, grads, extras = step_matrix_stacks(optimizer, group, params, grads, extras, hyper)
        # small parameters of an elementwise rule: gathered into cache-sized runs, one rule call each,
        # the runs of the last step kept as a plan (engine/run_plans.py)
        sliceable = _sliceable_rule(optimizer)
        planning = sliceable and not any(extras)
        plan = self._run_plans.get(id(group)) if planning else None
        # (whether the rule's traced program is worth a trace: engine/traced.py)
        trace_numel = sum(param.numel() for param in params) if sliceable else 0
        runs = SmallTensorRuns(optimizer, group, hyper, trace_numel=trace_numel) if sliceable else None
        alone = plan.replay(runs, params, grads) if plan is not None and runs is not None else None
        recorder = RunRecorder(optimizer, params) if planning and alone is None else None
        if runs is not None:
            runs.record = recorder
        if alone is not None:
            self.planned_steps += len(params) - len(alone)
            for position in alone:
                param, grad, extra = params[position], grads[position], extras[position]
                self._step_alone(optimizer, group, param, grad, extra, hyper, trace_numel)
        else:
            alone = []
            for position, (param, grad, extra) in enumerate(zip(params, grads, extras, strict=True)):
                if runs is not None and not extra and runs.add(param, grad):
                    continue
                alone.append(position)
                self._step_alone(optimizer, group, param, grad, extra, hyper, trace_numel)
        if runs is not None:
            done, declined = runs.flush()
            for param, new_state in done:
                write_state(optimizer, param, False, new_state)
            for param, grad in declined:
                step_parameter(optimizer, group, param, grad, hyper, trace_numel)
            if recorder is not None and recorder.layouts:  # (a plan that ran records nothing)
                made = (
                    None if declined else RunPlan.make(optimizer, recorder, params, grads, alone, runs.limit)
                )
                self._keep(optimizer, group, made)

    def _step_alone(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        param: Tensor,
        grad: Tensor,
        extra: dict[str, Any],
        hyper: dict[str, Any],
        trace_numel: int,
    ) -> None:
        """Step a parameter that no run takes."""
        if optimizer.sparse_entries and grad.is_sparse:  # only the entries it touches (SparseAdam)
            step_sparse_entries(optimizer, group, param, grad, {**hyper, **extra})
        else:
            step_parameter(optimizer, group, param, grad, {**hyper, **extra} if extra else hyper, trace_numel)

    def _keep(self, optimizer: RuleOptimizer, group: dict[str, Any], plan: RunPlan | None) -> None:
        """Keep ``plan`` for ``group``'s next step (none where a run declined its parameters: a rule
        not elementwise after all), forgetting the plans of groups no longer in the optimizer."""
        live = {id(g) for g in optimizer.param_groups}  # (load_state_dict makes new groups)
        for stale in [key for key in self._run_plans if key not in live]:
            del self._run_plans[stale]
        if plan is None:
            self._run_plans.pop(id(group), None)
        else:
            self._run_plans[id(group)] = plan
