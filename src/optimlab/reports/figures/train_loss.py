"""The training loss of every step (the mini-batch loss the optimizer saw) and the lr it used, drawn
with the loss figure of :mod:`optimlab.reports.figures.loss`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from optimlab.lab.run import RunResult
from optimlab.reports.figures import loss

if TYPE_CHECKING:
    from optimlab.reports.section import ProblemSection

__all__ = ["CAPTION", "in_report", "step_curves"]


def step_curves(runs: Sequence[RunResult]) -> loss.Curves | None:
    """The training loss of every step and the lr it used; ``None`` without steps. A diverged run's row
    is padded with ``+inf``, and the step whose loss stopped it counts as ``+inf``."""
    runs = [r for r in runs if r.losses]
    if not runs:
        return None
    n = max(len(r.losses) for r in runs)
    values = np.full((len(runs), n), np.inf)
    lr = np.full((len(runs), n), np.nan)
    for i, run in enumerate(runs):
        k = len(run.losses)
        values[i, :k] = run.losses
        lr[i, : len(run.lrs)] = run.lrs
        if run.diverged and not loss.stopped_at_evaluation(run):
            values[i, k - 1] = np.inf  # the step whose loss stopped the run
    return loss.Curves(values, steps=np.arange(1, n + 1), lr=lr if np.isfinite(lr).any() else None)


CAPTION = (
    "The mini-batch loss each step saw (before its update) and the learning rate it used: median across "
    "seeds and inter-quartile band."
)


def in_report(section: ProblemSection) -> None:
    """Only where an epoch has several steps, and not for 2-D surfaces (whose per-step loss is the
    evaluated curve, only denser)."""
    if section.two_d or section.problem.steps_per_epoch <= 1:
        return
    curves = loss.per_optimizer(section, step_curves)
    if curves:
        title = f"{section.title}: training loss per step"
        section.add(loss.LossFigure(curves, title=title, colors=section.colors), "train-loss", CAPTION)
