"""The report as a person sees it: opened from disk in headless Chromium.

Checks that every figure rendered, the console shows no errors (Content-Security-Policy violations
included), the page requests nothing but its own file, the controls (axis switch, log toggle, play)
work, and user-given text is shown literally and never runs.

Needs Debian's ``chromium`` and the ``playwright`` Python package; skipped without them unless the
environment variable ``CI`` is set, where their absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from optimlab.reports import demo, figures
from optimlab.reports.data import Curves, grid_surface
from optimlab.reports.page import Page

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


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    return demo.build(out, static=False, steps=60, lrs=(1e-3, 1e-2, 1e-1, 1.0))["report"]


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
        figures.loss_figure({HOSTILE: Curves(loss), TAGGED: Curves(2 * loss)}, title=HOSTILE_IMG),
        caption=TAGGED,
    )
    surf = grid_surface(lambda x, y: x**2 + y**2, (-1, 1), (-1, 1), n=20)
    path = np.linspace([-0.8, 0.6], [0.0, 0.0], 20)
    page.figure(figures.surface_figure(surf, {HOSTILE_IMG: path}, axis_titles=(HOSTILE, HOSTILE_IMG)))
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
def opened_demo(browser, demo_report):
    o = Opened(browser, demo_report)
    yield o
    o.close()


def test_every_figure_rendered(opened_demo):
    page = opened_demo.page
    assert opened_demo.figures >= 10  # every figure kind of the report
    blocks = page.locator("script[data-figure]").count()
    assert blocks == opened_demo.figures
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


def test_no_console_errors_and_no_requests_beyond_the_file(opened_demo, demo_report):
    assert opened_demo.errors == []
    own = demo_report.as_uri()
    outside = [u for u in opened_demo.requests if not u.startswith((own, "data:", "blob:", "about:"))]
    assert outside == []


def test_controls_work(opened_demo):
    page = opened_demo.page
    # fig-1 is the first loss figure: switch its x axis to seconds and its y axis to linear
    page.locator("#fig-1 .updatemenu-button", has_text="seconds").click()
    page.wait_for_function("document.getElementById('fig-1').layout.xaxis2.title.text === 'seconds'")
    page.locator("#fig-1 .updatemenu-button", has_text="linear y").click()
    page.wait_for_function("document.getElementById('fig-1').layout.yaxis.type === 'linear'")
    # the surface figure opens on the finished paths; play starts from the first step
    sid = page.evaluate(
        "() => Array.from(document.querySelectorAll('div.plot')).find("
        "e => e._transitionData && e._transitionData._frames.length > 0).id"
    )
    full = page.evaluate(f"document.getElementById('{sid}')._fullData[1].x.length")
    page.locator(f"#{sid} .updatemenu-button", has_text="play").click()
    page.wait_for_function(f"document.getElementById('{sid}')._fullData[1].x.length < {full}", timeout=10_000)
    page.locator(f"#{sid} .updatemenu-button", has_text="pause").click()
    assert opened_demo.errors == []


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
