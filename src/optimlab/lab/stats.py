"""Statistics of a comparison: robust summaries over seeds and performance profiles.

The one implementation of each statistic in optimlab: ``summary.json``, the command line and the
report all call these.

Infinite values are first-class: a diverged run's final loss and a missed target's steps are +∞,
and every summary here treats them as the worst possible value instead of dropping them
(dropping would make a diverging optimizer look good). NaN counts as +∞ too (a diverged run).

Performance profiles (Dolan & Moré 2002) and their area score (AlgoPerf, Dahl et al. 2023): for
problems ``p`` and solvers (optimizers) ``s`` with a cost ``t[p, s] > 0`` (steps, gradient
evaluations or seconds to reach the problem's target; ``inf`` when the target was never reached):

* performance ratio ``r[p, s] = t[p, s] / min_s t[p, s]`` (``inf`` when ``s`` failed, or when every
  solver failed on ``p``);
* profile ``rho_s(tau) = |{p : r[p, s] <= tau}| / n_problems`` — the fraction of problems that ``s``
  solves within a factor ``tau`` of the best solver; ``rho_s(1)`` is the fraction it wins (ties count
  for every tied solver), ``rho_s(inf)`` the fraction it solves at all;
* score ``B_s = 1 / (tau_max - 1) * integral_1^tau_max rho_s(tau) dtau`` — the normalized area under
  the profile up to ``tau_max`` (AlgoPerf uses ``tau_max = 4``), in [0, 1], 1 = fastest on every problem.
  For a step function the integral is exact: ``B_s = mean_p max(0, tau_max - r[p, s]) / (tau_max - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Profile",
    "bootstrap_ci",
    "median",
    "performance_profile",
    "performance_ratios",
    "profile_scores",
    "profile_values",
    "quantile",
    "quantiles",
    "summary",
]


def quantiles(values: ArrayLike, qs: Sequence[float] = (0.25, 0.5, 0.75), axis: int = 0) -> list[np.ndarray]:
    """Quantiles along ``axis`` with non-finite entries counted as ``+inf`` (diverged = worst).

    Matches ``numpy.quantile(..., method="linear")`` on finite data; a quantile that interpolates
    towards a diverged entry is ``inf`` (never NaN). Raises ``ValueError`` on an empty axis.
    """
    v = np.asarray(values, dtype=float)
    if v.shape[axis] == 0:
        raise ValueError("quantiles of an empty set of values")
    v = np.where(np.isfinite(v), v, np.inf)
    s = np.sort(v, axis=axis)
    n = s.shape[axis]
    out = []
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        pos = q * (n - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        frac = pos - lo
        a = np.take(s, lo, axis=axis)
        b = np.take(s, hi, axis=axis)
        with np.errstate(invalid="ignore"):
            mixed = a + frac * (b - a)
        val = np.where(np.isinf(b), np.inf, mixed) if frac > 0 else a
        out.append(np.where(a == b, a, val))
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile of ``values`` (see :func:`quantiles`); NaN for no values."""
    if len(values) == 0:
        return math.nan
    return float(quantiles(np.asarray(values, dtype=float), (q,))[0])


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def summary(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "q25", "q75"}`` (the interquartile range is q75 − q25); NaN for no values."""
    if len(values) == 0:
        return {"median": math.nan, "q25": math.nan, "q75": math.nan}
    q25, med, q75 = (float(v) for v in quantiles(np.asarray(values, dtype=float), (0.25, 0.5, 0.75)))
    return {"median": med, "q25": q25, "q75": q75}


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A percentile-bootstrap confidence interval of the median (Efron & Tibshirani, 1993).

    Deterministic (seeded). With one value the interval is that value."""
    data = np.asarray([float(v) for v in values], dtype=np.float64)
    if data.size == 0:
        return (math.nan, math.nan)
    data = np.where(np.isfinite(data), data, np.inf)
    if data.size == 1 or np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(resamples, data.size))]
    medians = quantiles(samples, (0.5,), axis=1)[0]
    alpha = (1 - confidence) / 2
    low, high = quantiles(medians, (alpha, 1 - alpha))
    return (float(low), float(high))


# --- performance profiles ----------------------------------------------------------------------


def performance_ratios(costs: ArrayLike) -> np.ndarray:
    """Ratios ``r[p, s]`` from costs ``t[p, s]`` ([problems, solvers]); ``nan``/``inf`` cost = failure."""
    t = np.asarray(costs, dtype=float)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"costs must be a non-empty [problems, solvers] array, got shape {t.shape}")
    t = np.where(np.isnan(t), np.inf, t)
    if np.any(t <= 0):
        p, s = np.argwhere(t <= 0)[0]
        raise ValueError(f"costs must be positive; got {t[p, s]} for problem {p}, solver {s}")
    best = t.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        r = t / best
    return np.where(np.isfinite(best) & np.isfinite(t), r, np.inf)


def profile_values(ratios: ArrayLike, taus: ArrayLike) -> np.ndarray:
    """``rho[s, k]``: fraction of problems with ``r[p, s] <= taus[k]``."""
    r = np.asarray(ratios, dtype=float)
    tau = np.asarray(taus, dtype=float)
    return (r[:, :, None] <= tau[None, None, :]).mean(axis=0)


