"""Interactive Plotly figures for the report, built from the plain data of :mod:`optimlab.reports.data`.

Every function returns a ``plotly.graph_objects.Figure`` meant for :class:`optimlab.reports.page.Page`
(which embeds Plotly's JavaScript once); :mod:`optimlab.reports.png` draws the same data with matplotlib.
User-supplied text (labels, titles) is escaped for Plotly's HTML-like text renderer, so it is shown as
typed. Each optimizer label keeps its colour across figures when the same ``colors`` mapping is passed
(see :func:`optimlab.reports.data.color_map`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from numpy.typing import ArrayLike
from plotly.subplots import make_subplots

from optimlab.lab.lr_find import RULES, LRFindSummary
from optimlab.lab.stats import Profile
from optimlab.reports import _prep
from optimlab.reports.data import Curves, Sensitivity, Surface, color_map, finite_list, plotly_text

__all__ = [
    "FONT",
    "loss_figure",
    "lr_find_figure",
    "lr_sensitivity_figure",
    "performance_profile_figure",
    "schedule_figure",
    "surface_figure",
]

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
_MENU_STYLE = {
    "type": "buttons",
    "direction": "right",
    "showactive": True,
    "bgcolor": "#f3f4f6",
    "bordercolor": "#d1d5db",
    "font": {"size": 12},
    "pad": {"r": 2, "t": 0, "b": 0, "l": 2},
    "yanchor": "bottom",
    "y": 1.015,
}


def _nums(values: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """Trace data as a numpy array (Plotly embeds it as a compact typed array), non-finite as NaN (a
    gap). float32 halves the size where its precision is plenty (coordinates, contour heights)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = np.where(np.isfinite(v), v, np.nan).astype(dtype)
    return np.where(np.isfinite(out), out, np.nan).astype(dtype)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, title: str, height: int, *, top: int = 72, hovermode: str = "closest") -> None:
    fig.update_layout(
        template="plotly_white",
        height=height,
        font={"family": FONT, "size": 13, "color": "#1f2937"},
        title={
            "text": plotly_text(title),
            "x": 0.0,
            "xanchor": "left",
            "y": 0.985,
            "yanchor": "top",
            "font": {"size": 15},
            "pad": {"l": 4},
        },
        margin={"l": 70, "r": 24, "t": top, "b": 56},
        legend={
            "traceorder": "normal",
            "font": {"size": 12},
            "tracegroupgap": 2,
            "itemclick": "toggle",
            "itemdoubleclick": "toggleothers",
        },
        hovermode=hovermode,
        hoverlabel={"namelength": -1, "font": {"family": FONT}},
    )


def _y_scale(log_y: bool, *values: ArrayLike, max_ticks: int = 8) -> dict:
    """Axis settings for a log or linear y axis; on log axes one labelled tick per decade (or per few
    decades when the data span many), written as powers of ten."""
    if not log_y:
        return {"type": "linear", "dtick": None, "exponentformat": "B"}
    return {"type": "log", "dtick": _prep.log_dtick(*values, max_ticks=max_ticks), "exponentformat": "power"}


def _scale_menu(log_y: bool, *values: ArrayLike, axis: str = "yaxis", x: float = 1.0) -> dict:
    """Buttons switching ``axis`` between log and linear."""

    def args(log: bool) -> list[dict]:
        return [{f"{axis}.{k}": v for k, v in _y_scale(log, *values).items()} | {f"{axis}.autorange": True}]

    return _MENU_STYLE | {
        "x": x,
        "xanchor": "right",
        "active": 0 if log_y else 1,
        "buttons": [
            {"label": "log y", "method": "relayout", "args": args(True)},
            {"label": "linear y", "method": "relayout", "args": args(False)},
        ],
    }


def _band(fig: go.Figure, x: list, lo: np.ndarray, hi: np.ndarray, color: str, group: str, **where) -> None:
    """An inter-quartile band: the lower edge, then the upper edge filled down to it."""
    common = {
        "mode": "lines",
        "line": {"width": 0, "color": color},
        "hoverinfo": "skip",
        "showlegend": False,
        "legendgroup": group,
        "connectgaps": False,
    }
    fig.add_trace(go.Scatter(x=x, y=finite_list(lo), **common), **where)
    fig.add_trace(
        go.Scatter(x=x, y=finite_list(hi), fill="tonexty", fillcolor=_rgba(color, 0.18), **common), **where
    )


