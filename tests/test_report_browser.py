"""The pages as a person sees them: opened from disk in headless Chromium.

The real ``report.html`` of a tiny ``optimlab compare`` (parabola and rosenbrock, two optimizers — one
of them labelled with HTML — two seeds, an lr grid of two) and the pages of ``optimlab surface``,
``schedule`` and ``lr-find``: every figure rendered, the console shows no errors (Content-Security-Policy
violations included), the page requests nothing but its own file, every PNG/GIF link resolves, the
controls (axis switch, log toggle, play) work, and user-given text is shown literally and never runs.

Needs Debian's ``chromium`` and the ``playwright`` Python package; skipped without them unless the
environment variable ``CI`` is set, where their absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optimlab.cli import app
from optimlab.reports.figures.loss import Curves, LossFigure
from optimlab.reports.figures.surface import SurfaceFigure
from optimlab.reports.figures.surface_data import grid_surface
from optimlab.reports.html import Page

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOSTILE = "<script>alert(1)</script>"
HOSTILE_IMG = '<img src=x onerror="alert(2)">'
TAGGED = '<b>bold</b><br><a href="javascript:alert(3)">link</a>'  # tags Plotly's text renderer would obey


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI is set, so the browser test must run")
    pytest.skip(why)


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        _unavailable("Debian's chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    executable = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


PAGES = ("report.html", "surface.html", "schedule.html", "lr_find.html")


@pytest.fixture(scope="module")
def lab_pages(tmp_path_factory) -> Path:
    """The four pages, written by the commands a person would run."""
    out = tmp_path_factory.mktemp("lab")
    config = out / "lab.toml"
    config.write_text(
        f'[optimizers.sgd]\npreset = "sgd"\n[optimizers."{HOSTILE}"]\npreset = "adam"\n', encoding="utf-8"
    )
    runner = CliRunner()
    commands = [
        [
            *("compare", "-p", "parabola", "-p", "rosenbrock", "--config", str(config), "--seeds", "2"),
            *("--lr-grid", "2", "--epochs", "2", "--jobs", "1", "--db", str(out / "lab.db"), "--gif"),
        ],
        ["surface", "rosenbrock", "-o", "sgd:lr=0.001,adam:lr=0.05", "--steps", "60"],
        [
            "schedule",
            "step:step_size=4,gamma=0.5",
            "plateau:factor=0.1,patience=2",
            "onecycle",
            "--steps",
            "12",
        ],
        ["lr-find", "-p", "parabola:n=64", "-o", "adam", "--seeds", "2", "--steps", "40"],
    ]
    for args in commands:
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 0, (args, result.output)
    return out


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    loss = np.exp(-np.arange(30) / 5.0) * (1 + 0.1 * rng.random((3, 30)))
    page = Page(f"report {HOSTILE}", subtitle=HOSTILE_IMG)
    page.section(HOSTILE)
    page.text(HOSTILE_IMG)
    page.table(["optimizer", HOSTILE_IMG], [[HOSTILE, HOSTILE_IMG]])
    page.key_values({"config": {HOSTILE: HOSTILE_IMG}})
    page.figure(
        LossFigure({HOSTILE: Curves(loss), TAGGED: Curves(2 * loss)}, title=HOSTILE_IMG).plotly(),
        caption=TAGGED,
    )
    surf = grid_surface(lambda x, y: x**2 + y**2, (-1, 1), (-1, 1), n=20)
    path = np.linspace([-0.8, 0.6], [0.0, 0.0], 20)
    page.figure(SurfaceFigure(surf, {HOSTILE_IMG: path}, axis_titles=(HOSTILE, HOSTILE_IMG)).plotly())
    return page.write(tmp_path_factory.mktemp("hostile") / "report.html")


class Opened:
    """A page loaded from disk with everything it logged, requested and tried to pop up."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(viewport={"width": 1366, "height": 800})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.goto(path.as_uri(), wait_until="load")
        self.figures = self.page.locator("div.plot").count()
        self.page.wait_for_function(
            "n => document.querySelectorAll('div.plot[data-rendered=\"true\"]').length === n",
            arg=self.figures,
            timeout=60_000,
        )

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def opened(browser, lab_pages):
    pages = {name: Opened(browser, lab_pages / name) for name in PAGES}
    yield pages
    for page in pages.values():
        page.close()


@pytest.mark.parametrize("name", PAGES)
def test_every_figure_rendered(opened, name):
    o = opened[name]
    page = o.page
    assert o.figures >= {"report.html": 7, "surface.html": 2, "schedule.html": 2, "lr_find.html": 1}[name]
    assert page.locator("script[data-figure]").count() == o.figures
    drawn = page.eval_on_selector_all(
        "div.plot",
        """els => els.map(e => ({
            id: e.id,
            svg: e.querySelectorAll('.main-svg').length,
            traces: (e.data || []).length,
            ticks: e.querySelectorAll('.xtick, .ytick').length,
            error: e.textContent.includes('could not be drawn'),
        }))""",
    )
    for fig in drawn:
        assert fig["svg"] > 0 and fig["traces"] > 0 and fig["ticks"] > 0 and not fig["error"], fig


@pytest.mark.parametrize("name", PAGES)
def test_no_console_errors_no_requests_beyond_the_file_and_every_link_resolves(opened, lab_pages, name):
    o = opened[name]
    assert o.errors == []
    assert o.dialogs == []
    own = (lab_pages / name).as_uri()
    outside = [u for u in o.requests if not u.startswith((own, "data:", "blob:", "about:"))]
    assert outside == []
    links = o.page.eval_on_selector_all("figcaption a", "els => els.map(e => e.getAttribute('href'))")
    assert len(links) >= o.figures  # a PNG for every figure (and the GIF of the surface)
    for href in links:
        assert not href.startswith(("http:", "https:", "//", "javascript:")), href
        assert (lab_pages / href).is_file(), href


