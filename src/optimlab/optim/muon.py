"""A whole model under one optimizer: Muon for the hidden matrices, AdamW for everything else.

Muon is meant for the ≥ 2-D weights of hidden layers; embeddings, the output head, biases and
norms train with AdamW. :class:`MuonWithAdamW` holds both kinds of param group (``use_muon``) and
steps each with its own rule — :func:`optimlab.optim.rules.muon` or
:func:`optimlab.optim.rules.adam` (decoupled weight decay: AdamW), the one written copy of each —
and :func:`muon_param_groups` splits a model's parameters that way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from optimlab.optim import rules
from optimlab.optim.base import NonFinitePolicy, optional_term, scalar_hyperparameter
from optimlab.optim.optimizers import AdamW, Muon, _betas

__all__ = ["MuonWithAdamW", "muon_param_groups"]


def muon_param_groups(
    model: nn.Module, *, exclude: tuple[type[nn.Module], ...] = (nn.Embedding,), head: str | None = None
) -> list[dict[str, Any]]:
    """``model``'s trainable parameters as two param groups for :class:`MuonWithAdamW`:
    ``{"params": [...], "use_muon": True}`` with the ≥ 2-D weights of hidden layers, and
    ``{"params": [...], "use_muon": False}`` with the rest — parameters of fewer than 2 dims
    (biases, norms), those of ``exclude`` modules (embeddings) and those of the submodule named
    ``head`` (the output layer, e.g. ``"lm_head"``). A group with no parameter is left out."""
    head_params = {id(p) for p in model.get_submodule(head).parameters()} if head else set()
    excluded = {id(p) for m in model.modules() if isinstance(m, exclude) for p in m.parameters()}
    muon, other = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        hidden = p.ndim >= 2 and id(p) not in excluded and id(p) not in head_params
        (muon if hidden else other).append(p)
    groups = [{"params": muon, "use_muon": True}, {"params": other, "use_muon": False}]
    return [g for g in groups if g["params"]]


class MuonWithAdamW(Muon):
    """Muon on the param groups with ``use_muon=True``, AdamW on those with ``use_muon=False``, in one
    optimizer (one ``step``, one ``state_dict``, one scheduler).

    A Muon group takes :class:`~optimlab.optim.Muon`'s settings (the constructor's, or its own: ``lr``,
    ``weight_decay``, ``momentum``, ``nesterov``, ``ns_coefficients``, ``eps``, ``ns_steps``,
    ``adjust_lr_fn``, ``flatten``, ``batch_matrices``); ``flatten`` is on by default here, so that
    convolutions are Muon's too. An AdamW group takes torch.optim.AdamW's (``lr``, ``betas``, ``eps``,
    ``weight_decay``, ``amsgrad``, ``maximize``), defaulting to the ``adamw_*`` arguments. Each kind
    of group gives exactly the numbers of its torch.optim namesake, state included (``momentum_buffer``;
    ``step``, ``exp_avg``, ``exp_avg_sq``). Under FSDP2 the Muon groups' matrices are spread over the
    ranks as :class:`~optimlab.optim.Muon`'s are (each orthogonalized whole by one rank); the AdamW
    groups are stepped on every rank's shards.

    Example::

        >>> import torch, optimlab.optim as optim
        >>> model = torch.nn.Sequential(torch.nn.Embedding(100, 16), torch.nn.Linear(16, 16),
        ...                             torch.nn.ReLU(), torch.nn.Linear(16, 100))
        >>> groups = optim.muon_param_groups(model, head="3")   # Linear 1 → Muon; the rest → AdamW
        >>> opt = optim.MuonWithAdamW(groups, lr=0.02, adamw_lr=3e-4)
        >>> [g["use_muon"] for g in opt.param_groups]
        [True, False]
    """

    rule = staticmethod(
        lambda param, grad, state, *, use_muon, **hyper: _muon_or_adamw(param, grad, state, use_muon, hyper)
    )
    host_step = True  # the AdamW groups' step counter (the Muon groups have none)

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
        adamw_lr: float | Tensor = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.999),
        adamw_eps: float = 1e-8,
        adamw_weight_decay: float = 1e-2,
        flatten: bool = True,
        batch_matrices: bool = False,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        # the AdamW settings are validated by torch.optim.AdamW's own checks
        AdamW(
            [torch.zeros(1)], lr=adamw_lr, betas=adamw_betas, eps=adamw_eps, weight_decay=adamw_weight_decay
        )
        self._adamw_defaults = {
            "lr": adamw_lr,
            "betas": adamw_betas,
            "eps": adamw_eps,
            "weight_decay": adamw_weight_decay,
            "amsgrad": False,
            "maximize": False,
        }
        super().__init__(
            params,
            lr,
            weight_decay,
            momentum,
            nesterov,
            ns_coefficients,
            eps,
            ns_steps,
            adjust_lr_fn,
            flatten=flatten,
            batch_matrices=batch_matrices,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """A group without ``use_muon`` is a Muon group when all its parameters are ≥ 2-D; an AdamW
        group gets the ``adamw_*`` defaults for the settings it does not give."""
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        use_muon = param_group.get("use_muon", all(p.ndim >= 2 for p in params))
        param_group = {**param_group, "use_muon": use_muon}
        if not use_muon:
            param_group = {**self._adamw_defaults, **param_group}
        super().add_param_group(param_group)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        if group["use_muon"]:
            return super().init_state(param, group)
        return AdamW.init_state(self, param, group)  # type: ignore[arg-type]

    def params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        if group["use_muon"]:
            return super().params_with_grad(group)
        return AdamW.params_with_grad(self, group)  # type: ignore[arg-type]

    def steps_matrices(self, group: dict[str, Any]) -> bool:
        return bool(group["use_muon"])

    def batches_matrices(self, group: dict[str, Any]) -> bool:
        return bool(group["use_muon"]) and super().batches_matrices(group)

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        if group["use_muon"]:
            return {"use_muon": True, **super().rule_hyperparameters(group)}
        return {
            "use_muon": False,
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            **_betas(group),
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "amsgrad": group["amsgrad"],
            "maximize": group["maximize"],
            "decoupled_weight_decay": True,
        }


def _muon_or_adamw(param: Tensor, grad: Tensor, state: Any, use_muon: bool, hyper: dict[str, Any]) -> Any:
    """The group's rule: :func:`rules.muon` or :func:`rules.adam` (AdamW through its hyperparameters)."""
    return (rules.muon if use_muon else rules.adam)(param, grad, state, **hyper)
