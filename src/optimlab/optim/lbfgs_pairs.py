"""L-BFGS curvature history as torch.optim.LBFGS keeps it, and its two-loop recursion pair by pair.

Bit for bit torch's arithmetic: the same lists (``old_dirs``, ``old_stps``, ``ro``), the same dot
products and ``add_(…, alpha=…)`` updates in the same order. What is saved is torch's overhead
around them: torch multiplies, negates and subtracts the per-pair scalars as 0-d tensors (three
more tensor operations per pair, and a host read of each ``alpha``); here they are host numbers
rounded as the 0-d tensors round (float64: Python floats; float32: products and differences of
float32 numbers are exact in float64, so one rounding to float32 gives the tensor's result).
Other dtypes take torch's tensor arithmetic unchanged.

Reference: Nocedal & Wright, "Numerical Optimization", 2nd ed. 2006, Alg. 7.4.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def _float32(x: float) -> float:
    """``x`` rounded to float32 (to nearest, as a float32 tensor operation rounds)."""
    return ctypes.c_float(x).value


def _same(x: float) -> float:
    return x


_HOST_ROUNDING: dict[torch.dtype, Callable[[float], float]] = {torch.float64: _same, torch.float32: _float32}


class PairHistory:
    """torch's history lists and ``al``; ``direction`` runs the two-loop recursion."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device) -> None:
        self.size, self.dtype, self.device = size, dtype, device
        self.round = _HOST_ROUNDING.get(dtype)
        self.dirs: list[Tensor] = []
        self.steps: list[Tensor] = []
        self.ro: list[Tensor] = []
        self.ro_host: list[float] = []
        self.al: list[Any] = [None] * size  # torch's state["al"]
        self.al_host: list[float] = [0.0] * size
        self.al_fresh = False  # al_host holds values not yet written into al
        self.ran = False  # the recursion ran at least once (torch creates state["al"] then)
        self._fresh_count = 0

    @property
    def count(self) -> int:
        return len(self.dirs)

    def adopt(self, dirs: list[Tensor], steps: list[Tensor], ro: list[Tensor], al: list[Any] | None) -> None:
        """Continue from torch's lists (a loaded checkpoint, or state written by torch)."""
        self.dirs, self.steps, self.ro = dirs, steps, ro
        self.ro_host = [float(r) for r in ro]
        if al is not None:
            self.al = al
            self.ran = True
        self.al_fresh = False

    def reset(self) -> None:
        """A fresh history, as torch's first iteration makes (``al`` is kept, as torch keeps it)."""
        self.dirs, self.steps, self.ro, self.ro_host = [], [], [], []

    def push(self, y: Tensor, s: Tensor, ys: Tensor) -> None:
        if len(self.dirs) == self.size:
            self.dirs.pop(0)
            self.steps.pop(0)
            self.ro.pop(0)
            self.ro_host.pop(0)
        self.dirs.append(y)
        self.steps.append(s)
        ro = 1.0 / ys
        self.ro.append(ro)
        self.ro_host.append(float(ro))

    def direction(self, grad: Tensor, h_diag: Tensor | float, out: Tensor) -> Tensor:
        """The L-BFGS direction ``−H·grad`` (initial inverse-Hessian scale ``h_diag``), in ``out``."""
        if len(self.al) != self.size:
            self.al = [None] * self.size
        self.ran = True
        rnd = self.round
        if rnd is None:
            return self._direction_tensors(grad, h_diag, out)
        dirs, steps, ro, al = self.dirs, self.steps, self.ro_host, self.al_host
        if len(al) < self.size:
            al.extend([0.0] * (self.size - len(al)))
        num_old = len(dirs)
        dot = torch.dot
        q = grad.neg()
        if rnd is _same:  # float64: the host's arithmetic is the tensors'
            for i in range(num_old - 1, -1, -1):
                a = al[i] = dot(steps[i], q).item() * ro[i]
                q.add_(dirs[i], alpha=-a)
            d = r = torch.mul(q, h_diag, out=out)
            for i in range(num_old):
                r.add_(steps[i], alpha=al[i] - dot(dirs[i], r).item() * ro[i])
        else:
            for i in range(num_old - 1, -1, -1):
                a = al[i] = rnd(dot(steps[i], q).item() * ro[i])
                q.add_(dirs[i], alpha=-a)
            d = r = torch.mul(q, h_diag, out=out)
            for i in range(num_old):
                r.add_(steps[i], alpha=rnd(al[i] - rnd(dot(dirs[i], r).item() * ro[i])))
        self.al_fresh = num_old > 0
        self._fresh_count = num_old
        return d

    def _direction_tensors(self, grad: Tensor, h_diag: Tensor | float, out: Tensor) -> Tensor:
        """torch's loop verbatim (half-precision and other dtypes)."""
        dirs, steps, ro, al = self.dirs, self.steps, self.ro, self.al
        num_old = len(dirs)
        q = grad.neg()
        for i in range(num_old - 1, -1, -1):
            al[i] = steps[i].dot(q) * ro[i]
            q.add_(dirs[i], alpha=-al[i])
        d = r = torch.mul(q, h_diag, out=out)
        for i in range(num_old):
            be_i = dirs[i].dot(r) * ro[i]
            r.add_(steps[i], alpha=al[i] - be_i)
        return d

    def state_al(self) -> list[Any]:
        """torch's ``al`` list: 0-d tensors of the last recursion's first-loop coefficients."""
        if self.al_fresh:
            k = self._fresh_count
            self.al[:k] = list(torch.tensor(self.al_host[:k], dtype=self.dtype, device=self.device).unbind(0))
            self.al_fresh = False
        return self.al
