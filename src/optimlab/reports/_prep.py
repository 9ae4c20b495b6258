"""Data preparation shared by the Plotly figures and their matplotlib twins (written once, drawn twice)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from optimlab.lab.lr_find import LRFindSummary
from optimlab.reports.data import Curves, Sensitivity, Surface, subsample, trajectory_array

X_AXES: dict[str, str] = {"steps": "steps", "grad_evals": "gradient evaluations", "seconds": "seconds"}
RULE_DASH: dict[str, str] = {"steepest": "dash", "valley": "solid", "minimum/10": "dot"}


@dataclass(frozen=True)
class LossSeries:
    """One optimizer's loss band on one x axis, subsampled for drawing."""

    x: dict[str, np.ndarray]  # axis name -> x values (median across seeds)
    q25: np.ndarray
    median: np.ndarray
    q75: np.ndarray
    lr: np.ndarray | None
    seeds: int
    diverged: int  # seeds whose last recorded loss is non-finite


def loss_series(c: Curves, axes: list[str], max_points: int) -> LossSeries:
    idx = subsample(c.points, max_points)
    q25, med, q75 = c.band()
    xs = {}
    for a in axes:
        values = c.axis(a)
        with np.errstate(all="ignore"):
            xs[a] = np.nanmedian(values, axis=0)[idx] if values is not None else None
    lr = None
    if c.lr is not None:
        with np.errstate(all="ignore"):
            lr = np.nanmedian(c.lr, axis=0)[idx]
    diverged = int(np.sum(~np.isfinite(c.loss[:, -1])))
    return LossSeries(xs, q25[idx], med[idx], q75[idx], lr, c.seeds, diverged)


def common_axes(curves: Mapping[str, Curves]) -> list[str]:
    """The x axes every optimizer's curves provide ("steps" always)."""
    return [a for a in X_AXES if all(c.axis(a) is not None for c in curves.values())]


