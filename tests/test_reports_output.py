"""A page's figure files: every page records the files it wrote, so a command's next run removes its
own stale figures (and nothing else), and no command takes a name another page's figures use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
from matplotlib.figure import Figure

from optimlab.reports.figures import png_base
from optimlab.reports.figures.base import Twin
from optimlab.reports.html import Page
from optimlab.reports.output import Output


@dataclass(frozen=True, eq=False)
class Dot(Twin):
    def plotly(self) -> go.Figure:
        return go.Figure(go.Scatter(x=[0], y=[0]))

    def draw(self) -> Figure:
        fig = png_base.new_figure(1.0, 1.0)
        fig.subplots().plot([0], [0], "o")
        return fig


def _write(folder: Path, page: str, *figures: tuple[str, ...], static: bool = True) -> list[str]:
    """Write ``page`` with one figure per name (parts of a name as for ``Output.name``); the stems."""
    out = Output(Page(page), folder, page, static=static)
    stems = [out.name(*parts) for parts in figures]
    for stem in stems:
        out.figure(Dot(), stem)
    assert out.write() == folder / page and out.written[-1] == folder / page
    return stems


def _files(folder: Path) -> set[str]:
    return {p.name for p in (folder / "figures").iterdir() if not p.name.startswith(".")}


def test_pages_in_one_folder_never_take_each_others_names(tmp_path: Path) -> None:
    assert _write(tmp_path, "report.html", ("rosenbrock", "surface")) == ["rosenbrock-surface"]
    assert _write(tmp_path, "surface.html", ("rosenbrock", "surface")) == ["rosenbrock-surface-2"]
    assert _files(tmp_path) == {"rosenbrock-surface.png", "rosenbrock-surface-2.png"}
    # each keeps its own name when it runs again
    assert _write(tmp_path, "report.html", ("rosenbrock", "surface")) == ["rosenbrock-surface"]
    assert _write(tmp_path, "surface.html", ("rosenbrock", "surface")) == ["rosenbrock-surface-2"]
    assert _files(tmp_path) == {"rosenbrock-surface.png", "rosenbrock-surface-2.png"}


def test_a_pages_stale_figures_are_removed_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "notes.png").write_bytes(b"a file of the user's")
    _write(tmp_path, "surface.html", ("surface", "booth"))
    _write(tmp_path, "report.html", ("a",), ("b",))
    assert _files(tmp_path) == {"notes.png", "surface-booth.png", "a.png", "b.png"}
    _write(tmp_path, "report.html", ("b",), ("c",))
    assert _files(tmp_path) == {"notes.png", "surface-booth.png", "b.png", "c.png"}
    manifest = json.loads((tmp_path / "figures" / ".report.json").read_text())
    assert manifest == {"page": "report.html", "files": ["b.png", "c.png"]}
    _write(tmp_path, "report.html", ("b",), static=False)  # no PNGs this time: the old ones are stale
    assert _files(tmp_path) == {"notes.png", "surface-booth.png"}
    assert not (tmp_path / "figures" / ".report.json").exists()


def test_a_damaged_manifest_removes_nothing(tmp_path: Path) -> None:
    _write(tmp_path, "report.html", ("a",))
    (tmp_path / "figures" / ".report.json").write_text('{"files": ["../report.html", "a.png"', "utf-8")
    _write(tmp_path, "report.html", ("b",))
    assert _files(tmp_path) == {"a.png", "b.png"} and (tmp_path / "report.html").exists()
    (tmp_path / "figures" / ".report.json").write_text('{"files": ["../report.html", "/etc/x.png"]}', "utf-8")
    _write(tmp_path, "report.html", ("b",))
    assert (tmp_path / "report.html").exists() and _files(tmp_path) == {"a.png", "b.png"}
