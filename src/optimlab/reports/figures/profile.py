"""The performance profile across problems (Dolan & Moré 2002) with AlgoPerf's score.

Data: a :class:`optimlab.lab.stats.Profile`. Step lines on a log τ axis, the legend ordered by score
(in brackets), the scoring window ``τ ≤ tau_max`` marked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from optimlab.lab.stats import Profile
from optimlab.reports.figures import plotly_base, png_base
from optimlab.reports.figures.arrays import finite_list
from optimlab.reports.figures.base import Twin
from optimlab.reports.figures.style import mpl_text, plotly_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from optimlab.reports.output import Output

__all__ = ["CAPTION", "ProfileFigure", "add"]


CAPTION = "Higher and further left is better; the legend gives each optimizer's score."


def _order(profile: Profile) -> list[str]:
    """The solvers by score, best first (ties: as given)."""
    scores = profile.scores
    return sorted(profile.solvers, key=lambda s: (-scores[s], profile.solvers.index(s)))


@dataclass(frozen=True, eq=False)
class ProfileFigure(Twin):
    """The performance profile as step lines on a log τ axis, legend ordered by score (in brackets), with
    the scoring window ``τ ≤ tau_max`` marked; ``cost`` names what τ compares."""

    profile: Profile
    cost: str = "steps to target"

    def plotly(self, *, height: int = 440) -> go.Figure:
        profile, scores = self.profile, self.profile.scores
        cmap, short = self.palette(profile.solvers), self.short(profile.solvers)
        end = profile.tau_end()
        fig = go.Figure()
        for solver in _order(profile):
            taus, rho = profile.steps(solver, end)
            name = plotly_text(f"{short[solver]} ({scores[solver]:.2f})")
            hover = f"τ %{{x:.3g}}: %{{y:.0%}} of problems<extra>{plotly_text(solver)}</extra>"
            line = plotly_base.line(
                finite_list(taus),
                rho,
                name=name,
                color=cmap[solver],
                width=2.2,
                line_shape="hv",
                hovertemplate=hover,
            )
            fig.add_trace(line)
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
        plotly_base.layout(fig, self.title, height)
        fig.update_xaxes(
            title_text=plotly_text(f"τ: within a factor τ of the best {self.cost}"),
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

    @png_base.quiet_overflow
    def draw(self) -> Figure:
        profile, scores = self.profile, self.profile.scores
        cmap, short = self.palette(profile.solvers), self.short(profile.solvers, png=True)
        end = profile.tau_end()
        fig = png_base.new_figure()
        ax = fig.subplots()
        for solver in _order(profile):
            taus, rho = profile.steps(solver, end)
            ax.step(
                taus,
                rho,
                where="post",
                color=cmap[solver],
                linewidth=1.9,
                label=mpl_text(f"{short[solver]} ({scores[solver]:.2f})"),
            )
        ax.axvline(
            profile.tau_max,
            color="#9ca3af",
            linewidth=1.0,
            linestyle=png_base.DASH["dot"],
            label=f"score window τ ≤ {profile.tau_max:g}",
        )
        ax.set_xscale("log")
        ax.set_xlim(1.0, end)
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
        ax.set_xlabel(mpl_text(f"τ: within a factor τ of the best {self.cost}"))
        ax.set_ylabel(f"fraction of problems (n = {len(profile.problems)})")
        png_base.finish(ax, self.title, legend=False)
        png_base.legend_outside(ax, title="optimizer (score)")
        return fig


def add(out: Output, profile: Profile, cost: str, *, what: str, colors: Mapping[str, str]) -> None:
    """Add the profile of ``cost`` ("steps" or "grad_evals"; ``what`` in words) and its PNG."""
    figure = ProfileFigure(profile, title=f"performance profile: {what}", colors=colors, cost=what)
    out.figure(figure, out.name("performance-profile", cost), caption=CAPTION)
