"""Static twins of the report's figures (matplotlib, Agg; PNG for slides and papers) and the animated GIF
of trajectories on a surface.

Each ``*_png`` function takes the same data as its namesake in :mod:`optimlab.reports.figures`, writes
``path`` (parent folders are created) and returns it. The figures are drawn with matplotlib's
object-oriented API on an Agg canvas, so importing this module never touches pyplot's global state or
needs a display.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from PIL import Image

from optimlab.lab.lr_find import RULES, LRFindSummary
from optimlab.lab.stats import Profile
from optimlab.reports import _prep
from optimlab.reports.data import Curves, Sensitivity, Surface, color_map, mpl_text

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "loss_png",
    "lr_find_png",
    "lr_sensitivity_png",
    "performance_profile_png",
    "schedule_png",
    "surface_gif",
    "surface_png",
]

DPI = 150
_DASH = {"dash": (0, (5, 3)), "solid": "-", "dot": (0, (1.2, 2)), "dashdot": "-."}
_SURFACE_CMAP = LinearSegmentedColormap.from_list(
    "optimlab_surface", ["#ffffff", "#e4eaf1", "#c3cfdc", "#94a6ba"]
)


def _quiet_overflow(draw: Callable[P, R]) -> Callable[P, R]:
    """Astronomically large but finite values (a diverging run) overflow matplotlib's log-scale
    arithmetic harmlessly; keep numpy quiet about it."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(over="ignore", invalid="ignore"):
            return draw(*args, **kwargs)

    return wrapper


def _figure(width: float = 8.0, height: float = 4.6) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax, *, grid: bool = True) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    if grid:
        ax.grid(True, which="major", color="#e5e7eb", linewidth=0.8)
    ax.tick_params(labelsize=9)


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, facecolor="white")
    return out


def _finite(a: ArrayLike) -> np.ndarray:
    """Non-finite values as nan (matplotlib leaves a gap)."""
    v = np.asarray(a, dtype=float)
    return np.where(np.isfinite(v), v, np.nan)


def _legend(ax, **kw) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, frameon=False, **kw)


@_quiet_overflow
def loss_png(
    curves: Mapping[str, Curves],
    path: str | Path,
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    x: str = "steps",
    log_y: bool | None = None,
    target: float | None = None,
    show_lr: bool | None = None,
    max_points: int = 1000,
) -> Path:
    """PNG twin of :func:`~optimlab.reports.figures.loss_figure` (one x axis, one y scale)."""
    if not curves:
        raise ValueError("loss_png needs curves for at least one optimizer")
    axes = _prep.common_axes(curves)
    if x not in axes:
        raise ValueError(f"x axis {x!r} is not available for every optimizer; choose one of {axes}")
    cmap = color_map(list(curves), colors)
    series = {label: _prep.loss_series(c, [x], max_points) for label, c in curves.items()}
    has_lr = any(s.lr is not None for s in series.values()) if show_lr is None else bool(show_lr)
    if log_y is None:
        log_y = _prep.auto_log(*(s.median for s in series.values()))
    log_y = log_y and _prep.all_positive(*(s.median for s in series.values()))
    fig = _figure(8.0, 5.6 if has_lr else 4.6)
    if has_lr:
        top, low = fig.subplots(2, 1, sharex=True, height_ratios=[2.6, 1])
    else:
        top, low = fig.subplots(1, 1), None
    for label, s in series.items():
        color = cmap[label]
        xs = _finite(s.x[x])
        if s.seeds > 1:
            top.fill_between(xs, _finite(s.q25), _finite(s.q75), color=color, alpha=0.18, linewidth=0)
        top.plot(
            xs,
            _finite(s.median),
            color=color,
            linewidth=1.8,
            label=mpl_text(_prep.diverged_label(label, s.seeds, s.diverged)),
        )
        if low is not None and s.lr is not None:
            low.plot(xs, _finite(s.lr), color=color, linewidth=1.4)
    if target is not None:
        top.axhline(
            float(target), color="#6b7280", linewidth=1.0, linestyle=(0, (5, 3)), label=f"target {target:.4g}"
        )
    if log_y:
        top.set_yscale("log")
    top.set_ylabel("loss")
    top.set_title(mpl_text(title), loc="left", fontsize=11)
    _style(top)
    _legend(top, loc="best")
    bottom = top
    if low is not None:
        lrs = [s.lr for s in series.values() if s.lr is not None]
        lr_log, lr_range = _prep.lr_axis(*lrs) if lrs else (False, None)
        if lr_log:
            low.set_yscale("log")
        elif lr_range is not None:
            low.set_ylim(*lr_range)
        low.set_ylabel("lr")
        _style(low)
        bottom = low
    bottom.set_xlabel(_prep.X_AXES[x])
    return _save(fig, path)


