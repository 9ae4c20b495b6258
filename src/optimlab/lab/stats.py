"""Statistics of a comparison: robust summaries over seeds and performance profiles.

Infinite values are first-class: a diverged run's final loss and a missed target's steps are +∞,
and every summary here treats them as the worst possible value instead of dropping them
(dropping would make a diverging optimizer look good).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (linear interpolation, numpy's default) of values that may hold +∞.

    Interpolating towards +∞ gives +∞ (never NaN). Empty input gives NaN."""
    data = sorted(float(v) for v in values)
    if not data:
        return math.nan
    position = q * (len(data) - 1)
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    weight = position - low
    if weight == 0 or data[low] == data[high]:
        return data[low]
    if math.isinf(data[high]):
        return math.inf
    return data[low] + weight * (data[high] - data[low])


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def summary(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "q25", "q75"}`` (the interquartile range is q75 − q25)."""
    return {"median": median(values), "q25": quantile(values, 0.25), "q75": quantile(values, 0.75)}


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A percentile-bootstrap confidence interval of the median (Efron & Tibshirani, 1993).

    Deterministic (seeded). With one value the interval is that value."""
    data = np.asarray([float(v) for v in values], dtype=np.float64)
    if data.size == 0:
        return (math.nan, math.nan)
    if data.size == 1 or np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(resamples, data.size))]
    medians = [median(row) for row in samples] if np.isinf(data).any() else np.median(samples, axis=1)
    alpha = (1 - confidence) / 2
    return (quantile(list(medians), alpha), quantile(list(medians), 1 - alpha))


@dataclass(frozen=True)
class PerformanceProfile:
    """A performance profile (Dolan & Moré, 2002) of solvers over problems, with AlgoPerf's score.

    ``ratios[solver][problem]`` = cost / best cost on that problem (∞ for a miss, or when no
    solver reached the target); ``rho[solver][i]`` = the fraction of problems with ratio ≤
    ``taus[i]``; ``score[solver]`` = (1/(τ_max − 1))·∫₁^τ_max ρ(τ) dτ ∈ [0, 1], computed exactly
    (Dahl et al., "Benchmarking Neural Network Training Algorithms", 2023: τ_max = 4).
    """

    cost: str
    tau_max: float
    problems: list[str]
    taus: list[float]
    ratios: dict[str, dict[str, float]]
    rho: dict[str, list[float]]
    score: dict[str, float]


def performance_profile(
    costs: Mapping[str, Mapping[str, float]], *, cost: str = "steps", tau_max: float = 4.0, points: int = 61
) -> PerformanceProfile:
    """The profile of ``costs[problem][solver]`` (lower is better, ∞ = target missed).

    Solvers missing from a problem count as misses there. Costs below 1 are raised to 1 (a
    target met before the first step costs one step), so ratios are well defined.
    """
    if tau_max <= 1:
        raise ValueError(f"tau_max must be > 1, got {tau_max}")
    problems = list(costs)
    solvers: list[str] = []
    for per_problem in costs.values():
        solvers.extend(s for s in per_problem if s not in solvers)
    ratios: dict[str, dict[str, float]] = {s: {} for s in solvers}
    for problem, per_problem in costs.items():
        values = {s: max(float(per_problem.get(s, math.inf)), 1.0) for s in solvers}
        best = min(values.values(), default=math.inf)
        for s in solvers:
            ratios[s][problem] = math.inf if math.isinf(best) or math.isinf(values[s]) else values[s] / best
    taus = [float(t) for t in np.linspace(1.0, tau_max, points)]
    n = max(len(problems), 1)
    rho = {s: [sum(r <= tau for r in ratios[s].values()) / n for tau in taus] for s in solvers}
    score = {
        s: sum((tau_max - r) / (tau_max - 1) for r in ratios[s].values() if r <= tau_max) / n for s in solvers
    }
    return PerformanceProfile(
        cost=cost, tau_max=tau_max, problems=problems, taus=taus, ratios=ratios, rho=rho, score=score
    )
