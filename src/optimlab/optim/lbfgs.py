"""L-BFGS: torch.optim's implementation, guarded against non-finite losses and gradients."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import LBFGS as TorchLBFGS

#: torch's per-step keys of the L-BFGS state (curvature history and line-search bookkeeping)
_ITERATION_KEYS = ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss", "al")


class _NonFiniteEvaluation(Exception):
    """Raised inside the closure to end torch's iteration at a non-finite evaluation."""


def _as_float(loss: Any) -> float:
    return float(loss.detach()) if isinstance(loss, Tensor) else float(loss)


class LBFGS(TorchLBFGS):
    """Limited-memory BFGS with optional strong-Wolfe line search.

    Same arguments, defaults, state, state_dict and numbers as ``torch.optim.LBFGS``: lr = 1,
    max_iter = 20, max_eval = max_iter·5//4, tolerance_grad = 1e-7, tolerance_change = 1e-9,
    history_size = 100, line_search_fn = None or ``"strong_wolfe"``; one param group; ``step``
    requires a closure that re-evaluates the model and returns the loss. State (kept on the first
    parameter): ``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``,
    ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``al``.

    Difference: an evaluation whose loss or gradient holds NaN or ±Inf ends the step. torch.optim
    would carry the NaNs into the direction, the history and the parameters; here the parameters
    go back to the finite point with the lowest loss evaluated during the step (or, when the
    step's first evaluation is already non-finite, during the last step that had one), the
    curvature history is dropped so that the next step starts afresh (``n_iter`` restarts at 0),
    ``func_evals`` still counts every evaluation and ``state["nonfinite_stops"]`` counts the
    events. ``step`` returns the step's first loss, as torch's does.

    References: Nocedal, "Updating quasi-Newton matrices with limited storage", Math. Comp. 35,
    1980; Liu & Nocedal, "On the limited memory BFGS method for large scale optimization", Math.
    Prog. 45, 1989; Nocedal & Wright, "Numerical Optimization", 2nd ed. 2006, Alg. 7.4 (two-loop
    recursion) and Alg. 3.5–3.6 (strong Wolfe line search).
    """

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._finite_point: list[Tensor] | None = None  # a loaded state starts without one

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Perform one L-BFGS step (up to ``max_iter`` iterations); returns the first loss."""
        if closure is None:
            raise ValueError("LBFGS.step requires a closure that re-evaluates the model and returns the loss")
        params: list[Tensor] = self._params
        state = self.state[params[0]]
        evals_before = state.get("func_evals", 0)
        # The best finite point, in buffers kept across steps (allocated on first use).
        point = getattr(self, "_finite_point", None)
        progress: dict[str, Any] = {"evals": 0, "first": None, "best": math.inf}

        def guarded() -> Any:
            nonlocal point
            loss = closure()
            progress["evals"] += 1
            if progress["first"] is None:
                progress["first"] = loss
            value = _as_float(loss)
            grads = [p.grad for p in params if p.grad is not None]
            finite = math.isfinite(value) and (
                not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
            )
            if not finite:
                raise _NonFiniteEvaluation
            if value < progress["best"]:
                progress["best"] = value
                if point is None:
                    point = [p.detach().clone() for p in params]
                    self._finite_point = point
                else:
                    for kept, p in zip(point, params, strict=True):
                        kept.copy_(p)
            return loss

        # torch's own step, without the hook wrapper torch.optim installs on LBFGS.step: the hooks
        # already ran around this method, and must run once per step.
        torch_step = inspect.unwrap(TorchLBFGS.step)
        try:
            return torch_step(self, guarded)
        except _NonFiniteEvaluation:
            if point is not None:
                for p, kept in zip(params, point, strict=True):
                    p.copy_(kept)
            for key in _ITERATION_KEYS:
                state.pop(key, None)
            state["n_iter"] = 0  # the next step starts afresh, as torch's first step does
            state["func_evals"] = evals_before + progress["evals"]
            state["nonfinite_stops"] = state.get("nonfinite_stops", 0) + 1
            return progress["first"]
