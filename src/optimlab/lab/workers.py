"""The worker processes of :class:`~optimlab.lab.executor.LocalExecutor`, startable ahead.

A worker is a fresh Python (``spawn``) that imports torch and the lab before it trains anything:
about a second, which used to pass while the command's own process had planned and begun training.
:func:`start_workers` starts them at once — ``optimlab compare`` does so before importing torch
itself, so that both imports run side by side — and this module imports nothing heavy, so calling
it costs the caller nothing. Workers ignore Ctrl-C: the parent answers it and stops them.
"""

from __future__ import annotations

import concurrent.futures as futures
import importlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["cores", "default_jobs", "running_elsewhere", "start_workers", "stop_workers", "submit"]


#: what a worker imports before its first unit: the units' code (torch, the lab, the optimizers),
#: named here rather than imported (the executor imports this module)
UNIT_CODE = "optimlab.lab.executor"


def _worker_init(module: str) -> None:
    """A worker's start: Ctrl-C is the parent's, one intra-op thread (tiny models: fastest), and
    ``module`` — everything a unit needs — imported now."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)
    importlib.import_module(module)


def _ready() -> bool:
    return True


def submit(pool: futures.ProcessPoolExecutor, fn: Callable[..., Any], *args: Any) -> futures.Future[Any]:
    """Submit ``fn(*args)`` to ``pool``; Ctrl-C is ignored while a submit starts a worker (a worker
    interrupted while it imports would print a traceback)."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        return pool.submit(fn, *args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def start_workers(count: int) -> futures.ProcessPoolExecutor:
    """A pool of ``count`` worker processes, started now (each imports torch and the lab while the
    caller goes on)."""
    if count < 1:
        raise ValueError(f"a pool needs ≥ 1 worker, got {count}")
    pool = futures.ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(UNIT_CODE,),
    )
    for _ in range(count):
        submit(pool, _ready)
    return pool


def stop_workers(pool: futures.ProcessPoolExecutor) -> None:
    """Shut ``pool`` down at once: pending work dropped, running work stopped."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def cores() -> int:
    """The CPU cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def running_elsewhere() -> int | None:
    """Threads of other programs running or ready to run now (``/proc/loadavg``'s runnable count,
    less this process's reading thread), or ``None`` where the system does not say."""
    try:
        with open("/proc/loadavg", encoding="ascii") as file:
            runnable = int(file.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(0, runnable - 1)


def default_jobs() -> int:
    """Processes for a comparison (this one and its workers): the cores that other programs leave
    idle — :func:`cores` less the busy ones — and at least one. A core counts as busy when the
    1-minute load average (rounded) says so *and* something else is running now
    (:func:`running_elsewhere`): the average alone still counts a command that ended seconds ago.

    The lab's runs are small: a second process pays off on a free core only. On a busy one it adds
    its start-up (importing torch, ≈ 1 s of CPU) and halves each process's share — on the 2-core
    development machine at load 2.5–3.3, the 720-run sweep took 11–12 s with two processes and
    6–7 s with one; on it idle, the default comparison took 6.7–6.8 s with two and 9.9–10.1 s with
    one. ``--jobs N`` sets the number whatever the load."""
    available = cores()
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - no load average here
        return available
    now = running_elsewhere()
    if now is not None:
        busy = min(busy, now)
    return max(1, min(available, available - busy))