@_quiet_overflow
def lr_sensitivity_png(
    data: Mapping[str, Sensitivity],
    path: str | Path,
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    log_y: bool | None = None,
    lines: bool = True,
) -> Path:
    """PNG twin of :func:`~optimlab.reports.figures.lr_sensitivity_figure`."""
    if not data:
        raise ValueError("lr_sensitivity_png needs data for at least one optimizer")
    cmap = color_map(list(data), colors)
    series = {label: _prep.sensitivity_series(s) for label, s in data.items()}
    finite_vals = [s.seed_loss for s in series.values()]
    if log_y is None:
        log_y = _prep.auto_log(*finite_vals)
    log_y = log_y and _prep.all_positive(*finite_vals)
    top = _prep.top_of(finite_vals, log_y)
    fig = _figure()
    ax = fig.subplots()
    any_diverged = False
    for label, s in series.items():
        color = cmap[label]
        if s.seeds > 1 and s.lrs.size > 1:
            ax.fill_between(s.lrs, _finite(s.q25), _finite(s.q75), color=color, alpha=0.18, linewidth=0)
        ax.scatter(s.seed_lr, s.seed_loss, s=9, color=color, alpha=0.45, linewidths=0)
        ax.plot(
            s.lrs,
            _finite(s.median),
            color=color,
            linewidth=1.8 if lines else 0.0,
            marker="o",
            markersize=4,
            label=mpl_text(label),
        )
        if s.best_lr is not None:
            ax.scatter(
                [s.best_lr],
                [s.best_loss],
                marker="*",
                s=140,
                color=color,
                edgecolors="#111827",
                linewidths=0.8,
                zorder=5,
            )
        if s.diverged_lr.size:
            any_diverged = True
            ax.scatter(
                s.diverged_lr, [top] * s.diverged_lr.size, marker="x", s=40, color=color, linewidths=1.8
            )
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss")
    ax.set_title(
        mpl_text(title) + ("   (× = diverged, ★ = best lr)" if any_diverged else "   (★ = best lr)"),
        loc="left",
        fontsize=11,
    )
    _style(ax)
    _legend(ax, loc="best")
    return _save(fig, path)


def _draw_surface(ax, surface: Surface, cd: _prep.ContourData) -> None:
    cs = ax.contourf(surface.x, surface.y, cd.values, levels=cd.levels, cmap=_SURFACE_CMAP, extend="both")
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


def _mark_points(ax, surface: Surface, start: tuple[float, float]) -> None:
    if surface.minima:
        mx, my = zip(*surface.minima, strict=True)
        ax.scatter(
            mx,
            my,
            marker="*",
            s=170,
            color="#fde047",
            edgecolors="#111827",
            linewidths=0.8,
            zorder=6,
            label="minimum",
        )
    ax.scatter(
        [start[0]],
        [start[1]],
        marker="o",
        s=90,
        facecolors="none",
        edgecolors="#111827",
        linewidths=2.0,
        zorder=6,
        label="start",
    )


@_quiet_overflow
def surface_png(
    surface: Surface,
    trajectories: Mapping[str, ArrayLike],
    path: str | Path,
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    start: tuple[float, float] | None = None,
    axis_titles: tuple[str, str] = ("x", "y"),
) -> Path:
    """PNG twin of :func:`~optimlab.reports.figures.surface_figure`: the finished paths."""
    cmap = color_map(list(trajectories), colors)
    cd = _prep.contour_data(surface)
    p = _prep.paths(trajectories, max_points=100_000, max_frames=2, start=start)
    fig = _figure(7.2, 6.0)
    ax = fig.subplots()
    _draw_surface(ax, surface, cd)
    for label in p.labels:
        pts = p.full[label]
        ax.plot(
            pts[:, 0],
            pts[:, 1],
            color=cmap[label],
            linewidth=1.6,
            marker="o",
            markersize=1.8,
            label=mpl_text(label),
        )
        ax.scatter(
            pts[-1:, 0], pts[-1:, 1], s=45, color=cmap[label], edgecolors="white", linewidths=1.0, zorder=5
        )
    _mark_points(ax, surface, p.start)
    ax.set_xlabel(mpl_text(axis_titles[0]))
    ax.set_ylabel(mpl_text(axis_titles[1]))
    ax.set_title(mpl_text(title), loc="left", fontsize=11)
    _style(ax, grid=False)
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncols=min(4, len(p.labels) + 2),
        frameon=False,
    )
    return _save(fig, path)


