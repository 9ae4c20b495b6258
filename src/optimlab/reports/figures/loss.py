"""Loss curves: per optimizer the median across seeds with the inter-quartile band, the lr beside it.

Data: :class:`Curves` (one row per seed, one column per recorded point); :func:`eval_curves` makes them
from a run's evaluations (the start, then every epoch). :class:`LossFigure`: interactively, buttons
switch the x axis between steps, gradient evaluations and seconds and the y axis between log and
linear; its PNG shows one x axis and one scale. In a report: :func:`in_report` (the loss at each
evaluation); :mod:`optimlab.reports.figures.train_loss` draws the per-step loss with the same figure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optimlab.lab.run import RunResult
from optimlab.lab.stats import quantiles
from optimlab.reports.figures import plotly_base, png_base
from optimlab.reports.figures.arrays import finite_list, float_array, gaps, per_point, subsample
from optimlab.reports.figures.base import Twin
from optimlab.reports.figures.scales import YScale, loss_scale, lr_axis
from optimlab.reports.figures.style import mpl_text, plotly_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from optimlab.reports.section import ProblemSection

__all__ = ["CAPTION", "X_AXES", "Curves", "LossFigure", "eval_curves", "in_report", "stopped_at_evaluation"]

X_AXES: dict[str, str] = {"steps": "steps", "grad_evals": "gradient evaluations", "seconds": "seconds"}
#: a curve of at most this many recorded points (a loss evaluated once per epoch) marks each of them
MARKERS_UP_TO = 60


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
        loss = float_array(self.loss, "loss")
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
            object.__setattr__(self, name, per_point(value, name, seeds, points))

    @property
    def seeds(self) -> int:
        return int(self.loss.shape[0])

    @property
    def points(self) -> int:
        return int(self.loss.shape[1])

    def axis(self, name: str) -> np.ndarray | None:
        """The x values for axis ``name`` ("steps", "grad_evals" or "seconds") as [seeds, points]."""
        if name not in X_AXES:
            raise ValueError(f"unknown x axis {name!r}; choose steps, grad_evals or seconds")
        return getattr(self, name)

    def band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q25, median, q75) of the loss across seeds at every point."""
        q25, med, q75 = quantiles(self.loss, (0.25, 0.5, 0.75), axis=0)
        return q25, med, q75


def stopped_at_evaluation(run: RunResult) -> bool:
    """Whether a diverged run was stopped by an evaluation (then its last evaluation is the culprit;
    otherwise a step's loss stopped it mid-epoch and its evaluations are all genuine)."""
    return bool(run.diverged and run.evals and int(run.evals[-1]["step"]) == run.steps)


def eval_curves(runs: Sequence[RunResult], metric: str = "loss") -> Curves | None:
    """The evaluated ``metric`` of each run at each evaluation that holds it (the loss: the start,
    within epochs and every epoch; another metric: the start and every epoch), with the steps,
    gradient evaluations and seconds so far and the lr in force; ``None`` without runs.

    Runs are aligned by step. A run that diverged stops early; its row is padded with ``+inf``, and
    the evaluation that stopped it counts as ``+inf`` too, as the run's final loss does. Where runs
    were evaluated at different steps (records of an older version, evaluated per epoch only, beside
    newer ones), only the steps every run was evaluated at (or had stopped before) are drawn."""
    held = [(run, {int(e["step"]): e for e in run.evals if metric in e}) for run in runs]
    held = [(run, at) for run, at in held if at]
    if not held:
        return None
    lasts = [max(int(e["step"]) for e in run.evals) for run, _ in held]
    longest = max((at for _, at in held), key=len)
    shared = [
        s
        for s in sorted(longest)
        if all(s in at or s > last for (_, at), last in zip(held, lasts, strict=True))
    ]
    steps = np.array(shared, dtype=float)
    n = steps.size
    loss = np.full((len(held), n), np.inf)
    grad_evals = np.full((len(held), n), np.nan)
    seconds = np.full((len(held), n), np.nan)
    lr = np.full((len(held), n), np.nan)
    for i, (run, at) in enumerate(held):
        for j, step in enumerate(shared):
            e = at.get(step)
            if e is None:  # stopped before this step
                continue
            loss[i, j] = float(e[metric])
            grad_evals[i, j] = float(e["grad_evals"])
            seconds[i, j] = float(e["wall_s"])
            if run.lrs:  # the lr the next step uses (the last one used, after the last step)
                lr[i, j] = run.lrs[min(step, len(run.lrs) - 1)]
            if metric == "loss" and step == lasts[i] and stopped_at_evaluation(run):
                loss[i, j] = np.inf
    return Curves(
        loss,
        steps=steps,
        grad_evals=grad_evals,
        seconds=seconds,
        lr=lr if np.isfinite(lr).any() else None,
    )


