"""What every figure shares in looks: the palette, the font, user text made literal, long labels shortened.

The same label gets the same colour in every figure of a page when the caller passes one
:func:`color_map`. Labels and titles come from users: :func:`plotly_text` and :func:`mpl_text` make
them literal for Plotly's HTML-like text renderer and for matplotlib's mathtext.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping

__all__ = [
    "FONT",
    "LEGEND_CHARS",
    "PALETTE",
    "PNG_LEGEND_CHARS",
    "color_map",
    "mpl_text",
    "plotly_text",
    "short_labels",
    "shorten",
]

# Colour-blind-friendly categorical palette (Okabe & Ito 2008, then Tableau's extras).
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#8C564B",
    "#F0C419",
    "#7F7F7F",
    "#17BECF",
    "#1B3A6B",
    "#9467BD",
)

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

#: the longest legend entry of an interactive figure (the full text is on hover)
LEGEND_CHARS = 60
#: the longest legend entry of a PNG (its legend sits beside the axes of a fixed-width figure)
PNG_LEGEND_CHARS = 32


def color_map(labels: Iterable[str], colors: Mapping[str, str] | None = None) -> dict[str, str]:
    """Colour per label: ``colors[label]`` where given, else the next unused colour of :data:`PALETTE`."""
    given = dict(colors or {})
    used = set(given.values())
    free = [c for c in PALETTE if c not in used] or list(PALETTE)
    out: dict[str, str] = {}
    k = 0
    for label in labels:
        if label in out:
            continue
        if label in given:
            out[label] = given[label]
        else:
            out[label] = free[k % len(free)]
            k += 1
    return out


def plotly_text(value: object) -> str:
    """A user-supplied string made literal for Plotly, whose text renderer understands a little HTML.

    ``<``, ``>`` and ``&`` become entities (which Plotly turns back into the characters), so a label like
    ``<b>x</b>`` or ``<script>`` is shown as typed and never interpreted.
    """
    return html.escape(str(value), quote=False)


def mpl_text(value: object) -> str:
    """A user-supplied string made literal for matplotlib: ``$`` never starts mathtext, and a leading
    underscore (which would hide a legend entry) is kept visible."""
    text = str(value).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters by an ellipsis in the middle (the start names the
    optimizer, the end often tells two variants apart)."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def _common_prefix(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _around(text: str, at: int, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters keeping its start, the characters around index
    ``at`` and its end, an ellipsis for each cut."""
    if len(text) <= limit:
        return text
    room = limit - 2
    head = tail = room // 4
    window = room - head - tail
    lo = min(max(head, at - window // 2), len(text) - tail - window)
    hi = lo + window
    middle = ("…" if lo > head else "") + text[lo:hi] + ("…" if hi < len(text) - tail else "")
    return text[:head] + middle + text[len(text) - tail :]


def short_labels(labels: Iterable[str], limit: int) -> dict[str, str]:
    """``label -> shortened label`` (at most ``limit`` characters), every shortened label distinct:
    labels that would collide keep the part where they differ from each other (and, where even that
    fails, their full text)."""
    labels = list(dict.fromkeys(labels))
    out = {label: shorten(label, limit) for label in labels}
    groups: dict[str, list[str]] = {}
    for label, short in out.items():
        groups.setdefault(short, []).append(label)
    for group in (g for g in groups.values() if len(g) > 1):
        for label in group:
            differs = max(_common_prefix(label, other) for other in group if other != label)
            out[label] = _around(label, differs, limit)
    counts = Counter(out.values())
    return {label: short if counts[short] == 1 else label for label, short in out.items()}
