"""Whether runs can train as batched replicas, and how many fit in memory (and cache) at once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optimlab.lab.probe import probe_optimizer
from optimlab.lab.replicas.spec import ReplicaProblem
from optimlab.optim import LBFGS, RuleOptimizer
from optimlab.optim.functional import optimizer_class

#: default memory budget of one batched chunk (parameters, state, activations, histories)
DEFAULT_MEMORY_BUDGET = 1 << 30
#: replicas per vmapped evaluation on the whole data set, at most
EVALUATION_CHUNK = 128
#: a vmapped evaluation's forward pass stays within about this many bytes (:func:`evaluation_chunk`):
#: about a core's L2 cache — on parabola's 1000 points, chunks of 45 replicas evaluate twice as fast
#: as chunks of 128 (16 MiB), and digits-mlp and a small tiny-lm as fast
EVALUATION_BYTES = 4 << 20


def optimizer_for(optimizer: str | type[Optimizer]) -> type[Optimizer]:
    """The optimizer class: a name of :mod:`optimlab.optim` (``"adam"``, ``"lbfgs"``) or any
    ``torch.optim.Optimizer`` class (foreign classes train on the sequential path)."""
    if isinstance(optimizer, type):
        if issubclass(optimizer, Optimizer):
            return optimizer
        raise ValueError(f"{optimizer!r} is not a torch.optim.Optimizer class")
    if str(optimizer).lower() == "lbfgs":
        return LBFGS
    return optimizer_class(str(optimizer))


def batchable(
    subject: Any,
    *,
    replicas: int | None = None,
    n_params: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    activation_bytes: int = 0,
    itemsize: int = 4,
) -> bool:
    """Whether runs can train as batched replicas — the one question, asked of what decides it:

    * an optimizer (a name, a class, or a lab configuration with ``cls``): a first-order optimizer
      of :mod:`optimlab.optim` whose rule steps a flat vector (:func:`_flat_rule`; L-BFGS needs
      closures; foreign classes run one after another);
    * a model (``nn.Module``): floating-point parameters that all train, no buffers (running
      statistics change inside the forward pass) and no random layers (their draws could not
      match the sequential run's);
    * a problem (anything with ``build_model``): its model of seed 0.

    With ``replicas`` and ``n_params`` (an optimizer only) it also asks whether batching is worth it:
    at least two replicas, and at least two per chunk within ``memory_budget`` bytes."""
    if isinstance(subject, nn.Module):
        return _model_batchable(subject)
    if callable(getattr(subject, "build_model", None)) and not isinstance(subject, type):
        return _model_batchable(subject.build_model(0))
    cls = optimizer_for(getattr(subject, "cls", subject))
    if not (issubclass(cls, RuleOptimizer) and not issubclass(cls, LBFGS)) or not _flat_rule(cls):
        return False
    if replicas is None and n_params is None:
        return True
    if replicas is None or n_params is None:
        raise ValueError("give both replicas and n_params to ask whether batching fits")
    if replicas < 2:
        return False
    per = replica_bytes(n_params, cls, itemsize=itemsize, activation_bytes=activation_bytes)
    return max(replica_chunks(replicas, per, memory_budget)) >= 2


def _flat_rule(cls: type[RuleOptimizer]) -> bool:
    """Whether ``cls``'s rule may step a replica's parameters as one flat vector, as the batched engine
    does: elementwise, with no statistics over a tensor or a group (LAMB's trust ratios, Prodigy's
    sums) and no matrix shape (Muon). Group-level bookkeeping between steps is allowed when it only
    makes rule arguments (``hyperparameters_per_step``: each replica keeps its own group, which the
    engine advances and reads at every step — Schedule-Free's averaging weights); train/eval modes
    when each parameter's switch is a pure function of it, its state and its group (``eval_point``
    and ``train_point``: Schedule-Free's x and y). The others train one run at a time, exactly."""
    bookkeeping = (
        cls.begin_group_step is RuleOptimizer.begin_group_step and cls.begin_step is RuleOptimizer.begin_step
    )
    modes = callable(getattr(cls, "eval", None)) or callable(getattr(cls, "train", None))
    pure_modes = callable(getattr(cls, "eval_point", None)) and callable(getattr(cls, "train_point", None))
    return (
        cls.elementwise
        and cls.statistics is None
        and not cls.matrix
        and (bookkeeping or cls.hyperparameters_per_step)
        and (not modes or pure_modes)
    )


def _model_batchable(model: nn.Module) -> bool:
    params = list(model.parameters())
    if not params or any(not p.requires_grad or not p.is_floating_point() or p.is_complex() for p in params):
        return False
    if len({p.dtype for p in params}) != 1 or len({p.device for p in params}) != 1:
        return False
    if any(True for _ in model.buffers()):
        return False
    random_layers = (nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)
    return not any(isinstance(m, random_layers) for m in model.modules())


def _state_slots(optimizer: str | type[Optimizer], hyperparameters: Mapping[str, Any] | None = None) -> int:
    """How many parameter-sized state tensors the optimizer keeps."""
    cls = optimizer_for(optimizer)
    if not issubclass(cls, RuleOptimizer):
        return 0
    probe = probe_optimizer(cls, [torch.zeros(1)], engine="eager", **dict(hyperparameters or {}))
    group = probe.param_groups[0]
    slots = sum(1 for v in probe.init_state(torch.zeros(1), group).values() if v.dim() > 0)
    if cls.__name__ == "SGD" and group["momentum"] != 0:
        slots += 1  # the momentum buffer the rule creates on the first step
    return slots


def replica_bytes(
    n_params: int,
    optimizer: str | type[Optimizer] = "adam",
    *,
    itemsize: int = 4,
    activation_bytes: int = 0,
    steps: int = 0,
) -> int:
    """Estimated memory of one replica in a batched run: parameters, gradient, optimizer state and
    the rule's temporaries (≈ 8 vectors besides the state), activations of one step, and the
    per-step loss/lr history."""
    vectors = 3 + _state_slots(optimizer) + 8
    return n_params * itemsize * vectors + activation_bytes + steps * 16


def replica_chunks(
    replica_count: int, per_replica: int, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> list[int]:
    """Split ``replica_count`` replicas into near-equal chunks of at most ``memory_budget`` bytes."""
    if replica_count <= 0:
        return []
    fit = max(1, memory_budget // max(1, per_replica))
    pieces = math.ceil(replica_count / fit)
    base, extra = divmod(replica_count, pieces)
    return [base + (1 if i < extra else 0) for i in range(pieces)]


def activation_bytes(problem: ReplicaProblem, model: nn.Module, seed: int) -> int:
    """Bytes of the module outputs of one forward pass on the first batch (× 3: saved for the
    backward pass, their gradients, and vmap's temporaries)."""
    total = 0

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        inputs, target = next(iter(problem.batches(seed, 0)))
        with torch.no_grad():
            model(inputs)
        total += (inputs.numel() * inputs.element_size() + target.numel() * target.element_size()) // 3
    except StopIteration:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return 3 * total


def evaluation_chunk(problem: ReplicaProblem, model: nn.Module, seed: int) -> int:
    """Replicas per vmapped evaluation of the loss on the whole data set: as many as keep its forward
    pass within :data:`EVALUATION_BYTES` (in cache), at most :data:`EVALUATION_CHUNK`; 1 (one replica
    after another: a vmapped pass of a big model is slower than a loop) when one alone is bigger."""
    one_batch = activation_bytes(problem, model, seed) // 3
    steps = int(problem.steps_per_epoch)
    return max(1, min(EVALUATION_CHUNK, EVALUATION_BYTES // max(1, one_batch * steps)))
