"""Plain data the report figures are drawn from.

Everything here works on numpy arrays; nothing knows about the lab's storage. A lab result is turned
into these containers by a thin adapter, and the same container feeds the interactive Plotly figure
(:mod:`optimlab.reports.figures`) and its matplotlib PNG twin (:mod:`optimlab.reports.png`).

Conventions
-----------
* A non-finite loss (``nan``, ``±inf``) means the run diverged. Statistics
  (:func:`optimlab.lab.stats.quantiles`) treat it as ``+inf`` (worse than any finite value), so a median
  is finite only while at most half of the seeds have diverged.
* The spread across seeds is the inter-quartile range (25th to 75th percentile, numpy's "linear" rule).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from optimlab.lab.stats import quantiles

__all__ = [
    "PALETTE",
    "ContourLevels",
    "Curves",
    "Sensitivity",
    "Surface",
    "color_map",
    "finite_list",
    "grid_surface",
    "mpl_text",
    "plotly_text",
    "subsample",
    "trajectory_array",
]

# Colour-blind-friendly categorical palette (Okabe & Ito 2008, then Tableau's extras); the same label
# gets the same colour in every figure of a report when the caller passes one ``color_map``.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#8C564B",
    "#F0C419",
    "#7F7F7F",
    "#17BECF",
    "#1B3A6B",
    "#9467BD",
)


def color_map(labels: Iterable[str], colors: Mapping[str, str] | None = None) -> dict[str, str]:
    """Colour per label: ``colors[label]`` where given, else the next unused colour of :data:`PALETTE`."""
    given = dict(colors or {})
    used = set(given.values())
    free = [c for c in PALETTE if c not in used] or list(PALETTE)
    out: dict[str, str] = {}
    k = 0
    for label in labels:
        if label in out:
            continue
        if label in given:
            out[label] = given[label]
        else:
            out[label] = free[k % len(free)]
            k += 1
    return out


def plotly_text(value: object) -> str:
    """A user-supplied string made literal for Plotly, whose text renderer understands a little HTML.

    ``<``, ``>`` and ``&`` become entities (which Plotly turns back into the characters), so a label like
    ``<b>x</b>`` or ``<script>`` is shown as typed and never interpreted.
    """
    return html.escape(str(value), quote=False)


def mpl_text(value: object) -> str:
    """A user-supplied string made literal for matplotlib: ``$`` never starts mathtext, and a leading
    underscore (which would hide a legend entry) is kept visible."""
    text = str(value).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def finite_list(values: ArrayLike, digits: int = 6) -> list[float | None]:
    """A flat list of floats rounded to ``digits`` significant digits, ``None`` for non-finite values.

    Plotly draws ``None`` as a gap, and the rounding keeps the embedded JSON small.
    """
    flat = np.asarray(values, dtype=float).ravel()
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in flat.tolist()]


def subsample(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` evenly spread indices into ``range(n)``, always the first and the last."""
    if n <= 0:
        return np.zeros(0, dtype=int)
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))


