"""The learning-rate range test (Smith 2017): smoothed loss against an exponentially growing lr.

Data: :class:`optimlab.lab.lr_find.LRFindSummary` per optimizer. The median across seeds with the IQR
band, and a vertical line per suggestion (a dash per rule) whose marker's bar spans the seeds' own
suggestions by that rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from optimlab.lab.lr_find import RULES, LRFindSummary
from optimlab.reports.figures import plotly_base, png_base
from optimlab.reports.figures.arrays import finite_list, gaps
from optimlab.reports.figures.base import Twin
from optimlab.reports.figures.scales import log_dtick
from optimlab.reports.figures.style import mpl_text, plotly_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["RULE_DASH", "LRFindFigure"]

#: the dash of each rule's line
RULE_DASH: dict[str, str] = {"steepest": "dash", "valley": "solid", "minimum/10": "dot"}


def _y_range(summaries: Mapping[str, LRFindSummary]) -> tuple[float, float] | None:
    """A y range that shows the descent (from the starting plateau down to the band's bottom) and lets
    the blow-up leave the frame."""
    los, his = [], []
    for s in summaries.values():
        if s.median.size == 0:
            continue
        bottom = int(np.argmin(s.median))
        los.append(float(np.nanmin(np.where(np.isfinite(s.q25), s.q25, np.nan))))
        his.append(float(np.max(s.median[: bottom + 1])))
        his.append(float(s.median[0]))
    if not los:
        return None
    lo, hi = min(los), max(his)
    pad = 0.08 * (hi - lo if hi > lo else abs(hi) or 1.0)
    return lo - pad, hi + 2 * pad


def _at(lr: float, s: LRFindSummary) -> float:
    """The median curve at ``lr`` (linear interpolation in ``log10 lr``)."""
    return float(np.interp(math.log10(lr), np.log10(s.lrs), s.median))


def _seed_spread(s: LRFindSummary, rule: str, lr: float) -> tuple[float, float] | None:
    """How far below and above ``lr`` the seeds' own suggestions by ``rule`` reach (``None`` for fewer
    than two)."""
    seeds = s.seed_suggestions.get(rule, np.zeros(0))
    seeds = seeds[np.isfinite(seeds)]
    if seeds.size < 2:
        return None
    return max(0.0, lr - float(seeds.min())), max(0.0, float(seeds.max()) - lr)


def _suggestion_label(label: str, rule: str, lr: float, single: bool) -> str:
    return f"{rule} {lr:.2g}" if single else f"{label}: {rule} {lr:.2g}"


@dataclass(frozen=True, eq=False)
class LRFindFigure(Twin):
    """The LR range test: smoothed loss against lr (log x), median across seeds with the IQR band, and a
    vertical line per suggestion by each of ``rules`` (a dash per rule); the marker's horizontal bar
    spans the seeds' own suggestions by that rule."""

    results: Mapping[str, LRFindSummary]
    rules: Sequence[str] = RULES

    def _prepare(self) -> tuple[Mapping[str, LRFindSummary], Sequence[str]]:
        if not self.results:
            raise ValueError("an lr-find figure needs at least one result")
        return self.results, self.rules

    def plotly(self, *, height: int = 460) -> go.Figure:
        results, rules = self._prepare()
        cmap, short = self.palette(results), self.short(results)
        yr = _y_range(results)
        ylo, yhi = yr if yr is not None else (0.0, 1.0)
        single = len(results) == 1
        fig = go.Figure()
        for i, (label, s) in enumerate(results.items()):
            color, group, name = cmap[label], f"g{i}", plotly_text(short[label])
            full = plotly_text(label)
            x = finite_list(s.lrs)
            if s.seeds > 1:
                plotly_base.band(fig, x, s.q25, s.q75, color, group)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=finite_list(s.median),
                    mode="lines",
                    name=f"{name} ({s.seeds} seeds)",
                    legendgroup=group,
                    line={"color": color, "width": 2.2},
                    hovertemplate=f"lr %{{x:.3g}}<br>smoothed loss %{{y:.4g}}<extra>{full}</extra>",
                )
            )
            for rule in rules:
                if rule not in s.suggestions:
                    continue
                lr = s.suggestions[rule]
                at = _at(lr, s)
                fig.add_trace(
                    go.Scatter(
                        x=[lr, lr, lr],
                        y=[ylo, at, yhi],
                        mode="lines+markers",
                        name=_suggestion_label(name, rule, lr, single),
                        legendgroup=group,
                        line={"color": color, "width": 1.4, "dash": RULE_DASH.get(rule, "dashdot")},
                        marker={"size": [0, 9, 0], "color": color, "symbol": "diamond"},
                        hovertemplate=f"{rule}: lr %{{x:.3g}}<extra>{full}</extra>",
                    )
                )
                spread = _seed_spread(s, rule, lr)
                if spread is not None:
                    fig.add_trace(
                        go.Scatter(
                            x=[lr],
                            y=[at],
                            mode="markers",
                            showlegend=False,
                            legendgroup=group,
                            marker={"size": 0.1, "color": color},
                            hoverinfo="skip",
                            error_x={
                                "type": "data",
                                "symmetric": False,
                                "array": [spread[1]],
                                "arrayminus": [spread[0]],
                                "color": color,
                                "thickness": 1.5,
                                "width": 5,
                            },
                        )
                    )
        plotly_base.layout(fig, self.title, height)
        fig.update_xaxes(
            title_text="learning rate",
            type="log",
            exponentformat="power",
            dtick=log_dtick(*(r.lrs for r in results.values())),
        )
        fig.update_yaxes(title_text="smoothed loss", range=[ylo, yhi] if yr is not None else None)
        return fig

    @png_base.quiet_overflow
    def draw(self) -> Figure:
        results, rules = self._prepare()
        cmap, short = self.palette(results), self.short(results, png=True)
        yr = _y_range(results)
        single = len(results) == 1
        fig = png_base.new_figure()
        ax = fig.subplots()
        for label, s in results.items():
            color = cmap[label]
            if s.seeds > 1:
                ax.fill_between(s.lrs, gaps(s.q25), gaps(s.q75), color=color, alpha=0.18, linewidth=0)
            ax.plot(
                s.lrs,
                gaps(s.median),
                color=color,
                linewidth=1.9,
                label=mpl_text(f"{short[label]} ({s.seeds} seeds)"),
            )
            for rule in rules:
                if rule not in s.suggestions:
                    continue
                lr = s.suggestions[rule]
                ax.axvline(
                    lr,
                    color=color,
                    linewidth=1.1,
                    linestyle=png_base.DASH.get(RULE_DASH.get(rule, "dashdot"), "-."),
                    label=mpl_text(_suggestion_label(short[label], rule, lr, single)),
                )
                spread = _seed_spread(s, rule, lr)
                xerr = None if spread is None else [[spread[0]], [spread[1]]]
                ax.errorbar(
                    [lr],
                    [_at(lr, s)],
                    xerr=xerr,
                    fmt="D",
                    color=color,
                    markersize=5,
                    capsize=3,
                    linewidth=1.2,
                )
        ax.set_xscale("log")
        if yr is not None and all(math.isfinite(v) for v in yr):
            ax.set_ylim(*yr)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed loss")
        png_base.finish(ax, self.title)
        return fig
