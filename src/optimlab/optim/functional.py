"""Call an optimizer's rule directly on tensors, without an ``Optimizer`` object.

In the spirit of the ``update(params, grads)`` code of textbooks::

    >>> import torch
    >>> from optimlab.optim import functional as F
    >>> params = {"w": torch.ones(3)}
    >>> grads = {"w": torch.full((3,), 0.5)}
    >>> params, states = F.update("adam", params, grads, lr=0.1)
    >>> params, states = F.update("adam", params, grads, states, lr=0.1)

``update`` is pure: it returns new parameters and states and never modifies its arguments. The
hyperparameters, their defaults and their validation are exactly the optimizer class's, and the
math is the class's rule from :mod:`optimlab.optim.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from optimlab.optim import modern, optimizers
from optimlab.optim.base import RuleOptimizer
from optimlab.optim.engine.sparse import apply_sparse_entries

#: rule-based optimizers by lower-case name (every class declared in optimizers.py and modern/)
OPTIMIZERS: dict[str, type[RuleOptimizer]] = {
    name.lower(): getattr(module, name) for module in (optimizers, modern) for name in module.__all__
}


def optimizer_class(name: str | type[RuleOptimizer]) -> type[RuleOptimizer]:
    """The optimizer class for ``name`` (``"adam"``, ``"AdamW"``, …) or the class itself."""
    if isinstance(name, type) and issubclass(name, RuleOptimizer):
        return name
    cls = OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return cls


@lru_cache(maxsize=128)
def _declaration(cls: type[RuleOptimizer], frozen: tuple[tuple[str, Any], ...]) -> RuleOptimizer:
    return cls([torch.empty(0)], engine="eager", **dict(frozen))


def declared(name: str | type[RuleOptimizer], **hyperparameters: Any) -> tuple[RuleOptimizer, dict[str, Any]]:
    """A validated (optimizer, param group) pair holding ``hyperparameters`` over the defaults."""
    cls = optimizer_class(name)
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in hyperparameters.items()))
    has_tensor = any(
        isinstance(v, Tensor) or (isinstance(v, tuple) and any(isinstance(x, Tensor) for x in v))
        for _, v in frozen
    )
    try:
        if has_tensor:  # tensors hash by identity: caching them would only grow the cache
            raise TypeError
        optimizer = _declaration(cls, frozen)
    except TypeError:  # unhashable or tensor values: validate without caching
        optimizer = cls([torch.empty(0)], engine="eager", **hyperparameters)
    return optimizer, optimizer.param_groups[0]


def _apply(
    optimizer: RuleOptimizer, param: Tensor, grad: Tensor, state: dict[str, Tensor], hyper: dict[str, Any]
) -> tuple[Tensor, dict[str, Tensor]]:
    """The rule on one tensor; complex tensors go through their real views, as in the engines. A sparse
    gradient is densified, or, for a ``sparse_entries`` rule (SparseAdam), applied to the entries it
    touches as the engines apply it."""
    if grad.is_sparse and optimizer.sparse_entries:
        return apply_sparse_entries(optimizer, param, grad, state, hyper)
    if grad.is_sparse:
        grad = grad.to_dense()
    if not param.is_complex():
        return optimizer.rule(param, grad, state, **hyper)
    real_state = {k: torch.view_as_real(v) if v.is_complex() else v for k, v in state.items()}
    real = torch.view_as_real(param)
    new_param, changed = optimizer.rule(real, torch.view_as_real(grad), real_state, **hyper)
    changed = {k: torch.view_as_complex(v) if v.shape == real.shape else v for k, v in changed.items()}
    return torch.view_as_complex(new_param), changed


def init(name: str | type[RuleOptimizer], param: Tensor, **hyperparameters: Any) -> dict[str, Tensor]:
    """The initial state of ``param`` for optimizer ``name`` (torch.optim's state keys)."""
    optimizer, group = declared(name, **hyperparameters)
    return optimizer.init_state(param, group)


def update(
    name: str | type[RuleOptimizer],
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor],
    states: Mapping[str, Mapping[str, Tensor]] | None = None,
    **hyperparameters: Any,
) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """One step of optimizer ``name`` on named tensors; returns ``(new_params, new_states)``.

    ``states`` is what the previous call returned (``None`` on the first step). Parameters
    without a gradient (missing from ``grads`` or ``None``) are returned unchanged.
    """
    optimizer, group = declared(name, **hyperparameters)
    hyper = optimizer.hyperparameters(group)
    new_params: dict[str, Tensor] = {}
    new_states: dict[str, dict[str, Tensor]] = {}
    for key, param in params.items():
        state = (
            dict(states[key]) if states is not None and key in states else optimizer.init_state(param, group)
        )
        grad = grads.get(key)
        if grad is None:
            new_params[key], new_states[key] = param, state
            continue
        new_param, changed = _apply(optimizer, param.detach(), grad, state, hyper)
        new_params[key], new_states[key] = new_param, {**state, **changed}
    return new_params, new_states


__all__ = ["OPTIMIZERS", "declared", "init", "optimizer_class", "update"]
