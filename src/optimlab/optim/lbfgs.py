"""L-BFGS: torch.optim.LBFGS's algorithm and state, fast, and guarded against non-finite evaluations."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import LBFGS as TorchLBFGS
from torch.optim.lbfgs import _strong_wolfe
from torch.optim.optimizer import ParamsT, _to_scalar

from optimlab.optim.lbfgs_compact import CompactHistory
from optimlab.optim.lbfgs_pairs import _HOST_ROUNDING, PairHistory

#: ``compact=True`` applies up to this many (real) parameter elements. Beyond, both forms are bound
#: by memory traffic, not by the per-pair Python work: torch's loop reads each stored vector twice per
#: iteration (its running vector stays in cache), which is what any form must read, and the compact
#: form's Gram updates read them once more (at 1M parameters it measured 0.8× torch's speed). There
#: the pair-by-pair recursion (torch's numbers, bit for bit) is used.
COMPACT_MAX_NUMEL = 1 << 16

#: torch's per-step keys of the L-BFGS state (curvature history and line-search bookkeeping)
_ITERATION_KEYS = ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss", "al")


class _NonFiniteEvaluation(Exception):
    """Raised by an evaluation whose loss or gradient is not finite: it ends the step."""


class _FlatParams:
    """The parameters as one flat real vector: gradients gathered, updates scattered (as torch's
    ``_gather_flat_grad`` / ``_add_grad``, complex parameters as their real views)."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        self.real = [torch.view_as_real(p) if p.is_complex() else p for p in params]
        self.numels = [r.numel() for r in self.real]
        self.n = sum(self.numels)
        self.plain = not any(p.is_complex() for p in params)
        self._views_of: Tensor | None = None
        self._views: list[Tensor] = []

    def gather_grad(self) -> Tensor:
        views = []
        for p in self.params:
            g = p.grad
            if g is None:
                view = p.new(p.numel()).zero_()
            elif g.is_sparse:
                view = g.to_dense().view(-1)
            else:
                view = g.view(-1)
            if view.is_complex():
                view = torch.view_as_real(view).view(-1)
            views.append(view)
        return torch.cat(views, 0)

    def views(self, flat: Tensor) -> list[Tensor]:
        """``flat`` cut into the parameters' (real) shapes; the last one asked for is cached."""
        if flat is not self._views_of:
            parts = torch.split(flat, self.numels)
            self._views = [v.view_as(r) for v, r in zip(parts, self.real, strict=True)]
            self._views_of = flat
        return self._views

    def add_(self, step_size: float | Tensor, update: Tensor) -> None:
        torch._foreach_add_(self.real, self.views(update), alpha=step_size)

    def clone(self) -> list[Tensor]:
        return [p.clone(memory_format=torch.contiguous_format) for p in self.params]

    def set_(self, values: list[Tensor]) -> None:
        torch._foreach_copy_(self.params, values)


