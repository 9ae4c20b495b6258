"""The figures of the reports, one module per figure: its data preparation, its interactive Plotly
figure and its matplotlib PNG twin (and, for the surface, the animated GIF).

Each figure is a :class:`~optimlab.reports.figures.base.Twin`, a frozen dataclass of what it shows
with ``plotly()`` (the interactive figure), ``draw()`` (its matplotlib twin) and ``png(path)``:

* :mod:`~optimlab.reports.figures.loss` — loss curves at each evaluation (median, IQR band, lr panel);
* :mod:`~optimlab.reports.figures.train_loss` — the training loss of every step (the loss figure);
* :mod:`~optimlab.reports.figures.lr_sensitivity` — final loss against learning rate (lr grid, Optuna);
* :mod:`~optimlab.reports.figures.surface` — a 2-D surface's contour with trajectories and animation
  (data in :mod:`~optimlab.reports.figures.surface_data`, the GIF in
  :mod:`~optimlab.reports.figures.surface_gif`);
* :mod:`~optimlab.reports.figures.profile` — the performance profile across problems;
* :mod:`~optimlab.reports.figures.schedule` — learning-rate schedules;
* :mod:`~optimlab.reports.figures.lr_find` — the learning-rate range test.

Shared by all: :mod:`~optimlab.reports.figures.style` (palette, font, user text made literal, long
labels shortened), :mod:`~optimlab.reports.figures.arrays` (validation, gaps, subsampling),
:mod:`~optimlab.reports.figures.scales` (log, symmetric-log or linear axes),
:mod:`~optimlab.reports.figures.plotly_base` (layout, buttons, lines, bands) and
:mod:`~optimlab.reports.figures.png_base` (the Agg canvas, the house style, the legend beside the axes,
saving).

A figure that belongs in each problem's section of ``report.html`` has ``in_report(section)`` (see
:mod:`optimlab.reports.section`) and one entry in :data:`optimlab.reports.report.PROBLEM_FIGURES`.
"""
