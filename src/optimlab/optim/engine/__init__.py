"""Execution engines: how a rule from :mod:`optimlab.optim.rules` is applied to a param group.

An engine never contains math. It reads each parameter's gradient and state, calls the optimizer's
``rule`` (which includes the L1 proximal step), and writes the parameter and the state back in
place. No engine takes storage it does not own: parameters stay in their own storage, gradients
are only read, and ``optimizer.state`` holds torch.optim's per-parameter tensors.

* :class:`EagerEngine` — ``"eager"``: parameter by parameter with ordinary torch ops; always
  available, exact to torch.optim's for-loop, and the only engine autograd can record
  (``differentiable=True``).
* :class:`FusedEngine` — ``"fused"``: each parameter in one compiled in-place pass
  (:mod:`~optimlab.optim.engine.kernels`); ``"auto"`` (the default): fused for models of at least
  :data:`~optimlab.optim.engine.fused.AUTO_MIN_NUMEL` elements, and for smaller ones once their
  eager steps have taken :data:`~optimlab.optim.engine.fused.AUTO_EAGER_SECONDS`, when a
  compiler is available; eager otherwise. See :mod:`optimlab.optim.engine.fused`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from optimlab.optim.engine.eager import EagerEngine
from optimlab.optim.engine.fused import AUTO_EAGER_SECONDS, AUTO_MIN_NUMEL, FusedEngine

if TYPE_CHECKING:
    from torch import Tensor

    from optimlab.optim.base import RuleOptimizer

ENGINE_CHOICES: tuple[str, ...] = ("auto", "fused", "eager")


class Engine(Protocol):
    name: str

    def step_group(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        extras: list[dict[str, Any]] | None = None,
    ) -> None:
        """Apply ``optimizer.rule`` to every parameter of ``params``, whose gradients are ``grads``
        (``extras``: the rule's statistics per parameter, when the caller has evaluated them)."""
        ...


def resolve_engine(choice: str) -> Engine:
    """The engine named ``choice`` (``"auto"``, ``"fused"`` or ``"eager"``)."""
    if choice not in ENGINE_CHOICES:
        raise ValueError(f"Invalid engine: {choice!r} (expected one of {ENGINE_CHOICES})")
    if choice == "eager":
        return EagerEngine()
    return FusedEngine(choice)


__all__ = [
    "AUTO_EAGER_SECONDS",
    "AUTO_MIN_NUMEL",
    "ENGINE_CHOICES",
    "EagerEngine",
    "Engine",
    "FusedEngine",
    "resolve_engine",
]
