"""The optimizer declarations: torch.optim's arguments, defaults, validation and state.

Each class is a drop-in replacement for its ``torch.optim`` namesake; its math is the rule of the
same name in :mod:`optimlab.optim.rules`. Besides torch's arguments every class accepts ``l1``,
``nonfinite`` and ``engine`` (see :class:`optimlab.optim.base.RuleOptimizer`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.optim import rules
from optimlab.optim.base import (
    NonFinitePolicy,
    RuleOptimizer,
    check_beta,
    check_nonnegative,
    check_tensor_lr,
    optional_term,
    scalar_hyperparameter,
)

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop"]
__all__ += ["Muon"]


def _scalar_dtype(group: dict[str, Any] | None = None) -> torch.dtype:
    """torch.optim's dtype for ``step`` and other scalar state (float32 with ``fused=True``)."""
    if group is not None and group.get("fused"):
        return torch.float32
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _step(group: dict[str, Any], param: Tensor) -> Tensor:
    """A new step counter: on the host, or with ``fused=True`` on the parameter's device (torch.optim's
    places for it)."""
    if group.get("fused"):
        return torch.zeros((), dtype=_scalar_dtype(group), device=param.device)
    return torch.tensor(0.0, dtype=_scalar_dtype(group))


def _zeros(param: Tensor) -> Tensor:
    return torch.zeros_like(param, memory_format=torch.preserve_format)


def _check_lr_eps(lr: Any, eps: float) -> None:
    check_tensor_lr(lr)
    check_nonnegative(lr, "Invalid learning rate")
    check_nonnegative(eps, "Invalid epsilon value")


def _betas(group: dict[str, Any]) -> dict[str, Any]:
    beta1, beta2 = group["betas"]
    return {"beta1": scalar_hyperparameter(beta1), "beta2": scalar_hyperparameter(beta2)}