def _gif_palette(image: Image.Image, exact: Sequence[str]) -> Image.Image:
    """A 256-colour palette for the GIF's frames: the ``exact`` colours (the optimizers' lines, the
    markers) as they are and two lighter tints of each line colour (its anti-aliased edges), the rest
    chosen by median cut from ``image`` (the contour's greys). A
    palette cut from the picture alone gives its many greys the entries and lets thin lines of
    similar hues (blue and green) collapse into one colour."""
    fixed = [*exact, "#fde047", "#111827", "#ffffff"]
    base = [tuple(int(c.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)) for c in dict.fromkeys(fixed)]
    # and each line colour blended with the light background, as its anti-aliased edges are
    tints = [
        tuple(round(a + t * (250 - a)) for a in color) for color in base[: len(exact)] for t in (0.4, 0.7)
    ]
    rgb = list(dict.fromkeys([*base, *tints]))
    rest = image.quantize(colors=256 - len(rgb), method=Image.Quantize.MEDIANCUT).getpalette() or []
    flat = [v for color in rgb for v in color] + rest[: 3 * (256 - len(rgb))]
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat + [0] * (768 - len(flat)))
    return palette


@_quiet_overflow
def surface_gif(
    surface: Surface,
    trajectories: Mapping[str, ArrayLike],
    path: str | Path,
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    start: tuple[float, float] | None = None,
    axis_titles: tuple[str, str] = ("x", "y"),
    frames: int = 48,
    fps: int = 12,
    hold_s: float = 1.5,
    size_px: int = 640,
) -> Path:
    """Animated GIF of the trajectories growing step by step on the contour: at most ``frames`` frames
    spread over the steps, ``fps`` per second, the last one held ``hold_s`` seconds; ``size_px`` wide,
    loops forever.

    The contour is drawn once and each frame only adds the paths (matplotlib's blitting), then Pillow
    writes the frames with one shared palette, so a 48-frame GIF takes about a second.
    """
    if frames < 2:
        raise ValueError(f"a GIF needs at least 2 frames, got {frames}")
    if not 120 <= size_px <= 2000:
        raise ValueError(f"size_px must be between 120 and 2000, got {size_px}")
    if fps < 1 or hold_s < 0:
        raise ValueError(f"need fps >= 1 and hold_s >= 0, got fps={fps}, hold_s={hold_s}")
    cmap = color_map(list(trajectories), colors)
    cd = _prep.contour_data(surface)
    p = _prep.paths(trajectories, max_points=400, max_frames=frames, start=start)
    dpi = 100
    fig = Figure(figsize=(size_px / dpi, size_px / dpi * 0.86), dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    _draw_surface(ax, surface, cd)
    _mark_points(ax, surface, p.start)
    lines, heads = {}, {}
    for label in p.labels:
        (lines[label],) = ax.plot(
            [], [], color=cmap[label], linewidth=1.8, label=mpl_text(label), animated=True
        )
        (heads[label],) = ax.plot(
            [], [], "o", color=cmap[label], markersize=7, markeredgecolor="white", animated=True
        )
    counter = ax.text(
        0.98,
        0.97,
        "",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=9,
        animated=True,
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#d1d5db"},
    )
    ax.set_xlabel(mpl_text(axis_titles[0]))
    ax.set_ylabel(mpl_text(axis_titles[1]))
    ax.set_title(mpl_text(title), loc="left", fontsize=10)
    _style(ax, grid=False)
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.11),
        ncols=min(4, len(p.labels) + 2),
        frameon=False,
    )
    canvas.draw()  # lays out and draws everything static once
    fig.set_layout_engine("none")
    background = canvas.copy_from_bbox(fig.bbox)
    images = []
    for k in p.frames.tolist():
        canvas.restore_region(background)
        for label in p.labels:
            _, pts = _prep.path_until(p, label, k)
            lines[label].set_data(pts[:, 0], pts[:, 1])
            heads[label].set_data(pts[-1:, 0], pts[-1:, 1])
            ax.draw_artist(lines[label])
            ax.draw_artist(heads[label])
        counter.set_text(f"step {k}")
        ax.draw_artist(counter)
        images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))
    palette = _gif_palette(images[-1], [cmap[label] for label in p.labels])
    frames_p = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    step_ms = max(20, round(1000 / fps))
    durations = [step_ms] * (len(frames_p) - 1) + [step_ms + round(1000 * hold_s)]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames_p[0].save(out, format="GIF", save_all=True, append_images=frames_p[1:], duration=durations, loop=0)
    return out


