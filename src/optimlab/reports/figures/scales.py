"""How to scale an axis for the values it shows: log, symmetric log or linear, where to put log ticks,
where to mark what diverged. Shared by every figure and its PNG twin, so both choose alike."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "YScale",
    "all_positive",
    "auto_log",
    "finite_values",
    "log_dtick",
    "loss_scale",
    "lr_axis",
    "top_of",
]


def finite_values(*arrays: ArrayLike) -> np.ndarray:
    """Every finite value of ``arrays``, flattened."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) if arrays else np.zeros(0)
    return vals[np.isfinite(vals)]


def auto_log(*arrays: ArrayLike, decades: float = 2.0) -> bool:
    """Log scale when every finite value is positive and they span more than ``decades`` decades."""
    vals = finite_values(*arrays)
    if vals.size == 0 or np.any(vals <= 0):
        return False
    return bool(math.log10(vals.max()) - math.log10(vals.min()) > decades)


def all_positive(*arrays: ArrayLike) -> bool:
    vals = finite_values(*arrays)
    return bool(vals.size and np.all(vals > 0))


def log_dtick(*arrays: ArrayLike, max_ticks: int = 8) -> int | str | None:
    """Plotly ``dtick`` for a log axis over these values.

    A labelled tick every n decades (n = 1, 2, 3, 5, 10, 20, ...; about ``max_ticks`` ticks) when they
    span at least 1.5 decades; ``"D2"`` (labels at 1, 2, 5 × 10^k) for 0.7 to 1.5 decades; ``None``
    (Plotly's choice) below that or without positive values.
    """
    vals = finite_values(*arrays)
    vals = vals[vals > 0]
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
    vals = finite_values(*lrs)
    if vals.size == 0 or np.any(vals < 0):
        return False, None
    top = float(vals.max())
    return False, (0.0, top * 1.15 if top > 0 else 1.0)


def top_of(values: list[np.ndarray], log: bool) -> float:
    """A y just above every finite value (where diverged runs are marked)."""
    vals = finite_values(*values)
    if vals.size == 0:
        return 1.0
    hi, lo = float(vals.max()), float(vals.min())
    if log and lo > 0:
        decades = math.log10(hi) - math.log10(lo)
        top = math.log10(hi) + (0.08 * decades if decades > 0 else 0.3)
        return 10.0 ** min(top, 300.0)
    return min(hi + 0.08 * (hi - lo if hi > lo else abs(hi) or 1.0), 1e300)


@dataclass(frozen=True)
class YScale:
    """How to draw losses: ``"linear"``, ``"log"`` or ``"symlog"`` (symmetric log: linear within
    ``±linthresh``, logarithmic beyond, for values that go negative or reach 0 while spanning decades).

    Plotly has no symmetric-log axis, so an interactive figure draws :meth:`forward` of its values on a
    linear axis with ticks at powers of ten (:meth:`ticks`) and shows the values themselves on hover;
    matplotlib has one (:meth:`apply`).
    """

    kind: str = "linear"
    linthresh: float = 1.0

    def forward(self, values: ArrayLike) -> np.ndarray:
        """``values`` as drawn: ``sign(v)·log10(1 + |v|/linthresh)`` on a symlog scale, else unchanged."""
        v = np.asarray(values, dtype=float)
        if self.kind != "symlog":
            return v
        with np.errstate(all="ignore"):
            return np.sign(v) * np.log10(1.0 + np.abs(v) / self.linthresh)

    def inverse(self, drawn: float) -> float:
        """The value drawn at ``drawn`` (the inverse of :meth:`forward`)."""
        if self.kind != "symlog":
            return float(drawn)
        return float(math.copysign(self.linthresh * (10.0 ** abs(drawn) - 1.0), drawn))

    def ticks(self, *values: ArrayLike, max_per_side: int = 5) -> tuple[list[float], list[str]]:
        """Tick positions (in :meth:`forward` units) and labels of a symlog axis: 0 and ±10^k from ten
        times ``linthresh`` to the largest magnitude on each side, every few decades when they are
        many."""
        vals = finite_values(*values)
        lo = round(math.log10(self.linthresh)) + 1  # ±linthresh itself would crowd 0
        ticks = [(0.0, "0")]
        for sign in (1, -1):
            side = vals[sign * vals > 0]
            if side.size:
                hi = max(lo, math.ceil(math.log10(float(np.abs(side).max()))))
                step = max(1, math.ceil((hi - lo + 1) / max_per_side))
                ticks += [(sign * 10.0**k, _power(k, sign)) for k in range(lo, hi + 1, step)]
        ticks.sort()
        return [float(self.forward(v)) for v, _ in ticks], [text for _, text in ticks]

    def apply(self, ax) -> None:
        """Set this scale on a matplotlib y axis."""
        if self.kind == "log":
            ax.set_yscale("log")
        elif self.kind == "symlog":
            ax.set_yscale("symlog", linthresh=self.linthresh)


def _power(k: int, sign: int) -> str:
    text = f"{10.0**k:g}" if -2 <= k <= 3 else f"10<sup>{k}</sup>"
    return text if sign > 0 else "−" + text


def loss_scale(*arrays: ArrayLike, log_y: bool | None = None, decades: float = 2.0) -> YScale:
    """The scale for losses: log where every value is positive and they span more than ``decades``
    decades, symlog where some are negative (or 0) and their magnitudes span more than ``decades``
    decades above the smallest typical one (its 5th percentile, rounded down to a power of ten), else
    linear. ``log_y`` True or False forces a logarithmic (log or symlog) or a linear scale."""
    vals = finite_values(*arrays)
    if log_y is False or vals.size == 0:
        return YScale()
    if np.all(vals > 0):
        return YScale("log") if log_y or auto_log(vals, decades=decades) else YScale()
    magnitudes = np.abs(vals[vals != 0])
    if magnitudes.size == 0:
        return YScale()
    linthresh = 10.0 ** math.floor(math.log10(float(np.percentile(magnitudes, 5))))
    if log_y is None and math.log10(float(magnitudes.max()) / linthresh) <= decades:
        return YScale()
    return YScale("symlog", linthresh)