class SGD(RuleOptimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum — see :func:`rules.sgd`.

    Accepts sparse gradients like torch.optim.SGD (applied densely: the momentum buffer is dense)."""

    rule = staticmethod(rules.sgd)
    host_step = True
    elementwise = True
    sparse_gradient_error = None

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        check_tensor_lr(lr)
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {}  # the momentum buffer is the first step's gradient, created by the rule

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            "momentum": optional_term(group["momentum"]),
            "dampening": group["dampening"],
            "weight_decay": optional_term(group["weight_decay"]),
            "nesterov": group["nesterov"],
            "maximize": group["maximize"],
        }


class Adagrad(RuleOptimizer):
    """Adagrad — see :func:`rules.adagrad`.

    As in torch.optim, the state is created at construction, and ``sum`` starts at the
    constructor's ``initial_accumulator_value`` for every param group, even one that sets its own.
    Accepts sparse gradients (applied densely; ``weight_decay`` must then be 0, as in torch)."""

    rule = staticmethod(rules.adagrad)
    host_step = True
    elementwise = True
    sparse_gradient_error = None

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        check_tensor_lr(lr)
        check_nonnegative(lr, "Invalid learning rate")
        check_nonnegative(lr_decay, "Invalid lr_decay value")
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        check_nonnegative(initial_accumulator_value, "Invalid initial_accumulator_value value")
        check_nonnegative(eps, "Invalid epsilon value")
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)
        # torch.optim.Adagrad creates its state at construction, not at the first step.
        for group in self.param_groups:
            for p in group["params"]:
                self.ensure_state(p, group)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        # torch.optim.Adagrad fills ``sum`` with the constructor's value, ignoring a param group's
        # own ``initial_accumulator_value``; so do we, to stay number for number the same.
        value = self.defaults["initial_accumulator_value"]
        fill = complex(value, value) if param.is_complex() else value
        return {
            "step": _step(group, param),
            "sum": torch.full_like(param, fill, memory_format=torch.preserve_format),
        }

    def params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        params, grads = super().params_with_grad(group)
        if group["weight_decay"] != 0 and any(g.is_sparse for g in grads):
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")
        return params, grads

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            "lr_decay": group["lr_decay"],
            "weight_decay": optional_term(group["weight_decay"]),
            "eps": group["eps"],
            "maximize": group["maximize"],
        }


class RMSprop(RuleOptimizer):
    """RMSprop, optionally centered and with momentum — see :func:`rules.rmsprop`."""

    rule = staticmethod(rules.rmsprop)
    host_step = True
    elementwise = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        _check_lr_eps(lr, eps)
        check_nonnegative(momentum, "Invalid momentum value")
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        check_nonnegative(alpha, "Invalid alpha value")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = {"step": _step(group, param), "square_avg": _zeros(param)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = _zeros(param)
        if group["centered"]:
            state["grad_avg"] = _zeros(param)
        return state

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            "alpha": group["alpha"],
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "momentum": group["momentum"] if group["momentum"] > 0 else None,
            "centered": group["centered"],
            "maximize": group["maximize"],
        }


class Adadelta(RuleOptimizer):
    """Adadelta — see :func:`rules.adadelta`."""

    rule = staticmethod(rules.adadelta)
    host_step = True
    elementwise = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        check_tensor_lr(lr)
        check_nonnegative(lr, "Invalid learning rate")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_nonnegative(eps, "Invalid epsilon value")
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"step": _step(group, param), "square_avg": _zeros(param), "acc_delta": _zeros(param)}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            "rho": group["rho"],
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "maximize": group["maximize"],
        }


class Adam(RuleOptimizer):
    """Adam, with AMSGrad and decoupled weight decay as options — see :func:`rules.adam`."""

    rule = staticmethod(rules.adam)
    host_step = True
    elementwise = True
    sparse_gradient_error = "Adam does not support sparse gradients, please consider SparseAdam instead"

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        if isinstance(lr, Tensor):
            if foreach and not capturable:
                raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
            if lr.numel() != 1:
                raise ValueError("Tensor lr must be 1-element")
        check_nonnegative(lr, "Invalid learning rate")
        check_nonnegative(eps, "Invalid epsilon value")
        check_beta(betas, 0)
        check_beta(betas, 1)
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        if not (
            (isinstance(betas[0], float) and isinstance(betas[1], float))
            or (isinstance(betas[0], Tensor) and isinstance(betas[1], Tensor))
        ):
            raise ValueError("betas must be either both floats or both Tensors")
        for index in (0, 1):
            if isinstance(betas[index], Tensor):
                if not capturable and foreach:
                    raise ValueError(
                        f"betas[{index}] as a Tensor is not supported for capturable=False and foreach=True"
                    )
                if betas[index].numel() != 1:
                    raise ValueError(f"Tensor betas[{index}] must be 1-element")
        betas = tuple(scalar_hyperparameter(b) for b in betas)  # type: ignore[assignment]
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = {"step": _step(group, param), "exp_avg": _zeros(param), "exp_avg_sq": _zeros(param)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = _zeros(param)
        return state

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            **_betas(group),
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "amsgrad": group["amsgrad"],
            "maximize": group["maximize"],
            "decoupled_weight_decay": group["decoupled_weight_decay"],
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (default λ = 1e-2) — see :func:`rules.adam`."""

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


class Adamax(RuleOptimizer):
    """Adamax — see :func:`rules.adamax`."""

    rule = staticmethod(rules.adamax)
    host_step = True
    elementwise = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        _check_lr_eps(lr, eps)
        check_beta(betas, 0)
        check_beta(betas, 1)
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"step": _step(group, param), "exp_avg": _zeros(param), "exp_inf": _zeros(param)}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            **_betas(group),
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "maximize": group["maximize"],
        }


class NAdam(RuleOptimizer):
    """NAdam — see :func:`rules.nadam`."""

    rule = staticmethod(rules.nadam)
    host_step = True
    elementwise = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        _check_lr_eps(lr, eps)
        check_beta(betas, 0)
        check_beta(betas, 1)
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        check_nonnegative(momentum_decay, "Invalid momentum_decay value")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {
            "step": _step(group, param),
            "mu_product": torch.tensor(1.0, dtype=_scalar_dtype(group)),
            "exp_avg": _zeros(param),
            "exp_avg_sq": _zeros(param),
        }

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            **_betas(group),
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "momentum_decay": group["momentum_decay"],
            "decoupled_weight_decay": group["decoupled_weight_decay"],
            "maximize": group["maximize"],
        }


class RAdam(RuleOptimizer):
    """RAdam — see :func:`rules.radam`."""

    rule = staticmethod(rules.radam)
    host_step = True
    elementwise = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        _check_lr_eps(lr, eps)
        check_beta(betas, 0)
        check_beta(betas, 1)
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"step": _step(group, param), "exp_avg": _zeros(param), "exp_avg_sq": _zeros(param)}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            **_betas(group),
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "decoupled_weight_decay": group["decoupled_weight_decay"],
            "maximize": group["maximize"],
        }


