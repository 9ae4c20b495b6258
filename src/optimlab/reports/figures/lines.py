"""Curves in one or more panels side by side: the general figure of the course's demonstrations.

A :class:`Lines` figure holds :class:`Panel` s; each panel draws named :class:`Series` (x and y arrays)
as lines, markers or stems, on linear or logarithmic axes, with an optional dashed reference line.
The same label keeps its colour in every panel. The PNG twin draws the same panels with matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optimlab.reports.figures import plotly_base, png_base
from optimlab.reports.figures.base import Twin
from optimlab.reports.figures.style import mpl_text, plotly_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Lines", "Panel", "Series"]

Mode = Literal["lines", "markers", "lines+markers", "stem"]


@dataclass(frozen=True)
class Series:
    """One named curve: ``y`` against ``x`` (same length; non-finite values leave gaps)."""

    label: str
    x: Sequence[float] | np.ndarray
    y: Sequence[float] | np.ndarray
    mode: Mode = "lines"
    dash: Literal["solid", "dash", "dot", "dashdot"] = "solid"

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.asarray(self.x, dtype=float), np.asarray(self.y, dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(
                f"series {self.label!r}: x and y must be 1-D of one length, got {x.shape}, {y.shape}"
            )
        return x, y


@dataclass(frozen=True)
class Panel:
    """One set of axes: its ``series``, axis titles, log axes, and an optional horizontal reference
    line ``hline`` (with its label)."""

    title: str
    series: Sequence[Series]
    x_title: str = ""
    y_title: str = ""
    log_x: bool = False
    log_y: bool = False
    hline: tuple[float, str] | None = None


@dataclass(frozen=True, eq=False)
class Lines(Twin):
    """Panels of curves side by side (see the module docstring)."""

    panels: Sequence[Panel] = field(default_factory=tuple)
    height: int = 420

    def __post_init__(self) -> None:
        if not self.panels:
            raise ValueError("a Lines figure needs at least one panel")
        for panel in self.panels:
            for s in panel.series:
                s.arrays()

    def _labels(self) -> list[str]:
        return list(dict.fromkeys(s.label for p in self.panels for s in p.series))

    def plotly(self) -> go.Figure:
        colors = self.palette(self._labels())
        fig = make_subplots(
            rows=1,
            cols=len(self.panels),
            subplot_titles=[plotly_text(p.title) for p in self.panels],
            horizontal_spacing=0.08,
        )
        shown: set[str] = set()
        for col, panel in enumerate(self.panels, start=1):
            for s in panel.series:
                x, y = s.arrays()
                color = colors[s.label]
                first = s.label not in shown
                shown.add(s.label)
                if s.mode == "stem":
                    xs = np.repeat(x, 3)
                    ys = np.column_stack([np.zeros_like(y), y, np.full_like(y, np.nan)]).ravel()
                    xs[2::3] = np.nan
                    fig.add_trace(
                        go.Scatter(
                            x=xs,
                            y=ys,
                            mode="lines",
                            line={"color": color, "width": 1},
                            name=plotly_text(s.label),
                            legendgroup=s.label,
                            showlegend=first,
                            hoverinfo="skip",
                        ),
                        row=1,
                        col=col,
                    )
                    fig.add_trace(
                        go.Scatter(x=x, y=y, mode="markers", marker={"color": color, "size": 5},
                                   name=plotly_text(s.label), legendgroup=s.label, showlegend=False),
                        row=1, col=col,
                    )  # fmt: skip
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=y,
                        mode=s.mode,
                        line={"color": color, "dash": s.dash},
                        marker={"color": color, "size": 5},
                        name=plotly_text(s.label),
                        legendgroup=s.label,
                        showlegend=first,
                    ),
                    row=1,
                    col=col,
                )
            if panel.hline is not None:
                value, text = panel.hline
                fig.add_hline(y=value, line={"dash": "dash", "color": "#6b7280", "width": 1},
                              annotation_text=plotly_text(text), row=1, col=col)  # fmt: skip
            fig.update_xaxes(title_text=plotly_text(panel.x_title), type="log" if panel.log_x else "linear",
                             row=1, col=col)  # fmt: skip
            fig.update_yaxes(title_text=plotly_text(panel.y_title), type="log" if panel.log_y else "linear",
                             row=1, col=col)  # fmt: skip
        plotly_base.layout(fig, self.title, self.height)
        return fig

    @png_base.quiet_overflow
    def draw(self) -> Figure:
        colors = self.palette(self._labels())
        fig = png_base.new_figure(width=max(6.0, 4.6 * len(self.panels)) + 1.6, height=4.4)
        axes = fig.subplots(1, len(self.panels), squeeze=False)[0]
        for ax, panel in zip(axes, self.panels, strict=True):
            png_base.style(ax)
            for s in panel.series:
                x, y = s.arrays()
                color = colors[s.label]
                label = mpl_text(s.label)
                if s.mode == "stem":
                    ax.vlines(x, 0, y, color=color, linewidth=0.8)
                    ax.plot(x, y, "o", color=color, markersize=3, label=label)
                elif s.mode == "markers":
                    ax.plot(x, y, "o", color=color, markersize=3, label=label)
                else:
                    marker = "o" if s.mode == "lines+markers" else None
                    ax.plot(x, y, color=color, linestyle=png_base.DASH[s.dash], marker=marker,
                            markersize=3, linewidth=1.4, label=label)  # fmt: skip
            if panel.hline is not None:
                ax.axhline(panel.hline[0], color="#6b7280", linestyle=png_base.DASH["dash"], linewidth=1)
            ax.set_title(mpl_text(panel.title), fontsize=10)
            ax.set_xlabel(mpl_text(panel.x_title), fontsize=9)
            ax.set_ylabel(mpl_text(panel.y_title), fontsize=9)
            if panel.log_x:
                ax.set_xscale("log")
            if panel.log_y:
                ax.set_yscale("log")
        handles, labels = [], []
        for ax in axes:
            for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(h)
                    labels.append(label)
        png_base.legend_outside(axes[-1], handles=handles, labels=labels)
        if self.title:
            fig.suptitle(mpl_text(self.title), fontsize=11)
        return fig
