"""A page's files drawn in a renderer process are the files drawn here: the same bytes, the same cache
entries, and drawn here after all when the renderer cannot draw them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from optimlab.reports.figures.schedule import ScheduleFigure
from optimlab.reports.html import Page
from optimlab.reports.output import Output
from optimlab.reports.renderer import Renderer

FIGURES = [
    ScheduleFigure({"step": np.repeat([0.1, 0.05, 0.025], 4)}, title="step"),
    ScheduleFigure({"cosine": 0.1 * (1 + np.cos(np.linspace(0, np.pi, 12))) / 2}, title="cosine", log_y=True),
]


def _page(folder: Path, renderer: Renderer | None) -> tuple[str, dict[str, bytes], dict[str, dict]]:
    """The page, its PNGs and its cache entries, written with ``renderer`` (or here)."""
    out = Output(Page("page"), folder, "page.html", renderer=renderer)
    for i, figure in enumerate(FIGURES):
        out.figure(figure, out.name(f"f{i}"), caption=f"figure {i}")
    page = out.write().read_text(encoding="utf-8")
    pngs = {p.name: p.read_bytes() for p in sorted((folder / "figures").glob("*.png"))}
    cache = {
        p.name: json.loads(p.read_text()) for p in sorted((folder / "figures/.cache/page").glob("*.json"))
    }
    return page, pngs, cache


def test_files_drawn_by_the_renderer_are_the_files_drawn_here(tmp_path: Path) -> None:
    here = _page(tmp_path / "here", None)
    with Renderer() as renderer:
        drawn = []
        draw = renderer.draw
        renderer.draw = lambda *args: drawn.append(draw(*args)) or drawn[-1]  # type: ignore[method-assign]
        aside = _page(tmp_path / "aside", renderer)
        assert len(aside[1]) == 2 and aside == here
        assert len(drawn) == 2 and all(f is not None and f.done() and f.exception() is None for f in drawn)
        renderer.draw = draw  # type: ignore[method-assign]
        # a rerun finds every file as recorded: nothing is sent to draw
        sent = []
        draw = renderer.draw
        renderer.draw = lambda *args: sent.append(args) or draw(*args)  # type: ignore[method-assign]
        assert _page(tmp_path / "aside", renderer) == here and sent == []


def test_files_the_renderer_cannot_draw_are_drawn_here(tmp_path: Path) -> None:
    here = _page(tmp_path / "here", None)
    closed = Renderer()
    closed.close()  # closed before the page: it takes nothing
    assert _page(tmp_path / "closed", closed) == here
    dying = Renderer()
    out = Output(Page("page"), tmp_path / "dying", "page.html", renderer=dying)
    for i, figure in enumerate(FIGURES):
        out.figure(figure, out.name(f"f{i}"), caption=f"figure {i}")
    dying.close()  # stopped with the figures sent (drawn or not): whatever it did not finish is drawn here
    out.write()
    assert _page(tmp_path / "dying", None) == here


def test_the_renderer_and_the_workers_load_nothing_heavy_here() -> None:
    """Starting a renderer or the lab's workers costs the caller nothing: matplotlib and torch load in
    their processes."""
    modules = "sorted(m for m in sys.modules if m.startswith(('matplotlib', 'torch', 'plotly')))"
    code = f"import sys, optimlab.reports.renderer, optimlab.lab.workers; print({modules})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
