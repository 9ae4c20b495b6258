"""A figure drawn twice: interactive with Plotly (for the page) and static with matplotlib (the PNG).

Every figure of :mod:`optimlab.reports.figures` is a :class:`Twin`: a frozen dataclass of what it
shows, with :meth:`Twin.plotly`, :meth:`Twin.draw` and :meth:`Twin.png` (and ``gif`` where it
animates). :meth:`optimlab.reports.output.Output.figure` adds one to a page with its files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from optimlab.reports.figures import png_base
from optimlab.reports.figures.style import LEGEND_CHARS, PNG_LEGEND_CHARS, color_map, short_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Twin"]


@dataclass(frozen=True, eq=False)
class Twin:
    """Base of every figure. ``title`` and ``colors`` (label → colour, e.g. one
    :func:`~optimlab.reports.figures.style.color_map` for a whole page, so that a label keeps its
    colour in every figure) are every figure's; a subclass adds what it shows."""

    _: KW_ONLY
    title: str = ""
    colors: Mapping[str, str] | None = None

    def plotly(self) -> go.Figure:
        """The interactive figure."""
        raise NotImplementedError

    def draw(self) -> Figure:
        """The static twin, on an Agg canvas (no pyplot, no display)."""
        raise NotImplementedError

    def png(self, path: str | Path) -> Path:
        """Write :meth:`draw` to ``path`` (parent folders are created); returns the path."""
        return png_base.save(self.draw(), path)

    def palette(self, labels: Iterable[str]) -> dict[str, str]:
        """The colour of every label: ``colors`` where given, the next free colour elsewhere."""
        return color_map(labels, self.colors)

    @staticmethod
    def short(labels: Iterable[str], *, png: bool = False) -> dict[str, str]:
        """The legend entry of every label: shortened to :data:`~.style.LEGEND_CHARS` characters
        (:data:`~.style.PNG_LEGEND_CHARS` on a PNG), all distinct; the interactive figure shows the full
        label on hover."""
        return short_labels(labels, PNG_LEGEND_CHARS if png else LEGEND_CHARS)
