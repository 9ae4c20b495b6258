"""What the interactive figures share: the layout, log/linear axes and their buttons, the IQR band.

Every figure is a ``plotly.graph_objects.Figure`` meant for :class:`optimlab.reports.html.Page` (which
embeds Plotly's JavaScript once).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from numpy.typing import ArrayLike

from optimlab.reports.figures.arrays import finite_list
from optimlab.reports.figures.scales import log_dtick
from optimlab.reports.figures.style import FONT, plotly_text

__all__ = ["MENU_STYLE", "band", "layout", "rgba", "scale_menu", "y_axis"]

MENU_STYLE = {
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


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def layout(fig: go.Figure, title: str, height: int, *, top: int = 72, hovermode: str = "closest") -> None:
    """The house style: white template, the title top left, the legend toggling traces."""
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


def y_axis(log_y: bool, *values: ArrayLike, max_ticks: int = 8) -> dict:
    """Axis settings for a log or linear y axis; on log axes one labelled tick per decade (or per few
    decades when the data span many), written as powers of ten."""
    if not log_y:
        return {"type": "linear", "dtick": None, "exponentformat": "B"}
    return {"type": "log", "dtick": log_dtick(*values, max_ticks=max_ticks), "exponentformat": "power"}


def scale_menu(log_y: bool, *values: ArrayLike, axis: str = "yaxis", x: float = 1.0) -> dict:
    """Buttons switching ``axis`` between log and linear."""

    def args(log: bool) -> list[dict]:
        return [{f"{axis}.{k}": v for k, v in y_axis(log, *values).items()} | {f"{axis}.autorange": True}]

    return MENU_STYLE | {
        "x": x,
        "xanchor": "right",
        "active": 0 if log_y else 1,
        "buttons": [
            {"label": "log y", "method": "relayout", "args": args(True)},
            {"label": "linear y", "method": "relayout", "args": args(False)},
        ],
    }


def band(fig: go.Figure, x: list, lo: np.ndarray, hi: np.ndarray, color: str, group: str, **where) -> None:
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
        go.Scatter(x=x, y=finite_list(hi), fill="tonexty", fillcolor=rgba(color, 0.18), **common), **where
    )