def auto_log(*arrays: ArrayLike, decades: float = 2.0) -> bool:
    """Log scale when every finite value is positive and they span more than ``decades`` decades."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) if arrays else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0 or np.any(vals <= 0):
        return False
    return bool(math.log10(vals.max()) - math.log10(vals.min()) > decades)


def log_dtick(*arrays: ArrayLike, max_ticks: int = 8) -> int | str | None:
    """Plotly ``dtick`` for a log axis over these values.

    A labelled tick every n decades (n = 1, 2, 3, 5, 10, 20, ...; about ``max_ticks`` ticks) when they
    span at least 1.5 decades; ``"D2"`` (labels at 1, 2, 5 × 10^k) for 0.7 to 1.5 decades; ``None``
    (Plotly's choice) below that or without positive values.
    """
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) if arrays else np.zeros(0)
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        return None
    span = math.log10(vals.max()) - math.log10(vals.min())
    if span < 0.7:
        return None
    if span < 1.5:
        return "D2"
    want = span / max(1, max_ticks)
    for nice in (1, 2, 3, 5, 10, 20, 25, 50, 100):
        if nice >= want:
            return nice
    return 100


def lr_axis(*lrs: ArrayLike) -> tuple[bool, tuple[float, float] | None]:
    """How to draw learning rates: ``(log, range)`` — log when they span more than 1.3 decades, else a
    linear axis from 0 to a little above the largest (a constant lr is not drawn as the middle of an
    arbitrary range around it)."""
    if auto_log(*lrs, decades=1.3):
        return True, None
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in lrs]) if lrs else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0 or np.any(vals < 0):
        return False, None
    top = float(vals.max())
    return False, (0.0, top * 1.15 if top > 0 else 1.0)


def all_positive(*arrays: ArrayLike) -> bool:
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    vals = vals[np.isfinite(vals)]
    return bool(vals.size and np.all(vals > 0))


def diverged_label(label: str, series_seeds: int, diverged: int) -> str:
    return f"{label} · {diverged}/{series_seeds} diverged" if diverged else label


@dataclass(frozen=True)
class SensitivitySeries:
    lrs: np.ndarray
    q25: np.ndarray
    median: np.ndarray
    q75: np.ndarray
    seed_lr: np.ndarray  # every finite (lr, loss) pair
    seed_loss: np.ndarray
    diverged_lr: np.ndarray  # lrs where at least one seed diverged
    diverged_count: np.ndarray
    seeds: int
    best_lr: float | None
    best_loss: float | None


def sensitivity_series(s: Sensitivity) -> SensitivitySeries:
    q25, med, q75 = s.band()
    lr_grid = np.broadcast_to(s.lrs[:, None], s.final_loss.shape)
    ok = ~s.diverged
    counts = s.diverged.sum(axis=1)
    best = s.best_lr()
    best_loss = float(med[int(np.argmin(np.abs(s.lrs - best)))]) if best is not None else None
    if best_loss is not None and not np.isfinite(best_loss):
        best, best_loss = None, None  # a chosen lr whose median diverged: nothing to star
    return SensitivitySeries(
        s.lrs,
        q25,
        med,
        q75,
        lr_grid[ok],
        s.final_loss[ok],
        s.lrs[counts > 0],
        counts[counts > 0],
        int(s.final_loss.shape[1]),
        best,
        best_loss,
    )


def top_of(values: list[np.ndarray], log: bool) -> float:
    """A y just above every finite value (where diverged runs are marked)."""
    vals = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values]) if values else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 1.0
    hi, lo = float(vals.max()), float(vals.min())
    if log and lo > 0:
        decades = math.log10(hi) - math.log10(lo)
        top = math.log10(hi) + (0.08 * decades if decades > 0 else 0.3)
        return 10.0 ** min(top, 300.0)
    return min(hi + 0.08 * (hi - lo if hi > lo else abs(hi) or 1.0), 1e300)


@dataclass(frozen=True)
class ContourData:
    values: np.ndarray
    levels: np.ndarray
    is_log: bool
    tickvals: list[float]
    ticktext: list[str]
    title: str


def _decade_text(d: int) -> str:
    return f"{10.0**d:g}" if -3 <= d <= 4 else f"1e{d}"


def contour_data(surface: Surface, n_levels: int = 24) -> ContourData:
    lv = surface.levels(n_levels)
    if not lv.is_log:
        return ContourData(lv.values, lv.levels, False, [], [], "f")
    lo, hi = float(lv.values.min()), float(lv.values.max())
    tickvals, ticktext = [], []
    for d in range(math.floor(lo) - 1, math.ceil(hi) + 2):
        v = math.log10(10.0**d + lv.eps)
        if lo <= v <= hi and 10.0**d >= 2 * lv.eps:
            tickvals.append(v)
            ticktext.append(_decade_text(d))
    return ContourData(lv.values, lv.levels, True, tickvals, ticktext, "f − f*")


@dataclass(frozen=True)
class Paths:
    """Trajectories prepared for drawing and animating."""

    labels: list[str]
    full: dict[str, np.ndarray]  # label -> [T, 2]
    kept: dict[str, np.ndarray]  # label -> indices into full kept for drawing
    frames: np.ndarray  # step numbers the animation shows
    start: tuple[float, float]


def paths(
    trajectories: Mapping[str, ArrayLike],
    *,
    max_points: int,
    max_frames: int,
    start: tuple[float, float] | None = None,
) -> Paths:
    if not trajectories:
        raise ValueError("no trajectories given")
    full = {label: trajectory_array(p, label) for label, p in trajectories.items()}
    kept = {label: subsample(len(p), max_points) for label, p in full.items()}
    longest = max(len(p) for p in full.values())
    frames = subsample(longest, max_frames)
    first = next(iter(full.values()))[0]
    st = (float(first[0]), float(first[1])) if start is None else (float(start[0]), float(start[1]))
    return Paths(list(full), full, kept, frames, st)


def path_until(p: Paths, label: str, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(step numbers, [m, 2] points) of ``label``'s drawn path up to ``step``; the last point is exact."""
    full, kept = p.full[label], p.kept[label]
    last = min(step, len(full) - 1)
    idx = kept[kept <= last]
    if idx.size == 0 or idx[-1] != last:
        idx = np.append(idx, last)
    return idx, full[idx]


def lr_find_range(summaries: Mapping[str, LRFindSummary]) -> tuple[float, float] | None:
    """A y range that shows the descent (from the starting plateau down to the band's bottom) and lets
    the blow-up leave the frame."""
    los, his = [], []
    for s in summaries.values():
        if s.median.size == 0:
            continue
        bottom = int(np.argmin(s.median))
        los.append(float(np.nanmin(np.where(np.isfinite(s.q25), s.q25, np.nan))))
        his.append(float(np.max(s.median[: bottom + 1])))
        his.append(float(s.median[0]))
    if not los:
        return None
    lo, hi = min(los), max(his)
    pad = 0.08 * (hi - lo if hi > lo else abs(hi) or 1.0)
    return lo - pad, hi + 2 * pad


def interp_log(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """``ys`` at ``x`` by linear interpolation in ``log10 x``."""
    return float(np.interp(math.log10(x), np.log10(xs), ys))
