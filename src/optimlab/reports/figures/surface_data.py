"""The data of the surface figures: a 2-D function sampled on a grid, its contour levels, the
trajectories prepared for drawing and animating, and the matplotlib contour that the PNG
(:mod:`optimlab.reports.figures.surface`) and the GIF (:mod:`optimlab.reports.figures.surface_gif`)
share."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from optimlab.lab.contours import Contour as StoredContour
from optimlab.lab.run import RunResult
from optimlab.reports.figures.arrays import float_array, subsample

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

__all__ = [
    "FILL_SCALE",
    "ContourLevels",
    "Fill",
    "Paths",
    "Surface",
    "draw_contour",
    "fill",
    "from_contour",
    "grid_surface",
    "legend_below",
    "mark_points",
    "paths",
    "trajectories",
    "trajectory_array",
]

# Light, low-saturation fill (white at the minimum, grey-blue uphill) so the coloured paths stand out.
_FILL = ["#ffffff", "#e4eaf1", "#c3cfdc", "#94a6ba"]
FILL_SCALE = [[0.0, _FILL[0]], [0.35, _FILL[1]], [0.7, _FILL[2]], [1.0, _FILL[3]]]


@cache
def _cmap() -> Colormap:
    """The filled contours' colour map (matplotlib is loaded here, when a PNG or GIF is drawn: a
    report whose files another process draws never loads it)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("optimlab_surface", _FILL)


@dataclass(frozen=True)
class Surface:
    """A 2-D function sampled on a grid: ``z[j, i] = f(x[i], y[j])``.

    ``minima``: known minimizers ``(x, y)`` to mark; ``fmin``: the known minimum value (defaults to the
    smallest grid value), used as the floor of log-spaced contour levels.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    minima: tuple[tuple[float, float], ...] = field(default=())
    fmin: float | None = None

    def __post_init__(self) -> None:
        x = float_array(self.x, "x")
        y = float_array(self.y, "y")
        z = float_array(self.z, "z")
        if x.ndim != 1 or y.ndim != 1 or x.size < 2 or y.size < 2:
            raise ValueError("x and y must be 1-D grids with at least 2 points each")
        if z.shape != (y.size, x.size):
            raise ValueError(f"z must have shape (len(y), len(x)) = ({y.size}, {x.size}), got {z.shape}")
        if not np.any(np.isfinite(z)):
            raise ValueError("z has no finite value")
        minima = tuple((float(a), float(b)) for a, b in self.minima)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "z", z)
        object.__setattr__(self, "minima", minima)
        if self.fmin is not None:
            object.__setattr__(self, "fmin", float(self.fmin))

    def levels(self, n: int = 24) -> ContourLevels:
        """What to contour.

        When linear levels would waste themselves on the heights — half of the grid lies in the lowest
        tenth of the range, or the range spans more than three decades — the contour is drawn on
        ``log10(f - fmin + eps)`` (``eps`` = 1e-4 of the range) with levels evenly spaced in it,
        otherwise on ``f`` with linear levels. Non-finite grid values are clipped to the largest finite.
        """
        if n < 2:
            raise ValueError(f"need at least 2 contour levels, got {n}")
        finite = self.z[np.isfinite(self.z)]
        z = np.where(np.isfinite(self.z), self.z, float(finite.max()))
        floor = min(float(finite.min()), self.fmin if self.fmin is not None else math.inf)
        shifted = z - floor
        span = float(shifted.max())
        positive = shifted[shifted > 0]
        skewed = (
            span > 0
            and positive.size > 0
            and (
                float(np.median(shifted)) < 0.1 * span
                or span / max(float(np.percentile(positive, 5)), 1e-300) > 1e3
            )
        )
        if skewed:
            eps = span * 1e-4
            values = np.log10(shifted + eps)
            levels = np.linspace(float(values.min()), float(values.max()), n)
            return ContourLevels(values, levels, True, floor, eps)
        hi = float(z.max()) if span > 0 else floor + 1.0
        return ContourLevels(z, np.linspace(floor, hi, n), False, floor, 0.0)


@dataclass(frozen=True)
class ContourLevels:
    """``values`` to contour at ``levels``; when ``is_log``, ``values = log10(f - floor + eps)``."""

    values: np.ndarray
    levels: np.ndarray
    is_log: bool
    floor: float
    eps: float


def grid_surface(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    *,
    n: int = 160,
    minima: Sequence[tuple[float, float]] = (),
    fmin: float | None = None,
) -> Surface:
    """Sample a vectorized ``f(X, Y)`` on an ``n`` × ``n`` grid over ``xlim`` × ``ylim``."""
    if n < 2:
        raise ValueError(f"grid size n must be at least 2, got {n}")
    x = np.linspace(float(xlim[0]), float(xlim[1]), n)
    y = np.linspace(float(ylim[0]), float(ylim[1]), n)
    xx, yy = np.meshgrid(x, y)
    with np.errstate(all="ignore"):
        z = np.asarray(f(xx, yy), dtype=float)
    return Surface(x=x, y=y, z=z, minima=tuple(minima), fmin=fmin)


def from_contour(contour: StoredContour) -> Surface:
    """The :class:`Surface` of a contour stored with a comparison's plan (:mod:`optimlab.lab.contours`)."""
    return Surface(contour.x, contour.y, contour.z, contour.minima, contour.min_value)


