"""L-BFGS: torch.optim's implementation, guarded against non-finite losses and gradients."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import LBFGS as TorchLBFGS


class _NonFiniteEvaluation(Exception):
    """Raised inside the closure to end torch's iteration at a non-finite evaluation."""


class LBFGS(TorchLBFGS):
    """Limited-memory BFGS with optional strong-Wolfe line search.

    Same arguments, defaults, state and numbers as ``torch.optim.LBFGS`` (lr = 1, max_iter = 20,
    max_eval = max_iter·5/4, tolerance_grad = 1e-7, tolerance_change = 1e-9, history_size = 100,
    line_search_fn = None or ``"strong_wolfe"``); ``step`` requires a closure.

    Difference: an evaluation whose loss or gradient is NaN or ±Inf ends the iteration. The
    parameters are restored to the finite point with the lowest loss seen during the step, the
    curvature history (which the bad evaluation would poison) is cleared, and
    ``state["nonfinite_stops"]`` counts such events. torch.optim's L-BFGS instead writes the NaNs
    into the parameters.

    References: Nocedal, "Updating quasi-Newton matrices with limited storage", Math. Comp. 1980;
    Nocedal & Wright, "Numerical Optimization", 2006, Alg. 7.4 and 3.5–3.6 (strong Wolfe).
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        if closure is None:
            raise ValueError("LBFGS.step requires a closure that re-evaluates the model and returns the loss")
        params: list[Tensor] = self._params
        best: dict[str, Any] = {"loss": math.inf, "params": None, "first": None}
        # only these two counters survive a non-finite stop; copying the whole state (the
        # curvature history) every step would cost more than the step itself
        current = self.state[params[0]]
        saved_state = {key: current[key] for key in ("func_evals", "nonfinite_stops") if key in current}

        def guarded() -> Any:
            with torch.enable_grad():
                loss = closure()
            value = float(loss)
            finite = math.isfinite(value) and all(
                p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params
            )
            if best["first"] is None:
                best["first"] = loss
            if not finite:
                raise _NonFiniteEvaluation
            if value < best["loss"]:
                best["loss"] = value
                best["params"] = [p.detach().clone() for p in params]
            return loss

        try:
            return super().step(guarded)
        except _NonFiniteEvaluation:
            if best["params"] is not None:
                for p, kept in zip(params, best["params"], strict=True):
                    p.copy_(kept)
            stops = int(saved_state.get("nonfinite_stops", 0)) + 1
            state = self.state[params[0]]
            state.clear()
            state.update(
                {
                    "func_evals": saved_state.get("func_evals", 0),
                    "n_iter": 0,  # the next step starts afresh, as torch's first step does
                    "nonfinite_stops": stops,
                }
            )
            return best["first"]
