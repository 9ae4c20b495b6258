"""The pages of ``optimlab surface``, ``optimlab schedule`` and ``optimlab lr-find``, one module each:
a self-contained HTML file with its figures' PNG twins (and the surface's GIF) under ``figures/``.

The commands train (:mod:`optimlab.lab`); these pages only draw what they were given.
"""