def profile_scores(ratios: ArrayLike, tau_max: float = 4.0) -> np.ndarray:
    """Exact normalized area under each solver's profile on ``[1, tau_max]`` (AlgoPerf score)."""
    if not tau_max > 1:
        raise ValueError(f"tau_max must be greater than 1, got {tau_max}")
    r = np.asarray(ratios, dtype=float)
    with np.errstate(invalid="ignore"):
        gain = np.where(np.isfinite(r), np.clip(tau_max - r, 0.0, None), 0.0)
    return gain.mean(axis=0) / (tau_max - 1.0)


@dataclass(frozen=True)
class Profile:
    """A performance profile: ratios [problems, solvers] plus names and the score window."""

    solvers: tuple[str, ...]
    problems: tuple[str, ...]
    ratios: np.ndarray
    tau_max: float = 4.0

    @property
    def scores(self) -> dict[str, float]:
        """Solver -> AlgoPerf score in [0, 1]."""
        return dict(zip(self.solvers, profile_scores(self.ratios, self.tau_max).tolist(), strict=True))

    def rho(self, taus: ArrayLike) -> np.ndarray:
        """``rho[s, k]`` at the given ``taus``."""
        return profile_values(self.ratios, taus)

    def ratio_table(self) -> dict[str, dict[str, float]]:
        """``{solver: {problem: ratio}}`` (``inf`` for a miss)."""
        return {
            s: {p: float(self.ratios[i, j]) for i, p in enumerate(self.problems)}
            for j, s in enumerate(self.solvers)
        }

    def steps(self, solver: str, tau_end: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The profile of ``solver`` as a right-continuous step function for drawing with ``hv`` steps:
        ``(taus, rho)`` starting at ``tau = 1`` and ending at ``tau_end`` (default: :meth:`tau_end`)."""
        j = self.solvers.index(solver)
        end = self.tau_end() if tau_end is None else float(tau_end)
        r = self.ratios[:, j]
        jumps = np.unique(r[np.isfinite(r) & (r > 1.0) & (r <= end)])
        taus = np.concatenate([[1.0], jumps, [end]])
        return taus, profile_values(self.ratios[:, [j]], taus)[0]

    def tau_end(self) -> float:
        """Where to end the drawing: past the largest finite ratio and past ``tau_max``."""
        finite = self.ratios[np.isfinite(self.ratios)]
        largest = float(finite.max()) if finite.size else 1.0
        return max(self.tau_max, largest) * 1.25


def performance_profile(
    costs: Mapping[str, Mapping[str, float | None]] | ArrayLike,
    *,
    solvers: Sequence[str] | None = None,
    problems: Sequence[str] | None = None,
    tau_max: float = 4.0,
    floor: float | None = None,
) -> Profile:
    """Build a :class:`Profile`.

    ``costs`` is either ``{problem: {solver: cost}}`` (``None``, ``nan`` or ``inf`` = target not reached;
    every problem must list every solver) or a [problems, solvers] array with ``solvers``/``problems``
    naming its columns/rows. ``floor`` raises smaller costs to it: with steps or gradient evaluations,
    ``floor=1`` makes a target met before the first step cost one step (ratios stay defined).
    """
    if not tau_max > 1 or not math.isfinite(tau_max):
        raise ValueError(f"tau_max must be a finite number greater than 1, got {tau_max}")
    if isinstance(costs, Mapping):
        problem_names = tuple(costs)
        if not problem_names:
            raise ValueError("performance profile needs at least one problem")
        solver_names = (
            tuple(solvers)
            if solvers is not None
            else tuple(dict.fromkeys(name for row in costs.values() for name in row))
        )
        table = np.empty((len(problem_names), len(solver_names)))
        for i, p in enumerate(problem_names):
            row = costs[p]
            missing = [s for s in solver_names if s not in row]
            if missing:
                raise ValueError(f"problem {p!r} has no cost for solver(s) {', '.join(map(repr, missing))}")
            table[i] = [math.inf if row[s] is None else float(row[s]) for s in solver_names]
    else:
        table = np.asarray(costs, dtype=float)
        if table.ndim != 2:
            raise ValueError(f"costs must be a [problems, solvers] array, got shape {table.shape}")
        solver_names = (
            tuple(solvers) if solvers is not None else tuple(f"solver {j}" for j in range(table.shape[1]))
        )
        problem_names = (
            tuple(problems) if problems is not None else tuple(f"problem {i}" for i in range(table.shape[0]))
        )
        if len(solver_names) != table.shape[1] or len(problem_names) != table.shape[0]:
            raise ValueError(
                f"costs has shape {table.shape} but {len(problem_names)} problem and "
                f"{len(solver_names)} solver names were given"
            )
    if len(set(solver_names)) != len(solver_names):
        raise ValueError("solver names must be unique")
    if floor is not None:
        if not floor > 0:
            raise ValueError(f"floor must be positive, got {floor}")
        with np.errstate(invalid="ignore"):
            table = np.where(table < floor, floor, table)
    return Profile(solver_names, problem_names, performance_ratios(table), float(tau_max))
