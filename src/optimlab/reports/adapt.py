"""Lab results as the plain data the figures are drawn from (:mod:`optimlab.reports.data`).

Runs of one optimizer on one problem become :class:`~optimlab.reports.data.Curves` (one row per seed),
an lr grid or Optuna's trials a :class:`~optimlab.reports.data.Sensitivity`, a 2-D problem a sampled
:class:`~optimlab.reports.data.Surface`. A run that diverged stops early; its row is padded with
``+inf`` (the convention of the figures: non-finite = diverged), and the value that stopped it (a step's
loss, or an evaluation) counts as ``+inf`` too, as the run's final loss does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from optimlab.lab.run import RunResult
from optimlab.reports.data import Curves, Sensitivity, Surface, grid_surface

__all__ = [
    "eval_curves",
    "grid_sensitivity",
    "is_surface",
    "problem_surface",
    "step_curves",
    "trajectories",
    "trial_sensitivity",
]


def _stopped_at_evaluation(run: RunResult) -> bool:
    """Whether a diverged run was stopped by an evaluation (then its last evaluation is the culprit;
    otherwise a step's loss stopped it mid-epoch and its evaluations are all genuine)."""
    return bool(run.diverged and run.evals and int(run.evals[-1]["step"]) == run.steps)


def eval_curves(runs: Sequence[RunResult], metric: str = "loss") -> Curves | None:
    """The evaluated ``metric`` of each run at each evaluation (the start, then every epoch), with the
    steps, gradient evaluations and seconds so far and the lr in force; ``None`` without runs."""
    runs = [r for r in runs if r.evals]
    if not runs:
        return None
    longest = max(runs, key=lambda r: len(r.evals))
    steps = np.array([float(e["step"]) for e in longest.evals])
    n = steps.size
    loss = np.full((len(runs), n), np.inf)
    grad_evals = np.full((len(runs), n), np.nan)
    seconds = np.full((len(runs), n), np.nan)
    lr = np.full((len(runs), n), np.nan)
    for i, run in enumerate(runs):
        k = len(run.evals)
        loss[i, :k] = [float(e.get(metric, math.nan)) for e in run.evals]
        grad_evals[i, :k] = [float(e["grad_evals"]) for e in run.evals]
        seconds[i, :k] = [float(e["wall_s"]) for e in run.evals]
        if run.lrs:
            # the lr the next step uses (the last one used, after the last step)
            at = [min(int(e["step"]), len(run.lrs) - 1) for e in run.evals]
            lr[i, :k] = [run.lrs[j] for j in at]
        if metric == "loss" and _stopped_at_evaluation(run):
            loss[i, k - 1] = np.inf
    return Curves(
        loss,
        steps=steps,
        grad_evals=grad_evals,
        seconds=seconds,
        lr=lr if np.isfinite(lr).any() else None,
    )


def step_curves(runs: Sequence[RunResult]) -> Curves | None:
    """The training loss of every step (the mini-batch loss the optimizer saw) and the lr it used;
    ``None`` without steps."""
    runs = [r for r in runs if r.losses]
    if not runs:
        return None
    n = max(len(r.losses) for r in runs)
    loss = np.full((len(runs), n), np.inf)
    lr = np.full((len(runs), n), np.nan)
    for i, run in enumerate(runs):
        k = len(run.losses)
        loss[i, :k] = run.losses
        lr[i, : len(run.lrs)] = run.lrs
        if run.diverged and not _stopped_at_evaluation(run):
            loss[i, k - 1] = np.inf  # the step whose loss stopped the run
    return Curves(loss, steps=np.arange(1, n + 1), lr=lr if np.isfinite(lr).any() else None)


def grid_sensitivity(
    grid: Sequence[tuple[float, Sequence[RunResult]]], chosen: float | None = None
) -> Sensitivity | None:
    """Final loss against lr over an lr grid (every lr on the same seeds), ``chosen`` the lr the
    protocol selected; ``None`` for an empty grid."""
    grid = [(lr, runs) for lr, runs in grid if runs and lr > 0]
    if not grid:
        return None
    seeds = max(len(runs) for _, runs in grid)
    final = np.full((len(grid), seeds), np.inf)
    diverged = np.zeros((len(grid), seeds), dtype=bool)
    for i, (_, runs) in enumerate(grid):
        final[i, : len(runs)] = [r.final_loss for r in runs]
        diverged[i, : len(runs)] = [r.diverged for r in runs]
        diverged[i, len(runs) :] = True  # a missing run counts as the worst
    return Sensitivity([lr for lr, _ in grid], final, diverged, chosen=chosen)


def trial_sensitivity(trials: Sequence[Mapping[str, Any]], chosen: float | None = None) -> Sensitivity | None:
    """Final loss against lr of Optuna's trials (one run each; ``value`` ``None`` = diverged), ``chosen``
    the lr of the configuration selected; ``None`` when no trial tuned the lr."""
    points = [
        (float(t["params"]["lr"]), math.inf if t.get("value") is None else float(t["value"]))
        for t in trials
        if "lr" in t.get("params", {}) and float(t["params"]["lr"]) > 0
    ]
    if not points:
        return None
    return Sensitivity([p[0] for p in points], [[p[1]] for p in points], chosen=chosen)


def is_surface(problem: Any) -> bool:
    """Whether ``problem`` is a 2-D surface the report can contour (``fn``, ``window``, ``minima``)."""
    return all(hasattr(problem, name) for name in ("fn", "window", "minima", "start"))


def problem_surface(problem: Any, n: int = 160) -> Surface:
    """The noiseless surface of a 2-D problem sampled on an ``n`` × ``n`` grid over its window."""
    (x0, x1), (y0, y1) = problem.window

    def f(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = problem.fn(torch.from_numpy(x), torch.from_numpy(y))
        return z.numpy()

    return grid_surface(
        f,
        (x0, x1),
        (y0, y1),
        n=n,
        minima=problem.minima,
        fmin=getattr(problem, "min_value", None),
    )


def trajectories(runs: Mapping[str, RunResult | None]) -> dict[str, np.ndarray]:
    """``label -> [steps + 1, 2]`` trajectory of each run that recorded one."""
    out = {}
    for label, run in runs.items():
        if run is not None and run.trajectory:
            out[label] = np.asarray(run.trajectory, dtype=float)
    return out
