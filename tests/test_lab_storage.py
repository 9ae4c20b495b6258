"""SQLite storage: content-hash keys, resuming after a kill, clear errors for unusable files."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from optimlab.lab.presets import make_config
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.protocol import Comparison, planned_runs, run_comparison
from optimlab.lab.run import RECORD_VERSION, RunResult
from optimlab.lab.runner import Regularization, train
from optimlab.lab.schedules import parse_schedule
from optimlab.lab.storage import (
    SCHEMA_VERSION,
    StorageError,
    Store,
    decode_floats,
    encode_floats,
    run_key,
    run_spec,
)

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


def test_a_record_of_an_older_version_is_found_not_reused_and_replaced(tmp_path: Path) -> None:
    new = train(get_problem("booth"), make_config("adam"), 0, Budget(steps=10))
    assert new.record_version == RECORD_VERSION == 2
    old = RunResult.from_dict({k: v for k, v in new.to_dict().items() if k != "record_version"})
    assert old.record_version == 1  # a result stored before records said their version
    spec = _spec()
    key = run_key(spec)
    with Store(tmp_path / "lab.db") as store:
        store.put(key, spec, "adam", old)
        assert store.existing([key]) == {key}
        assert store.check([key, "nope"]) == (set(), {}, {key})  # found, not to be reused
        store.put(key, spec, "adam", new)  # without replace, a stored key is kept as it is
        assert store.get(key).result == old
        store.put(key, spec, "adam", new, replace=True)  # what the protocol does
        assert store.get(key).result == new and store.count() == 1
        assert store.check([key]) == ({key}, {}, set())
        store.put(key, spec, "adam", old)
        assert store.get(key).result == new and store.count() == 1


def test_a_rerun_reads_each_stored_run_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A comparison checks every stored run, picks its learning rates from their final losses and loads
    them for its report: each row is decoded once (a Store keeps what it read; only ``put`` with
    ``replace`` changes a row), and what is read is what was stored."""
    from optimlab.lab import storage
    from optimlab.lab.results import load_comparison

    comparison = Comparison(
        problems=[get_problem("parabola:n=64")],
        optimizers=[make_config("sgd"), make_config("adam")],
        seeds=2,
        lr_grid=2,
        budget=Budget(steps=4),
    )
    with Store(tmp_path / "lab.db") as store:
        run_comparison(comparison, store)
        stored = {run.key: run.result for run in store.runs()}
    assert len(stored) == 8
    decoded = []
    decode = storage._decode
    monkeypatch.setattr(storage, "_decode", lambda *a, **k: decoded.append(a[0][0]) or decode(*a, **k))
    with Store(tmp_path / "lab.db") as store:
        run_comparison(comparison, store)
        data = load_comparison(store)
        again = [store.get(key) for key in stored]
    assert sorted(decoded) == sorted(stored)  # each once
    assert {r.key: r.result for r in again} == stored
    assert {id(run) for p in data.problems for o in p.optimizers for run in o.runs} <= {
        id(r.result) for r in again
    }  # the very runs read once


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


# --- damaged rows, lost tables, full and read-only databases ------------------------------------


def _losses_hold_text(result: str) -> str:
    data = json.loads(result)
    data["losses"][1] = "abc"
    return json.dumps(data)


#: ways a stored row gets damaged: (spec, result) → (spec, result)
DAMAGE = {
    "truncated": lambda spec, result: (spec, result[:50]),
    "empty object": lambda spec, result: (spec, "{}"),
    "null": lambda spec, result: (spec, "null"),
    "wrong type": lambda spec, result: (spec, _losses_hold_text(result)),
    "truncated spec": lambda spec, result: (spec[:10], result),
    "no version": lambda spec, result: (spec, _edited(result, record_version=None)),
    "evaluation lacks a field": lambda spec, result: (
        spec,
        _edited(
            result,
            evals=[{k: v for k, v in e.items() if k != "grad_evals"} for e in json.loads(result)["evals"]],
        ),
    ),
}


