"""Every run in SQLite: content-addressed, committed one finished run at a time, never lost.

A run's key is the SHA-256 of the canonical JSON of what determines its numbers (:func:`run_key`):
the problem spec and version, the optimizer class and its explicit hyperparameters, the seed, the
budget, the schedule, the regularization and :data:`RUN_FORMAT` (bumped when the runner's semantics
change). Re-running a comparison looks each key up and trains only what is missing — or what is
stored of an older record version (:data:`~optimlab.lab.run.RECORD_VERSION`): :meth:`Store.current`
leaves it out, and :meth:`Store.put` replaces it (in the same transaction) with its new record.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``; each finished run is one
transaction, so killing the process at any moment loses at most the run in progress and never
corrupts what is stored. The schema is versioned (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)
and marked as optimlab's (``PRAGMA application_id``); a file of another version, a foreign SQLite
database or a corrupt file raises :class:`StorageError` with one clear line, and nothing in it is
changed.

Tables: ``runs`` (one row per run: key, identifying columns, headline numbers, and the full
:class:`~optimlab.lab.run.RunResult` as JSON) and ``comparisons`` (one row per distinct ``optimlab
compare`` setting: the settings and the plan — which runs answer which question — so reports can
load it later without training anything).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimlab.lab.run import RECORD_VERSION, RUN_FORMAT, RunResult, RunSpec, canonical_json, run_key

__all__ = [
    "DEFAULT_DB",
    "RUN_FORMAT",
    "SCHEMA_VERSION",
    "StorageError",
    "Store",
    "StoredRun",
    "canonical_json",
    "run_key",
    "run_spec",
]

SCHEMA_VERSION = 1
APPLICATION_ID = 0x6F6C6162  # "olab"
DEFAULT_DB = Path("runs") / "optimlab.db"

_SCHEMA = """
CREATE TABLE runs (
    key TEXT PRIMARY KEY,
    problem TEXT NOT NULL,
    optimizer TEXT NOT NULL,
    preset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    spec TEXT NOT NULL,
    final_loss REAL,
    diverged INTEGER NOT NULL,
    divergence TEXT,
    steps INTEGER NOT NULL,
    grad_evals INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    steps_to_target REAL,
    evals_to_target REAL,
    result TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX runs_problem_optimizer ON runs (problem, optimizer);
CREATE TABLE comparisons (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    settings TEXT NOT NULL,
    plan TEXT NOT NULL
);
"""


class StorageError(ValueError):
    """A database that cannot be used: corrupt, foreign, of another schema version, or unwritable."""


def run_spec(
    problem: Any, optimizer: Any, seed: int, budget: Any, schedule: Any = None, regularization: Any = None
) -> dict[str, Any]:
    """What identifies a run (:meth:`optimlab.lab.run.RunSpec.identity` of the same arguments)."""
    return RunSpec.of(problem, optimizer, seed, budget, schedule, regularization).identity()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class StoredRun:
    """A run read back from the database."""

    key: str
    spec: dict[str, Any]
    preset: str
    result: RunResult


class Store:
    """The SQLite file of a lab (default ``runs/optimlab.db``). Use as a context manager.

    ``Store(path)`` creates the file (and its folder) if missing; ``Store(path, create=False)``
    only opens an existing one. Raises :class:`StorageError` for a file it cannot use.
    """

    def __init__(self, path: str | Path = DEFAULT_DB, *, create: bool = True) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StorageError(f"database path {str(self.path)!r} is a folder, not a file")
        exists = self.path.exists()
        if not exists and not create:
            raise StorageError(f"no database at {str(self.path)!r}")
        if exists:
            self._check_header()
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StorageError(
                    f"cannot create the database folder {str(self.path.parent)!r}: {error.strerror or error}"
                ) from None
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as error:
            raise StorageError(f"cannot open database {str(self.path)!r}: {error}") from None
        try:
            self._prepare(new=not exists)
        except sqlite3.DatabaseError as error:
            self.conn.close()
            raise StorageError(f"{str(self.path)!r} is not a usable optimlab database ({error})") from None
        except StorageError:
            self.conn.close()
            raise

    def _check_header(self) -> None:
        try:
            with self.path.open("rb") as handle:
                header = handle.read(16)
        except OSError as error:
            raise StorageError(
                f"cannot read database {str(self.path)!r}: {error.strerror or error}"
            ) from None
        if header and header != b"SQLite format 3\x00":
            raise StorageError(f"{str(self.path)!r} is not an optimlab database (not SQLite, or corrupt)")

    def _prepare(self, new: bool) -> None:
        conn = self.conn
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables and app_id == 0 and version == 0:
            new = True
        elif app_id != APPLICATION_ID:
            raise StorageError(f"{str(self.path)!r} is an SQLite database of another program, not optimlab's")
        elif version != SCHEMA_VERSION:
            raise StorageError(
                f"{str(self.path)!r} has optimlab schema version {version}; this optimlab reads version "
                f"{SCHEMA_VERSION} (use another --db, or the optimlab that wrote it)"
            )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            if new:  # one transaction: a half-created schema never exists
                conn.executescript(
                    f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA application_id = {APPLICATION_ID};"
                    f"PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
                )
        except sqlite3.OperationalError as error:
            raise StorageError(f"cannot write database {str(self.path)!r}: {error}") from None
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        result = str(conn.execute("PRAGMA quick_check").fetchone()[0])
        if result != "ok":
            first = result.replace("*** in database main ***", "").strip().splitlines()[0]
            raise StorageError(f"{str(self.path)!r} is corrupt (SQLite quick_check: {first})")

    # -- context manager -------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ------------------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone() is not None

    def existing(self, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` already stored."""
        keys = list(keys)
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0] for row in self.conn.execute(f"SELECT key FROM runs WHERE key IN ({marks})", chunk)
            )
        return found

    def current(self, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` stored with a record of the current version
        (:data:`~optimlab.lab.run.RECORD_VERSION`): those a comparison reuses."""
        keys = list(keys)
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(f"SELECT key, result FROM runs WHERE key IN ({marks})", chunk)
            found.update(key for key, payload in rows if _record_version(payload) >= RECORD_VERSION)
        return found

    def put(self, key: str, spec: Mapping[str, Any], preset: str, result: RunResult) -> None:
        """Store one finished run in its own transaction: a no-op if the key is already stored,
        unless the stored record is of an older version than ``result``'s (then ``result`` replaces it)."""
        payload = json.dumps(result.to_dict(), allow_nan=True)
        try:
            with self.conn:  # BEGIN … COMMIT (ROLLBACK on error)
                self.conn.execute("BEGIN IMMEDIATE")
                row = self.conn.execute("SELECT result FROM runs WHERE key = ?", (key,)).fetchone()
                if row is not None and _record_version(row[0]) >= result.record_version:
                    return
                self.conn.execute(
                    "INSERT OR REPLACE INTO runs (key, problem, optimizer, preset, seed, spec, final_loss,"
                    " diverged, divergence, steps, grad_evals, wall_s, steps_to_target, evals_to_target,"
                    " result, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        result.problem,
                        result.optimizer,
                        preset,
                        result.seed,
                        canonical_json(spec),
                        _finite_or_none(result.final_loss),
                        int(result.diverged),
                        result.divergence,
                        result.steps,
                        result.grad_evals,
                        result.wall_s,
                        _finite_or_none(result.steps_to_target),
                        _finite_or_none(result.evals_to_target),
                        payload,
                        time.time(),
                    ),
                )
        except sqlite3.Error as error:
            raise StorageError(f"cannot write to database {str(self.path)!r}: {error}") from None

    def get(self, key: str) -> StoredRun | None:
        row = self.conn.execute("SELECT key, spec, preset, result FROM runs WHERE key = ?", (key,)).fetchone()
        return None if row is None else _stored(row)

    def runs(self, keys: Sequence[str] | None = None, *, problem: str | None = None) -> Iterator[StoredRun]:
        """Stored runs: those of ``keys`` (in that order, missing ones skipped), or all of them
        (optionally of one ``problem`` spec)."""
        if keys is None:
            query, args = "SELECT key, spec, preset, result FROM runs", ()
            if problem is not None:
                query, args = query + " WHERE problem = ?", (problem,)
            for row in self.conn.execute(query + " ORDER BY created_at", args):
                yield _stored(row)
            return
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = {
                row[0]: row
                for row in self.conn.execute(
                    f"SELECT key, spec, preset, result FROM runs WHERE key IN ({marks})", chunk
                )
            }
            for key in chunk:
                if key in rows:
                    yield _stored(rows[key])

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    # -- comparisons -----------------------------------------------------------------------------

    def save_comparison(
        self, comparison_id: str, settings: Mapping[str, Any], plan: Mapping[str, Any]
    ) -> None:
        """Record (or update) a comparison: its settings and its plan (which stored runs answer
        which question; see :mod:`optimlab.lab.results`)."""
        now = time.time()
        try:
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.execute(
                    "INSERT INTO comparisons (id, created_at, updated_at, settings, plan)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at,"
                    " settings = excluded.settings, plan = excluded.plan",
                    (comparison_id, now, now, canonical_json(settings), canonical_json(plan)),
                )
        except sqlite3.Error as error:
            raise StorageError(f"cannot write to database {str(self.path)!r}: {error}") from None

    def comparison(self, comparison_id: str | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(id, settings, plan)`` of a comparison (the latest one when ``comparison_id`` is None)."""
        if comparison_id is None:
            row = self.conn.execute(
                "SELECT id, settings, plan FROM comparisons ORDER BY updated_at DESC LIMIT 1"
            ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT id, settings, plan FROM comparisons WHERE id = ?", (comparison_id,)
            ).fetchone()
        if row is None:
            what = "no comparison" if comparison_id is None else f"no comparison {comparison_id!r}"
            raise StorageError(f"{what} in {str(self.path)!r}")
        return row[0], json.loads(row[1]), json.loads(row[2])

    def comparisons(self) -> list[tuple[str, float, dict[str, Any]]]:
        """``(id, updated_at, settings)`` of every stored comparison, newest first."""
        rows = self.conn.execute("SELECT id, updated_at, settings FROM comparisons ORDER BY updated_at DESC")
        return [(row[0], row[1], json.loads(row[2])) for row in rows]


def _record_version(payload: str) -> int:
    """The record version of a stored result (1: written before results said theirs)."""
    return int(json.loads(payload).get("record_version", 1))


def _stored(row: tuple[str, str, str, str]) -> StoredRun:
    key, spec, preset, payload = row
    return StoredRun(
        key=key, spec=json.loads(spec), preset=preset, result=RunResult.from_dict(json.loads(payload))
    )
