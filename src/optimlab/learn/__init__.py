"""Learn why: demonstrations of the mechanisms the seed posts explain, each with a figure, a measured
number and a verdict on the posts' claims (``optimlab learn``).

From Python::

    from optimlab import learn
    outcome = learn.run("ewa")          # measures; outcome.numbers is what --json prints
    learn.write(["ewa"], "runs")        # runs/learn-ewa.html and its PNG under runs/figures/

:mod:`optimlab.learn.demo` says what a demonstration is; :mod:`optimlab.learn.demos` holds one module
per demonstration; :mod:`optimlab.learn.page` writes the pages. The course imports the optimizer
rules, the lab's problems and the reports' figures; nothing imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from optimlab.learn.demo import LANGUAGES, Claim, Demo, Outcome, Text, Verdict, text
from optimlab.learn.registry import demo_names, demonstrations, get_demo

__all__ = [
    "LANGUAGES",
    "Claim",
    "Demo",
    "Outcome",
    "Text",
    "Verdict",
    "demo_names",
    "demonstrations",
    "get_demo",
    "run",
    "text",
    "write",
]


def run(name: str) -> Outcome:
    """Run the demonstration ``name`` and return what it measured."""
    return get_demo(name).run()


def write(
    names: Sequence[str],
    out_dir: str | Path,
    *,
    lang: str = "en",
    png: bool = True,
    course: bool | None = None,
) -> list[Path]:
    """Run the demonstrations ``names`` and write their page: ``learn-NAME.html`` for one, the course
    ``learn.html`` for several (or when ``course``); returns the files written, the page last."""
    from optimlab.learn.page import write_pages

    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; choose {' or '.join(LANGUAGES)}")
    chosen = [get_demo(n) for n in names]
    done = [(demo, demo.run()) for demo in chosen]
    course = len(names) != 1 if course is None else course
    return write_pages(done, out_dir, lang=lang, course=course, png=png)
