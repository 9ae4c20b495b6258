"""L-BFGS curvature history as two ring buffers, and its direction in a constant number of ops.

torch.optim.LBFGS keeps the pairs ``(yᵢ, sᵢ)`` as Python lists and runs the two-loop recursion
pair by pair: ``2·m`` dot products and ``2·m`` vector updates per iteration (``m`` ≤ 100 pairs),
each one a Python call and a host sync. Here the pairs are the rows of two ``(m, n)`` buffers (a
ring once full) with their Gram matrix ``Gᵢⱼ = sᵢ·yⱼ`` kept up to date, and the same recursion is
solved as two unit-triangular ``m × m`` systems between four matrix-vector products:

* first loop, ``aᵢ = ρᵢ sᵢ·qᵢ`` with ``qᵢ = −g − Σⱼ₍ⱼ₎₍>ᵢ₎ aⱼ yⱼ``:
  ``(I + diag(ρ) triu(G, 1)) a = −ρ ⊙ (S g)`` and ``q = −g − Yᵀ a``;
* second loop, ``bᵢ = ρᵢ yᵢ·rᵢ`` with ``rᵢ = H q + Σ₍ⱼ<ᵢ₎ (aⱼ − bⱼ) sⱼ``:
  ``(I + diag(ρ) tril(Gᵀ, −1)) b = ρ ⊙ (H (Y q) + tril(Gᵀ, −1) a)`` and
  ``d = H q + Sᵀ (a − b)``.

The arithmetic is the recursion's; only the order of the sums differs (measured against torch in
``tests/test_optim_lbfgs.py`` and ``benchmarks/lbfgs.py``).

Reference: Nocedal & Wright, "Numerical Optimization", 2nd ed. 2006, Alg. 7.4 (two-loop recursion);
Byrd, Nocedal & Schnabel, "Representations of quasi-Newton matrices and their use in limited memory
methods", Math. Prog. 63, 1994 (the compact form these triangular systems come from).
"""

from __future__ import annotations

import torch
from torch import Tensor