# --- data preparation, shared by the figure and its PNG -------------------------------------------


@dataclass(frozen=True)
class _Series:
    """One optimizer's loss band on its x axes, subsampled for drawing."""

    x: dict[str, np.ndarray]  # axis name -> x values (median across seeds)
    q25: np.ndarray
    median: np.ndarray
    q75: np.ndarray
    lr: np.ndarray | None
    seeds: int
    diverged: int  # seeds whose last recorded loss is non-finite
    markers: bool  # every recorded point is drawn, and they are few: mark each

    def label(self, label: str) -> str:
        """The legend entry: the label, and how many seeds diverged."""
        return f"{label} · {self.diverged}/{self.seeds} diverged" if self.diverged else label


def _series(c: Curves, axes: list[str], max_points: int) -> _Series:
    idx = subsample(c.points, max_points)
    q25, med, q75 = c.band()
    xs = {}
    for a in axes:
        values = c.axis(a)
        with np.errstate(all="ignore"):
            xs[a] = np.nanmedian(values, axis=0)[idx] if values is not None else None
    lr = None
    if c.lr is not None:
        with np.errstate(all="ignore"):
            lr = np.nanmedian(c.lr, axis=0)[idx]
    diverged = int(np.sum(~np.isfinite(c.loss[:, -1])))
    markers = idx.size == c.points <= MARKERS_UP_TO
    return _Series(xs, q25[idx], med[idx], q75[idx], lr, c.seeds, diverged, markers)


def _common_axes(curves: Mapping[str, Curves]) -> list[str]:
    """The x axes every optimizer's curves provide ("steps" always)."""
    return [a for a in X_AXES if all(c.axis(a) is not None for c in curves.values())]


