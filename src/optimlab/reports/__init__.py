"""optimlab.reports — figures and self-contained HTML reports built from results.

Reports read results (:mod:`optimlab.lab.results`, runs of :mod:`optimlab.lab.runner`); they never
train, and their statistics are the lab's (:mod:`optimlab.lab.stats`).

* :mod:`~optimlab.reports.data` — the plain containers (loss curves, lr sensitivity, 2-D surfaces);
  :mod:`~optimlab.reports.adapt` — lab runs as those containers;
* :mod:`~optimlab.reports.figures` — interactive Plotly figures; :mod:`~optimlab.reports.png` — their
  matplotlib PNG twins and the animated GIF;
* :mod:`~optimlab.reports.page` — the offline HTML page (Plotly's JavaScript embedded once);
  :mod:`~optimlab.reports.output` — a page with its PNG/GIF files under ``figures/``;
* :mod:`~optimlab.reports.report` — ``report.html`` of a stored comparison (:func:`write_report`);
  :mod:`~optimlab.reports.summary` — its ``summary.json`` (:func:`write_summary`);
* :mod:`~optimlab.reports.pages` — the pages of ``optimlab surface``, ``schedule`` and ``lr-find``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_report", "write_summary"]


def __getattr__(name: str) -> Any:  # lazy: importing a figure module does not load the lab
    if name == "write_report":
        from optimlab.reports.report import write_report

        return write_report
    if name == "write_summary":
        from optimlab.reports.summary import write_summary

        return write_summary
    raise AttributeError(f"module 'optimlab.reports' has no attribute {name!r}")
