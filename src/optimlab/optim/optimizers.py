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

__all__ = [
    "ASGD",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SparseAdam",
]


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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )
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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

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


class Adafactor(RuleOptimizer):
    """Adafactor — see :func:`rules.adafactor`.

    Not elementwise (row and column statistics, norms) but :attr:`tensorwise`: the fused engine
    compiles the whole rule, reductions included, one kernel per number of dimensions, and steps
    each parameter whole with it; DTensors (FSDP2: DTensor ops reduce over the shards), size-1
    dimensions and every step autograd records go to the eager engine. As torch.optim.Adafactor:
    complex parameters and sparse gradients are refused at the step, and ``eps=(None, ...)`` takes
    the machine epsilon of the dtype of the group's first parameter with a gradient, for the whole
    group."""

    rule = staticmethod(rules.adafactor)
    host_step = True
    tensorwise = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        if not lr >= 0.0:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not beta2_decay <= 0.0:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not eps[0] >= 0.0:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not eps[1] >= 0.0:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not d >= 1.0:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
        }
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

    def params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        for param in group["params"]:  # torch.optim's checks, in its order
            if param.grad is None:
                continue
            if torch.is_complex(param):
                raise RuntimeError("Adafactor does not support complex parameters")
            if param.grad.is_sparse:
                raise RuntimeError("Adafactor does not support sparse gradients")
        return super().params_with_grad(group)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = {"step": torch.tensor(0.0, dtype=_scalar_dtype())}
        if param.dim() > 1:  # factored over the last two dims
            state["row_var"] = param.new_zeros((*param.shape[:-1], 1))
            state["col_var"] = param.new_zeros((*param.shape[:-2], 1, param.shape[-1]))
        else:
            state["variance"] = _zeros(param)
        return state

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        eps1, eps2 = group["eps"]
        if eps1 is None:  # torch.optim sets it from the first parameter it steps, for the whole group
            first = next((p for p in group["params"] if p.grad is not None), None)
            eps1 = torch.finfo(first.dtype).eps if first is not None and first.is_floating_point() else None
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            "beta2_decay": group["beta2_decay"],
            "eps1": eps1,
            "eps2": eps2,
            "d": group["d"],
            "weight_decay": optional_term(group["weight_decay"]),
            "maximize": group["maximize"],
        }


class SparseAdam(RuleOptimizer):
    """SparseAdam: Adam on the entries a sparse gradient touches — see :func:`rules.sparse_adam`.

    Takes sparse gradients only (``nn.Embedding(sparse=True)``) and dense, real parameters, with
    torch.optim's errors otherwise. The rule is elementwise Adam; the eager engine applies it to the
    touched entries of the parameter and its moments only (:attr:`sparse_entries`), counting ``step``
    (a Python int, as in torch.optim) once per parameter and step."""

    rule = staticmethod(rules.sparse_adam)
    host_step = True
    sparse_entries = True
    sparse_gradient_error = None
    # Not declared elementwise although its rule is: every gradient it takes is sparse, which the
    # fused engine hands to the eager engine anyway, and its int ``step`` is no kernel operand.

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        if not lr > 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps > 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        check_beta(betas, 0)
        check_beta(betas, 1)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize}
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )
        sparse_params, complex_params = [], []
        for index, group in enumerate(self.param_groups):
            for d_index, param in enumerate(group["params"]):
                if param.is_sparse:
                    sparse_params.append([index, d_index])
                if param.is_complex():
                    complex_params.append([index, d_index])
        if sparse_params:
            raise ValueError(
                f"Sparse params at indices {sparse_params}: SparseAdam requires dense parameter tensors"
            )
        if complex_params:
            raise ValueError(
                f"Complex params at indices {complex_params}: SparseAdam does not support complex parameters"
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # torch.optim.SparseAdam keeps ``step`` as a Python int: keep a checkpoint's counters as they
        # are (the base class would make Python numbers 0-d tensors, as the other optimizers need).
        steps = {id(s): s["step"] for s in state.get("state", {}).values() if "step" in s}
        super().__setstate__(state)
        for param_state in self.state.values():
            if id(param_state) in steps:
                param_state["step"] = steps[id(param_state)]

    def params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        params, grads = super().params_with_grad(group)
        if not all(grad.is_sparse for grad in grads):
            raise RuntimeError("SparseAdam does not support dense gradients, please consider Adam instead")
        return params, grads

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"step": 0, "exp_avg": _zeros(param), "exp_avg_sq": _zeros(param)}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            **_betas(group),
            "eps": group["eps"],
            "maximize": group["maximize"],
        }