class LBFGS(TorchLBFGS):
    """Limited-memory BFGS with optional strong-Wolfe line search.

    Same arguments, defaults, state keys, state_dict and iterates as ``torch.optim.LBFGS``:
    lr = 1, max_iter = 20, max_eval = max_iter·5//4, tolerance_grad = 1e-7, tolerance_change =
    1e-9, history_size = 100, line_search_fn = None or ``"strong_wolfe"`` (torch's own line
    search); one param group; ``step`` requires a closure that re-evaluates the model and returns
    the loss. State (kept on the first parameter): ``func_evals``, ``n_iter``, ``d``, ``t``,
    ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``al``;
    checkpoints load both ways with torch's.

    Faster, two ways. By default (``compact=False``) the iterates are torch's bit for bit: the
    two-loop recursion runs pair by pair on torch's lists with the same tensor operations, its
    per-pair scalars kept on the host and rounded as torch's 0-d tensors round
    (:mod:`optimlab.optim.lbfgs_pairs`), and the parameters are updated with one foreach call.
    ``compact=True`` (keyword-only) keeps the pairs in two ring buffers with their Gram matrix and
    solves the recursion as two small triangular systems between four matrix-vector products
    (:mod:`optimlab.optim.lbfgs_compact`; up to :data:`COMPACT_MAX_NUMEL` parameter elements, the
    pair-by-pair form beyond): a constant number of operations per iteration, the
    same arithmetic in another summation order. Its iterates agree with torch's to rounding where
    the problem is well conditioned (tests/test_optim_lbfgs.py bounds the cases it checks), but
    L-BFGS can amplify rounding a great deal: on a mini-batch ReLU network torch's own iterates
    move by 10 % after 20 steps when the start moves by 1e-15, and then so do these.

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

    _finite_point: list[Tensor] | None = None
    _flat: _FlatParams | None = None
    _history: CompactHistory | PairHistory | None = None
    _exported: list[Tensor] | None = None  # the old_dirs list this optimizer last wrote to its state
    _direction: Tensor | None = None
    compact: bool = False

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        compact: bool = False,
    ) -> None:
        if not isinstance(compact, bool):
            raise ValueError(f"compact must be True or False, got {compact!r}")
        super().__init__(
            params, lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search_fn
        )
        self.compact = compact

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._finite_point = None  # a loaded state starts without one
        self._flat = self._history = self._exported = self._direction = None

    def _flat_params(self) -> _FlatParams:
        if self._flat is None or self._flat.params is not self._params:
            self._flat = _FlatParams(self._params)
        return self._flat

    def _history_for(
        self, state: dict[str, Any], size: int, flat: _FlatParams, like: Tensor
    ) -> CompactHistory | PairHistory:
        """The history, in step with ``state`` (rebuilt from torch's lists when the state was
        loaded or written by anything but this optimizer's last step)."""
        history = self._history
        compact = self.compact and flat.n <= COMPACT_MAX_NUMEL
        kind = CompactHistory if compact else PairHistory
        if (
            not isinstance(history, kind)
            or history.size != size
            or history.dtype != like.dtype
            or history.device != like.device
        ):
            if compact:
                history = CompactHistory(size, flat.n, like.dtype, like.device)
            else:
                history = PairHistory(size, like.dtype, like.device)
            self._history = history
            self._exported = None
        dirs = state.get("old_dirs")
        if dirs is not self._exported:
            if dirs is None:
                history.reset()
            elif isinstance(history, PairHistory):
                history.adopt(dirs, state["old_stps"], state["ro"], state.get("al"))
            else:
                history.load(dirs, state["old_stps"], state["ro"])
        return history

    def _direction_buffer(self, like: Tensor) -> Tensor:
        """The tensor every direction is written into (its views into the parameters' shapes stay
        cached); a direction is only read before the next one is computed."""
        buffer = self._direction
        if (
            buffer is None
            or buffer.shape != like.shape
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = self._direction = torch.empty_like(like)
        return buffer

    def _export(self, state: dict[str, Any], history: CompactHistory | PairHistory) -> None:
        """Write the history into ``state`` as torch's lists."""
        if isinstance(history, PairHistory):
            state["old_dirs"], state["old_stps"], state["ro"] = history.dirs, history.steps, history.ro
            if history.ran:
                state["al"] = history.state_al()
        else:
            state["old_dirs"], state["old_stps"], state["ro"] = history.rows()
            al = history.state_al(state.get("al"))
            if al is not None:
                state["al"] = al
        self._exported = state["old_dirs"]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Perform one L-BFGS step (up to ``max_iter`` iterations); returns the first loss."""
        if closure is None:
            raise ValueError("LBFGS.step requires a closure that re-evaluates the model and returns the loss")
        if len(self.param_groups) != 1:
            raise AssertionError(f"Expected exactly one param_group, but got {len(self.param_groups)}")
        closure = torch.enable_grad()(closure)
        flat = self._flat_params()
        params = flat.params
        state = self.state[params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        evals_before = state["func_evals"]
        progress: dict[str, Any] = {"evals": 0, "first": None, "best": math.inf}
        try:
            return self._iterate(closure, flat, state, progress)
        except _NonFiniteEvaluation:
            point = self._finite_point
            if point is not None:
                flat.set_(point)
            for key in _ITERATION_KEYS:
                state.pop(key, None)
            self._history = self._exported = None  # the next step starts a fresh history
            state["n_iter"] = 0  # the next step starts afresh, as torch's first step does
            state["func_evals"] = evals_before + progress["evals"]
            state["nonfinite_stops"] = state.get("nonfinite_stops", 0) + 1
            return progress["first"]

    def _iterate(
        self, closure: Callable[[], Any], flat: _FlatParams, state: dict[str, Any], progress: dict[str, Any]
    ) -> Any:
        """torch.optim.LBFGS.step, line by line, with the history of :class:`CurvatureHistory`."""
        group = self.param_groups[0]
        lr = _to_scalar(group["lr"])
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        def evaluate() -> tuple[Any, float, Tensor, bool]:
            """(loss as returned, its value, the flat gradient, whether its largest magnitude is
            at most tolerance_grad — compared in the gradient's dtype, as torch's tensors compare)."""
            loss = closure()
            progress["evals"] += 1
            if progress["first"] is None:
                progress["first"] = loss
            value = float(loss)
            grad = flat.gather_grad()
            largest = grad.abs().max()
            grad_max = largest.item()
            if not (math.isfinite(value) and math.isfinite(grad_max)):
                raise _NonFiniteEvaluation
            rnd = _HOST_ROUNDING.get(grad.dtype)
            small = grad_max <= rnd(tolerance_grad) if rnd is not None else bool(largest <= tolerance_grad)
            if value < progress["best"]:
                progress["best"] = value
                if self._finite_point is None:
                    self._finite_point = [p.detach().clone() for p in flat.params]
                else:
                    torch._foreach_copy_(self._finite_point, flat.params)
            return loss, value, grad, small

        orig_loss, loss, flat_grad, opt_cond = evaluate()
        current_evals = 1
        state["func_evals"] += 1
        if opt_cond:
            return orig_loss

        history = self._history_for(state, history_size, flat, flat_grad)
        d = state.get("d")
        t = state.get("t")
        h_diag = state.get("H_diag")
        prev_flat_grad = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")
        opt_cond = False

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # direction
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                history.reset()
                h_diag = 1
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                ys = y.dot(s)
                if ys > 1e-10:
                    history.push(y, s, ys)
                    h_diag = ys / y.dot(y)
                d = history.direction(flat_grad, h_diag, out=self._direction_buffer(flat_grad))

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            # step length
            t = min(1.0, 1.0 / flat_grad.abs().sum()) * lr if state["n_iter"] == 1 else lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                x_init = flat.clone()

                def obj_func(x: list[Tensor], t: float | Tensor, d: Tensor) -> tuple[float, Tensor]:
                    flat.add_(t, d)
                    _, value, grad, _ = evaluate()
                    flat.set_(x)
                    return value, grad

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
                )
                flat.add_(t, d)
                opt_cond = bool(flat_grad.abs().max() <= tolerance_grad)
            else:
                flat.add_(t, d)
                if n_iter != max_iter:
                    _, loss, flat_grad, opt_cond = evaluate()
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # stopping conditions
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if d.mul(t).abs().max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = d
        state["t"] = t
        self._export(state, history)
        state["H_diag"] = h_diag
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss
        return orig_loss
