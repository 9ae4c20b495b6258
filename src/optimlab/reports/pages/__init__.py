"""The pages of ``optimlab surface``, ``optimlab schedule`` and ``optimlab lr-find``, one module each:
a self-contained HTML file with its figures' PNG twins (and the surface's GIF) under ``figures/``.

The commands train (:mod:`optimlab.lab`); these pages only draw what they were given. Their figure
files begin with the command (``surface-SPEC``, ``schedule``, ``lr-find-SPEC``; ``report.html``'s
begin with the problem), and :class:`optimlab.reports.output.Output` keeps every page's files apart,
so commands that share an ``--out`` folder keep each other's figures.
"""