class Rprop(RuleOptimizer):
    """Resilient backpropagation — see :func:`rules.rprop`.

    ``lr`` is the initial per-coordinate step size (``state["step_size"]`` starts at it, as in
    torch.optim, so a scheduler's later ``lr`` changes nothing); ``l1`` thresholds by the current
    step size."""

    rule = staticmethod(rules.rprop)
    host_step = True
    elementwise = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        check_nonnegative(lr, "Invalid learning rate")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        lr = scalar_hyperparameter(group["lr"])
        # A complex parameter is two real ones: its imaginary part gets the same step size.
        fill = complex(lr, lr) if param.is_complex() else lr
        return {
            "step": _step(group, param),
            "prev": _zeros(param),
            "step_size": torch.full_like(param, fill, memory_format=torch.preserve_format),
        }

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        return {
            "l1": optional_term(group["l1"]),
            "etaminus": scalar_hyperparameter(etaminus),
            "etaplus": scalar_hyperparameter(etaplus),
            "step_size_min": scalar_hyperparameter(step_size_min),
            "step_size_max": scalar_hyperparameter(step_size_max),
            "maximize": group["maximize"],
        }


class ASGD(RuleOptimizer):
    """Averaged SGD — see :func:`rules.asgd`.

    As in torch.optim, ``eta`` starts at ``lr`` and then follows γ/(1 + ζγt)^α with the group's
    current ``lr``; the average ``ax`` is kept in the state (swap it in for evaluation yourself).
    With ``differentiable=True`` a tensor ``lr`` that requires grad gets gradients through η (torch
    reads η as a Python float, which gives none)."""

    parameter_state = ("ax",)  # the average of the iterates (see RuleOptimizer.parameter_state)

    rule = staticmethod(rules.asgd)
    host_step = True
    elementwise = True  # every element on its own: the fused engine may take it (and DTensor shards)
    # Its kernel updates the three scalar states (step, eta, mu) after the loop over ax: torch 2.13's
    # inductor, compiling while the process used one thread, left that update outside `omp single`
    # and every thread ran it (step advanced twice in some runs: 1e-5 off). Kernels now compile for
    # several threads and code like that is refused (engine/kernels.py, `_unsynchronized_stores`).

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        check_nonnegative(lr, "Invalid learning rate")
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # Checkpoints from before eta and mu became tensors, loaded as torch.optim.ASGD loads them.
        for param, param_state in self.state.items():
            for key in ("eta", "mu"):
                value = param_state.get(key)
                if value is not None and not torch.is_tensor(value):
                    param_state[key] = torch.tensor(value, dtype=_scalar_dtype(), device=param.device)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        # torch.optim keeps ASGD's scalar state on the parameter's device, whatever `capturable` says.
        dtype, device = _scalar_dtype(group), param.device
        lr = scalar_hyperparameter(group["lr"])
        return {
            "step": torch.zeros((), dtype=dtype, device=device),
            "eta": torch.as_tensor(lr, dtype=dtype, device=device).clone().detach(),
            "mu": torch.ones((), dtype=dtype, device=device),
            "ax": _zeros(param),
        }

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        lr = scalar_hyperparameter(group["lr"])
        default = torch.get_default_dtype()
        return {
            "l1": optional_term(group["l1"]),
            "lr": lr,
            "lambd": group["lambd"],
            "alpha": group["alpha"],
            "t0": group["t0"],
            "weight_decay": optional_term(group["weight_decay"]),
            "maximize": group["maximize"],
            # torch rounds the new η and μ through torch.as_tensor: a tensor lr's dtype, else the default
            "eta_dtype": lr.dtype if isinstance(lr, Tensor) else default,
            "mu_dtype": default,
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

    Both are param-group settings (a group may set its own). Under FSDP2 (``fully_shard``) each
    sharded matrix is orthogonalized whole by one rank, its owner, and the matrices are spread over
    the ranks, balanced by the work of their products: the owner gathers the matrix's shards of
    parameter, gradient and momentum buffer, steps it exactly as one process would (stacked by shape
    with ``batch_matrices``) and scatters the new shards back, so the numbers are one process's bit
    for bit and the momentum buffer stays sharded like the parameter (distributed checkpoints work
    as usual). See :mod:`optimlab.optim.engine.spread`. Like torch.optim.Muon it supports
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
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
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
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )
        for group in self.param_groups:
            if not group.get("use_muon", True):  # MuonWithAdamW's AdamW groups
                continue
            for p in group["params"]:
                # (an empty placeholder is not checked: functional.update declares with torch.empty(0))
                if (p.ndim < 2 or not group["flatten"]) and p.ndim != 2 and p.numel() > 0:
                    raise ValueError(
                        f"Muon only supports 2D parameters whereas we found a parameter with size: {p.size()}"
                    )

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
