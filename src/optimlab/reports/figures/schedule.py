"""Learning-rate schedules: the lr in force at every scheduler step, several overlaid, drawn as steps
(the lr holds until the next scheduler step); optionally the metric that drove one (ReduceLROnPlateau)
on a right-hand axis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from plotly.subplots import make_subplots

from optimlab.reports.figures import plotly_base, png_base
from optimlab.reports.figures.arrays import finite_list, gaps
from optimlab.reports.figures.base import Twin
from optimlab.reports.figures.style import mpl_text, plotly_text

__all__ = ["ScheduleFigure"]


@dataclass(frozen=True, eq=False)
class ScheduleFigure(Twin):
    """Learning rate per step for several labelled schedules (``label -> lr[step]``), drawn as steps
    (the lr holds until the next scheduler step), against ``x_title`` (a step, or an epoch). ``metric =
    (name, values)`` adds that curve (e.g. the validation loss driving ReduceLROnPlateau) on a
    right-hand axis."""

    schedules: Mapping[str, ArrayLike]
    x_title: str = "step"
    log_y: bool = False
    metric: tuple[str, ArrayLike] | None = None

    def _prepare(self) -> tuple[dict[str, np.ndarray], tuple[str, np.ndarray] | None]:
        """Every schedule and the metric as flat float arrays."""
        if not self.schedules:
            raise ValueError("a schedule figure needs at least one schedule")
        schedules = {label: np.asarray(v, dtype=float).ravel() for label, v in self.schedules.items()}
        if self.metric is None:
            return schedules, None
        return schedules, (self.metric[0], np.asarray(self.metric[1], dtype=float).ravel())

    def plotly(self, *, height: int = 420) -> go.Figure:
        schedules, metric = self._prepare()
        cmap = self.palette(schedules)
        fig = make_subplots(specs=[[{"secondary_y": metric is not None}]])
        for label, values in schedules.items():
            y = np.asarray(values, dtype=float).ravel()
            fig.add_trace(
                go.Scatter(
                    x=list(range(y.size)),
                    y=finite_list(y),
                    mode="lines",
                    line_shape="hv",
                    name=plotly_text(label),
                    line={"color": cmap[label], "width": 2.2},
                ),
                secondary_y=False,
            )
        if metric is not None:
            mname, mvalues = metric
            m = np.asarray(mvalues, dtype=float).ravel()
            fig.add_trace(
                go.Scatter(
                    x=list(range(m.size)),
                    y=finite_list(m),
                    mode="lines",
                    name=plotly_text(mname),
                    line={"color": "#6b7280", "width": 1.5, "dash": "dot"},
                ),
                secondary_y=True,
            )
            fig.update_yaxes(title_text=plotly_text(mname), secondary_y=True, showgrid=False, tickmode="auto")
        plotly_base.layout(fig, self.title, height, hovermode="x unified")
        fig.update_xaxes(title_text=plotly_text(self.x_title))
        lrs = [np.asarray(v, dtype=float) for v in schedules.values()]
        fig.update_yaxes(
            title_text="learning rate",
            hoverformat=".3g",
            secondary_y=False,
            **plotly_base.y_axis(self.log_y, *lrs),
        )
        fig.update_layout(updatemenus=[plotly_base.scale_menu(self.log_y, *lrs)])
        return fig

    @png_base.quiet_overflow
    def draw(self) -> Figure:
        schedules, metric = self._prepare()
        cmap = self.palette(schedules)
        fig = png_base.new_figure()
        ax = fig.subplots()
        for label, values in schedules.items():
            y = gaps(np.asarray(values, dtype=float).ravel())
            ax.step(
                np.arange(y.size), y, where="post", color=cmap[label], linewidth=1.8, label=mpl_text(label)
            )
        if self.log_y:
            ax.set_yscale("log")
        ax.set_xlabel(mpl_text(self.x_title))
        ax.set_ylabel("learning rate")
        png_base.finish(ax, self.title)
        if metric is not None:
            mname, mvalues = metric
            m = gaps(np.asarray(mvalues, dtype=float).ravel())
            twin = ax.twinx()
            twin.plot(
                np.arange(m.size),
                m,
                color="#6b7280",
                linewidth=1.3,
                linestyle=png_base.DASH["dot"],
                label=mpl_text(mname),
            )
            twin.set_ylabel(mpl_text(mname))
            twin.tick_params(labelsize=9)
            twin.spines[["top"]].set_visible(False)
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = twin.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=8, frameon=False, loc="best")
        else:
            png_base.add_legend(ax, loc="best")
        return fig