class CompactHistory:
    """Up to ``size`` curvature pairs ``(y, s)`` of length ``n`` with ``ρ = 1/(y·s)``, oldest first.

    Storage grows by doubling up to ``size`` rows, then the oldest row is overwritten (a ring).
    """

    def __init__(self, size: int, n: int, dtype: torch.dtype, device: torch.device) -> None:
        self.size, self.n, self.dtype, self.device = size, n, dtype, device
        self.count = 0  # pairs held
        self.start = 0  # physical row of the oldest pair (0 until the ring wraps)
        self.capacity = 0
        self.y = self.s = torch.empty(0, n, dtype=dtype, device=device)
        self.rho = torch.empty(size, dtype=dtype, device=device)
        self.gram = torch.zeros(size, size, dtype=dtype, device=device)  # gram[i, j] = s_i · y_j
        self.strictly_lower = torch.ones(size, size, dtype=dtype, device=device).tril_(-1)
        self.al: Tensor | None = None  # the first loop's coefficients, oldest first (torch's "al")

    def reset(self) -> None:
        self.count, self.start = 0, 0

    def _grow(self, rows: int) -> None:
        capacity = min(self.size, max(rows, 2 * self.capacity, 4))
        y = torch.empty(capacity, self.n, dtype=self.dtype, device=self.device)
        s = torch.empty_like(y)
        y[: self.count] = self.y[: self.count]
        s[: self.count] = self.s[: self.count]
        self.y, self.s, self.capacity = y, s, capacity

    def push(self, y: Tensor, s: Tensor, ys: Tensor) -> None:
        """Append the pair (dropping the oldest when full); ``ys = y·s`` as already computed."""
        if self.count == self.size:
            row = self.start
            self.start = (self.start + 1) % self.size
        else:
            if self.count == self.capacity:
                self._grow(self.count + 1)
            row = self.count
            self.count += 1
        self.y[row] = y
        self.s[row] = s
        self.rho[row] = 1.0 / ys
        used = self.count
        torch.mv(self.s[:used], y, out=self.gram[:used, row])
        torch.mv(self.y[:used], s, out=self.gram[row, :used])
        self.gram[row, row] = ys

    def load(self, dirs: list[Tensor], steps: list[Tensor], ro: list[Tensor]) -> None:
        """Take torch.optim.LBFGS's lists (``old_dirs``, ``old_stps``, ``ro``), oldest first."""
        self.reset()
        k = len(dirs)
        if k > self.size:  # a checkpoint with more pairs than history_size allows: keep the newest
            dirs, steps, ro = dirs[-self.size :], steps[-self.size :], ro[-self.size :]
            k = self.size
        if k > self.capacity:
            self._grow(k)
        if k:
            torch.stack([d.reshape(-1) for d in dirs], out=self.y[:k])
            torch.stack([s.reshape(-1) for s in steps], out=self.s[:k])
            self.rho[:k] = torch.stack([torch.as_tensor(r, dtype=self.dtype).reshape(()) for r in ro])
            torch.mm(self.s[:k], self.y[:k].t(), out=self.gram[:k, :k])
        self.count = k

    def _logical(self, t: Tensor, dims: tuple[int, ...]) -> Tensor:
        """Physical rows → oldest-first order."""
        if self.start == 0:
            return t
        return t.roll([-self.start] * len(dims), dims)

    def _physical(self, t: Tensor) -> Tensor:
        return t if self.start == 0 else t.roll(self.start, 0)

    def state_al(self, al: list | None) -> list | None:
        """torch's ``al`` list updated with the last recursion's first-loop coefficients."""
        if self.al is None:
            return al
        if al is None or len(al) != self.size:
            al = [None] * self.size
        al[: self.al.numel()] = list(self.al.unbind(0))
        self.al = None
        return al

    def rows(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """``(old_dirs, old_stps, ro)`` as torch's lists (views of the buffers), oldest first."""
        k = self.count
        order = list(range(self.start, k)) + list(range(self.start))
        ys, ss, rs = self.y[:k].unbind(0), self.s[:k].unbind(0), self.rho[:k].unbind(0)
        return [ys[i] for i in order], [ss[i] for i in order], [rs[i] for i in order]

    def direction(self, grad: Tensor, h_diag: Tensor | float, out: Tensor) -> Tensor:
        """``out = −H·grad`` for the L-BFGS inverse Hessian H (initial scale ``h_diag``)."""
        k = self.count
        if k == 0:
            self.al = grad.new_empty(0)
            return torch.mul(grad.neg(), h_diag, out=out)
        s, y = self.s[:k], self.y[:k]
        rho = self._logical(self.rho[:k], (0,))
        gram = self._logical(self.gram[:k, :k], (0, 1))
        sg = self._logical(torch.mv(s, grad), (0,))
        # first loop: a_i + rho_i * sum_{j>i} G_ij a_j = -rho_i (s_i . g)
        upper = rho.unsqueeze(1) * gram
        first = (rho * sg).neg_().unsqueeze(1)
        a = torch.linalg.solve_triangular(upper, first, upper=True, unitriangular=True).squeeze(1)
        q = torch.addmv(grad, y.t(), self._physical(a), beta=-1, alpha=-1)
        yq = self._logical(torch.mv(y, q), (0,))
        # second loop: b_i + rho_i * sum_{j<i} L_ij b_j = rho_i (H y_i.q + sum_{j<i} L_ij a_j), L = G^T
        lower = gram.t() * self.strictly_lower[:k, :k]
        rhs = torch.addmv(yq * h_diag, lower, a).mul_(rho)
        second = rho.unsqueeze(1) * lower
        b = torch.linalg.solve_triangular(second, rhs.unsqueeze(1), upper=False, unitriangular=True)
        c = a - b.squeeze(1)
        self.al = a
        return torch.addmv(q.mul_(h_diag), s.t(), self._physical(c), out=out)
