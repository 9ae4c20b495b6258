"""What the PNG twins share: an Agg canvas (no pyplot, no display), the axes' style, saving.

Each figure module's ``draw`` returns a matplotlib ``Figure`` and its ``png`` writes it with
:func:`save` (parent folders are created).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import numpy as np

from optimlab.reports.figures.style import mpl_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DASH", "DPI", "finish", "legend_outside", "new_figure", "quiet_overflow", "save", "style"]

P = ParamSpec("P")
R = TypeVar("R")

DPI = 150
#: matplotlib's line style for each of Plotly's dash names
DASH = {"dash": (0, (5, 3)), "solid": "-", "dot": (0, (1.2, 2)), "dashdot": "-."}


def quiet_overflow(draw: Callable[P, R]) -> Callable[P, R]:
    """Astronomically large but finite values (a diverging run) overflow matplotlib's log-scale
    arithmetic harmlessly; keep numpy quiet about it."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(over="ignore", invalid="ignore"):
            return draw(*args, **kwargs)

    return wrapper


def new_figure(width: float = 8.8, height: float = 4.6) -> Figure:
    """A figure on an Agg canvas (matplotlib's drawing code is loaded here, on the first PNG drawn: a
    report whose figures are all reused never loads it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def style(ax, *, grid: bool = True) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    if grid:
        ax.grid(True, which="major", color="#e5e7eb", linewidth=0.8)
    ax.tick_params(labelsize=9)


def legend_outside(ax, *, handles: list | None = None, labels: list | None = None, **kw) -> None:
    """The legend of ``ax`` (or of ``handles`` and ``labels``) beside the axes, at the figure's upper
    right, where the constrained layout makes room for it; nothing without labelled artists."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if handles:
        title_size = {"title_fontsize": 8} if "title" in kw else {}
        ax.figure.legend(
            handles, labels, loc="outside right upper", fontsize=8, frameon=False, **title_size, **kw
        )


def save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with np.errstate(over="ignore", invalid="ignore"):
        fig.savefig(out, dpi=DPI, facecolor="white")
    return out


def finish(ax, title: str, *, legend: bool = True, grid: bool = True) -> None:
    """The title (top left), the house style and (``legend``) the legend beside the axes."""
    ax.set_title(mpl_text(title), loc="left", fontsize=11)
    style(ax, grid=grid)
    if legend:
        legend_outside(ax)
