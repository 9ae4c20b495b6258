"""A figure's rendering is reused only while its content and the code are the same: a rerun writes the
same page without drawing, and any change of data, options, version or files draws again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from matplotlib.figure import Figure

import optimlab
from optimlab.lab.presets import parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.protocol import Comparison, run_comparison
from optimlab.lab.results import load_comparison
from optimlab.lab.storage import Store
from optimlab.reports import figure_cache
from optimlab.reports.figure_cache import content_key
from optimlab.reports.figures import png_base
from optimlab.reports.figures.base import Twin
from optimlab.reports.html import Page
from optimlab.reports.output import Output
from optimlab.reports.report import write_report

CALLS: list[str] = []


@dataclass(frozen=True, eq=False)
class Points(Twin):
    y: np.ndarray = field(default_factory=lambda: np.zeros(3))
    marks: tuple[float, ...] = ()

    def plotly(self) -> go.Figure:
        CALLS.append("plotly")
        return go.Figure(go.Scatter(y=self.y.tolist(), name=self.title))

    def draw(self) -> Figure:
        CALLS.append("draw")
        fig = png_base.new_figure(1.0, 1.0)
        fig.subplots().plot(self.y, "o")
        return fig


def _page(folder: Path, *figures: Twin, static: bool = True) -> str:
    out = Output(Page("page"), folder, "page.html", static=static)
    for i, figure in enumerate(figures):
        out.figure(figure, out.name(f"f{i}"), caption=f"figure {i}")
    return out.write().read_text(encoding="utf-8")


def test_the_key_is_the_content_exactly() -> None:
    base = Points(np.array([1.0, 2.0]), title="t", marks=(0.5,))
    assert content_key(base) == content_key(Points(np.array([1.0, 2.0]), title="t", marks=(0.5,)))
    changed = [
        Points(np.array([1.0, np.nextafter(2.0, 3.0)]), title="t", marks=(0.5,)),  # the last bit
        Points(np.array([1.0, 2.0], dtype=np.float32), title="t", marks=(0.5,)),  # the dtype
        Points(np.array([[1.0, 2.0]]), title="t", marks=(0.5,)),  # the shape
        Points(np.array([1.0, 2.0]), title="T", marks=(0.5,)),  # an option
        Points(np.array([1.0, 2.0]), title="t", marks=(-0.0,)),
        Points(np.array([1.0, 2.0]), title="t", marks=(0.5,), colors={"t": "#000000"}),
    ]
    keys = {content_key(figure) for figure in [base, *changed]}
    assert len(keys) == 1 + len(changed) and None not in keys
    assert content_key(Points(marks=(0.0,))) != content_key(Points(marks=(-0.0,)))
    assert content_key(Points(colors={"a": "1", "b": "2"})) != content_key(
        Points(colors={"b": "2", "a": "1"})
    )
    assert content_key(Points(marks=(object(),))) is None  # not encodable: never cached


def test_the_key_follows_the_code_and_the_version(monkeypatch) -> None:
    figure = Points(np.arange(3.0))
    before = content_key(figure)
    monkeypatch.setattr(optimlab, "__version__", optimlab.__version__ + ".dev1")
    figure_cache.code_fingerprint.cache_clear()
    try:
        assert content_key(figure) != before
    finally:
        monkeypatch.undo()
        figure_cache.code_fingerprint.cache_clear()
    assert content_key(figure) == before
    monkeypatch.setattr(figure_cache, "code_fingerprint", lambda: "other code")
    assert content_key(figure) != before


def test_a_rerun_draws_nothing_and_writes_the_same_page(tmp_path: Path) -> None:
    figures = (Points(np.arange(3.0), title="a"), Points(np.ones(3), title="b"))
    CALLS.clear()
    first = _page(tmp_path, *figures)
    assert sorted(CALLS) == ["draw", "draw", "plotly", "plotly"]
    png = (tmp_path / "figures" / "f0.png").read_bytes()
    CALLS.clear()
    assert _page(tmp_path, *figures) == first and CALLS == []
    assert (tmp_path / "figures" / "f0.png").read_bytes() == png
    # new data in one figure: only that one is drawn again
    CALLS.clear()
    changed = _page(tmp_path, figures[0], Points(np.ones(3) * 2, title="b"))
    assert CALLS == ["draw", "plotly"] and changed != first


def test_a_file_changed_or_removed_is_drawn_again(tmp_path: Path) -> None:
    figure = Points(np.arange(3.0))
    page = _page(tmp_path, figure)
    png = tmp_path / "figures" / "f0.png"
    original = png.read_bytes()
    png.write_bytes(b"edited")
    CALLS.clear()
    assert _page(tmp_path, figure) == page and CALLS == ["draw"]  # the Plotly JSON is still good
    assert png.read_bytes() == original
    png.unlink()
    CALLS.clear()
    _page(tmp_path, figure)
    assert CALLS == ["draw"] and png.read_bytes() == original


def test_a_damaged_or_foreign_entry_is_not_used(tmp_path: Path) -> None:
    figure = Points(np.arange(3.0))
    page = _page(tmp_path, figure)
    entry = tmp_path / "figures" / ".cache" / "page" / "f0.json"
    stored = json.loads(entry.read_text())
    entry.write_text(entry.read_text()[:-20])
    CALLS.clear()
    assert _page(tmp_path, figure) == page and sorted(CALLS) == ["draw", "plotly"]
    entry.write_text(json.dumps(stored | {"key": "0" * 64}))
    CALLS.clear()
    assert _page(tmp_path, figure) == page and sorted(CALLS) == ["draw", "plotly"]


def test_without_figure_files_nothing_is_kept_and_stale_entries_go(tmp_path: Path) -> None:
    figures = (Points(np.arange(3.0)), Points(np.ones(3)))
    _page(tmp_path, *figures, static=False)
    assert not (tmp_path / "figures").exists()  # --no-png writes no figures folder
    CALLS.clear()
    _page(tmp_path, *figures)
    assert sorted(CALLS) == ["draw", "draw", "plotly", "plotly"]
    CALLS.clear()
    _page(tmp_path, figures[0])
    assert CALLS == [] and [p.name for p in (tmp_path / "figures" / ".cache" / "page").iterdir()] == [
        "f0.json"
    ]
    _page(tmp_path, figures[0], static=False)
    assert not (tmp_path / "figures" / ".cache" / "page").exists()


def _without_timestamps(html: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\d( \d\d:\d\d)?", "DATE", html)


def test_a_report_rerun_is_the_same_page_without_drawing(tmp_path: Path, monkeypatch) -> None:
    comparison = Comparison(
        problems=[get_problem("booth"), get_problem("parabola:n=64")],
        optimizers=parse_optimizers("sgd,adam"),
        seeds=2,
        budget=Budget(steps=12),
    )
    with Store(tmp_path / "lab.db") as store:
        data = load_comparison(store, run_comparison(comparison, store))
    first = write_report(data, tmp_path / "out", gif=True).read_text(encoding="utf-8")
    files = {p.name: p.read_bytes() for p in (tmp_path / "out" / "figures").glob("*.*") if p.is_file()}
    assert any(name.endswith(".gif") for name in files)

    def refuse(self):
        raise AssertionError(f"{type(self).__name__} drawn again")

    with pytest.MonkeyPatch.context() as patch:
        for cls in Twin.__subclasses__():
            patch.setattr(cls, "plotly", refuse)
            patch.setattr(cls, "draw", refuse)
            if hasattr(cls, "gif"):
                patch.setattr(cls, "gif", refuse)
        again = write_report(data, tmp_path / "out", gif=True).read_text(encoding="utf-8")
    assert _without_timestamps(again) == _without_timestamps(first)
    assert {
        p.name: p.read_bytes() for p in (tmp_path / "out" / "figures").glob("*.*") if p.is_file()
    } == files
    # another optimlab version renders every figure again
    monkeypatch.setattr(figure_cache, "code_fingerprint", lambda: "a later version")
    drawn: list[str] = []
    original = Twin.png

    def counted(self, path):
        drawn.append(type(self).__name__)
        return original(self, path)

    monkeypatch.setattr(Twin, "png", counted)
    write_report(data, tmp_path / "out")
    assert drawn and len(drawn) == sum(n.endswith(".png") for n in files)


def test_the_code_fingerprint_is_stable_and_loads_no_drawing_code() -> None:
    code = (
        "import sys\n"
        "from optimlab.reports.figure_cache import code_fingerprint\n"
        "print(code_fingerprint(), 'matplotlib.pyplot' in sys.modules, 'matplotlib.figure' in sys.modules)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in "ab"
    ]
    first, second = (run.stdout.split() for run in runs)
    assert first == second and first[1:] == ["False", "False"]
