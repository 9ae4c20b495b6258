"""optimlab.reports — figures and self-contained HTML reports built from results.

* :mod:`~optimlab.reports.data` — the plain containers (loss curves, lr sensitivity, 2-D surfaces);
* :mod:`~optimlab.reports.figures` — interactive Plotly figures; :mod:`~optimlab.reports.png` — their
  matplotlib PNG twins and the animated GIF;
* :mod:`~optimlab.reports.page` — the offline HTML page (Plotly's JavaScript embedded once);
* :mod:`~optimlab.reports.profile` — performance profiles and scores;
* :mod:`~optimlab.reports.lr_find` — the learning-rate range test.
"""
