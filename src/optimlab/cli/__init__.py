"""The ``optimlab`` command line (typer + rich): one module per command.

``app.py`` holds what every command shares — the typer app, the options spelled alike everywhere
(``-p``, ``-o``, ``--defaults``, ``--out``), one-line errors with exit code 2 and Ctrl-C with 130 —
and ``output.py`` what they print; a new command is a module here that decorates a function with
``@app.command()`` and is imported below (CONTRIBUTING.md shows one).
"""

from optimlab.cli import compare, learn, listing, lr_find, schedule, surface  # noqa: F401  (they register)
from optimlab.cli.app import app, main, run
from optimlab.cli.compare import _build_comparison

__all__ = ["_build_comparison", "app", "main", "run"]