@_quiet_overflow
def performance_profile_png(
    profile: Profile,
    path: str | Path,
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    cost: str = "steps to target",
) -> Path:
    """PNG twin of :func:`~optimlab.reports.figures.performance_profile_figure`."""
    scores = profile.scores
    order = sorted(profile.solvers, key=lambda s: (-scores[s], profile.solvers.index(s)))
    cmap = color_map(profile.solvers, colors)
    end = profile.tau_end()
    fig = _figure()
    ax = fig.subplots()
    for solver in order:
        taus, rho = profile.steps(solver, end)
        ax.step(
            taus,
            rho,
            where="post",
            color=cmap[solver],
            linewidth=1.9,
            label=mpl_text(f"{solver} ({scores[solver]:.2f})"),
        )
    ax.axvline(
        profile.tau_max,
        color="#9ca3af",
        linewidth=1.0,
        linestyle=(0, (1.2, 2)),
        label=f"score window τ ≤ {profile.tau_max:g}",
    )
    ax.set_xscale("log")
    ax.set_xlim(1.0, end)
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_xlabel(mpl_text(f"τ: within a factor τ of the best {cost}"))
    ax.set_ylabel(f"fraction of problems (n = {len(profile.problems)})")
    ax.set_title(mpl_text(title), loc="left", fontsize=11)
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="lower right", title="optimizer (score)", title_fontsize=8)
    return _save(fig, path)


@_quiet_overflow
def schedule_png(
    schedules: Mapping[str, ArrayLike],
    path: str | Path,
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    x_title: str = "step",
    log_y: bool = False,
    metric: tuple[str, ArrayLike] | None = None,
) -> Path:
    """PNG twin of :func:`~optimlab.reports.figures.schedule_figure`."""
    if not schedules:
        raise ValueError("schedule_png needs at least one schedule")
    cmap = color_map(list(schedules), colors)
    fig = _figure()
    ax = fig.subplots()
    for label, values in schedules.items():
        y = _finite(np.asarray(values, dtype=float).ravel())
        ax.step(np.arange(y.size), y, where="post", color=cmap[label], linewidth=1.8, label=mpl_text(label))
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(mpl_text(x_title))
    ax.set_ylabel("learning rate")
    ax.set_title(mpl_text(title), loc="left", fontsize=11)
    _style(ax)
    if metric is not None:
        mname, mvalues = metric
        m = _finite(np.asarray(mvalues, dtype=float).ravel())
        twin = ax.twinx()
        twin.plot(
            np.arange(m.size),
            m,
            color="#6b7280",
            linewidth=1.3,
            linestyle=(0, (1.2, 2)),
            label=mpl_text(mname),
        )
        twin.set_ylabel(mpl_text(mname))
        twin.tick_params(labelsize=9)
        twin.spines[["top"]].set_visible(False)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, frameon=False, loc="best")
    else:
        _legend(ax, loc="best")
    return _save(fig, path)


@_quiet_overflow
def lr_find_png(
    results: Mapping[str, LRFindSummary],
    path: str | Path,
    *,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    rules: Sequence[str] = RULES,
) -> Path:
    """PNG twin of :func:`~optimlab.reports.figures.lr_find_figure`."""
    if not results:
        raise ValueError("lr_find_png needs at least one result")
    cmap = color_map(list(results), colors)
    yr = _prep.lr_find_range(results)
    single = len(results) == 1
    fig = _figure()
    ax = fig.subplots()
    for label, s in results.items():
        color = cmap[label]
        if s.seeds > 1:
            ax.fill_between(s.lrs, _finite(s.q25), _finite(s.q75), color=color, alpha=0.18, linewidth=0)
        ax.plot(
            s.lrs, _finite(s.median), color=color, linewidth=1.9, label=mpl_text(f"{label} ({s.seeds} seeds)")
        )
        for rule in rules:
            if rule not in s.suggestions:
                continue
            lr = s.suggestions[rule]
            at = _prep.interp_log(lr, s.lrs, s.median)
            ax.axvline(
                lr,
                color=color,
                linewidth=1.1,
                linestyle=_DASH.get(_prep.RULE_DASH.get(rule, "dashdot"), "-."),
                label=mpl_text(f"{rule} {lr:.2g}" if single else f"{label}: {rule} {lr:.2g}"),
            )
            seeds = s.seed_suggestions.get(rule, np.zeros(0))
            seeds = seeds[np.isfinite(seeds)]
            xerr = None
            if seeds.size > 1:
                xerr = [[max(0.0, lr - float(seeds.min()))], [max(0.0, float(seeds.max()) - lr)]]
            ax.errorbar([lr], [at], xerr=xerr, fmt="D", color=color, markersize=5, capsize=3, linewidth=1.2)
    ax.set_xscale("log")
    if yr is not None and all(math.isfinite(v) for v in yr):
        ax.set_ylim(*yr)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed loss")
    ax.set_title(mpl_text(title), loc="left", fontsize=11)
    _style(ax)
    _legend(ax, loc="best")
    return _save(fig, path)
