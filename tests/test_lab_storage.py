"""SQLite storage: content-hash keys, resuming after a kill, clear errors for unusable files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from optimlab.lab.presets import make_config
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.protocol import Comparison, planned_runs, run_comparison
from optimlab.lab.runner import Regularization, train
from optimlab.lab.schedules import parse_schedule
from optimlab.lab.storage import SCHEMA_VERSION, StorageError, Store, run_key, run_spec

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _spec(**changes):
    args = {
        "problem": get_problem("booth"),
        "optimizer": make_config("adam"),
        "seed": 0,
        "budget": Budget(steps=10),
        "schedule": None,
        "regularization": None,
    }
    args.update(changes)
    return run_spec(**args)


def test_run_key_is_a_stable_content_hash() -> None:
    key = run_key(_spec())
    # pinned: a change here silently orphans every stored run, so it must be deliberate (bump RUN_FORMAT)
    assert key == run_key(_spec()) == "41ed352e2d08fba9b5b1e490b7b0881b8c5e6b47d08bf2d98d84f937e48e35ec"
    assert run_key(_spec(seed=1)) != key
    assert run_key(_spec(budget=Budget(steps=11))) != key
    assert run_key(_spec(optimizer=make_config("adam", {"lr": 0.02}))) != key
    assert run_key(_spec(schedule=parse_schedule("cosine"))) != key
    assert run_key(_spec(regularization=Regularization(l1=0.1))) != key
    assert run_key(_spec(problem=get_problem("booth:noise=1"))) != key
    # the same configuration spelled differently has the same key
    assert run_key(_spec(optimizer=make_config("adam", {"lr": 0.01, "betas": [0.9, 0.99]}))) == key


def test_put_get_roundtrip_and_reopen(tmp_path: Path) -> None:
    result = train(get_problem("booth"), make_config("adam"), 0, Budget(steps=10))
    spec = _spec()
    with Store(tmp_path / "runs" / "lab.db") as store:
        store.put(run_key(spec), spec, "adam", result)
        store.put(run_key(spec), spec, "adam", result)  # idempotent
        assert store.count() == 1
    with Store(tmp_path / "runs" / "lab.db", create=False) as store:
        stored = store.get(run_key(spec))
        assert stored.result == result and stored.spec["seed"] == 0 and stored.preset == "adam"
        assert store.existing([run_key(spec), "nope"]) == {run_key(spec)}


def _comparison(seeds: int = 4) -> Comparison:
    return Comparison(
        problems=[get_problem("parabola:n=64")],
        optimizers=[make_config("sgd"), make_config("adam")],
        seeds=seeds,
        budget=Budget(epochs=2),
    )


def test_interrupted_comparison_keeps_finished_runs_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    done: list[str] = []

    def stop_after_three(event):
        if event.kind == "done":
            done.append(event.run.key)
            if len(done) == 3:
                raise KeyboardInterrupt

    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        run_comparison(_comparison(), store, progress=stop_after_three)
    with Store(db) as store:
        assert store.existing(done) == set(done) and store.count() == 3
        events: list[str] = []
        run_comparison(_comparison(), store, progress=lambda event: events.append(event.kind))
        assert events.count("reused") == 3
        assert events.count("done") == planned_runs(_comparison()) - 3
        assert store.count() == planned_runs(_comparison())


def test_killed_process_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {SRC!r})
        from optimlab.lab.presets import make_config
        from optimlab.lab.problems import Budget, get_problem
        from optimlab.lab.protocol import Comparison, run_comparison
        from optimlab.lab.storage import Store
        comparison = Comparison(problems=[get_problem("parabola:n=64")], optimizers=[make_config("sgd")],
                                seeds=1000, budget=Budget(epochs=2))
        def progress(event):
            if event.kind == "done":
                print("done", flush=True)
        with Store({str(db)!r}) as store:
            run_comparison(comparison, store, progress=progress)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(5):
            assert process.stdout.readline() == "done\n"
        time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    with Store(db) as store:  # opens (integrity checked) with every committed run
        count = store.count()
        assert 5 <= count < 1000
        assert all(run.result.steps == 4 for run in store.runs())


def test_corrupt_file_is_a_clear_error_and_left_untouched(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    before = garbage.read_bytes()
    with pytest.raises(StorageError, match="not an optimlab database") as info:
        Store(garbage)
    assert "\n" not in str(info.value) and garbage.read_bytes() == before

    damaged = tmp_path / "damaged.db"
    with Store(damaged) as store:
        result = train(get_problem("booth"), make_config("adam"), 0, Budget(steps=300))
        for seed in range(40):
            store.put(f"key{seed}", {"seed": seed}, "adam", result)
    data = bytearray(damaged.read_bytes())
    data[5000:12000] = b"\xff" * 7000
    damaged.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"corrupt|not a usable") as info:
        Store(damaged)
    assert "\n" not in str(info.value) and damaged.read_bytes() == bytes(data)


def test_foreign_schema_version_and_foreign_sqlite_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(db)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(StorageError, match="another program"):
        Store(other)
    with sqlite3.connect(other) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("songs",)]
    with pytest.raises(StorageError, match="is a folder"):
        Store(tmp_path)
    with pytest.raises(StorageError, match="no database"):
        Store(tmp_path / "missing.db", create=False)