#: ways a stored run's BLOB of losses (schema version 2) gets damaged: BLOB → what replaces it
BLOB_DAMAGE = {
    "cut BLOB": lambda losses: losses[:-1],
    "text in BLOB": lambda losses: "0.5",
}


def _edited(result: str, **fields) -> str:
    return json.dumps({**json.loads(result), **fields})


def _damage(db: Path, key: str, how: str) -> None:
    with sqlite3.connect(db) as conn:
        spec, result, losses, lrs = conn.execute(
            "SELECT spec, result, losses, lrs FROM runs WHERE key = ?", (key,)
        ).fetchone()
        if how in BLOB_DAMAGE:
            conn.execute("UPDATE runs SET losses = ? WHERE key = ?", (BLOB_DAMAGE[how](losses), key))
            return
        # the JSON's damages, to the row as schema version 1 wrote it (every step in its JSON)
        result = _edited(result, losses=decode_floats(losses), lrs=decode_floats(lrs))
        conn.execute(
            "UPDATE runs SET spec = ?, result = ?, losses = NULL, lrs = NULL WHERE key = ?",
            (*DAMAGE[how](spec, result), key),
        )


def _rows(db: Path) -> dict[str, tuple[str, str, bytes, bytes]]:
    with sqlite3.connect(db) as conn:
        return {
            k: tuple(rest) for k, *rest in conn.execute("SELECT key, spec, result, losses, lrs FROM runs")
        }


def test_damaged_rows_are_named_and_trained_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "lab.db"
    comparison = _comparison(seeds=5)
    with Store(db) as store:
        run_comparison(comparison, store)
        original = {run.key: run.result for run in store.runs()}
    damages = [*DAMAGE, *BLOB_DAMAGE]
    keys = sorted(original)[: len(damages)]
    for key, how in zip(keys, damages, strict=True):
        _damage(db, key, how)
    untouched = {k: v for k, v in _rows(db).items() if k not in keys}
    events: list[str] = []
    with caplog.at_level("WARNING", logger="optimlab.lab"), Store(db) as store:
        run_comparison(comparison, store, progress=lambda event: events.append(event.kind))
        assert store.check(original) == (set(original), {}, set())
        retrained = {run.key: run.result for run in store.runs(keys)}
    warnings = [r.getMessage() for r in caplog.records if r.name == "optimlab.lab"]
    assert len(warnings) == len(damages) and all("\n" not in w for w in warnings)
    for key in keys:
        assert sum(key[:12] in w for w in warnings) == 1
    assert any("result: its JSON is cut short" in w for w in warnings)
    assert any("result: null, not a run's record" in w for w in warnings)
    assert any("'losses' is list" in w for w in warnings)
    assert any("spec: its JSON is cut short" in w for w in warnings)
    assert any(re.search(r"losses: its \d+ bytes are no whole number of float64", w) for w in warnings)
    assert any("losses: it holds str, not a BLOB of float64" in w for w in warnings)
    assert all(w.startswith("warning: the stored run of parabola:n=64 · ") for w in warnings)
    assert events.count("done") == len(damages) and events.count("reused") == len(original) - len(damages)
    for key in keys:  # trained again: the same numbers as before the damage
        assert retrained[key].final_loss == original[key].final_loss
        assert retrained[key].losses == original[key].losses
    assert {k: v for k, v in _rows(db).items() if k not in keys} == untouched


