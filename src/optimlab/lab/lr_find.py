"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates", section 3.3).

:func:`range_test` runs it on any ``step(lr) -> loss`` callable; :func:`problem_range_test` on a lab
problem with an optimizer configuration (what ``optimlab lr-find`` runs), one seed per call.

Train for ``steps`` steps while the learning rate grows exponentially from ``min_lr`` to ``max_lr``
(``lr_i = min_lr * (max_lr / min_lr) ** (i / (steps - 1))``), record the loss after each step, smooth it
with a bias-corrected exponential moving average and read learning rates off the curve:

* ``steepest``: where the smoothed loss falls fastest per decade of lr (most negative
  ``d loss / d log10 lr``, taken over a twentieth of the points either side), looked for before the
  curve's minimum;
* ``valley``: inside the longest stretch over which the smoothed loss keeps descending (it may wobble by
  at most ``tolerance`` of the curve's range above its running minimum), the first lr by which two thirds
  of that stretch's descent is done — late enough to be past the flat start, early enough to stay clear
  of the blow-up;
* ``minimum/10``: the lr of the smoothed minimum divided by 10 (the minimum itself is already too large:
  the loss is about to blow up there).

Both pass over the first :data:`WARMUP` points, where the moving average still averages too few
losses to have a meaningful slope (real mini-batch curves often start with a spike there).

Across seeds (:func:`summarize`) the smoothed curves give a median and an inter-quartile band; a seed
that stopped (diverged) counts as ``+inf`` from there on, so the median ends when half the seeds have.

On a problem the test trains ``problem.build_model(seed)`` on ``problem.batches(seed, epoch)`` (epoch after
epoch for as many steps as the ramp has), each step at the ramp's next lr, and records the training loss
the step saw (before its update); L-BFGS steps with a closure, as in training.

``on_steps(n)``, when given, hears of the steps taken as the test goes — about :data:`EVALUATIONS`
calls, as a run's evaluations, each with the steps since the last one — so that its calls add up to
the steps of the test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from optimlab.lab.run import EVALUATIONS
from optimlab.lab.stats import quantiles

__all__ = [
    "RULES",
    "LRFindResult",
    "LRFindSummary",
    "lr_ramp",
    "problem_range_test",
    "problem_step",
    "range_test",
    "smooth",
    "suggest",
    "suggest_minimum",
    "suggest_steepest",
    "suggest_valley",
    "summarize",
]

RULES: tuple[str, ...] = ("steepest", "valley", "minimum/10")


def lr_ramp(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """The exponential ramp: ``steps`` learning rates from ``min_lr`` to ``max_lr``, evenly spaced in log."""
    if not (math.isfinite(min_lr) and math.isfinite(max_lr)) or not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr (finite), got min_lr={min_lr}, max_lr={max_lr}")
    if steps < 2:
        raise ValueError(f"the range test needs at least 2 steps, got {steps}")
    return np.geomspace(min_lr, max_lr, int(steps))


def smooth(losses: ArrayLike, beta: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction: ``m_i = beta m_{i-1} + (1 - beta) x_i``,
    ``s_i = m_i / (1 - beta^(i+1))`` (so ``s_0 = x_0``; the average is not pulled towards 0).

    With ``beta`` the curve lags by about ``beta / (1 - beta)`` points. A non-finite loss makes every
    later value non-finite.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    x = np.asarray(losses, dtype=float).ravel()
    out = np.empty_like(x)
    m = 0.0
    for i, value in enumerate(x.tolist()):
        m = beta * m + (1.0 - beta) * value
        out[i] = m / (1.0 - beta ** (i + 1))
    return out


@dataclass(frozen=True)
class LRFindResult:
    """One run of the range test. ``lrs``/``losses``/``smoothed`` cover the steps actually taken
    (including the one that triggered the stop); ``diverged`` says whether it stopped early."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    diverged: bool
    suggestions: dict[str, float] = field(default_factory=dict)


def range_test(
    step: Callable[[float], float],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    diverge_factor: float = 4.0,
    on_steps: Callable[[int], None] | None = None,
) -> LRFindResult:
    """Run the range test: call ``step(lr)`` (one training step at ``lr``, returning its loss) along the
    exponential ramp; stop when the loss is non-finite or the smoothed loss exceeds ``diverge_factor``
    times the best smoothed loss so far (for a best ``b <= 0``: exceeds ``b + (diverge_factor - 1)|b|``).
    ``on_steps(n)`` hears of the steps taken (see the module docstring).
    """
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be greater than 1, got {diverge_factor}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    ramp = lr_ramp(min_lr, max_lr, steps)
    losses: list[float] = []
    smoothed: list[float] = []
    m = 0.0
    best = math.inf
    diverged = False
    every, reported = max(1, math.ceil(len(ramp) / EVALUATIONS)), 0
    for i, lr in enumerate(ramp.tolist()):
        if on_steps is not None and i - reported >= every:
            on_steps(i - reported)
            reported = i
        loss = float(step(lr))
        losses.append(loss)
        m = beta * m + (1.0 - beta) * loss
        s = m / (1.0 - beta ** (i + 1))
        smoothed.append(s)
        if not math.isfinite(loss) or not math.isfinite(s):
            diverged = True
            break
        if i > 0 and s > best + (diverge_factor - 1.0) * abs(best):
            diverged = True
            break
        best = min(best, s)
    n = len(losses)
    if on_steps is not None and n > reported:
        on_steps(n - reported)
    lrs = ramp[:n]
    sm = np.asarray(smoothed)
    return LRFindResult(lrs, np.asarray(losses), sm, diverged, suggest(lrs, sm))


def _usable(lrs: ArrayLike, smoothed: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    lr = np.asarray(lrs, dtype=float).ravel()
    s = np.asarray(smoothed, dtype=float).ravel()
    if lr.shape != s.shape:
        raise ValueError(f"lrs and losses differ in length: {lr.size} vs {s.size}")
    finite = np.isfinite(s)
    end = int(np.argmin(finite)) if not finite.all() else s.size  # up to the first non-finite value
    return lr[:end], s[:end]


#: points at the start of a curve that the steepest and valley rules pass over: there the bias-corrected
#: moving average (β = 0.9) still averages fewer than 1 / (1 − β) = 10 losses, so its slope is noise
WARMUP = 10


def _skip(n: int, skip: int) -> int:
    """``skip`` points, or none on a curve too short to spare them."""
    return skip if n > 3 * skip else 0


def suggest_steepest(lrs: ArrayLike, smoothed: ArrayLike, skip: int = WARMUP) -> float | None:
    """The lr of the most negative slope ``d loss / d log10 lr`` before the smoothed minimum, past the
    first ``skip`` points; the slope at point ``i`` is taken across ``i ± k`` (``k`` = a twentieth of the
    points), so the noise of single mini-batches does not pass for the descent."""
    lr, s = _usable(lrs, smoothed)
    if s.size < 3:
        return None
    first = _skip(s.size, skip)
    stop = int(np.argmin(s)) + 1
    if stop - first < 2:
        return None
    u = np.log10(lr)
    k = max(1, s.size // 20)
    idx = np.arange(first, stop)
    lo = np.maximum(idx - k, first)
    hi = np.minimum(idx + k, s.size - 1)
    slope = (s[hi] - s[lo]) / (u[hi] - u[lo])
    if not slope.min() < 0:
        return None
    return float(lr[int(idx[np.argmin(slope)])])


def suggest_valley(
    lrs: ArrayLike, smoothed: ArrayLike, tolerance: float = 0.05, skip: int = WARMUP
) -> float | None:
    """The lr two thirds of the way down (in loss) the longest descending stretch of the curve past its
    first ``skip`` points.

    A stretch continues while the loss stays within ``tolerance`` × (the curve's descent, from its highest
    point before the minimum down to the minimum) of the stretch's running minimum; the longest stretch
    that descends by at least a tenth of that is used.
    """
    lr, s = _usable(lrs, smoothed)
    if s.size < 3:
        return None
    first = _skip(s.size, skip)
    lr, s = lr[first:], s[first:]
    span = float(s[: int(np.argmin(s)) + 1].max() - s.min())  # the descent, not the blow-up after it
    if span <= 0:
        return None
    tol = tolerance * span
    stretches: list[tuple[int, int]] = []
    start, low = 0, s[0]
    for i in range(1, s.size):
        if s[i] > low + tol:
            stretches.append((start, i - 1))
            start, low = i, s[i]
        else:
            low = min(low, s[i])
    stretches.append((start, s.size - 1))
    descending = [(a, b) for a, b in stretches if s[a] - s[a : b + 1].min() >= 0.1 * span]
    if not descending:
        return None
    a, b = max(descending, key=lambda ab: (ab[1] - ab[0], s[ab[0]] - s[ab[0] : ab[1] + 1].min()))
    seg = s[a : b + 1]
    bottom = int(np.argmin(seg))
    goal = seg[0] - (2.0 / 3.0) * (seg[0] - seg[bottom])
    k = int(np.argmax(seg[: bottom + 1] <= goal))
    return float(lr[a + k])


def suggest_minimum(lrs: ArrayLike, smoothed: ArrayLike, divisor: float = 10.0) -> float | None:
    """The lr of the smoothed minimum divided by ``divisor``."""
    lr, s = _usable(lrs, smoothed)
    if s.size == 0:
        return None
    return float(lr[int(np.argmin(s))] / divisor)


def suggest(lrs: ArrayLike, smoothed: ArrayLike) -> dict[str, float]:
    """Every rule of :data:`RULES` that finds an lr on this curve (a rule that cannot is left out)."""
    found = {
        "steepest": suggest_steepest(lrs, smoothed),
        "valley": suggest_valley(lrs, smoothed),
        "minimum/10": suggest_minimum(lrs, smoothed),
    }
    return {k: v for k, v in found.items() if v is not None}


@dataclass(frozen=True)
class LRFindSummary:
    """Range tests over several seeds: the smoothed curves' median and IQR on the shared ramp (ending
    where the median does), suggestions read off the median curve, and each seed's own suggestions."""

    lrs: np.ndarray
    median: np.ndarray
    q25: np.ndarray
    q75: np.ndarray
    seeds: int
    suggestions: dict[str, float]
    seed_suggestions: dict[str, np.ndarray]


def summarize(results: Sequence[LRFindResult]) -> LRFindSummary:
    """Combine range tests of the same ramp run with different seeds."""
    if not results:
        raise ValueError("summarize needs at least one range-test result")
    longest = max(results, key=lambda r: r.lrs.size).lrs
    for r in results:
        if not np.allclose(r.lrs, longest[: r.lrs.size], rtol=1e-9, atol=0):
            raise ValueError("the range tests used different lr ramps; run every seed with the same ramp")
    n = longest.size
    curves = np.full((len(results), n), np.inf)
    for i, r in enumerate(results):
        k = r.smoothed.size - (1 if r.diverged else 0)  # the stopping point itself is not kept
        curves[i, :k] = r.smoothed[:k]
    q25, med, q75 = quantiles(curves, (0.25, 0.5, 0.75), axis=0)
    finite = np.isfinite(med)
    end = int(np.argmin(finite)) if not finite.all() else n
    lrs = longest[:end]
    med, q25, q75 = med[:end], q25[:end], q75[:end]
    per_seed = {rule: np.array([r.suggestions.get(rule, np.nan) for r in results]) for rule in RULES}
    return LRFindSummary(lrs, med, q25, q75, len(results), suggest(lrs, med), per_seed)


def _endless_batches(problem: Any, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        empty = True
        for batch in problem.batches(seed, epoch):
            empty = False
            yield batch
        if empty:
            raise ValueError(f"problem {problem.spec!r} yields no batches")
        epoch += 1


def problem_step(problem: Any, config: Any, seed: int) -> Callable[[float], float]:
    """``step(lr) -> loss``: one training step of ``config``'s optimizer (an
    :class:`~optimlab.lab.presets.OptimizerConfig`) on ``problem``'s model of ``seed`` at learning rate
    ``lr``, on the next batch; returns the loss the step saw."""
    model = problem.build_model(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = config.build(params)
    batches = _endless_batches(problem, seed)
    lbfgs = isinstance(opt, torch.optim.LBFGS)

    def step(lr: float) -> float:
        for group in opt.param_groups:
            group["lr"] = lr
        inputs, target = next(batches)

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = problem.loss(model(inputs), target)
            loss.backward()
            return loss.detach()

        if lbfgs:
            return float(opt.step(closure))
        loss = closure()
        opt.step()
        return float(loss)

    return step


def problem_range_test(problem: Any, config: Any, seed: int, **options: Any) -> LRFindResult:
    """The range test of ``config`` on ``problem`` from ``seed`` (see the module docstring);
    ``options``: those of :func:`range_test` (``min_lr``, ``max_lr``, ``steps``, ``beta``,
    ``diverge_factor``, ``on_steps``), checked before anything trains."""
    return range_test(problem_step(problem, config, seed), **options)
