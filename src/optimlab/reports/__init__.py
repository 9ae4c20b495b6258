"""Reports of stored comparisons: ``summary.json`` and a self-contained ``report.html``.

Reports read results (:mod:`optimlab.lab.results`); they never train.
"""

from optimlab.reports.report import write_report
from optimlab.reports.summary import write_summary

__all__ = ["write_report", "write_summary"]
