"""Workers started ahead (``optimlab compare`` on a new database starts them before it imports torch)
train the same units as this process, and are gone when the executor closes."""

from __future__ import annotations

import os

import pytest

from optimlab.lab.executor import LocalExecutor, cut_units
from optimlab.lab.presets import make_config
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.run import RunSpec
from optimlab.lab.workers import start_workers


def test_workers_started_ahead_train_what_this_process_trains() -> None:
    problem = get_problem("parabola:n=64")
    configs = [make_config("sgd"), make_config("adam"), make_config("lbfgs")]
    runs = [RunSpec.of(problem, c, seed, Budget(steps=6)) for c in configs for seed in (0, 1)]
    units = cut_units(runs, {problem.spec: problem})
    assert [len(u) for u in units] == [1, 1, 4]  # L-BFGS alone, the first-order runs batched
    pool = start_workers(1)
    processes = list(pool._processes.values())  # type: ignore[union-attr]
    assert len(processes) == 1 and processes[0].is_alive()
    ahead = LocalExecutor({problem.spec: problem}, jobs=2, pool=pool)
    try:
        aside = {
            run.key: result
            for unit, results in ahead.train(units)
            for run, result in zip(unit, results, strict=True)
        }
    finally:
        ahead.close(cancel=True)
    assert not any(p.is_alive() for p in processes)
    here = LocalExecutor({problem.spec: problem}, jobs=1)
    alone = {
        run.key: result
        for unit, results in here.train(units)
        for run, result in zip(unit, results, strict=True)
    }
    assert aside.keys() == alone.keys() == {run.key for run in runs}
    for key, result in alone.items():
        assert aside[key].losses == result.losses and aside[key].final_loss == result.final_loss


def test_the_default_number_of_processes_is_the_idle_cores(monkeypatch) -> None:
    """One process per core that other programs leave idle (the 1-minute load average, rounded), at
    least one: a second process on a busy core only adds its start-up."""
    import os

    from optimlab.lab import workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(workers, "running_elsewhere", lambda: 8)
    for load, jobs in ((0.0, 4), (0.4, 4), (0.6, 3), (1.2, 3), (2.5, 2), (3.6, 1), (9.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert workers.default_jobs() == jobs
    assert workers.cores() == 4
    # the average still counts a command that just ended; with nothing else running now, every core
    monkeypatch.setattr(os, "getloadavg", lambda: (1.1, 2.0, 3.0))
    for running, jobs in ((0, 4), (1, 3), (5, 3), (None, 3)):
        monkeypatch.setattr(workers, "running_elsewhere", lambda running=running: running)
        assert workers.default_jobs() == jobs


def test_running_elsewhere_reads_the_runnable_count_without_the_reader() -> None:
    """On Linux ``/proc/loadavg`` counts the reading thread among the runnable ones."""
    from optimlab.lab import workers

    if not os.path.exists("/proc/loadavg"):
        pytest.skip("no /proc/loadavg here")
    running = workers.running_elsewhere()
    assert running is not None and running >= 0
