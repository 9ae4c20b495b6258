"""Where a command's time goes: wall-clock marks at its phases, written as JSON when asked.

``OPTIMLAB_PHASES=FILE optimlab compare ...`` writes ``{"marks": [[name, unix time], ...], "extra":
{...}}`` to FILE as the command ends: each mark is the moment a phase ended (``settings``: the
command line read and the comparison built, torch imported; ``planned``; ``trained``: every run
trained and stored; ``loaded``; ``summary``; ``report``), ``extra`` what the command measured
besides (the seconds spent writing runs to the database). ``benchmarks/lab_throughput.py`` reads it
to split the command's wall time, process start and exit included, into shares. Without the
variable nothing is recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["ENV", "Phases"]

#: the environment variable naming the file to write
ENV = "OPTIMLAB_PHASES"


class Phases:
    """The marks of one command (a no-op unless :data:`ENV` names a file)."""

    def __init__(self) -> None:
        self.path = os.environ.get(ENV) or None
        self.marks: list[tuple[str, float]] = []
        self.extra: dict[str, Any] = {}

    def mark(self, name: str) -> None:
        """The phase ``name`` ends now."""
        if self.path is not None:
            self.marks.append((name, time.time()))

    def write(self) -> None:
        """Write the marks to the file (nothing when unset; a file that cannot be written is skipped:
        the marks are a measurement, never a reason for the command to fail)."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            Path(self.path).write_text(json.dumps({"marks": self.marks, "extra": self.extra}) + "\n")