def test_loading_a_comparison_with_a_damaged_or_missing_run_is_one_clear_error(tmp_path: Path) -> None:
    from optimlab.lab.results import load_comparison

    db = tmp_path / "lab.db"
    with Store(db) as store:
        comparison_id = run_comparison(_comparison(seeds=2), store)
        key = next(iter(store.runs())).key
    _damage(db, key, "empty object")
    with (
        Store(db) as store,
        pytest.raises(StorageError, match=f"stored run {key[:12]} .* is damaged") as info,
    ):
        load_comparison(store, comparison_id)
    assert "\n" not in str(info.value)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM runs WHERE key = ?", (key,))
    with Store(db) as store, pytest.raises(StorageError, match="misses 1 of its runs"):
        load_comparison(store, comparison_id)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE comparisons SET plan = substr(plan, 1, 30)")
    with Store(db) as store, pytest.raises(StorageError, match=f"comparison {comparison_id} .* is damaged"):
        load_comparison(store, comparison_id)
    with sqlite3.connect(db) as conn:
        conn.execute("""UPDATE comparisons SET plan = '{"problems": [{"spec": "x"}]}'""")
    with (
        Store(db) as store,
        pytest.raises(StorageError, match=r"is damaged \(its plan lacks or mistypes 'optimizers'\)"),
    ):
        load_comparison(store, comparison_id)


@pytest.mark.parametrize("table", ["runs", "comparisons"])
def test_a_lost_table_is_named_when_the_database_opens(tmp_path: Path, table: str) -> None:
    db = tmp_path / "lab.db"
    with Store(db) as store:
        run_comparison(_comparison(seeds=1), store)
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TABLE {table}")
    before = db.read_bytes()
    with pytest.raises(StorageError, match=f"is damaged: its '{table}' table is missing") as info:
        Store(db)
    assert "\n" not in str(info.value) and db.read_bytes() == before


