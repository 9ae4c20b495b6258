"""A 2-D surface as filled contours with every optimizer's trajectory, the known minima and the start.

Data (:mod:`optimlab.reports.figures.surface_data`): a :class:`~.surface_data.Surface` and trajectories
(``label -> [steps + 1, 2]`` arrays, row 0 the start). :class:`SurfaceFigure` opens on the finished
paths; ▶ plays them step by step and a slider scrubs. Its PNG shows the finished paths;
:mod:`optimlab.reports.figures.surface_gif` animates them as a GIF. In a report: :func:`in_report`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from numpy.typing import ArrayLike

from optimlab.reports.figures import plotly_base, png_base, surface_gif
from optimlab.reports.figures.arrays import gaps
from optimlab.reports.figures.base import Twin
from optimlab.reports.figures.style import mpl_text, plotly_text
from optimlab.reports.figures.surface_data import (
    FILL_SCALE,
    Paths,
    Surface,
    draw_contour,
    fill,
    from_contour,
    legend_below,
    mark_points,
    paths,
    trajectories,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from optimlab.reports.section import ProblemSection

__all__ = ["CAPTION", "NO_CONTOUR", "SurfaceFigure", "in_report"]


# --- the figure -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SurfaceFigure(Twin):
    """A 2-D surface as filled contours (log-spaced levels when the values span decades) with every
    optimizer's trajectory ([steps + 1, 2] arrays, row 0 = start), the known minima (★) and the
    ``start`` (○; default: the first trajectory's first point); without a ``surface`` (a comparison stored
    before contours were) the paths alone. Interactively the figure opens on the
    finished paths; ▶ plays them step by step and the slider scrubs (at most ``max_frames`` frames;
    paths drawn with at most ``max_points`` points each). The PNG shows the finished paths, the GIF
    (:meth:`gif`) grows them."""

    surface: Surface | None
    trajectories: Mapping[str, ArrayLike]
    start: tuple[float, float] | None = None
    axis_titles: tuple[str, str] = ("x", "y")

    def plotly(
        self, *, max_frames: int = 100, max_points: int = 250, frame_ms: int = 60, height: int = 620
    ) -> go.Figure:
        surface = self.surface
        cmap, short = self.palette(self.trajectories), self.short(self.trajectories)
        p = paths(self.trajectories, max_points=max_points, max_frames=max_frames, start=self.start)
        fig = go.Figure()
        if surface is not None:
            fig.add_trace(_contour_trace(surface))
        last = int(p.frames[-1])
        moving: list[int] = []
        for i, label in enumerate(p.labels):
            color, group, name = cmap[label], f"g{i}", plotly_text(short[label])
            hover = f"step %{{customdata}}<br>(%{{x:.4g}}, %{{y:.4g}})<extra>{plotly_text(label)}</extra>"
            idx, pts = p.until(label, last)
            moving.append(len(fig.data))
            fig.add_trace(
                go.Scatter(
                    x=gaps(pts[:, 0], np.float32),
                    y=gaps(pts[:, 1], np.float32),
                    customdata=idx.tolist(),
                    mode="lines+markers",
                    name=name,
                    legendgroup=group,
                    line={"color": color, "width": 2.2},
                    marker={"size": 3.5, "color": color},
                    hovertemplate=hover,
                )
            )
            moving.append(len(fig.data))
            fig.add_trace(
                go.Scatter(
                    x=gaps(pts[-1:, 0], np.float32),
                    y=gaps(pts[-1:, 1], np.float32),
                    mode="markers",
                    showlegend=False,
                    legendgroup=group,
                    name=name,
                    customdata=[int(idx[-1])],
                    marker={"size": 11, "color": color, "line": {"color": "white", "width": 1.5}},
                    hovertemplate=hover,
                )
            )
        points = {"minimum": surface.minima if surface is not None else (), "start": (p.start,)}
        for what, xy in points.items():
            if xy:
                xs, ys = zip(*xy, strict=True)
                hover = f"{what} (%{{x:.4g}}, %{{y:.4g}})<extra></extra>"
                fig.add_trace(
                    go.Scatter(
                        x=xs, y=ys, mode="markers", name=what, marker=_MARKS[what], hovertemplate=hover
                    )
                )
        fig.frames = [_frame(p, k, moving) for k in p.frames.tolist()]
        still = {
            "mode": "immediate",
            "frame": {"duration": 0, "redraw": False},
            "transition": {"duration": 0},
        }
        play = {
            "frame": {"duration": frame_ms, "redraw": False},
            "transition": {"duration": 0},
            "fromcurrent": False,
            "mode": "immediate",
        }
        plotly_base.layout(fig, self.title, height, top=96)
        fig.update_layout(
            margin={"l": 64, "r": 24, "t": 96, "b": 92},
            xaxis={
                "title": {"text": plotly_text(self.axis_titles[0])},
                "range": None if surface is None else [float(surface.x[0]), float(surface.x[-1])],
                "showgrid": False,
                "zeroline": False,
            },
            yaxis={
                "title": {"text": plotly_text(self.axis_titles[1])},
                "range": None if surface is None else [float(surface.y[0]), float(surface.y[-1])],
                "showgrid": False,
                "zeroline": False,
            },
            legend={
                "orientation": "h",
                "x": 0.0,
                "xanchor": "left",
                "y": 1.015,
                "yanchor": "bottom",
                "bgcolor": "rgba(255,255,255,0)",
            },
            updatemenus=[
                {
                    "type": "buttons",
                    "direction": "right",
                    "showactive": False,
                    "x": 0.0,
                    "xanchor": "left",
                    "y": -0.13,
                    "yanchor": "top",
                    "pad": {"t": 0, "r": 8},
                    "bgcolor": "#f3f4f6",
                    "bordercolor": "#d1d5db",
                    "font": {"size": 12},
                    "buttons": [
                        {"label": "▶ play", "method": "animate", "args": [None, play]},
                        {"label": "❚❚ pause", "method": "animate", "args": [[None], still]},
                    ],
                }
            ],
            sliders=[
                {
                    "active": len(p.frames) - 1,
                    "x": 0.18,
                    "len": 0.82,
                    "xanchor": "left",
                    "y": -0.1,
                    "yanchor": "top",
                    "pad": {"t": 0, "b": 0},
                    "ticklen": 0,
                    "minorticklen": 0,
                    "tickcolor": "rgba(0,0,0,0)",
                    "font": {
                        "size": 1,
                        "color": "rgba(0,0,0,0)",
                    },  # one tick per frame: too many labels to read
                    "currentvalue": {
                        "prefix": "step ",
                        "xanchor": "right",
                        "font": {"size": 12, "color": "#1f2937"},
                    },
                    "steps": [
                        {"label": str(k), "method": "animate", "args": [[str(k)], still]}
                        for k in p.frames.tolist()
                    ],
                }
            ],
        )
        return fig

    @png_base.quiet_overflow
    def draw(self) -> Figure:
        cmap, short = self.palette(self.trajectories), self.short(self.trajectories, png=True)
        p = paths(self.trajectories, max_points=100_000, max_frames=2, start=self.start)
        fig = png_base.new_figure(7.2, 6.0)
        ax = fig.subplots()
        if self.surface is not None:
            draw_contour(ax, self.surface)
        for label in p.labels:
            pts = p.full[label]
            ax.plot(
                pts[:, 0],
                pts[:, 1],
                color=cmap[label],
                linewidth=1.6,
                marker="o",
                markersize=1.8,
                label=mpl_text(short[label]),
            )
            ax.scatter(
                pts[-1:, 0],
                pts[-1:, 1],
                s=45,
                color=cmap[label],
                edgecolors="white",
                linewidths=1.0,
                zorder=5,
            )
        mark_points(ax, self.surface, p.start)
        ax.set_xlabel(mpl_text(self.axis_titles[0]))
        ax.set_ylabel(mpl_text(self.axis_titles[1]))
        png_base.finish(ax, self.title, grid=False, legend=False)
        legend_below(ax)
        return fig

    def gif(self, path: str | Path, **options: Any) -> Path:
        """The animated GIF of the paths growing (see :func:`optimlab.reports.figures.surface_gif.gif`
        for the ``options``)."""
        return surface_gif.gif(self, path, **options)


#: how the known minima (★) and the start (○) are marked
_MARKS = {
    "minimum": {"symbol": "star", "size": 16, "color": "#fde047", "line": {"color": "#111827", "width": 1}},
    "start": {"symbol": "circle-open", "size": 13, "color": "#111827", "line": {"width": 2.5}},
}


def _contour_trace(surface: Surface) -> go.Contour:
    """The filled contour of ``surface`` with its colour bar (decades marked on log-spaced levels); the
    hover shows f itself."""
    cd = fill(surface)
    colorbar = {"title": {"text": cd.title, "side": "right"}, "thickness": 12, "len": 0.9, "outlinewidth": 0}
    if cd.is_log:
        colorbar |= {"tickvals": cd.tickvals, "ticktext": cd.ticktext}
    return go.Contour(
        x=gaps(surface.x),
        y=gaps(surface.y),
        z=gaps(cd.values, np.float32),
        customdata=gaps(surface.z, np.float32),
        contours={
            "start": float(cd.levels[0]),
            "end": float(cd.levels[-1]),
            "size": float(cd.levels[1] - cd.levels[0]),
            "coloring": "fill",
            "showlines": True,
        },
        line={"width": 0.6, "color": "rgba(80,95,115,0.35)"},
        colorscale=FILL_SCALE,
        colorbar=colorbar,
        name="f",
        hovertemplate="x %{x:.3g}, y %{y:.3g}<br>f %{customdata:.4g}<extra></extra>",
    )


#: whether an animation frame is checked by Plotly's validators as it is made (see :func:`_frame`)
VALIDATE_FRAMES = False


def _frame(p: Paths, k: int, moving: list[int]) -> go.Frame:
    """Animation frame ``k``: every path and its head up to step ``k``."""
    data = []
    for label in p.labels:
        idx, pts = p.until(label, k)
        data.append(
            {
                "type": "scatter",
                "x": gaps(pts[:, 0], np.float32),
                "y": gaps(pts[:, 1], np.float32),
                "customdata": idx.astype(np.int32),
            }
        )
        data.append(
            {
                "type": "scatter",
                "x": gaps(pts[-1:, 0], np.float32),
                "y": gaps(pts[-1:, 1], np.float32),
                "customdata": idx[-1:].astype(np.int32),
            }
        )
    # plain scatter dicts of numbers: Plotly's validation of 2 × paths traces × 100 frames took most
    # of a report's Plotly time (the JSON is the same: tests/test_reports_figures.py)
    return go.Frame(name=str(k), data=data, traces=moving, _validate=VALIDATE_FRAMES)


# --- in a report ---------------------------------------------------------------------------------------

CAPTION = (
    "Filled contours of f (log-spaced levels when f spans decades), ★ the known minima, ○ the start; each "
    "line is one optimizer's path. ▶ plays the runs step by step, the slider scrubs through them; points "
    "outside the window are cut off."
)


NO_CONTOUR = (
    "No contour of f is stored with this comparison (it was stored before contours were, or f could not "
    "be evaluated on a grid), so the paths are drawn without it; running the same optimlab compare "
    "command again stores it where it can (every run is reused)."
)


def in_report(section: ProblemSection) -> None:
    """The trajectories of the first seed of every optimizer on the problem's stored contour (or alone,
    with a note, where none was stored)."""
    if not section.two_d:
        return
    first = {o.label: (o.runs[0] if o.runs else None) for o in section.problem.optimizers}
    drawn = trajectories(first)
    if not drawn:
        return
    seed = next(iter(r.seed for r in first.values() if r is not None), 0)
    title = f"{section.title}: trajectories (seed {seed})"
    stored = section.problem.contour
    if stored is None:
        section.out.page.text(NO_CONTOUR, note=True)
    surface = None if stored is None else from_contour(stored)
    start = None if stored is None else stored.start
    figure = SurfaceFigure(surface, drawn, title=title, colors=section.colors, start=start)
    section.add(figure, "surface", CAPTION)
