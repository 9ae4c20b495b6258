"""optimlab.reports — figures and self-contained HTML reports built from results.

Reports read results (:mod:`optimlab.lab.results`, runs of :mod:`optimlab.lab.runner`); they never
train, and their statistics are the lab's (:mod:`optimlab.lab.stats`).

* :mod:`~optimlab.reports.figures` — one module per figure: its data, its interactive Plotly figure and
  its matplotlib PNG twin (and the surface's animated GIF);
* :mod:`~optimlab.reports.html` — the offline HTML page (Plotly's JavaScript embedded once);
  :mod:`~optimlab.reports.output` — a page with its PNG/GIF files under ``figures/``;
* :mod:`~optimlab.reports.report` — ``report.html`` of a stored comparison (:func:`write_report`): its
  :mod:`~optimlab.reports.protocol` section, the :mod:`~optimlab.reports.ranking` tables and each
  problem's :mod:`~optimlab.reports.section`; :mod:`~optimlab.reports.summary` — its ``summary.json``
  (:func:`write_summary`);
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