def _float_array(value: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from exc
    return arr


def _per_point(value: ArrayLike | None, name: str, seeds: int, points: int) -> np.ndarray | None:
    """``value`` as a [seeds, points] array; a 1-D [points] array is shared by all seeds."""
    if value is None:
        return None
    arr = _float_array(value, name)
    if arr.ndim == 1 and arr.shape[0] == points:
        return np.broadcast_to(arr, (seeds, points)).copy()
    if arr.shape == (seeds, points):
        return arr
    raise ValueError(f"{name} must have shape ({points},) or ({seeds}, {points}), got {arr.shape}")


@dataclass(frozen=True)
class Curves:
    """Loss curves of one optimizer on one problem: one row per seed, one column per recorded point.

    ``loss``: [seeds, points] (non-finite = diverged). ``steps``: [points], default ``1..points``.
    ``grad_evals``, ``seconds`` (cumulative wall time) and ``lr`` (the learning rate in force at the
    point): [points] shared by all seeds, or [seeds, points]; each is optional. All are stored as
    [seeds, points] float arrays.
    """

    loss: np.ndarray
    steps: np.ndarray | None = None
    grad_evals: np.ndarray | None = None
    seconds: np.ndarray | None = None
    lr: np.ndarray | None = None

    def __post_init__(self) -> None:
        loss = _float_array(self.loss, "loss")
        if loss.ndim == 1:
            loss = loss[None, :]
        if loss.ndim != 2 or loss.shape[0] == 0 or loss.shape[1] == 0:
            raise ValueError(f"loss must be a non-empty [seeds, points] array, got shape {loss.shape}")
        seeds, points = loss.shape
        steps = self.steps if self.steps is not None else np.arange(1, points + 1)
        object.__setattr__(self, "loss", loss)
        for name, value in (
            ("steps", steps),
            ("grad_evals", self.grad_evals),
            ("seconds", self.seconds),
            ("lr", self.lr),
        ):
            object.__setattr__(self, name, _per_point(value, name, seeds, points))

    @property
    def seeds(self) -> int:
        return int(self.loss.shape[0])

    @property
    def points(self) -> int:
        return int(self.loss.shape[1])

    def axis(self, name: str) -> np.ndarray | None:
        """The x values for axis ``name`` ("steps", "grad_evals" or "seconds") as [seeds, points]."""
        if name not in ("steps", "grad_evals", "seconds"):
            raise ValueError(f"unknown x axis {name!r}; choose steps, grad_evals or seconds")
        return getattr(self, name)

    def band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q25, median, q75) of the loss across seeds at every point."""
        q25, med, q75 = quantiles(self.loss, (0.25, 0.5, 0.75), axis=0)
        return q25, med, q75


@dataclass(frozen=True)
class Sensitivity:
    """Final loss against learning rate for one optimizer: ``final_loss[i, s]`` is seed ``s`` at
    ``lrs[i]`` (non-finite = diverged). ``diverged`` optionally flags runs as diverged although their
    number is finite (e.g. stopped by a loss threshold); it is OR-ed with non-finiteness. ``chosen``: the
    lr a protocol selected (e.g. the lab's lr grid), marked as the best instead of the lowest median."""

    lrs: np.ndarray
    final_loss: np.ndarray
    diverged: np.ndarray | None = None
    chosen: float | None = None

    def __post_init__(self) -> None:
        lrs = _float_array(self.lrs, "lrs")
        if lrs.ndim != 1 or lrs.size == 0:
            raise ValueError(f"lrs must be a non-empty 1-D array, got shape {lrs.shape}")
        if not np.all(np.isfinite(lrs)) or np.any(lrs <= 0):
            raise ValueError("lrs must be finite and positive (they are drawn on a log axis)")
        final = _float_array(self.final_loss, "final_loss")
        if final.ndim == 1:
            final = final[:, None]
        if final.ndim != 2 or final.shape[0] != lrs.size or final.shape[1] == 0:
            raise ValueError(f"final_loss must have shape ({lrs.size}, seeds), got {final.shape}")
        flags = ~np.isfinite(final)
        if self.diverged is not None:
            given = np.asarray(self.diverged, dtype=bool)
            if given.shape != final.shape:
                raise ValueError(f"diverged must have shape {final.shape}, got {given.shape}")
            flags = flags | given
        order = np.argsort(lrs, kind="stable")
        object.__setattr__(self, "lrs", lrs[order])
        object.__setattr__(self, "final_loss", np.where(flags, np.inf, final)[order])
        object.__setattr__(self, "diverged", flags[order])

    def band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q25, median, q75) of the final loss across seeds for every lr."""
        q25, med, q75 = quantiles(self.final_loss, (0.25, 0.5, 0.75), axis=1)
        return q25, med, q75

    def best_lr(self) -> float | None:
        """``chosen`` when it is one of the lrs, else the lr with the lowest median final loss (``None``
        when every lr diverged)."""
        if self.chosen is not None:
            match = np.flatnonzero(np.isclose(self.lrs, self.chosen, rtol=1e-9, atol=0.0))
            if match.size:
                return float(self.lrs[match[0]])
        med = self.band()[1]
        if not np.any(np.isfinite(med)):
            return None
        return float(self.lrs[int(np.argmin(med))])


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
        x = _float_array(self.x, "x")
        y = _float_array(self.y, "y")
        z = _float_array(self.z, "z")
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


def trajectory_array(path: ArrayLike, label: str) -> np.ndarray:
    """A trajectory as a [T, 2] float array (row 0 is the start point)."""
    arr = _float_array(path, f"trajectory {label!r}")
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(f"trajectory {label!r} must have shape [steps + 1, 2], got {arr.shape}")
    return arr
