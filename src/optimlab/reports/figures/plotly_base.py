"""What the interactive figures share: the layout, log/linear axes and their buttons, the IQR band.

Every figure is a ``plotly.graph_objects.Figure`` meant for :class:`optimlab.reports.html.Page` (which
embeds Plotly's JavaScript once).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from numpy.typing import ArrayLike

from optimlab.reports.figures.arrays import finite_list
from optimlab.reports.figures.scales import YScale, log_dtick
from optimlab.reports.figures.style import FONT, plotly_text

__all__ = [
    "MENU_STYLE",
    "band",
    "band_traces",
    "layout",
    "line",
    "rgba",
    "scale_menu",
    "symlog_menu",
    "y_axis",
]

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


def y_axis(log_y: bool | YScale, *values: ArrayLike, max_ticks: int = 8) -> dict:
    """Axis settings for a log, symmetric-log (see :class:`~optimlab.reports.figures.scales.YScale`;
    ``values`` as they are, not as drawn) or linear y axis; on log axes one labelled tick per decade (or
    per few decades when the data span many), written as powers of ten."""
    kind = log_y.kind if isinstance(log_y, YScale) else ("log" if log_y else "linear")
    if kind == "symlog":
        tickvals, ticktext = log_y.ticks(*values)
        return {"type": "linear", "tickmode": "array", "tickvals": tickvals, "ticktext": ticktext}
    if kind == "linear":
        return {"type": "linear", "dtick": None, "exponentformat": "B"}
    return {"type": "log", "dtick": log_dtick(*values, max_ticks=max_ticks), "exponentformat": "power"}


def symlog_menu(fig: go.Figure, scale: YScale, traces: list[int], *values: ArrayLike) -> dict:
    """Buttons switching a symmetric-log y axis to linear and back: the ``traces`` drawn in
    :meth:`~YScale.forward` units keep their values in ``customdata``, which the linear view draws."""
    drawn = [list(fig.data[i].y) for i in traces]
    values_of = [finite_list(fig.data[i].customdata) for i in traces]
    symlog = y_axis(scale, *values) | {"autorange": True}
    linear = {"type": "linear", "tickmode": "auto", "tickvals": None, "ticktext": None, "autorange": True}
    return MENU_STYLE | {
        "x": 1.0,
        "xanchor": "right",
        "active": 0,
        "buttons": [
            {
                "label": "symlog y",
                "method": "update",
                "args": [{"y": drawn}, {f"yaxis.{k}": v for k, v in symlog.items()}, traces],
            },
            {
                "label": "linear y",
                "method": "update",
                "args": [{"y": values_of}, {f"yaxis.{k}": v for k, v in linear.items()}, traces],
            },
        ],
    }


def line(x: list, y: ArrayLike, *, name: str, color: str, width: float, **extra) -> go.Scatter:
    """A line trace of ``y`` against ``x`` (non-finite values as gaps); ``extra`` as for
    ``go.Scatter`` (``mode`` defaults to lines, ``line`` adds to the colour and width)."""
    style = {"color": color, "width": width} | extra.pop("line", {})
    return go.Scatter(x=x, y=finite_list(y), mode=extra.pop("mode", "lines"), name=name, line=style, **extra)


def scale_menu(log_y: bool, *values: ArrayLike, axes: tuple[str, ...] = ("yaxis",), x: float = 1.0) -> dict:
    """Buttons switching the y ``axes`` between log and linear."""

    def args(log: bool) -> list[dict]:
        settings = y_axis(log, *values) | {"autorange": True}
        return [{f"{axis}.{k}": v for axis in axes for k, v in settings.items()}]

    return MENU_STYLE | {
        "x": x,
        "xanchor": "right",
        "active": 0 if log_y else 1,
        "buttons": [
            {"label": "log y", "method": "relayout", "args": args(True)},
            {"label": "linear y", "method": "relayout", "args": args(False)},
        ],
    }


def band_traces(
    x: list, lo: np.ndarray, hi: np.ndarray, color: str, group: str
) -> tuple[go.Scatter, go.Scatter]:
    """An inter-quartile band: the lower edge, then the upper edge filled down to it."""
    common = {
        "mode": "lines",
        "line": {"width": 0, "color": color},
        "hoverinfo": "skip",
        "showlegend": False,
        "legendgroup": group,
        "connectgaps": False,
    }
    return (
        go.Scatter(x=x, y=finite_list(lo), **common),
        go.Scatter(x=x, y=finite_list(hi), fill="tonexty", fillcolor=rgba(color, 0.18), **common),
    )


def band(fig: go.Figure, x: list, lo: np.ndarray, hi: np.ndarray, color: str, group: str) -> None:
    """Add the inter-quartile band of :func:`band_traces` to ``fig``."""
    fig.add_traces(band_traces(x, lo, hi, color, group))
