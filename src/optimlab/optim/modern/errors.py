"""pytorch-optimizer's exceptions, mirrored: same names and messages, without depending on it.

They subclass the built-in exception optimlab raises for such input (``ValueError`` for a bad
argument, ``RuntimeError`` for a gradient a rule cannot take), so code catching either keeps working;
code that catches pytorch-optimizer's own classes does not catch these.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NegativeLRError", "NoComplexParameterError", "NoSparseGradientError"]


class NegativeLRError(ValueError):
    """A learning rate is negative (``pytorch_optimizer.base.exception.NegativeLRError``)."""

    def __init__(self, lr: Any, lr_type: str = "") -> None:
        self.note = lr_type if lr_type else "learning rate"
        self.message = f"{self.note} must be positive. ({lr} > 0)"
        super().__init__(self.message)


class NoSparseGradientError(RuntimeError):
    """A sparse gradient for an optimizer without sparse support."""

    def __init__(self, optimizer_name: str, note: str = "") -> None:
        self.note = " " if not note else f" w/ {note} "
        self.message = f"{optimizer_name}{self.note}does not support sparse gradient."
        super().__init__(self.message)


class NoComplexParameterError(ValueError):
    """A complex parameter for an optimizer without complex support."""

    def __init__(self, optimizer_name: str, note: str = "") -> None:
        self.note = " " if not note else f" w/ {note} "
        self.message = f"{optimizer_name}{self.note}does not support complex parameter."
        super().__init__(self.message)
