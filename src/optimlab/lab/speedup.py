"""Speed-up against a baseline: how much sooner an optimizer reaches the loss the baseline ends at.

The estimator of ``optimlab compare --baseline`` (Wen et al., 2025, "Fantastic Pretraining
Optimizers": the data the baseline needs to match; AlgoPerf's time to target). Pure numpy: stored
runs are read, nothing is trained.

Definitions, seed by seed (the baseline and the candidate are paired by their evaluation seed: the
same data and the same initial model):

* **target** — the baseline's own final loss on that seed (the full training objective after its
  last step: :attr:`optimlab.lab.run.RunResult.final_loss`). A seed whose baseline run diverged has
  no target: it is left out (listed in ``excluded``), never counted as a win or a loss;
* **reaches** — the first evaluation whose loss is ≤ the target. Runs are evaluated at a few dozen
  steps only (:class:`~optimlab.lab.run.EvaluationSchedule`), so the crossing is placed by linear
  interpolation of the loss between that evaluation and the one before it, and the steps, gradient
  evaluations and seconds at the crossing are interpolated with the same fraction. Met at the first
  evaluation (before any step): cost 0. A run that diverges counts only the evaluations before its
  divergence; one that never gets to the target **never reaches** it;
* **speed-up** — the baseline's cost to reach the target ÷ the candidate's, in steps, in gradient
  evaluations (L-BFGS spends several per step) and in seconds (the wall time runs store). Never
  reaches: 0. Both at cost 0: 1 (a tie). Only the candidate at cost 0: +∞. The baseline's own
  speed-up is 1 by construction (it reaches its final loss at its last evaluation at the latest).

Beside it, ``loss_ratio``: the median over seeds of the candidate's final loss ÷ the target (how
far short of the target one that never reaches it stays; +∞ for a diverged run; only where every
target is > 0, else ``None``).

Over seeds: the median, and a seeded percentile-bootstrap 95 % confidence interval of the median
(:func:`optimlab.lab.stats.bootstrap_ci`: reproducible). With one seed the interval is that value
and says nothing about noise (``inside_noise`` is then ``None``); otherwise ``inside_noise`` is true
when the interval contains 1 — the difference from the baseline is within the seed-to-seed noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from optimlab.lab.stats import bootstrap_ci, median

if TYPE_CHECKING:
    from optimlab.lab.run import RunResult

__all__ = ["UNITS", "Curve", "SpeedUp", "curve_of", "reach", "seed_speedup", "speedup", "speedup_of_runs"]

#: what a speed-up is measured in: the name used in ``summary.json`` → the evaluation's field
UNITS: dict[str, str] = {"steps": "step", "grad_evals": "grad_evals", "seconds": "wall_s"}


@dataclass(frozen=True)
class Curve:
    """A run's evaluated loss and what it had cost by then: ``costs[unit][i]`` (a unit of
    :data:`UNITS`) at evaluation ``i``, whose loss is ``losses[i]``; in the order they were made."""

    losses: np.ndarray
    costs: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        n = len(self.losses)
        if any(len(values) != n for values in self.costs.values()):
            raise ValueError("a curve needs one cost of each unit per evaluation")


def curve_of(run: RunResult) -> Curve:
    """The curve of a stored run: its evaluations up to the first non-finite loss (a divergence)."""
    evals = []
    for evaluation in run.evals:
        if not math.isfinite(float(evaluation["loss"])):
            break
        evals.append(evaluation)
    return Curve(
        losses=np.array([float(e["loss"]) for e in evals], dtype=float),
        costs={unit: np.array([float(e[key]) for e in evals], dtype=float) for unit, key in UNITS.items()},
    )


def reach(curve: Curve, target: float) -> dict[str, float] | None:
    """The cost of each unit at which ``curve`` first gets to ``target`` (interpolated between the
    evaluation at or below it and the one before, see the module docstring); ``None``: never."""
    below = np.flatnonzero(curve.losses <= target)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return {unit: 0.0 for unit in curve.costs}
    before, after = float(curve.losses[i - 1]), float(curve.losses[i])
    fraction = (before - target) / (before - after)  # before > target ≥ after, so in (0, 1]
    return {
        unit: float(values[i - 1] + fraction * (values[i] - values[i - 1]))
        for unit, values in curve.costs.items()
    }


def seed_speedup(baseline_cost: float, candidate_cost: float | None) -> float:
    """One seed's speed-up: ``baseline_cost / candidate_cost``; 0 when the candidate never reaches
    the target (``None``), 1 when both meet it at cost 0, +∞ when only the candidate does."""
    if candidate_cost is None:
        return 0.0
    if candidate_cost <= 0:
        return 1.0 if baseline_cost <= 0 else math.inf
    return baseline_cost / candidate_cost


@dataclass(frozen=True)
class SpeedUp:
    """The speed-up of one optimizer over the baseline on one problem (see the module docstring).

    ``per_seed[unit]``: the speed-up on each seed of ``seeds`` (in that order); ``median[unit]`` and
    ``ci95[unit]`` their median and bootstrap 95 % CI (NaN for no seeds); ``reached``: the seeds on
    which the candidate got to the baseline's final loss; ``excluded``: the seeds left out because
    the baseline diverged there (no target)."""

    seeds: list[int]
    per_seed: dict[str, list[float]]
    median: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    reached: list[int]
    excluded: list[int] = field(default_factory=list)
    #: median over seeds of the candidate's final loss ÷ the target (None: not given, or a target ≤ 0)
    loss_ratio: float | None = None

    @property
    def inside_noise(self) -> bool | None:
        """Whether the 95 % CI of the speed-up in steps contains 1; ``None`` with fewer than two
        seeds (no interval) or none."""
        if len(self.seeds) < 2:
            return None
        low, high = self.ci95["steps"]
        return bool(low <= 1.0 <= high)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``summary.json`` (+∞ and NaN as ``null``): the speed-up in steps as
        ``median``/``ci95``/``per_seed``, the other units under their names."""

        def number(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        def unit(name: str) -> dict[str, Any]:
            low, high = self.ci95[name]
            return {
                "median": number(self.median[name]),
                "ci95": [number(low), number(high)],
                "per_seed": [number(v) for v in self.per_seed[name]],
            }

        n = len(self.seeds)
        return {
            "unit": "steps",
            **unit("steps"),
            "grad_evals": unit("grad_evals"),
            "seconds": unit("seconds"),
            "seeds": list(self.seeds),
            "reached": len(self.reached) / n if n else None,
            "reached_seeds": list(self.reached),
            "excluded_seeds": list(self.excluded),
            "inside_noise": self.inside_noise,
            "loss_ratio": None if self.loss_ratio is None else number(self.loss_ratio),
        }


def speedup(
    baseline: Mapping[int, tuple[Curve, float]],
    candidate: Mapping[int, Curve],
    *,
    candidate_final: Mapping[int, float] | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> SpeedUp:
    """The speed-up of ``candidate`` over ``baseline``: ``baseline[s] = (curve, final loss)`` and
    ``candidate[s]`` a curve, for each evaluation seed ``s`` (the seeds both have are used; see the
    module docstring); ``candidate_final[s]``, the candidate's final losses, give ``loss_ratio``.
    The bootstrap is seeded by ``seed``: the same runs give the same interval."""
    seeds, excluded, reached = [], [], []
    ratios: list[float] | None = [] if candidate_final is not None else None
    per_seed: dict[str, list[float]] = {unit: [] for unit in UNITS}
    for s in sorted(set(baseline) & set(candidate)):
        curve, final = baseline[s]
        own = reach(curve, final) if math.isfinite(final) else None
        if own is None:  # the baseline diverged (or recorded no evaluation at its final loss)
            excluded.append(s)
            continue
        theirs = reach(candidate[s], final)
        seeds.append(s)
        if ratios is not None and candidate_final is not None:
            if final > 0:
                final_theirs = float(candidate_final[s])
                ratios.append(final_theirs / final if math.isfinite(final_theirs) else math.inf)
            else:  # a ratio to a target ≤ 0 says nothing
                ratios = None
        if theirs is not None:
            reached.append(s)
        for unit in UNITS:
            per_seed[unit].append(seed_speedup(own[unit], None if theirs is None else theirs[unit]))
    medians = {unit: median(values) for unit, values in per_seed.items()}
    cis = {unit: bootstrap_ci(values, resamples=resamples, seed=seed) for unit, values in per_seed.items()}
    loss_ratio = median(ratios) if ratios else None
    return SpeedUp(seeds, per_seed, medians, cis, reached, excluded, loss_ratio)


def speedup_of_runs(baseline: Sequence[RunResult], candidate: Sequence[RunResult]) -> SpeedUp:
    """:func:`speedup` of stored runs, paired by their seed."""
    return speedup(
        {run.seed: (curve_of(run), float(run.final_loss)) for run in baseline},
        {run.seed: curve_of(run) for run in candidate},
        candidate_final={run.seed: float(run.final_loss) for run in candidate},
    )
