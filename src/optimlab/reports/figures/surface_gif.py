"""The animated GIF of :mod:`optimlab.reports.figures.surface`: the trajectories growing step by step on
the contour."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from optimlab.reports.figures import png_base
from optimlab.reports.figures.style import mpl_text
from optimlab.reports.figures.surface_data import (
    draw_contour,
    legend_below,
    mark_points,
    paths,
)

if TYPE_CHECKING:
    from PIL import Image

    from optimlab.reports.figures.surface import SurfaceFigure

__all__ = ["gif"]


def _palette(image: Image.Image, exact: Sequence[str]) -> Image.Image:
    """A 256-colour palette for the GIF's frames: the ``exact`` colours (the optimizers' lines, the
    markers) as they are and two lighter tints of each line colour (its anti-aliased edges), the rest
    chosen by median cut from ``image`` (the contour's greys). A palette cut from the picture alone
    gives its many greys the entries and lets thin lines of similar hues (blue and green) collapse into
    one colour."""
    from PIL import Image

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


@png_base.quiet_overflow
def gif(
    figure: SurfaceFigure,
    path: str | Path,
    *,
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
    cmap, short = figure.palette(figure.trajectories), figure.short(figure.trajectories, png=True)
    p = paths(figure.trajectories, max_points=400, max_frames=frames, start=figure.start)
    dpi = 100
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # here: a report that reuses its GIFs
    from matplotlib.figure import Figure  # never loads matplotlib's drawing code
    from PIL import Image

    fig = Figure(figsize=(size_px / dpi, size_px / dpi * 0.86), dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    if figure.surface is not None:
        draw_contour(ax, figure.surface)
    mark_points(ax, figure.surface, p.start)
    lines, heads = {}, {}
    for label in p.labels:
        (lines[label],) = ax.plot(
            [], [], color=cmap[label], linewidth=1.8, label=mpl_text(short[label]), animated=True
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
    ax.set_xlabel(mpl_text(figure.axis_titles[0]))
    ax.set_ylabel(mpl_text(figure.axis_titles[1]))
    ax.set_title(mpl_text(figure.title), loc="left", fontsize=10)
    png_base.style(ax, grid=False)
    legend_below(ax)
    canvas.draw()  # lays out and draws everything static once
    fig.set_layout_engine("none")
    background = canvas.copy_from_bbox(fig.bbox)
    images = []
    for k in p.frames.tolist():
        canvas.restore_region(background)
        for label in p.labels:
            _, pts = p.until(label, k)
            lines[label].set_data(pts[:, 0], pts[:, 1])
            heads[label].set_data(pts[-1:, 0], pts[-1:, 1])
            ax.draw_artist(lines[label])
            ax.draw_artist(heads[label])
        counter.set_text(f"step {k}")
        ax.draw_artist(counter)
        images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))
    palette = _palette(images[-1], [cmap[label] for label in p.labels])
    frames_p = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    step_ms = max(20, round(1000 / fps))
    durations = [step_ms] * (len(frames_p) - 1) + [step_ms + round(1000 * hold_s)]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames_p[0].save(out, format="GIF", save_all=True, append_images=frames_p[1:], duration=durations, loop=0)
    return out
