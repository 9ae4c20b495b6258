"""The calling thread's OpenMP thread count, lowered to one around small elementwise work.

torch runs an elementwise op on one thread below its grain size (32,768 elements) — but not every
op: ``sqrt`` and other costly unary ops split at fewer elements, and a 31,974-element ``sqrt`` runs
on two threads. On a busy machine the two wait for each other at OpenMP's join: measured with two
other jobs on the 2-core machine, Adam's ``sqrt`` on a gathered run of small tensors took 5.2 ms
on average instead of ≈ 15 µs on one thread. The engines therefore step small tensors, whose ops
torch's own for-loop runs serially, with the calling thread's OpenMP setting at one; an elementwise
op's results do not depend on its thread count. Only the calling thread's setting changes
(``omp_set_num_threads``), for the duration of the work, and it is restored afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch


@functools.cache
def openmp() -> tuple[Callable[[int], Any], Callable[[], int]] | None:
    """``omp_set_num_threads`` and ``omp_get_max_threads`` of the OpenMP runtime torch runs (checked:
    ``torch.get_num_threads()`` follows the first), or ``None`` where none is found."""
    try:
        process = ctypes.CDLL(None)
        setter, getter = process.omp_set_num_threads, process.omp_get_max_threads
    except (AttributeError, OSError, TypeError):  # no such symbol, or no process handle (Windows)
        return None
    setter.argtypes, setter.restype = [ctypes.c_int], None
    getter.argtypes, getter.restype = [], ctypes.c_int
    before = torch.get_num_threads()  # (initializes this thread's setting first)
    try:
        setter(before + 1)
        same = torch.get_num_threads() == before + 1 and getter() == before + 1
    finally:
        setter(before)
    return (setter, getter) if same else None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the ``with`` block's torch ops on the calling thread alone (no-op without an OpenMP
    runtime, or where it already runs on one)."""
    runtime = openmp()
    threads = runtime[1]() if runtime is not None else 1
    if threads <= 1:
        yield
        return
    runtime[0](1)  # type: ignore[index]
    try:
        yield
    finally:
        runtime[0](threads)  # type: ignore[index]


__all__ = ["one_thread", "openmp"]
