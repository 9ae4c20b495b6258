"""Final loss against learning rate: every lr of an lr grid (seeds as spread), or every Optuna trial.

Data: :class:`Sensitivity`, made by :func:`grid_sensitivity` (an lr grid, every lr on the same seeds)
or :func:`trial_sensitivity` (Optuna's trials). Per optimizer the median (line), the IQR band, every
seed as a faint dot, a star at the best lr and an ✕ above the curves where seeds diverged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from optimlab.lab.run import RunResult
from optimlab.lab.stats import quantiles
from optimlab.reports.figures import plotly_base, png_base
from optimlab.reports.figures.arrays import finite_list, float_array, gaps
from optimlab.reports.figures.base import Twin
from optimlab.reports.figures.scales import YScale, log_dtick, loss_scale, top_of
from optimlab.reports.figures.style import mpl_text, plotly_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from optimlab.reports.section import ProblemSection

__all__ = ["Sensitivity", "SensitivityFigure", "grid_sensitivity", "in_report", "trial_sensitivity"]


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
        lrs = float_array(self.lrs, "lrs")
        if lrs.ndim != 1 or lrs.size == 0:
            raise ValueError(f"lrs must be a non-empty 1-D array, got shape {lrs.shape}")
        if not np.all(np.isfinite(lrs)) or np.any(lrs <= 0):
            raise ValueError("lrs must be finite and positive (they are drawn on a log axis)")
        final = float_array(self.final_loss, "final_loss")
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


def grid_sensitivity(
    grid: Sequence[tuple[float, Sequence[RunResult]]], chosen: float | None = None
) -> Sensitivity | None:
    """Final loss against lr over an lr grid (every lr on the same seeds), ``chosen`` the lr the
    protocol selected; ``None`` for an empty grid. A missing run counts as diverged (the worst)."""
    grid = [(lr, runs) for lr, runs in grid if runs and lr > 0]
    if not grid:
        return None
    seeds = max(len(runs) for _, runs in grid)
    final = np.full((len(grid), seeds), np.inf)
    diverged = np.zeros((len(grid), seeds), dtype=bool)
    for i, (_, runs) in enumerate(grid):
        final[i, : len(runs)] = [r.final_loss for r in runs]
        diverged[i, : len(runs)] = [r.diverged for r in runs]
        diverged[i, len(runs) :] = True
    return Sensitivity([lr for lr, _ in grid], final, diverged, chosen=chosen)


def trial_sensitivity(trials: Sequence[Mapping[str, Any]], chosen: float | None = None) -> Sensitivity | None:
    """Final loss against lr of Optuna's trials (one run each; ``value`` ``None`` = diverged), ``chosen``
    the lr of the configuration selected; ``None`` when no trial tuned the lr."""
    points = [
        (float(t["params"]["lr"]), math.inf if t.get("value") is None else float(t["value"]))
        for t in trials
        if "lr" in t.get("params", {}) and float(t["params"]["lr"]) > 0
    ]
    if not points:
        return None
    return Sensitivity([p[0] for p in points], [[p[1]] for p in points], chosen=chosen)


# --- data preparation, shared by the figure and its PNG -------------------------------------------


@dataclass(frozen=True)
class _Series:
    lrs: np.ndarray
    q25: np.ndarray
    median: np.ndarray
    q75: np.ndarray
    seed_lr: np.ndarray  # every finite (lr, loss) pair
    seed_loss: np.ndarray
    diverged_lr: np.ndarray  # lrs where at least one seed diverged
    diverged_count: np.ndarray
    seeds: int
    best_lr: float | None
    best_loss: float | None


def _series(s: Sensitivity) -> _Series:
    q25, med, q75 = s.band()
    lr_grid = np.broadcast_to(s.lrs[:, None], s.final_loss.shape)
    ok = ~s.diverged
    counts = s.diverged.sum(axis=1)
    best = s.best_lr()
    best_loss = float(med[int(np.argmin(np.abs(s.lrs - best)))]) if best is not None else None
    if best_loss is not None and not np.isfinite(best_loss):
        best, best_loss = None, None  # a chosen lr whose median diverged: nothing to star
    return _Series(
        s.lrs,
        q25,
        med,
        q75,
        lr_grid[ok],
        s.final_loss[ok],
        s.lrs[counts > 0],
        counts[counts > 0],
        int(s.final_loss.shape[1]),
        best,
        best_loss,
    )


# --- the figure -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SensitivityFigure(Twin):
    """Final loss against learning rate (log x): per optimizer the median across seeds (line), the IQR
    band, every seed as a faint dot, a star at the best lr, and an ✕ above the curves for every lr
    where a seed diverged (hover: how many). ``lines=False`` draws the medians as markers only (for
    points that are not a curve, e.g. tuning trials that also vary other hyperparameters)."""

    data: Mapping[str, Sensitivity]
    log_y: bool | None = None
    lines: bool = True

    def _prepare(self) -> tuple[dict[str, _Series], list[np.ndarray], YScale, float]:
        """Every optimizer's series, the finite values, the y scale (as for losses) and the height of
        the ✕ marks."""
        if not self.data:
            raise ValueError("an lr sensitivity figure needs data for at least one optimizer")
        series = {label: _series(s) for label, s in self.data.items()}
        finite_vals = [s.seed_loss for s in series.values()]
        scale = loss_scale(*finite_vals, log_y=self.log_y)
        if scale.kind != "symlog":
            return series, finite_vals, scale, top_of(finite_vals, scale.kind == "log")
        top = top_of([scale.forward(v) for v in finite_vals], False)
        return series, finite_vals, scale, scale.inverse(top)

    def plotly(self, *, height: int = 460) -> go.Figure:
        series, finite_vals, scale, top = self._prepare()
        cmap, short = self.palette(self.data), self.short(self.data)
        value = "%{customdata:.4g}" if scale.kind == "symlog" else "%{y:.4g}"
        fig = go.Figure()
        for i, label in enumerate(self.data):
            s, color, group = series[label], cmap[label], f"g{i}"
            x = finite_list(s.lrs)
            name, full = plotly_text(short[label]), plotly_text(label)
            if s.seeds > 1 and s.lrs.size > 1:
                plotly_base.band(fig, x, s.q25, s.q75, color, group)
            fig.add_trace(
                go.Scatter(
                    x=finite_list(s.seed_lr),
                    y=finite_list(s.seed_loss),
                    mode="markers",
                    marker={"color": color, "size": 5, "opacity": 0.45},
                    showlegend=False,
                    legendgroup=group,
                    name=name,
                    hovertemplate=f"lr %{{x:.3g}}<br>seed's final loss {value}<extra>{full}</extra>",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=finite_list(s.median),
                    mode="lines+markers" if self.lines else "markers",
                    name=name,
                    legendgroup=group,
                    line={"color": color, "width": 2},
                    marker={"size": 7},
                    hovertemplate=f"lr %{{x:.3g}}<br>median final loss {value}<extra>{full}</extra>",
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
                        hovertemplate=f"best lr %{{x:.3g}}<br>median final loss {value}<extra>{full}</extra>",
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
                        hovertemplate=f"lr %{{x:.3g}}<br>%{{text}}<extra>{full}</extra>",
                    )
                )
        plotly_base.layout(fig, self.title, height)
        fig.update_xaxes(
            title_text="learning rate",
            type="log",
            exponentformat="power",
            dtick=log_dtick(*(d.lrs for d in self.data.values())),
        )
        fig.update_yaxes(title_text="final loss", **plotly_base.y_axis(scale, *finite_vals))
        if scale.kind == "symlog":
            for trace in fig.data:  # every trace is on the loss axis
                trace.customdata, trace.y = trace.y, finite_list(scale.forward(gaps(trace.y)))
            menu = plotly_base.symlog_menu(fig, scale, list(range(len(fig.data))), *finite_vals)
        else:
            menu = plotly_base.scale_menu(scale.kind == "log", *finite_vals)
        fig.update_layout(updatemenus=[menu])
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

    @png_base.quiet_overflow
    def draw(self) -> Figure:
        series, _, scale, top = self._prepare()
        cmap, short = self.palette(self.data), self.short(self.data, png=True)
        fig = png_base.new_figure()
        ax = fig.subplots()
        any_diverged = False
        for label, s in series.items():
            color = cmap[label]
            if s.seeds > 1 and s.lrs.size > 1:
                ax.fill_between(s.lrs, gaps(s.q25), gaps(s.q75), color=color, alpha=0.18, linewidth=0)
            ax.scatter(s.seed_lr, s.seed_loss, s=9, color=color, alpha=0.45, linewidths=0)
            ax.plot(
                s.lrs,
                gaps(s.median),
                color=color,
                linewidth=1.8 if self.lines else 0.0,
                marker="o",
                markersize=4,
                label=mpl_text(short[label]),
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
        scale.apply(ax)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final loss")
        marks = "   (× = diverged, ★ = best lr)" if any_diverged else "   (★ = best lr)"
        png_base.finish(ax, self.title + marks)
        return fig


# --- in a report -------------------------------------------------------------------------------------


def in_report(section: ProblemSection) -> None:
    """Every lr of the grid (with seeds as spread), or every Optuna trial; nothing for a one-shot
    comparison."""
    problem, title = section.problem, section.title
    grid = {o.label: grid_sensitivity(o.grid, o.best_lr) for o in problem.optimizers if o.grid}
    trials = {o.label: trial_sensitivity(o.trials, o.best_lr) for o in problem.optimizers if o.trials}
    if any(v is not None for v in grid.values()):
        data, lines, heading = grid, True, f"{title}: final loss against learning rate"
        caption = (
            "Every lr of the grid: each dot is one seed's final loss, the line the median, the band the "
            "inter-quartile range; ★ marks the lr the protocol chose, ✕ an lr where seeds diverged."
        )
    else:
        data, lines, heading = trials, False, f"{title}: Optuna trials, final loss against learning rate"
        caption = (
            "Every Optuna trial (one run on the tuning seed; the other tuned hyperparameters vary too, so "
            "the points are not a curve); ★ marks the chosen configuration's lr, ✕ a diverged trial."
        )
    shown = {label: v for label, v in data.items() if v is not None}
    if shown:
        figure = SensitivityFigure(shown, title=heading, colors=section.colors, lines=lines)
        section.add(figure, "lr-sensitivity", caption)
