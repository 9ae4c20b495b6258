"""What a report needs to draw a 2-D problem's contour, computed when the comparison runs and stored
with its plan — so a report reads only stored results and never imports the problem again (a user's
module may be gone by then).

:func:`is_surface` tells a 2-D surface (a problem with ``fn``, ``window``, ``minima`` and ``start``);
:func:`sample` samples its noiseless ``f`` on a grid over its window; :func:`contour_entry` is the
plan's ``"contour"`` entry of a problem (``None`` for other problems) and :func:`from_entry` reads one
back. The grid's values are stored exactly: little-endian float64, zlib-compressed, base64 text.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GRID", "Contour", "contour_entry", "from_entry", "is_surface", "sample"]

#: points per side of the sampled grid
GRID = 160


@dataclass(frozen=True)
class Contour:
    """A 2-D problem's ``f`` sampled on an ``n`` × ``n`` grid over its ``window``: ``z[j, i] = f(x[i],
    y[j])``, with its known ``minima``, the known minimum value ``min_value`` (``None``: unknown) and the
    ``start`` point of its runs."""

    window: tuple[tuple[float, float], tuple[float, float]]
    z: np.ndarray
    minima: tuple[tuple[float, float], ...]
    min_value: float | None
    start: tuple[float, float]

    @property
    def x(self) -> np.ndarray:
        return np.linspace(self.window[0][0], self.window[0][1], self.z.shape[1])

    @property
    def y(self) -> np.ndarray:
        return np.linspace(self.window[1][0], self.window[1][1], self.z.shape[0])


def is_surface(problem: Any) -> bool:
    """Whether ``problem`` is a 2-D surface the reports can contour (``fn``, ``window``, ``minima``,
    ``start``)."""
    return all(hasattr(problem, name) for name in ("fn", "window", "minima", "start"))


def _pair(values: Any) -> tuple[float, float]:
    a, b = values
    return float(a), float(b)


def sample(problem: Any, n: int = GRID) -> Contour:
    """The noiseless ``f`` of the 2-D ``problem`` on an ``n`` × ``n`` grid over its window (float64)."""
    import torch

    (x0, x1), (y0, y1) = window = (_pair(problem.window[0]), _pair(problem.window[1]))
    xx, yy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    with torch.no_grad(), np.errstate(all="ignore"):
        z = np.asarray(problem.fn(torch.from_numpy(xx), torch.from_numpy(yy)).numpy(), dtype=float)
    min_value = getattr(problem, "min_value", None)
    return Contour(
        window,
        z,
        tuple(_pair(m) for m in problem.minima),
        None if min_value is None else float(min_value),
        _pair(problem.start),
    )


def contour_entry(problem: Any) -> dict[str, Any] | None:
    """The plan's ``"contour"`` entry of ``problem``: its :func:`sample` as plain JSON data; ``None``
    for a problem that is not a 2-D surface, or whose ``f`` cannot be evaluated on a float64 grid (the
    report then draws the paths without the contour and says so)."""
    if not is_surface(problem):
        return None
    try:
        c = sample(problem)
    except Exception:  # a user's f that fails on the grid costs the contour, never the comparison
        return None
    if c.z.shape != (GRID, GRID):
        return None
    data = zlib.compress(np.ascontiguousarray(c.z, dtype="<f8").tobytes(), 6)
    return {
        "window": [list(c.window[0]), list(c.window[1])],
        "n": GRID,
        "f": base64.b64encode(data).decode("ascii"),
        "minima": [list(m) for m in c.minima],
        "min_value": c.min_value,
        "start": list(c.start),
    }


def from_entry(entry: Mapping[str, Any] | None) -> Contour | None:
    """The :class:`Contour` of a plan's ``"contour"`` entry (``None`` for none: another kind of
    problem, or a comparison stored before contours were)."""
    if not entry:
        return None
    n = int(entry["n"])
    z = np.frombuffer(zlib.decompress(base64.b64decode(entry["f"])), dtype="<f8").reshape(n, n)
    min_value = entry.get("min_value")
    return Contour(
        (_pair(entry["window"][0]), _pair(entry["window"][1])),
        z.astype(float),
        tuple(_pair(m) for m in entry.get("minima", [])),
        None if min_value is None or not math.isfinite(float(min_value)) else float(min_value),
        _pair(entry["start"]),
    )