def test_the_report_states_the_protocol_and_ranks_every_problem(opened):
    page = opened["report.html"].page
    headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
    assert headings == ["Protocol", "parabola", "rosenbrock", "Across problems"]
    protocol = page.inner_text("section.card >> nth=0")
    for words in ("learning-rate grid", "2 epochs = 64 steps", "2 seeds (0, 1)", "torch", "python"):
        assert words in protocol
    ranked = page.locator("section.card >> nth=1").locator("table >> nth=0")
    assert ranked.locator("tbody tr").count() == 2
    assert HOSTILE in ranked.inner_text()


def test_controls_work(opened):
    o = opened["report.html"]
    page = o.page
    # fig-1 is parabola's loss figure: switch its x axis to seconds and its y axis to linear
    page.locator("#fig-1 .updatemenu-button", has_text="seconds").click()
    page.wait_for_function("document.getElementById('fig-1').layout.xaxis2.title.text === 'seconds'")
    page.locator("#fig-1 .updatemenu-button", has_text="linear y").click()
    page.wait_for_function("document.getElementById('fig-1').layout.yaxis.type === 'linear'")
    # the surface figure opens on the finished paths; play starts from the first step
    for o in (opened["report.html"], opened["surface.html"]):
        page = o.page
        sid = page.evaluate(
            "() => Array.from(document.querySelectorAll('div.plot')).find("
            "e => e._transitionData && e._transitionData._frames.length > 0).id"
        )
        full = page.evaluate(f"document.getElementById('{sid}')._fullData[1].x.length")
        page.locator(f"#{sid} .updatemenu-button", has_text="play").click()
        page.wait_for_function(
            f"document.getElementById('{sid}')._fullData[1].x.length < {full}", timeout=10_000
        )
        page.locator(f"#{sid} .updatemenu-button", has_text="pause").click()
        assert o.errors == []


def test_a_hostile_optimizer_label_is_shown_literally_in_the_real_report(opened):
    o = opened["report.html"]
    page = o.page
    assert o.dialogs == [] and page.locator("img").count() == 0
    legends = page.eval_on_selector_all(".legendtext", "els => els.map(e => e.textContent)")
    assert any(HOSTILE in text for text in legends)
    assert HOSTILE in page.inner_text("main")


def test_user_text_is_shown_literally_and_never_runs(browser, hostile_report):
    o = Opened(browser, hostile_report)
    try:
        page = o.page
        assert o.dialogs == []
        assert o.errors == []
        own = hostile_report.as_uri()
        assert [u for u in o.requests if not u.startswith((own, "data:", "blob:", "about:"))] == []
        assert page.locator("img").count() == 0  # the <img onerror> stayed text
        assert HOSTILE in page.inner_text("h1")
        assert page.inner_text("h2") == HOSTILE
        assert HOSTILE_IMG in page.inner_text("table")
        legends = page.eval_on_selector_all(".legendtext", "els => els.map(e => e.textContent)")
        assert HOSTILE in legends and HOSTILE_IMG in legends and TAGGED in legends
        assert page.locator(".legendtext a, .legendtext b").count() == 0  # not interpreted as markup
        assert TAGGED in page.inner_text("figcaption")
        titles = page.eval_on_selector_all(".gtitle, .xtitle, .ytitle", "els => els.map(e => e.textContent)")
        assert HOSTILE_IMG in titles and HOSTILE in titles
    finally:
        o.close()


# --- the course: learn.html in both languages -----------------------------------------------------


@pytest.fixture(scope="module")
def course_pages(tmp_path_factory) -> dict[str, Path]:
    """``learn.html`` of every demonstration, in English and in Chinese (each demonstration measured once)."""
    from optimlab.learn import demonstrations
    from optimlab.learn.page import write_pages

    done = [(demo, demo.run()) for demo in demonstrations().values()]
    pages = {}
    for lang in ("en", "zh"):
        out = tmp_path_factory.mktemp(f"course-{lang}")
        pages[lang] = write_pages(done, out, lang=lang, course=True)[-1]
    return pages


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_course_renders_in_both_languages(browser, course_pages, lang):
    from optimlab.learn import demonstrations

    path = course_pages[lang]
    o = Opened(browser, path)
    try:
        assert o.errors == [] and o.dialogs == []
        own = path.as_uri()
        assert [u for u in o.requests if not u.startswith((own, "data:", "blob:", "about:"))] == []
        assert o.figures >= len([d for d in demonstrations().values() if d.name != "errata"])
        drawn = o.page.eval_on_selector_all(
            "div.plot",
            "els => els.map(e => ({svg: e.querySelectorAll('.main-svg').length, "
            "traces: (e.data || []).length}))",
        )
        assert all(f["svg"] > 0 and f["traces"] > 0 for f in drawn), drawn
        assert o.page.get_attribute("html", "lang") == lang
        headings = o.page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
        guide = {"en": "The optimizers: a guide", "zh": "优化器指南"}[lang]
        assert headings == [*(f"{d.order}. {d.title(lang)}" for d in demonstrations().values()), guide]
        for href in o.page.eval_on_selector_all(
            "figcaption a", "els => els.map(e => e.getAttribute('href'))"
        ):
            assert (path.parent / href).is_file(), href
    finally:
        o.close()