def loss_figure(
    curves: Mapping[str, Curves],
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    x: str = "steps",
    log_y: bool | None = None,
    target: float | None = None,
    show_lr: bool | None = None,
    max_points: int = 400,
    height: int | None = None,
) -> go.Figure:
    """Loss against steps: per optimizer the median across seeds and the IQR band (25th–75th percentile).

    Buttons switch the x axis between steps, gradient evaluations and seconds (those every optimizer
    provides) and the y axis between log and linear (default: log when the medians span more than two
    decades). When learning rates are given (``show_lr`` default), a panel below shares the x axis and
    shows the lr in force. ``target`` draws the loss target as a dashed line. A legend entry notes how
    many seeds diverged. Curves are subsampled to ``max_points`` points after the statistics are taken.
    """
    if not curves:
        raise ValueError("loss_figure needs curves for at least one optimizer")
    axes = _prep.common_axes(curves)
    if x not in axes:
        raise ValueError(f"x axis {x!r} is not available for every optimizer; choose one of {axes}")
    labels = list(curves)
    cmap = color_map(labels, colors)
    series = {label: _prep.loss_series(curves[label], axes, max_points) for label in labels}
    has_lr = any(s.lr is not None for s in series.values()) if show_lr is None else bool(show_lr)
    if log_y is None:
        log_y = _prep.auto_log(*(s.median for s in series.values()))
    log_y = log_y and _prep.all_positive(*(s.median for s in series.values()))
    rows = 2 if has_lr else 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        row_heights=[0.72, 0.28] if has_lr else None,
    )
    xs: dict[str, list[list]] = {a: [] for a in axes}

    def track(xvals: dict[str, list]) -> None:
        for a in axes:
            xs[a].append(xvals[a])

    for i, label in enumerate(labels):
        s, color, group = series[label], cmap[label], f"g{i}"
        xv = {a: finite_list(s.x[a]) for a in axes}
        if s.seeds > 1:
            _band(fig, xv[x], s.q25, s.q75, color, group, row=1, col=1)
            track(xv)
            track(xv)
        name = plotly_text(_prep.diverged_label(label, s.seeds, s.diverged))
        fig.add_trace(
            go.Scatter(
                x=xv[x],
                y=finite_list(s.median),
                mode="lines",
                name=name,
                legendgroup=group,
                line={"color": color, "width": 2},
            ),
            row=1,
            col=1,
        )
        track(xv)
        if has_lr and s.lr is not None:
            fig.add_trace(
                go.Scatter(
                    x=xv[x],
                    y=finite_list(s.lr),
                    mode="lines",
                    name=name,
                    legendgroup=group,
                    showlegend=False,
                    line={"color": color, "width": 1.6},
                ),
                row=2,
                col=1,
            )
            track(xv)
    if target is not None:
        ends = {}
        for a in axes:
            allx = np.concatenate([s.x[a] for s in series.values()])
            allx = allx[np.isfinite(allx)]
            ends[a] = finite_list([allx.min(), allx.max()]) if allx.size else [None, None]
        fig.add_trace(
            go.Scatter(
                x=ends[x],
                y=[float(target)] * 2,
                mode="lines",
                name=f"target {target:.4g}",
                line={"color": "#6b7280", "width": 1.2, "dash": "dash"},
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
        track(ends)
    bottom = "xaxis2" if has_lr else "xaxis"
    rescale = {f"{ax}.autorange": True for ax in (["xaxis", "xaxis2"] if has_lr else ["xaxis"])}
    height = height or (560 if has_lr else 440)
    _layout(fig, title, height, hovermode="x unified")
    medians = [s.median for s in series.values()]
    fig.update_yaxes(title_text="loss", hoverformat=".4g", row=1, col=1, **_y_scale(log_y, *medians))
    if has_lr:
        lrs = [s.lr for s in series.values() if s.lr is not None]
        lr_log, lr_range = _prep.lr_axis(*lrs)
        fig.update_yaxes(
            title_text="lr",
            hoverformat=".3g",
            row=2,
            col=1,
            rangemode="tozero" if not lr_log else "normal",
            range=list(lr_range) if lr_range is not None else None,
            **_y_scale(lr_log, *lrs, max_ticks=3),
        )
    fig.update_xaxes(title_text=_prep.X_AXES[x], row=rows, col=1)
    menus = [_scale_menu(log_y, *medians)]
    if len(axes) > 1:
        menus.append(
            _MENU_STYLE
            | {
                "x": 0.0,
                "xanchor": "left",
                "active": axes.index(x),
                "buttons": [
                    {
                        "label": _prep.X_AXES[a].replace("gradient evaluations", "gradient evals"),
                        "method": "update",
                        "args": [{"x": xs[a]}, {f"{bottom}.title.text": _prep.X_AXES[a]} | rescale],
                    }
                    for a in axes
                ],
            }
        )
    fig.update_layout(updatemenus=menus)
    return fig


def lr_sensitivity_figure(
    data: Mapping[str, Sensitivity],
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    log_y: bool | None = None,
    lines: bool = True,
    height: int = 460,
) -> go.Figure:
    """Final loss against learning rate (log x): per optimizer the median across seeds (line), the IQR
    band, every seed as a faint dot, a star at the best lr, and an ✕ above the curves for every lr
    where a seed diverged (hover: how many). ``lines=False`` draws the medians as markers only (for
    points that are not a curve, e.g. tuning trials that also vary other hyperparameters)."""
    if not data:
        raise ValueError("lr_sensitivity_figure needs data for at least one optimizer")
    labels = list(data)
    cmap = color_map(labels, colors)
    series = {label: _prep.sensitivity_series(data[label]) for label in labels}
    finite_vals = [s.seed_loss for s in series.values()]
    if log_y is None:
        log_y = _prep.auto_log(*finite_vals)
    log_y = log_y and _prep.all_positive(*finite_vals)
    top = _prep.top_of(finite_vals, log_y)
    fig = go.Figure()
    for i, label in enumerate(labels):
        s, color, group = series[label], cmap[label], f"g{i}"
        x = finite_list(s.lrs)
        name = plotly_text(label)
        if s.seeds > 1 and s.lrs.size > 1:
            _band(fig, x, s.q25, s.q75, color, group)
        fig.add_trace(
            go.Scatter(
                x=finite_list(s.seed_lr),
                y=finite_list(s.seed_loss),
                mode="markers",
                marker={"color": color, "size": 5, "opacity": 0.45},
                showlegend=False,
                legendgroup=group,
                name=name,
                hovertemplate="lr %{x:.3g}<br>seed's final loss %{y:.4g}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=finite_list(s.median),
                mode="lines+markers" if lines else "markers",
                name=name,
                legendgroup=group,
                line={"color": color, "width": 2},
                marker={"size": 7},
                hovertemplate="lr %{x:.3g}<br>median final loss %{y:.4g}",
            )
        )
        if s.best_lr is not None:
            fig.add_trace(
                go.Scatter(
                    x=[s.best_lr],
                    y=[s.best_loss],
                    mode="markers",
                    showlegend=False,
                    legendgroup=group,
                    name=name,
                    marker={
                        "symbol": "star",
                        "size": 15,
                        "color": color,
                        "line": {"color": "#111827", "width": 1},
                    },
                    hovertemplate="best lr %{x:.3g}<br>median final loss %{y:.4g}",
                )
            )
        if s.diverged_lr.size:
            text = [f"{int(k)}/{s.seeds} seeds diverged" for k in s.diverged_count]
            fig.add_trace(
                go.Scatter(
                    x=finite_list(s.diverged_lr),
                    y=[top] * int(s.diverged_lr.size),
                    mode="markers",
                    showlegend=False,
                    legendgroup=group,
                    name=name,
                    text=text,
                    marker={
                        "symbol": "x-thin-open",
                        "size": 11,
                        "color": color,
                        "line": {"width": 2, "color": color},
                    },
                    hovertemplate="lr %{x:.3g}<br>%{text}",
                )
            )
    _layout(fig, title, height)
    fig.update_xaxes(
        title_text="learning rate",
        type="log",
        exponentformat="power",
        dtick=_prep.log_dtick(*(d.lrs for d in data.values())),
    )
    fig.update_yaxes(title_text="final loss", **_y_scale(log_y, *finite_vals))
    fig.update_layout(updatemenus=[_scale_menu(log_y, *finite_vals)])
    if any(s.diverged_lr.size for s in series.values()):
        fig.add_annotation(
            text="✕ = diverged",
            xref="paper",
            yref="paper",
            x=0.0,
            y=1.0,
            xanchor="left",
            yanchor="bottom",
            showarrow=False,
            font={"size": 11, "color": "#6b7280"},
        )
    return fig


# Light, low-saturation fill (white at the minimum, grey-blue uphill) so the coloured paths stand out.
_SURFACE_SCALE = [
    [0.0, "#ffffff"],
    [0.35, "#e4eaf1"],
    [0.7, "#c3cfdc"],
    [1.0, "#94a6ba"],
]


def surface_figure(
    surface: Surface,
    trajectories: Mapping[str, ArrayLike],
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    start: tuple[float, float] | None = None,
    axis_titles: tuple[str, str] = ("x", "y"),
    max_frames: int = 100,
    max_points: int = 250,
    frame_ms: int = 60,
    height: int = 620,
) -> go.Figure:
    """A 2-D surface as filled contours (log-spaced levels when the values span decades) with every
    optimizer's trajectory ([steps + 1, 2] arrays, row 0 = start), the known minima (★) and the start
    (○). The figure opens on the finished paths; ▶ plays them step by step and the slider scrubs
    (at most ``max_frames`` frames; paths drawn with at most ``max_points`` points each)."""
    cmap = color_map(list(trajectories), colors)
    cd = _prep.contour_data(surface)
    p = _prep.paths(trajectories, max_points=max_points, max_frames=max_frames, start=start)
    step = float(cd.levels[1] - cd.levels[0])
    colorbar = {"title": {"text": cd.title, "side": "right"}, "thickness": 12, "len": 0.9, "outlinewidth": 0}
    if cd.is_log:
        colorbar |= {"tickvals": cd.tickvals, "ticktext": cd.ticktext}
    fig = go.Figure()
    fig.add_trace(
        go.Contour(
            x=_nums(surface.x),
            y=_nums(surface.y),
            z=_nums(cd.values, np.float32),
            customdata=_nums(surface.z, np.float32),
            contours={
                "start": float(cd.levels[0]),
                "end": float(cd.levels[-1]),
                "size": step,
                "coloring": "fill",
                "showlines": True,
            },
            line={"width": 0.6, "color": "rgba(80,95,115,0.35)"},
            colorscale=_SURFACE_SCALE,
            colorbar=colorbar,
            name="f",
            hovertemplate="x %{x:.3g}, y %{y:.3g}<br>f %{customdata:.4g}<extra></extra>",
        )
    )
    last = int(p.frames[-1])
    moving: list[int] = []
    for i, label in enumerate(p.labels):
        color, group, name = cmap[label], f"g{i}", plotly_text(label)
        idx, pts = _prep.path_until(p, label, last)
        moving.append(len(fig.data))
        fig.add_trace(
            go.Scatter(
                x=_nums(pts[:, 0], np.float32),
                y=_nums(pts[:, 1], np.float32),
                customdata=idx.tolist(),
                mode="lines+markers",
                name=name,
                legendgroup=group,
                line={"color": color, "width": 2.2},
                marker={"size": 3.5, "color": color},
                hovertemplate="step %{customdata}<br>(%{x:.4g}, %{y:.4g})",
            )
        )
        moving.append(len(fig.data))
        fig.add_trace(
            go.Scatter(
                x=_nums(pts[-1:, 0], np.float32),
                y=_nums(pts[-1:, 1], np.float32),
                mode="markers",
                showlegend=False,
                legendgroup=group,
                name=name,
                customdata=[int(idx[-1])],
                marker={"size": 11, "color": color, "line": {"color": "white", "width": 1.5}},
                hovertemplate="step %{customdata}<br>(%{x:.4g}, %{y:.4g})",
            )
        )
    if surface.minima:
        mx, my = zip(*surface.minima, strict=True)
        fig.add_trace(
            go.Scatter(
                x=list(mx),
                y=list(my),
                mode="markers",
                name="minimum",
                marker={
                    "symbol": "star",
                    "size": 16,
                    "color": "#fde047",
                    "line": {"color": "#111827", "width": 1},
                },
                hovertemplate="minimum (%{x:.4g}, %{y:.4g})<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[p.start[0]],
            y=[p.start[1]],
            mode="markers",
            name="start",
            marker={"symbol": "circle-open", "size": 13, "color": "#111827", "line": {"width": 2.5}},
            hovertemplate="start (%{x:.4g}, %{y:.4g})<extra></extra>",
        )
    )
    frames = []
    for k in p.frames.tolist():
        data = []
        for label in p.labels:
            idx, pts = _prep.path_until(p, label, k)
            data.append(
                {
                    "type": "scatter",
                    "x": _nums(pts[:, 0], np.float32),
                    "y": _nums(pts[:, 1], np.float32),
                    "customdata": idx.astype(np.int32),
                }
            )
            data.append(
                {
                    "type": "scatter",
                    "x": _nums(pts[-1:, 0], np.float32),
                    "y": _nums(pts[-1:, 1], np.float32),
                    "customdata": idx[-1:].astype(np.int32),
                }
            )
        frames.append(go.Frame(name=str(k), data=data, traces=moving))
    fig.frames = frames
    still = {"mode": "immediate", "frame": {"duration": 0, "redraw": False}, "transition": {"duration": 0}}
    play = {
        "frame": {"duration": frame_ms, "redraw": False},
        "transition": {"duration": 0},
        "fromcurrent": False,
        "mode": "immediate",
    }
    _layout(fig, title, height, top=96)
    fig.update_layout(
        margin={"l": 64, "r": 24, "t": 96, "b": 92},
        xaxis={
            "title": {"text": plotly_text(axis_titles[0])},
            "range": [float(surface.x[0]), float(surface.x[-1])],
            "showgrid": False,
            "zeroline": False,
        },
        yaxis={
            "title": {"text": plotly_text(axis_titles[1])},
            "range": [float(surface.y[0]), float(surface.y[-1])],
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
                "font": {"size": 1, "color": "rgba(0,0,0,0)"},  # one tick per frame: too many labels to read
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


def performance_profile_figure(
    profile: Profile,
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    cost: str = "steps to target",
    height: int = 440,
) -> go.Figure:
    """The performance profile as step lines on a log τ axis, legend ordered by score (in brackets), with
    the scoring window ``τ ≤ tau_max`` marked."""
    scores = profile.scores
    order = sorted(profile.solvers, key=lambda s: (-scores[s], profile.solvers.index(s)))
    cmap = color_map(profile.solvers, colors)
    end = profile.tau_end()
    fig = go.Figure()
    for solver in order:
        taus, rho = profile.steps(solver, end)
        fig.add_trace(
            go.Scatter(
                x=finite_list(taus),
                y=finite_list(rho),
                mode="lines",
                line_shape="hv",
                name=plotly_text(f"{solver} ({scores[solver]:.2f})"),
                line={"color": cmap[solver], "width": 2.2},
                hovertemplate="τ %{x:.3g}: %{y:.0%} of problems",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[profile.tau_max] * 2,
            y=[0, 1],
            mode="lines",
            name=f"score window τ ≤ {profile.tau_max:g}",
            line={"color": "#9ca3af", "width": 1.2, "dash": "dot"},
            hoverinfo="skip",
        )
    )
    _layout(fig, title, height)
    fig.update_xaxes(
        title_text=plotly_text(f"τ: within a factor τ of the best {cost}"),
        type="log",
        range=[0, math.log10(end)],
        dtick="D2",
    )
    fig.update_yaxes(
        title_text=f"fraction of problems (n = {len(profile.problems)})",
        range=[-0.03, 1.03],
        tickformat=".0%",
    )
    fig.update_layout(legend={"title": {"text": "optimizer (score)"}})
    return fig


def schedule_figure(
    schedules: Mapping[str, ArrayLike],
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    x_title: str = "step",
    log_y: bool = False,
    metric: tuple[str, ArrayLike] | None = None,
    height: int = 420,
) -> go.Figure:
    """Learning rate per step for several labelled schedules (``label -> lr[step]``), drawn as steps
    (the lr holds until the next scheduler step). ``metric = (name, values)`` adds that curve (e.g. the
    validation loss driving ReduceLROnPlateau) on a right-hand axis."""
    if not schedules:
        raise ValueError("schedule_figure needs at least one schedule")
    cmap = color_map(list(schedules), colors)
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
    _layout(fig, title, height, hovermode="x unified")
    fig.update_xaxes(title_text=plotly_text(x_title))
    lrs = [np.asarray(v, dtype=float) for v in schedules.values()]
    fig.update_yaxes(
        title_text="learning rate", hoverformat=".3g", secondary_y=False, **_y_scale(log_y, *lrs)
    )
    fig.update_layout(updatemenus=[_scale_menu(log_y, *lrs)])
    return fig


def lr_find_figure(
    results: Mapping[str, LRFindSummary],
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    rules: Sequence[str] = RULES,
    height: int = 460,
) -> go.Figure:
    """The LR range test: smoothed loss against lr (log x), median across seeds with the IQR band, and a
    vertical line per suggestion (dash per rule); the marker's horizontal bar spans the seeds' own
    suggestions by that rule."""
    if not results:
        raise ValueError("lr_find_figure needs at least one result")
    cmap = color_map(list(results), colors)
    yr = _prep.lr_find_range(results)
    ylo, yhi = yr if yr is not None else (0.0, 1.0)
    single = len(results) == 1
    fig = go.Figure()
    for i, (label, s) in enumerate(results.items()):
        color, group, name = cmap[label], f"g{i}", plotly_text(label)
        x = finite_list(s.lrs)
        if s.seeds > 1:
            _band(fig, x, s.q25, s.q75, color, group)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=finite_list(s.median),
                mode="lines",
                name=f"{name} ({s.seeds} seeds)",
                legendgroup=group,
                line={"color": color, "width": 2.2},
                hovertemplate="lr %{x:.3g}<br>smoothed loss %{y:.4g}",
            )
        )
        for rule in rules:
            if rule not in s.suggestions:
                continue
            lr = s.suggestions[rule]
            at = _prep.interp_log(lr, s.lrs, s.median)
            seeds = s.seed_suggestions.get(rule, np.zeros(0))
            seeds = seeds[np.isfinite(seeds)]
            err = {}
            if seeds.size > 1:
                err = {
                    "error_x": {
                        "type": "data",
                        "symmetric": False,
                        "array": [max(0.0, float(seeds.max()) - lr)],
                        "arrayminus": [max(0.0, lr - float(seeds.min()))],
                        "color": color,
                        "thickness": 1.5,
                        "width": 5,
                    }
                }
            label_text = f"{rule} {lr:.2g}" if single else f"{name}: {rule} {lr:.2g}"
            dash = _prep.RULE_DASH.get(rule, "dashdot")
            fig.add_trace(
                go.Scatter(
                    x=[lr, lr, lr],
                    y=[ylo, at, yhi],
                    mode="lines+markers",
                    name=label_text,
                    legendgroup=group,
                    line={"color": color, "width": 1.4, "dash": dash},
                    marker={"size": [0, 9, 0], "color": color, "symbol": "diamond"},
                    hovertemplate=f"{rule}: lr %{{x:.3g}}<extra></extra>",
                )
            )
            if err:
                fig.add_trace(
                    go.Scatter(
                        x=[lr],
                        y=[at],
                        mode="markers",
                        showlegend=False,
                        legendgroup=group,
                        marker={"size": 0.1, "color": color},
                        hoverinfo="skip",
                        **err,
                    )
                )
    _layout(fig, title, height)
    fig.update_xaxes(
        title_text="learning rate",
        type="log",
        exponentformat="power",
        dtick=_prep.log_dtick(*(r.lrs for r in results.values())),
    )
    fig.update_yaxes(title_text="smoothed loss", range=[ylo, yhi] if yr is not None else None)
    return fig
