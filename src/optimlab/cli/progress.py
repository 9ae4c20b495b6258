"""A progress bar weighted by expected cost, with an ETA.

Runs cost very different amounts: an L-BFGS run evaluates the gradient up to ``max_iter`` times a
step, while a first-order run trained as one of a hundred batched replicas costs a few percent of a
run alone. The bar's total is the expected cost of what is left to train (the lab's
:func:`~optimlab.lab.executor.unit_cost`), each finished run advances it by its share, and the ETA
is the cost left divided by the cost trained per second so far. Runs found stored count, but cost
nothing.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from optimlab.cli.app import console


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _Bar:
    """One rich progress bar of ``columns`` (after the description and the bar), filled when its
    ``with`` block ends without error (:meth:`_fill`)."""

    def __init__(self, title: str, columns: list[ProgressColumn], total: float | None, **fields: str) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            *columns,
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(title, total=total, **fields)

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self._fill()
        self.progress.__exit__(kind, error, trace)

    def _fill(self) -> None:
        raise NotImplementedError


class CostProgress(_Bar):
    """``with CostProgress("lr-grid comparison") as bar: bar.plan(cost); bar.done(share, label)``."""

    def __init__(self, title: str) -> None:
        columns = [TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[eta]}")]
        super().__init__(title, columns, None, counts="", eta="")
        self.title = title
        self.total = 0.0
        self.finished = 0.0
        self.trained = self.reused = 0
        self.started: float | None = None

    def _fill(self) -> None:
        if self.total:
            self.progress.update(self.task, completed=self.total, eta="")

    def plan(self, cost: float) -> None:
        """``cost`` more is to be trained."""
        self.total += cost
        if self.started is None:
            self.started = time.perf_counter()
        self.progress.update(self.task, total=self.total or None)

    def done(self, cost: float, label: str) -> None:
        """A run of ``cost`` was trained."""
        self.trained += 1
        self.finished += cost
        eta = ""
        if self.started is not None and self.finished > 0:
            rate = self.finished / (time.perf_counter() - self.started)
            eta = f"ETA {_clock(max(self.total - self.finished, 0.0) / rate)}"
        self._update(label, eta=eta)

    def found(self, label: str) -> None:
        """A run was found stored."""
        self.reused += 1
        self._update(f"{label} (stored)")

    def _update(self, label: str, **fields: str) -> None:
        counts = f"{self.trained} trained" + (f", {self.reused} stored" if self.reused else "")
        self.progress.update(
            self.task, completed=self.finished, description=f"{self.title} · {label}", counts=counts, **fields
        )


class StepProgress(_Bar):
    """A bar of training steps with an ETA, for commands that train in this process (``surface``,
    ``lr-find``): ``with StepProgress("adam", total) as bar: train(..., on_steps=bar.advance)``.

    The trainers call ``on_steps(n)`` at their evaluations (:mod:`optimlab.lab.loop`), their calls
    adding up to the steps trained; a run that stops early (diverged) leaves its steps undone, and
    the bar is filled when the command ends without error."""

    def __init__(self, title: str, total: int) -> None:
        columns = [TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"), TimeRemainingColumn()]
        super().__init__(title, columns, max(total, 1))

    def _fill(self) -> None:
        self.progress.update(self.task, completed=self.progress.tasks[0].total)

    def describe(self, title: str) -> None:
        """Say what is training now."""
        self.progress.update(self.task, description=title)

    def advance(self, steps: int) -> None:
        """``steps`` more were trained."""
        self.progress.advance(self.task, steps)