# --- the figure -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LossFigure(Twin):
    """Loss against steps: per optimizer the median across seeds and the IQR band (25th–75th percentile).

    Buttons switch the x axis between steps, gradient evaluations and seconds (those every optimizer
    provides; ``x`` the first shown) and the y axis between its scale and linear. The scale
    (:func:`~optimlab.reports.figures.scales.loss_scale`; ``log_y`` forces it): log where the medians
    are positive and span more than two decades, symmetric log where they go negative (or reach 0)
    across decades, else linear. When learning rates are given (``show_lr`` default), a panel below
    shares the x axis and shows the lr in force. ``target`` draws the loss target as a dashed line. A
    legend entry notes how many seeds diverged; a curve of few points (a loss evaluated once per epoch)
    marks each. Curves are subsampled to ``max_points`` points after the statistics are taken. The PNG
    shows the ``x`` axis and the scale.
    """

    curves: Mapping[str, Curves]
    x: str = "steps"
    log_y: bool | None = None
    target: float | None = None
    show_lr: bool | None = None

    def _prepare(self, axes: list[str] | None, max_points: int) -> tuple[dict[str, _Series], YScale, bool]:
        """Every optimizer's series, the loss axis's scale and whether the lr panel is shown."""
        if not self.curves:
            raise ValueError("a loss figure needs curves for at least one optimizer")
        available = _common_axes(self.curves)
        if self.x not in available:
            raise ValueError(
                f"x axis {self.x!r} is not available for every optimizer; choose one of {available}"
            )
        series = {label: _series(c, axes or available, max_points) for label, c in self.curves.items()}
        scale = loss_scale(*(s.median for s in series.values()), log_y=self.log_y)
        has_lr = any(s.lr is not None for s in series.values()) if self.show_lr is None else self.show_lr
        return series, scale, bool(has_lr)

    def plotly(self, *, max_points: int = 400, height: int | None = None) -> go.Figure:
        series, scale, has_lr = self._prepare(None, max_points)
        x, axes, labels = self.x, _common_axes(self.curves), list(self.curves)
        cmap, short = self.palette(labels), self.short(labels)
        rows = 2 if has_lr else 1
        fig = make_subplots(
            rows=rows,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.06,
            row_heights=[0.72, 0.28] if has_lr else None,
        )
        xs: dict[str, list[list]] = {a: [] for a in axes}
        drawn: list[int] = []  # the traces on the loss axis (symlog: in forward units, values in customdata)

        def add(trace: go.Scatter, xvals: dict[str, list], row: int = 1) -> None:
            if row == 1 and scale.kind == "symlog":
                trace.customdata, trace.y = trace.y, finite_list(scale.forward(gaps(trace.y)))
                drawn.append(len(fig.data))
            fig.add_trace(trace, row=row, col=1)
            for a in axes:
                xs[a].append(xvals[a])

        for i, label in enumerate(labels):
            s, color, group = series[label], cmap[label], f"g{i}"
            xv = {a: finite_list(s.x[a]) for a in axes}
            if s.seeds > 1:
                low, high = plotly_base.band_traces(xv[x], s.q25, s.q75, color, group)
                add(low, xv)
                add(high, xv)
            name, full = plotly_text(s.label(short[label])), plotly_text(s.label(label))
            value = "%{customdata:.4g}" if scale.kind == "symlog" else "%{y:.4g}"
            mode = "lines+markers" if s.markers else "lines"
            common = {"color": color, "legendgroup": group, "mode": mode, "marker": {"size": 5}}
            add(
                plotly_base.line(
                    xv[x],
                    s.median,
                    name=name,
                    width=2,
                    hovertemplate=f"{full}: {value}<extra></extra>",
                    **common,
                ),
                xv,
            )
            if has_lr and s.lr is not None:
                lr_hover = f"{full}: lr %{{y:.3g}}<extra></extra>"
                add(
                    plotly_base.line(
                        xv[x], s.lr, name=name, width=1.6, showlegend=False, hovertemplate=lr_hover, **common
                    ),
                    xv,
                    row=2,
                )
        if self.target is not None:
            ends = {}
            for a in axes:
                allx = np.concatenate([s.x[a] for s in series.values()])
                allx = allx[np.isfinite(allx)]
                ends[a] = finite_list([allx.min(), allx.max()]) if allx.size else [None, None]
            target = plotly_base.line(
                ends[x],
                [float(self.target)] * 2,
                name=f"target {self.target:.4g}",
                color="#6b7280",
                width=1.2,
                line={"dash": "dash"},
                hoverinfo="skip",
            )
            add(target, ends)
        bottom = "xaxis2" if has_lr else "xaxis"
        rescale = {f"{ax}.autorange": True for ax in (["xaxis", "xaxis2"] if has_lr else ["xaxis"])}
        plotly_base.layout(fig, self.title, height or (560 if has_lr else 440), hovermode="x unified")
        medians = [s.median for s in series.values()]
        fig.update_yaxes(title_text="loss", row=1, col=1, **plotly_base.y_axis(scale, *medians))
        if has_lr:
            lrs = [s.lr for s in series.values() if s.lr is not None]
            lr_log, lr_range = lr_axis(*lrs)
            fig.update_yaxes(
                title_text="lr",
                row=2,
                col=1,
                rangemode="tozero" if not lr_log else "normal",
                range=list(lr_range) if lr_range is not None else None,
                **plotly_base.y_axis(lr_log, *lrs, max_ticks=3),
            )
        fig.update_xaxes(title_text=X_AXES[x], row=rows, col=1)
        if scale.kind == "symlog":
            menus = [plotly_base.symlog_menu(fig, scale, drawn, *medians)]
        else:
            menus = [plotly_base.scale_menu(scale.kind == "log", *medians)]
        if len(axes) > 1:
            menus.append(
                plotly_base.MENU_STYLE
                | {
                    "x": 0.0,
                    "xanchor": "left",
                    "active": axes.index(x),
                    "buttons": [
                        {
                            "label": X_AXES[a].replace("gradient evaluations", "gradient evals"),
                            "method": "update",
                            "args": [{"x": xs[a]}, {f"{bottom}.title.text": X_AXES[a]} | rescale],
                        }
                        for a in axes
                    ],
                }
            )
        fig.update_layout(updatemenus=menus)
        return fig

    @png_base.quiet_overflow
    def draw(self, *, max_points: int = 1000) -> Figure:
        series, scale, has_lr = self._prepare([self.x], max_points)
        cmap, short = self.palette(self.curves), self.short(self.curves, png=True)
        fig = png_base.new_figure(height=5.6 if has_lr else 4.6)
        if has_lr:
            top, low = fig.subplots(2, 1, sharex=True, height_ratios=[2.6, 1])
        else:
            top, low = fig.subplots(1, 1), None
        for label, s in series.items():
            color, xs = cmap[label], gaps(s.x[self.x])
            marks = {"marker": "o", "markersize": 3} if s.markers else {}
            if s.seeds > 1:
                top.fill_between(xs, gaps(s.q25), gaps(s.q75), color=color, alpha=0.18, linewidth=0)
            top.plot(
                xs, gaps(s.median), color=color, linewidth=1.8, label=mpl_text(s.label(short[label])), **marks
            )
            if low is not None and s.lr is not None:
                low.plot(xs, gaps(s.lr), color=color, linewidth=1.4, **marks)
        if self.target is not None:
            top.axhline(
                float(self.target),
                color="#6b7280",
                linewidth=1.0,
                linestyle=png_base.DASH["dash"],
                label=f"target {self.target:.4g}",
            )
        scale.apply(top)
        top.set_ylabel("loss")
        png_base.finish(top, self.title)
        bottom = top
        if low is not None:
            lrs = [s.lr for s in series.values() if s.lr is not None]
            lr_log, lr_range = lr_axis(*lrs) if lrs else (False, None)
            if lr_log:
                low.set_yscale("log")
            elif lr_range is not None:
                low.set_ylim(*lr_range)
            low.set_ylabel("lr")
            png_base.style(low)
            bottom = low
        bottom.set_xlabel(X_AXES[self.x])
        return fig


# --- in a report ------------------------------------------------------------------------------------

CAPTION = (
    "The full training objective at each evaluation (the start, within and after every epoch): the "
    "median across seeds (line) and the inter-quartile band; the lower panel shows the learning rate in "
    "force. Buttons switch the x axis between steps, gradient evaluations and seconds, and the loss axis "
    "between log and linear; a legend entry says how many seeds diverged."
)


def per_optimizer(
    section: ProblemSection, make: Callable[[list[RunResult]], Curves | None]
) -> dict[str, Curves]:
    """``label -> make(runs)`` for the optimizers of a report section that have something to draw."""
    return {o.label: c for o in section.problem.optimizers if (c := make(o.runs)) is not None}


def in_report(section: ProblemSection) -> None:
    """The full training objective at each evaluation, every optimizer of the problem."""
    curves = per_optimizer(section, eval_curves)
    if curves:
        title = f"{section.title}: loss at each evaluation"
        target = section.problem.target_loss
        section.add(LossFigure(curves, title=title, colors=section.colors, target=target), "loss", CAPTION)