def test_a_full_database_is_named_and_keeps_what_it_holds(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    result = train(get_problem("booth"), make_config("adam"), 0, Budget(steps=10))
    with Store(db) as store:
        store.put("first", _spec(), "adam", result)
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL, as on a full disk
        big = train(get_problem("booth"), make_config("adam"), 0, Budget(steps=3000))
        with pytest.raises(
            StorageError, match=r"cannot write to database .*: the database or its disk is full"
        ):
            store.put("second", _spec(seed=1), "adam", big)
        assert store.count() == 1 and store.get("first").result == result


def test_a_read_only_database_reports_what_it_holds_and_writes_nothing(tmp_path: Path) -> None:
    from optimlab.lab.results import load_comparison

    db = tmp_path / "lab.db"
    with Store(db) as store:
        run_comparison(_comparison(seeds=2), store)
    before = db.read_bytes()
    with Store(db, read_only=True) as store:
        assert store.read_only
        comparison_id = run_comparison(_comparison(seeds=2), store)  # every run stored: a report
        data = load_comparison(store, comparison_id)
        assert sum(len(o.runs) for p in data.problems for o in p.optimizers) == 4
        events: list[str] = []
        with pytest.raises(
            StorageError, match=r"needs 4 run\(s\) not stored .* cannot be written: opened read-only"
        ):
            run_comparison(_comparison(seeds=4), store, progress=lambda event: events.append(event.kind))
        assert "done" not in events  # refused before training anything
        with pytest.raises(StorageError, match="cannot store runs"):
            store.put("x", _spec(), "adam", next(iter(store.runs())).result)
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.db"]  # no -wal, no -shm


# --- schema version 2: every step's loss and lr as BLOBs; version 1 migrated -------------------

OLD_DB = Path(__file__).parent / "fixtures" / "before_issue_11" / "runs.db"


def _old_rows(db: Path) -> dict[str, tuple[str, str]]:
    """key → (spec, result JSON) of a database of schema version 1, read without writing to it."""
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    try:
        return {
            key: (spec, result) for key, spec, result in conn.execute("SELECT key, spec, result FROM runs")
        }
    finally:
        conn.close()


def _same_floats(a: list[float], b: list[float]) -> bool:
    """Bit for bit (NaN as NaN, -0.0 as -0.0)."""
    return len(a) == len(b) and all(
        struct.pack("<d", x) == struct.pack("<d", y) for x, y in zip(a, b, strict=True)
    )


def test_a_version_1_database_is_migrated_in_place_and_reads_the_same_numbers(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(OLD_DB, db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    before = _old_rows(db)
    with Store(db) as store:
        read = {run.key: run for run in store.runs()}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        rows = {
            k: (s, r, a, b)
            for k, s, r, a, b in conn.execute("SELECT key, spec, result, losses, lrs FROM runs")
        }
    # no row rewritten: the same text, the new columns NULL ...
    assert {k: (s, r) for k, (s, r, _a, _b) in rows.items()} == before
    assert all(a is None and b is None for _s, _r, a, b in rows.values())
    # ... and every run reads as its version-1 JSON says, bit for bit
    assert set(read) == set(before) and len(read) == 89
    for key, (_spec, result) in before.items():
        data = json.loads(result)
        run = read[key].result
        assert _same_floats(run.losses, data["losses"]) and _same_floats(run.lrs, data["lrs"])
        assert json.dumps(run.evals) == json.dumps(data["evals"])  # (NaN as NaN)
        assert json.dumps(run.final_loss) == json.dumps(data["final_loss"])
    # a run stored now in the migrated file has its BLOBs beside the old rows
    result = train(get_problem("booth"), make_config("adam"), 0, Budget(steps=20))
    with Store(db) as store:
        store.put("new", {"seed": 0}, "adam", result)
        assert _same_floats(store.get("new").result.losses, result.losses)
        assert store.count() == 90


def test_a_version_1_database_opened_read_only_is_read_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(OLD_DB, db)
    before = db.read_bytes()
    with Store(db, read_only=True) as store:
        runs = list(store.runs())
        assert len(runs) == 89 and all(run.result.losses for run in runs)
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]


def test_a_damaged_version_1_database_is_refused_before_it_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(OLD_DB, db)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE comparisons")
    with pytest.raises(StorageError, match="'comparisons' table is missing"):
        Store(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "losses" not in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}


def test_every_steps_floats_are_stored_as_blobs_bit_for_bit(tmp_path: Path) -> None:
    result = train(get_problem("booth"), make_config("adam"), 0, Budget(steps=6))
    special = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 0.1]
    result = dataclasses.replace(result, losses=special, lrs=[1e-3] * 5 + [2.5e-308])
    with Store(tmp_path / "lab.db") as store:
        store.put("k", {"seed": 0}, "adam", result)
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        text, losses, lrs = conn.execute("SELECT result, losses, lrs FROM runs").fetchone()
    assert "losses" not in json.loads(text) and "lrs" not in json.loads(text)
    assert losses == struct.pack("<6d", *special) and len(lrs) == 6 * 8
    with Store(tmp_path / "lab.db") as store:
        back = store.get("k").result
    assert _same_floats(back.losses, special) and _same_floats(back.lrs, result.lrs)
    assert back.to_dict().keys() == result.to_dict().keys()


def test_a_list_that_is_not_all_floats_stays_in_the_json_as_it_is(tmp_path: Path) -> None:
    assert encode_floats([1.0, 2]) is None and encode_floats([]) == b""
    result = train(get_problem("booth"), make_config("adam"), 0, Budget(steps=3))
    result = dataclasses.replace(result, losses=[1, 2.5, 3])
    with Store(tmp_path / "lab.db") as store:
        store.put("k", {"seed": 0}, "adam", result)
        back = store.get("k").result
    assert back.losses == [1, 2.5, 3] and [type(v) for v in back.losses] == [int, float, int]
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        text, losses, lrs = conn.execute("SELECT result, losses, lrs FROM runs").fetchone()
    assert json.loads(text)["losses"] == [1, 2.5, 3] and losses is None and lrs is not None


def test_a_migration_another_process_made_first_is_not_made_twice(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(OLD_DB, db)
    with Store(db) as first, Store(db) as second:  # (the second opened it after the migration)
        first._migrate()  # as a process that had read version 1 before the other one migrated it
        second._migrate()
        assert len(list(first.runs())) == 89
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