def trajectory_array(path: ArrayLike, label: str) -> np.ndarray:
    """A trajectory as a [T, 2] float array (row 0 is the start point)."""
    arr = float_array(path, f"trajectory {label!r}")
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(f"trajectory {label!r} must have shape [steps + 1, 2], got {arr.shape}")
    return arr


def trajectories(runs: Mapping[str, RunResult | None]) -> dict[str, np.ndarray]:
    """``label -> [steps + 1, 2]`` trajectory of each run that recorded one."""
    out = {}
    for label, run in runs.items():
        if run is not None and run.trajectory:
            out[label] = np.asarray(run.trajectory, dtype=float)
    return out


# --- data preparation, shared by the figure, its PNG and the GIF -----------------------------------


@dataclass(frozen=True)
class Fill:
    """What to fill: ``values`` at ``levels``, with colour-bar ticks at whole decades when log-spaced."""

    values: np.ndarray
    levels: np.ndarray
    is_log: bool
    tickvals: list[float]
    ticktext: list[str]
    title: str


def _decade_text(d: int) -> str:
    return f"{10.0**d:g}" if -3 <= d <= 4 else f"1e{d}"


def fill(surface: Surface, n_levels: int = 24) -> Fill:
    lv = surface.levels(n_levels)
    if not lv.is_log:
        return Fill(lv.values, lv.levels, False, [], [], "f")
    lo, hi = float(lv.values.min()), float(lv.values.max())
    tickvals, ticktext = [], []
    for d in range(math.floor(lo) - 1, math.ceil(hi) + 2):
        v = math.log10(10.0**d + lv.eps)
        if lo <= v <= hi and 10.0**d >= 2 * lv.eps:
            tickvals.append(v)
            ticktext.append(_decade_text(d))
    return Fill(lv.values, lv.levels, True, tickvals, ticktext, "f − f*")


@dataclass(frozen=True)
class Paths:
    """Trajectories prepared for drawing and animating."""

    labels: list[str]
    full: dict[str, np.ndarray]  # label -> [T, 2]
    kept: dict[str, np.ndarray]  # label -> indices into full kept for drawing
    frames: np.ndarray  # step numbers the animation shows
    start: tuple[float, float]

    def until(self, label: str, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(step numbers, [m, 2] points) of ``label``'s drawn path up to ``step``; the last point is
        exact."""
        full, kept = self.full[label], self.kept[label]
        last = min(step, len(full) - 1)
        idx = kept[kept <= last]
        if idx.size == 0 or idx[-1] != last:
            idx = np.append(idx, last)
        return idx, full[idx]


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


# --- drawn with matplotlib, for the PNG and the GIF ----------------------------------------------------


def draw_contour(ax, surface: Surface) -> None:
    """The filled contour, its lines and its colour bar on ``ax``, the axes fitted to the window."""
    cd = fill(surface)
    cs = ax.contourf(surface.x, surface.y, cd.values, levels=cd.levels, cmap=_cmap(), extend="both")
    ax.contour(
        surface.x, surface.y, cd.values, levels=cd.levels, colors="#505f73", linewidths=0.4, alpha=0.35
    )
    bar = ax.figure.colorbar(cs, ax=ax, shrink=0.9, pad=0.01)
    bar.set_label(cd.title)
    if cd.is_log:
        bar.set_ticks(cd.tickvals, labels=cd.ticktext)
    bar.ax.tick_params(labelsize=8)
    ax.set_xlim(surface.x[0], surface.x[-1])
    ax.set_ylim(surface.y[0], surface.y[-1])


#: how the known minima (★) and the start (○) are marked on a PNG or GIF
_MARKS = {
    "minimum": {"marker": "*", "s": 170, "color": "#fde047", "linewidths": 0.8},
    "start": {"marker": "o", "s": 90, "facecolors": "none", "linewidths": 2.0},
}


def mark_points(ax, surface: Surface | None, start: tuple[float, float]) -> None:
    """The known minima (★) and the start (○)."""
    points = {"minimum": surface.minima if surface is not None else (), "start": (start,)}
    for name, xy in points.items():
        if xy:
            xs, ys = zip(*xy, strict=True)
            ax.scatter(xs, ys, edgecolors="#111827", zorder=6, label=name, **_MARKS[name])


def legend_below(ax) -> None:
    """The legend under the axes, where the constrained layout makes room for it: up to four entries a
    row, two where the labels are long."""
    handles, texts = ax.get_legend_handles_labels()
    ncols = min(4 if max(map(len, texts)) <= 16 else 2, len(texts))
    ax.figure.legend(handles, texts, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
