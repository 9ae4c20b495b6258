"""Drawing a page's files (PNGs, GIFs) in a process of their own while this one builds the page.

matplotlib is most of a fresh report's cost: importing it (≈ 0.6 s) and drawing each PNG (≈ 0.25 s,
its layout and rasterizing), where building the Plotly figures and the page takes a fraction of a
second. A :class:`Renderer` started ahead — ``optimlab compare`` starts one when it has runs to
train — imports matplotlib and the figure modules in another process while this one trains, then
draws the files :class:`~optimlab.reports.output.Output` hands it (each figure's own ``png``/``gif``
method, the figure pickled) while this process builds the page; :meth:`Output.write
<optimlab.reports.output.Output.write>` waits for them. The files are the same bytes as when drawn
here: the same code and settings draw them. Should the process fail to start or die, the files
are drawn here instead (:func:`finish`).
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from optimlab.lab.workers import stop_workers, submit

__all__ = ["Renderer", "finish"]

Draw = Callable[[Path], Path]


def _prepare() -> None:
    """The renderer process's start: Ctrl-C is the parent's to answer (it stops this process), and
    what drawing needs is imported now, before the first figure arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401

    import optimlab.reports.figures  # noqa: F401


def _ready() -> bool:
    return True


class Renderer:
    """One process that draws figure files (see the module docstring). Use as a context manager, or
    call :meth:`close`."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool: futures.ProcessPoolExecutor | None = futures.ProcessPoolExecutor(
            1, mp_context=context, initializer=_prepare
        )
        submit(self._pool, _ready)  # the process starts now and imports while the caller works

    def draw(self, draw: Draw, path: Path) -> futures.Future | None:
        """``draw(path)`` in the renderer process; ``None`` when it cannot take work (closed, or its
        process died): the caller draws it itself."""
        if self._pool is None:
            return None
        try:
            return submit(self._pool, draw, path)
        except (BrokenProcessPool, RuntimeError):
            return None

    def close(self) -> None:
        """Stop the process; figures not drawn yet are dropped (:func:`finish` draws them here)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            stop_workers(pool)  # idle by now, or drawing what nobody waits for

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def finish(future: futures.Future | None, draw: Draw, path: Path) -> None:
    """Wait for a file the renderer draws; draw it here when there is no renderer or it failed to
    (its process died, or was closed before it drew the file). An error of the drawing itself (a
    full disk) is raised as drawing it here would raise it."""
    if future is not None:
        try:
            future.result()
            return
        except (BrokenProcessPool, futures.CancelledError):
            pass
    draw(path)
