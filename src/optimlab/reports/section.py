"""A problem's part of ``report.html`` as its figures see it: where to add them, what to draw, the title.

Each figure module of :mod:`optimlab.reports.figures` that belongs in a problem's section has
``in_report(section)``, which adds the figure when the section's data has something for it to draw;
:data:`optimlab.reports.report.PROBLEM_FIGURES` lists them in the order they appear.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optimlab.lab.results import ProblemData
from optimlab.reports.figures.base import Twin
from optimlab.reports.output import Output

__all__ = ["ProblemSection", "SectionFigure", "problem_title", "problem_titles"]


def problem_title(spec: str, name: str) -> str:
    """What a problem is called on a page: its own ``name`` with the options of its ``spec``. A built-in
    problem's spec is exactly that (``parabola:n=64``); a user's problem loaded as
    ``mypkg.problems:make:n=3`` whose ``name`` is "line" is titled ``line:n=3``."""
    head, _, rest = spec.partition(":")
    if not name or name in (spec, head):
        return spec
    options = rest.partition(":")[2]
    return f"{name}:{options}" if options else name


def problem_titles(problems: Iterable[Any]) -> dict[str, str]:
    """``spec -> title`` of several problems (anything with ``spec`` and ``name``); problems whose
    titles would be the same are told apart by their specs."""
    titles = {p.spec: problem_title(p.spec, p.name) for p in problems}
    counts = Counter(titles.values())
    return {spec: title if counts[title] == 1 else f"{title} ({spec})" for spec, title in titles.items()}


@dataclass(frozen=True)
class ProblemSection:
    """``out`` (the page and its files), the ``problem``'s stored results, its ``title`` and the colour
    of every optimizer label (the same in every figure of the page)."""

    out: Output
    problem: ProblemData
    title: str
    colors: Mapping[str, str]

    @property
    def two_d(self) -> bool:
        """Whether the problem is a 2-D surface: its contour was stored with the plan, or (a comparison
        stored before contours were) its runs recorded 2-D trajectories."""
        if self.problem.contour is not None:
            return True
        return any(len(r.trajectory[0]) == 2 for o in self.problem.optimizers for r in o.runs if r.trajectory)

    def name(self, kind: str) -> str:
        """The file stem of this problem's figure ``kind`` (unique on the page)."""
        return self.out.name(self.problem.spec, kind)

    def add(self, figure: Twin, kind: str, caption: str) -> None:
        """Add ``figure`` (this problem's ``kind`` of figure) to the page, with its files."""
        self.out.figure(figure, self.name(kind), caption=caption)


#: what a problem figure module provides to the report
SectionFigure = Callable[[ProblemSection], None]
