"""Learning-rate schedules: the lr in force at every scheduler step, several overlaid, drawn as steps
(the lr holds until the next scheduler step); optionally the metric that drove one (ReduceLROnPlateau)
on a right-hand axis.

A schedule steps once per epoch or once per batch: given each schedule's ``units``, the figure draws
the per-epoch schedules against epochs and the per-batch ones against steps, in a panel each.
:func:`zero_spans` finds where a schedule holds the lr at 0 (which the figure draws and a page should
warn about: nothing trains there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from numpy.typing import ArrayLike
from plotly.subplots import make_subplots

from optimlab.reports.figures import plotly_base, png_base
from optimlab.reports.figures.arrays import gaps
from optimlab.reports.figures.base import Twin
from optimlab.reports.figures.style import mpl_text, plotly_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ScheduleFigure", "zero_lr_text", "zero_spans"]


def zero_spans(lrs: ArrayLike) -> list[tuple[int, int]]:
    """The ``(first, last)`` indices of every run of learning rates at (or below) 0."""
    zero = np.concatenate([[False], np.asarray(lrs, dtype=float).ravel() <= 0, [False]])
    edges = np.flatnonzero(np.diff(zero.astype(int)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def zero_lr_text(label: str, lrs: ArrayLike, unit: str) -> str | None:
    """A sentence saying where the schedule ``label`` holds the lr at 0 (``unit``: what an index counts,
    "epoch" or "step"); ``None`` where it never does."""
    spans = zero_spans(lrs)
    if not spans:
        return None
    where = ", ".join(f"{unit} {a}" if a == b else f"{unit}s {a}–{b}" for a, b in spans)
    count = sum(b - a + 1 for a, b in spans)
    total = np.asarray(lrs).size
    return (
        f"{label} holds the learning rate at 0 for {count} of its {total} {unit}s ({where}): the "
        "optimizer does not move there, whatever it is."
    )


@dataclass(frozen=True, eq=False)
class ScheduleFigure(Twin):
    """Learning rate per scheduler step for several labelled schedules (``label -> lr[step]``), drawn as
    steps (the lr holds until the next scheduler step), against ``x_title``; with ``units`` (``label ->
    "epoch" or "step"``, what one scheduler step is) per-epoch schedules are drawn against epochs and
    per-batch ones against steps, one panel each. ``metric = (name, values)`` adds that curve (e.g. the
    loss driving ReduceLROnPlateau) on a right-hand axis (one panel only)."""

    schedules: Mapping[str, ArrayLike]
    x_title: str = "step"
    log_y: bool = False
    metric: tuple[str, ArrayLike] | None = None
    units: Mapping[str, str] | None = None

    def _prepare(self) -> tuple[list[tuple[str, dict[str, np.ndarray]]], tuple[str, np.ndarray] | None]:
        """The panels (x title, their schedules as flat float arrays) and the metric."""
        if not self.schedules:
            raise ValueError("a schedule figure needs at least one schedule")
        panels: dict[str, dict[str, np.ndarray]] = {}
        for label, values in self.schedules.items():
            unit = (self.units or {}).get(label, self.x_title)
            panels.setdefault(unit, {})[label] = np.asarray(values, dtype=float).ravel()
        if self.metric is None:
            return list(panels.items()), None
        if len(panels) > 1:
            raise ValueError("a metric is drawn beside one panel of schedules, not several")
        return list(panels.items()), (self.metric[0], np.asarray(self.metric[1], dtype=float).ravel())

    def plotly(self, *, height: int = 420) -> go.Figure:
        panels, metric = self._prepare()
        cmap, short = self.palette(self.schedules), self.short(self.schedules)
        rows = len(panels)
        fig = make_subplots(
            rows=rows, cols=1, vertical_spacing=0.16, specs=[[{"secondary_y": metric is not None}]] * rows
        )
        for row, (unit, schedules) in enumerate(panels, start=1):
            for label, y in schedules.items():
                trace = plotly_base.line(
                    list(range(y.size)),
                    y,
                    name=plotly_text(short[label]),
                    color=cmap[label],
                    width=2.2,
                    line_shape="hv",
                    hovertemplate=f"{plotly_text(label)}: %{{y:.3g}}<extra></extra>",
                )
                fig.add_trace(trace, row=row, col=1, secondary_y=False)
            fig.update_xaxes(title_text=plotly_text(unit), row=row, col=1)
        if metric is not None:
            mname, m = metric
            trace = plotly_base.line(
                list(range(m.size)),
                m,
                name=plotly_text(mname),
                color="#6b7280",
                width=1.5,
                line={"dash": "dot"},
            )
            fig.add_trace(trace, secondary_y=True)
            fig.update_yaxes(title_text=plotly_text(mname), secondary_y=True, showgrid=False, tickmode="auto")
        plotly_base.layout(fig, self.title, height + 220 * (rows - 1), hovermode="x unified")
        lrs = [y for _, schedules in panels for y in schedules.values()]
        axes = ("yaxis", "yaxis2")[:rows] if metric is None else ("yaxis",)
        for row in range(1, rows + 1):
            fig.update_yaxes(
                title_text="learning rate",
                hoverformat=".3g",
                secondary_y=False,
                row=row,
                col=1,
                **plotly_base.y_axis(self.log_y, *lrs),
            )
        fig.update_layout(updatemenus=[plotly_base.scale_menu(self.log_y, *lrs, axes=axes)])
        return fig

    @png_base.quiet_overflow
    def draw(self) -> Figure:
        panels, metric = self._prepare()
        cmap, short = self.palette(self.schedules), self.short(self.schedules, png=True)
        fig = png_base.new_figure(height=4.6 + 2.6 * (len(panels) - 1))
        axes = np.atleast_1d(fig.subplots(len(panels), 1))
        handles: list = []
        labels: list[str] = []
        for ax, (unit, schedules) in zip(axes, panels, strict=True):
            for label, y in schedules.items():
                line = ax.step(np.arange(y.size), gaps(y), where="post", color=cmap[label], linewidth=1.8)
                handles += line
                labels.append(mpl_text(short[label]))
            if self.log_y:
                ax.set_yscale("log")
            ax.set_xlabel(mpl_text(unit))
            ax.set_ylabel("learning rate")
            png_base.finish(ax, self.title if ax is axes[0] else "", legend=False)
        if metric is not None:
            mname, m = metric
            twin = axes[0].twinx()
            (curve,) = twin.plot(
                np.arange(m.size), gaps(m), color="#6b7280", linewidth=1.3, linestyle=png_base.DASH["dot"]
            )
            twin.set_ylabel(mpl_text(mname))
            twin.tick_params(labelsize=9)
            twin.spines[["top"]].set_visible(False)
            handles.append(curve)
            labels.append(mpl_text(mname))
        png_base.legend_outside(axes[0], handles=handles, labels=labels)
        return fig