class Muon(RuleOptimizer):
    """Muon (momentum orthogonalized by Newton–Schulz) for 2-D hidden-layer weights — see
    :func:`rules.muon`. torch.optim.Muon's arguments, defaults, checks, state and numbers; beyond
    torch, two keyword-only options (both off by default, so that the default is torch's numbers):

    * ``flatten=False``: with ``True``, parameters of ndim ≥ 2 are accepted — a convolution's weight
      (out, in, kh, kw) is orthogonalized as the (out, in·kh·kw) matrix, with the learning-rate
      adjustment of that flattened shape (torch.optim.Muon rejects them: ``False`` keeps its error).
      Equal to torch.optim.Muon on the weight reshaped to 2-D.
    * ``batch_matrices=False``: with ``True``, same-shape matrices of a param group go through
      Newton–Schulz together, as one stack (batched matmuls: fewer, larger calls). On CPU, torch's
      batched bfloat16 matmul (``baddbmm``) does not always round as its one-matrix ``addmm`` does:
      an element of the update may differ by one bfloat16 ulp (2⁻⁸ relative) from torch.optim.Muon's,
      hence off by default. A group that has ``flatten`` work to do (a parameter of ndim > 2) is
      stepped one matrix at a time.

    Both are param-group settings (a group may set its own). Like torch.optim.Muon it supports
    neither complex parameters nor sparse gradients, and has no ``foreach``, ``fused`` or
    ``differentiable`` flag. For a whole model (Muon for the hidden matrices, AdamW for embeddings,
    heads, biases and norms) see :class:`optimlab.optim.MuonWithAdamW`.

    Example::

        >>> import torch, optimlab.optim as optim
        >>> conv = torch.nn.Conv2d(3, 8, 3)
        >>> opt = optim.Muon([conv.weight], lr=0.02, flatten=True)
    """

    rule = staticmethod(rules.muon)
    matrix = True  # the rule takes stacks of same-shape matrices (batch_matrices=True)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = rules.MUON_NS_COEFFICIENTS,
        eps: float = rules.MUON_EPS,
        ns_steps: int = rules.MUON_NS_STEPS,
        adjust_lr_fn: str | None = None,
        *,
        flatten: bool = False,
        batch_matrices: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
    ) -> None:
        check_tensor_lr(lr)
        if not lr >= 0.0:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not momentum >= 0.0:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ["original", "match_rms_adamw"]:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
            "flatten": flatten,
            "batch_matrices": batch_matrices,
        }
        super().__init__(params, defaults, l1=l1, nonfinite=nonfinite, engine=engine)
        for group in self.param_groups:
            if not group.get("use_muon", True):  # MuonWithAdamW's AdamW groups
                continue
            for p in group["params"]:
                # (an empty placeholder is not checked: functional.update declares with torch.empty(0))
                if (p.ndim < 2 or not group["flatten"]) and p.ndim != 2 and p.numel() > 0:
                    raise ValueError(
                        f"Muon only supports 2D parameters whereas we found a parameter with size: {p.size()}"
                    )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # torch.optim's __setstate__ adds differentiable=False to the defaults, which the base class
        # then copies into every group; torch.optim.Muon's groups have no such key
        for group in self.param_groups:
            group.pop("differentiable", None)

    def params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        """torch.optim.Muon's checks at the step, in its order: complex parameters, sparse gradients
        (every parameter), then a gradient that is not a matrix."""
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if torch.is_complex(p):
                raise RuntimeError("Muon does not support complex parameters")
            if p.grad.is_sparse:
                raise RuntimeError("Muon does not support sparse gradients")
        for p in params:
            if p.grad.ndim != 2 and not (group["flatten"] and p.grad.ndim > 2):
                raise ValueError("Param gradient must be a 2D matrix")
        return params, [p.grad for p in params]

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"momentum_buffer": _zeros(param)}

    def _flattens(self, group: dict[str, Any]) -> bool:
        return bool(group["flatten"]) and any(p.dim() > 2 for p in group["params"])

    def batches_matrices(self, group: dict[str, Any]) -> bool:
        return bool(group["batch_matrices"]) and not self._flattens(group)

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            "weight_decay": optional_term(group["weight_decay"]),
            "momentum": group["momentum"],
            "nesterov": group["nesterov"],
            "ns_coefficients": tuple(group["ns_coefficients"]),
            "eps": group["eps"],
            "ns_steps": group["ns_steps"],
            "adjust_lr_fn": group["adjust_lr_fn"],
            "flatten": self._flattens(group),
        }
