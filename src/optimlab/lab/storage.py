"""Every run in SQLite: content-addressed, committed one finished run at a time, never lost.

A run's key is the SHA-256 of the canonical JSON of what determines its numbers (:func:`run_key`):
the problem spec and version, the optimizer class and its explicit hyperparameters, the seed, the
budget, the schedule, the regularization and :data:`RUN_FORMAT` (bumped when the runner's semantics
change). Re-running a comparison looks each key up and trains only what is missing — or what is
stored of an older record version (:data:`~optimlab.lab.run.RECORD_VERSION`): :meth:`Store.check`
says which, and :meth:`Store.put` with ``replace=True`` replaces it (in one transaction).

Durability: the database runs in WAL mode with ``synchronous=NORMAL``; each finished run is one
transaction, so killing the process at any moment loses at most the run in progress and never
corrupts what is stored. The schema is versioned (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)
and marked as optimlab's (``PRAGMA application_id``); a file of another version, a foreign SQLite
database, a corrupt file or one that lost a table raises :class:`StorageError` with one clear line,
and nothing in it is changed. A full disk, a read-only file or folder and a database locked by
another process are named as such.

Damaged rows: every stored run is read back through :meth:`RunResult.from_stored
<optimlab.lab.run.RunResult.from_stored>`, so a row whose JSON is truncated, ``{}``, ``null`` or
holds values of the wrong kind never passes for a run: :meth:`Store.check` tells the protocol which
rows to train again (and :meth:`Store.put` with ``replace=True`` replaces them), and reading one
otherwise raises :class:`StorageError` naming the run.

Read-only databases: a database whose file, folder or file system cannot be written is opened
read-only (``Store.read_only``; SQLite's ``mode=ro``, and ``immutable`` when there is no write-ahead
log to read, so that nothing — no ``-wal`` or ``-shm`` file — is created beside it). Every run it
holds can be read, so a comparison whose runs are all stored still gives its report: its row in
``comparisons`` is then kept in memory for this :class:`Store` only (:meth:`Store.save_comparison`),
never written. Storing a run raises :class:`StorageError` naming why the database is read-only,
and the protocol says so before it trains anything.

Tables: ``runs`` (one row per run: key, identifying columns, headline numbers, and the full
:class:`~optimlab.lab.run.RunResult`: its per-step columns ``losses`` and ``lrs`` as BLOBs of
little-endian float64 — :func:`encode_floats`, exact, a few µs a run where JSON took a float's
``repr`` per step — and the rest as JSON in ``result``) and ``comparisons`` (one row per distinct ``optimlab
compare`` setting: the settings and the plan — which runs answer which question — so reports can
load it later without training anything).

Schema versions: 1 kept every step's loss and lr in the ``result`` JSON; 2 (this one) added the
``losses`` and ``lrs`` BLOB columns. A version-1 database is migrated when it opens writable — the
two columns added and the version set in one transaction, no row rewritten: a row whose BLOBs are
``NULL`` (every row of version 1) is read from its JSON, as before — and read as it is when it opens
read-only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import sys
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from optimlab.lab.plansize import human_bytes
from optimlab.lab.run import RECORD_VERSION, RUN_FORMAT, RunResult, RunSpec, canonical_json, run_key

__all__ = [
    "DEFAULT_DB",
    "RUN_FORMAT",
    "SCHEMA_VERSION",
    "StorageError",
    "Store",
    "StoredRun",
    "canonical_json",
    "decode_floats",
    "encode_floats",
    "run_key",
    "run_spec",
]

SCHEMA_VERSION = 2
#: the older schema versions a database is migrated from (see the module docstring)
MIGRATES_FROM = (1,)
#: the per-step columns of a run kept as BLOBs (:func:`encode_floats`) since schema version 2
FLOAT_COLUMNS = ("losses", "lrs")
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
    created_at REAL NOT NULL,
    losses BLOB,
    lrs BLOB
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
    """A database that cannot be used: corrupt, foreign, of another schema version, damaged,
    read-only or on a full disk (the message names which)."""


def _columns() -> dict[str, set[str]]:
    """Every table of the schema and its columns (read from :data:`_SCHEMA` itself)."""
    with sqlite3.connect(":memory:") as conn:
        conn.executescript(_SCHEMA)
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {row[1] for row in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


_TABLES = _columns()


#: below this much free space, a failed write is the full disk's
_NEARLY_FULL = 64_000_000


def _free_bytes(path: Path) -> int | None:
    """The free space of the disk holding ``path`` (its nearest existing folder); None if unknown."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # pragma: no cover - not POSIX
        return False


def _read_only_reason(path: Path) -> str:
    """Why the existing database ``path`` cannot be written, or ``""``: SQLite writes the file and,
    beside it, its journal (``-wal``, ``-shm``)."""
    if _read_only_fs(path):
        return "its file system is read-only"
    if not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return "its folder is read-only (SQLite writes its journal beside the file)"
    return ""


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

    def __init__(
        self, path: str | Path = DEFAULT_DB, *, create: bool = True, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StorageError(f"database path {str(self.path)!r} is a folder, not a file")
        exists = self.path.exists()
        if not exists and not create:
            raise StorageError(f"no database at {str(self.path)!r}")
        #: why nothing can be written (a read-only file, folder or file system), or ""
        self.read_only_reason = ""
        #: comparisons recorded while read-only: kept here, never written (see the module docstring)
        self._unsaved: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        #: the runs this Store has read back, by key: a run's row changes only when :meth:`put`
        #: replaces it, so each row is decoded once (a comparison checks, then reads, every run)
        self._read: dict[str, StoredRun] = {}
        #: seconds :meth:`put` has spent storing runs (encoding and writing them)
        self.put_seconds = 0.0
        #: whether the runs table has the BLOB columns of :data:`FLOAT_COLUMNS` (a version-1
        #: database opened read-only has not: its rows are read from their JSON alone)
        self._float_columns = True
        if exists:
            self._check_header()
            self.read_only_reason = _read_only_reason(self.path) or ("opened read-only" if read_only else "")
        elif read_only:
            raise StorageError(f"no database at {str(self.path)!r}")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StorageError(
                    f"cannot create the database folder {str(self.path.parent)!r}: {error.strerror or error}"
                ) from None
            if not os.access(self.path.parent, os.W_OK | os.X_OK):
                raise StorageError(
                    f"cannot create database {str(self.path)!r}: its folder is read-only"
                    + (" (its file system is read-only)" if _read_only_fs(self.path.parent) else "")
                )
        try:
            self.conn = self._connect()
        except sqlite3.Error as error:
            raise self._failure(error, "cannot open database") from None
        try:
            self._prepare(new=not exists)
        except sqlite3.DatabaseError as error:
            self.conn.close()
            raise self._failure(error, None) from None
        except StorageError:
            self.conn.close()
            raise

    def free_bytes(self) -> int | None:
        """The free space of the disk holding the database (None when unknown)."""
        return _free_bytes(self.path)

    @property
    def read_only(self) -> bool:
        """Whether this database can only be read (see the module docstring)."""
        return bool(self.read_only_reason)

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        # read-only: nothing may be created beside the file; a write-ahead log that holds committed
        # runs must still be read (mode=ro), otherwise the file alone is the database (immutable)
        wal = self.path.with_name(self.path.name + "-wal")
        pending = wal.exists() and wal.stat().st_size > 0
        uri = self.path.resolve().as_uri() + ("?mode=ro" if pending else "?mode=ro&immutable=1")
        return sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)

    def _failure(self, error: sqlite3.Error, doing: str | None) -> StorageError:
        """One line for an SQLite error: a full disk, a read-only or locked database, a damaged
        file — named as such — with ``doing`` (e.g. "cannot write to database") in front."""
        name = str(getattr(error, "sqlite_errorname", "") or "")
        where = repr(str(self.path))
        free = _free_bytes(self.path)
        nearly_full = free is not None and free < _NEARLY_FULL
        if name.startswith("SQLITE_FULL") or (nearly_full and "IOERR" in name):
            full = "the disk is full" if nearly_full or free is None else "the database or its disk is full"
            left = f" ({human_bytes(free)} free on its disk)" if free is not None else ""
            return StorageError(f"{doing or 'cannot use database'} {where}: {full}{left}")
        if name.startswith("SQLITE_READONLY") or (name.startswith("SQLITE_CANTOPEN") and self.read_only):
            reason = self.read_only_reason or _read_only_reason(self.path) or "it is read-only"
            return StorageError(f"{doing or 'cannot use database'} {where}: {reason}")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StorageError(f"database {where} is locked by another process; try again when it is done")
        if name.startswith("SQLITE_CANTOPEN"):
            return StorageError(f"cannot open database {where} ({error})")
        if doing is None or name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            return StorageError(f"{where} is not a usable optimlab database ({error})")
        return StorageError(f"{doing} {where}: {error}")

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
        elif version != SCHEMA_VERSION and version not in MIGRATES_FROM:
            raise StorageError(
                f"{str(self.path)!r} has optimlab schema version {version}; this optimlab reads version "
                f"{SCHEMA_VERSION} (use another --db, or the optimlab that wrote it)"
            )
        if new and self.read_only:
            raise StorageError(f"{str(self.path)!r} is empty and cannot be written: {self.read_only_reason}")
        old = not new and version != SCHEMA_VERSION
        if not new:
            self._check_tables(tables, old)
        self._float_columns = not old
        if not self.read_only:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                if new:  # one transaction: a half-created schema never exists
                    conn.executescript(
                        f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA application_id = {APPLICATION_ID};"
                        f"PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
                    )
            except sqlite3.OperationalError as error:
                raise self._failure(error, "cannot write database") from None
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        result = str(conn.execute("PRAGMA quick_check").fetchone()[0])
        if result != "ok":
            first = result.replace("*** in database main ***", "").strip().splitlines()[0]
            raise StorageError(f"{str(self.path)!r} is corrupt (SQLite quick_check: {first})")
        if old and not self.read_only:  # checked whole first: a damaged file is never migrated
            try:
                self._migrate()
            except sqlite3.Error as error:
                raise self._failure(error, "cannot migrate database") from None

    def _migrate(self) -> None:
        """Version 1 → 2 in one transaction: the BLOB columns of :data:`FLOAT_COLUMNS` added (``NULL``
        in every stored row, which is then read from its JSON) and the version set; no row is
        rewritten, so an interrupted migration leaves the database of version 1 as it was. Another
        process that migrated it meanwhile (between this one's reading the version and its write
        lock) is found under the lock: nothing is done twice."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for column in FLOAT_COLUMNS:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {column} BLOB")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._float_columns = True

    def _check_tables(self, tables: set[str], old: bool = False) -> None:
        """A database of this version (``old``: of a version it migrates from, which lacks the
        columns of :data:`FLOAT_COLUMNS`) with a table (or a column) missing is damaged: say which,
        before anything trains."""
        for table, wanted in _TABLES.items():
            columns = wanted - set(FLOAT_COLUMNS) if old and table == "runs" else wanted
            lost = "every stored run is gone" if table == "runs" else "the stored runs may be intact"
            if table not in tables:
                raise StorageError(
                    f"{str(self.path)!r} is damaged: its {table!r} table is missing ({lost}); "
                    "use another --db, or move this file away to start afresh"
                )
            have = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            if not columns <= have:
                raise StorageError(
                    f"{str(self.path)!r} is damaged: its {table!r} table lacks "
                    f"{', '.join(sorted(columns - have))}; use another --db, or move this file away"
                )

    # -- context manager -------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ------------------------------------------------------------------------------------

    def _rows(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        """The rows of a read; an SQLite error (a table gone, a damaged page) is one StorageError."""
        try:
            return self.conn.execute(query, args).fetchall()
        except sqlite3.Error as error:
            raise self._failure(error, "cannot read database") from None

    def _chunks(self, query: str, keys: Sequence[str]) -> Iterator[Any]:
        """The rows of ``query`` (holding ``{marks}`` for ``key IN (…)``) for every key, 500 at a time."""
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            yield from self._rows(query.format(marks=",".join("?" * len(chunk))), chunk)

    def has(self, key: str) -> bool:
        return bool(self._rows("SELECT 1 FROM runs WHERE key = ?", (key,)))

    def existing(self, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` stored (usable or not: :meth:`check` reads them)."""
        return {row[0] for row in self._chunks("SELECT key FROM runs WHERE key IN ({marks})", list(keys))}

    def check(self, keys: Iterable[str]) -> tuple[set[str], dict[str, str], set[str]]:
        """``(usable, damaged, outdated)`` of the keys of ``keys`` that are stored: those with a usable
        row of the current record version (:data:`~optimlab.lab.run.RECORD_VERSION`); those stored
        damaged, with what is wrong with each (a truncated JSON, ``{}``, ``null``, a value of the
        wrong kind); and those recorded by an older version. The last two are runs to train again,
        their rows replaced (``put(..., replace=True)``)."""
        usable: set[str] = set()
        damaged: dict[str, str] = {}
        outdated: set[str] = set()
        query = f"SELECT {self._run_columns}, problem, seed FROM runs WHERE key IN ({{marks}})"
        wanted = list(dict.fromkeys(keys))
        for key in wanted:
            if key in self._read:
                current = self._read[key].result.record_version >= RECORD_VERSION
                (usable if current else outdated).add(key)
        for row in self._chunks(query, [key for key in wanted if key not in self._read]):
            try:
                stored = _decode(row[:6], problem=row[6], seed=row[7])
            except _Damaged as error:
                damaged[row[0]] = str(error)
            else:
                self._read[row[0]] = stored
                (usable if stored.result.record_version >= RECORD_VERSION else outdated).add(row[0])
        return usable, damaged, outdated

    def put(
        self, key: str, spec: Mapping[str, Any], preset: str, result: RunResult, *, replace: bool = False
    ) -> None:
        """Store one finished run in its own transaction: a no-op if the key is already stored,
        unless ``replace`` (a damaged row trained again)."""
        if self.read_only:
            raise StorageError(f"cannot store runs in {str(self.path)!r}: {self.read_only_reason}")
        started = time.perf_counter()
        try:
            self._put(key, spec, preset, result, replace)
        finally:
            self.put_seconds += time.perf_counter() - started

    def _put(self, key: str, spec: Mapping[str, Any], preset: str, result: RunResult, replace: bool) -> None:
        # serialized as it is (to_dict's deep copy is of no use here); a field of a kind JSON
        # does not know goes through to_dict, as before
        data = {f.name: getattr(result, f.name) for f in fields(result)}
        blobs = [encode_floats(data[column]) for column in FLOAT_COLUMNS]
        stored_apart = [c for c, blob in zip(FLOAT_COLUMNS, blobs, strict=True) if blob is not None]
        try:
            payload = json.dumps({k: v for k, v in data.items() if k not in stored_apart}, allow_nan=True)
        except TypeError:
            copy = result.to_dict()
            payload = json.dumps({k: v for k, v in copy.items() if k not in stored_apart}, allow_nan=True)
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        if replace:
            self._read.pop(key, None)
        try:
            with self.conn:  # BEGIN … COMMIT (ROLLBACK on error)
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.execute(
                    f"{verb} INTO runs (key, problem, optimizer, preset, seed, spec, final_loss,"
                    " diverged, divergence, steps, grad_evals, wall_s, steps_to_target, evals_to_target,"
                    " result, created_at, losses, lrs)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        *blobs,
                    ),
                )
        except sqlite3.Error as error:
            raise self._failure(error, "cannot write to database") from None

    def get(self, key: str) -> StoredRun | None:
        if key in self._read:
            return self._read[key]
        rows = self._rows(f"SELECT {self._run_columns}, problem, seed FROM runs WHERE key = ?", (key,))
        return self._stored(rows[0]) if rows else None

    def runs(self, keys: Sequence[str] | None = None, *, problem: str | None = None) -> Iterator[StoredRun]:
        """Stored runs: those of ``keys`` (in that order, missing ones skipped), or all of them
        (optionally of one ``problem`` spec). A damaged row raises :class:`StorageError`."""
        if keys is None:
            query, args = f"SELECT {self._run_columns} FROM runs", ()
            if problem is not None:
                query, args = query + " WHERE problem = ?", (problem,)
            for row in self._rows(query + " ORDER BY created_at", args):
                yield self._stored(row)
            return
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            query = f"SELECT {self._run_columns}, problem, seed FROM runs WHERE key IN ({{marks}})"
            unread = [key for key in dict.fromkeys(chunk) if key not in self._read]
            rows = {row[0]: row for row in self._chunks(query, unread)} if unread else {}
            for key in chunk:
                if key in self._read:
                    yield self._read[key]
                elif key in rows:
                    yield self._stored(rows[key])

    def count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM runs")[0][0])

    @property
    def _run_columns(self) -> str:
        """What a run is read from: ``key, spec, preset, result`` and its BLOB columns (``NULL`` in a
        database of version 1 opened read-only, which lacks them)."""
        blobs = FLOAT_COLUMNS if self._float_columns else ["NULL"] * len(FLOAT_COLUMNS)
        return ", ".join(["key", "spec", "preset", "result", *blobs])

    def _stored(self, row: Sequence[Any]) -> StoredRun:
        """The run of a row ``(key, spec, preset, result, losses, lrs[, problem, seed])``; with its
        ``problem`` and ``seed`` columns it is checked as :meth:`check` checks it and kept for the
        next read."""
        columns = {"problem": row[6], "seed": row[7]} if len(row) > 6 else {}
        try:
            stored = _decode(row[:6], **columns)
        except _Damaged as error:
            raise StorageError(
                f"stored run {row[0][:12]} in {str(self.path)!r} is damaged ({error}); run its "
                "comparison again to train it anew"
            ) from None
        if columns:
            self._read[stored.key] = stored
        return stored

    # -- comparisons -----------------------------------------------------------------------------

    def save_comparison(
        self, comparison_id: str, settings: Mapping[str, Any], plan: Mapping[str, Any]
    ) -> None:
        """Record (or update) a comparison: its settings and its plan (which stored runs answer
        which question; see :mod:`optimlab.lab.results`). A read-only database keeps it in this
        :class:`Store` only, for :meth:`comparison` to give back (see the module docstring)."""
        if self.read_only:
            self._unsaved[comparison_id] = (
                json.loads(canonical_json(settings)),
                json.loads(canonical_json(plan)),
            )
            return
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
            raise self._failure(error, "cannot write to database") from None

    def comparison(self, comparison_id: str | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(id, settings, plan)`` of a comparison (the latest one when ``comparison_id`` is None)."""
        if comparison_id in self._unsaved:
            return comparison_id, *self._unsaved[comparison_id]  # type: ignore[return-value]
        if comparison_id is None:
            if self._unsaved:
                latest = next(reversed(self._unsaved))
                return latest, *self._unsaved[latest]
            rows = self._rows("SELECT id, settings, plan FROM comparisons ORDER BY updated_at DESC LIMIT 1")
        else:
            rows = self._rows("SELECT id, settings, plan FROM comparisons WHERE id = ?", (comparison_id,))
        if not rows:
            what = "no comparison" if comparison_id is None else f"no comparison {comparison_id!r}"
            raise StorageError(f"{what} in {str(self.path)!r}")
        cid, settings, plan = rows[0]
        try:
            return cid, _object(settings), _object(plan)
        except _Damaged as error:
            raise StorageError(
                f"comparison {cid} in {str(self.path)!r} is damaged ({error}); run it again to record it anew"
            ) from None

    def comparisons(self) -> list[tuple[str, float, dict[str, Any]]]:
        """``(id, updated_at, settings)`` of every stored comparison, newest first (a damaged one
        is left out)."""
        found = []
        for cid, updated_at, settings in self._rows(
            "SELECT id, updated_at, settings FROM comparisons ORDER BY updated_at DESC"
        ):
            try:
                found.append((cid, updated_at, _object(settings)))
            except _Damaged:
                continue
        return found


class _Damaged(ValueError):
    """A stored row that cannot be read back as what it should hold."""


def _object(text: Any) -> dict[str, Any]:
    """The JSON object ``text`` holds (a table of settings, a plan, a run's spec)."""
    if not isinstance(text, str):
        raise _Damaged(f"it holds {type(text).__name__}, not JSON text")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise _Damaged(f"its JSON is cut short or malformed ({error.msg}, character {error.pos})") from None
    if not isinstance(value, dict):
        raise _Damaged(f"its JSON is {'null' if value is None else type(value).__name__}, not an object")
    return value


def encode_floats(values: Sequence[Any]) -> bytes | None:
    """A list of floats as a BLOB: little-endian IEEE float64, 8 bytes each — exact (every float,
    ±0, ±∞ and NaN as it is), what :func:`decode_floats` reads back. ``None`` for a list that holds
    anything but floats (such a list stays in the row's JSON, as it is)."""
    if type(values) is not list or not set(map(type, values)) <= {float}:
        return None
    packed = array("d", values)
    if sys.byteorder == "big":  # pragma: no cover - the file is the same on every machine
        packed.byteswap()
    return packed.tobytes()


def decode_floats(blob: Any) -> list[float]:
    """The floats of a BLOB of :func:`encode_floats`; :class:`_Damaged` for anything else."""
    if not isinstance(blob, bytes):
        raise _Damaged(f"it holds {type(blob).__name__}, not a BLOB of float64")
    if len(blob) % 8:
        raise _Damaged(f"its {len(blob)} bytes are no whole number of float64 (8 bytes each)")
    packed = array("d")
    packed.frombytes(blob)
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return packed.tolist()


def _decode(row: Sequence[Any], problem: str | None = None, seed: int | None = None) -> StoredRun:
    """A stored row ``(key, spec, preset, result, losses, lrs)`` read back, every field checked
    (:meth:`RunResult.from_stored`): a column of :data:`FLOAT_COLUMNS` from its BLOB, or from the
    JSON where the BLOB is ``NULL`` (a row of schema version 1); the run's own ``problem`` and ``seed``
    columns, when given, must agree with its result."""
    key, spec, preset, payload, *blobs = row
    try:
        spec_data = _object(spec)
    except _Damaged as error:
        raise _Damaged(f"spec: {error}") from None
    try:
        data = json.loads(payload) if isinstance(payload, str) else payload
    except json.JSONDecodeError as error:
        raise _Damaged(
            f"result: its JSON is cut short or malformed ({error.msg}, character {error.pos})"
        ) from None
    if isinstance(data, dict):
        for column, blob in zip(FLOAT_COLUMNS, blobs, strict=True):
            if blob is not None:
                try:
                    data[column] = decode_floats(blob)
                except _Damaged as error:
                    raise _Damaged(f"{column}: {error}") from None
    try:
        result = RunResult.from_stored(data)
    except (ValueError, TypeError) as error:
        raise _Damaged(f"result: {error}") from None
    if problem is not None and (result.problem != problem or result.seed != seed):
        raise _Damaged(
            f"result: it is the run of {result.problem} seed {result.seed}, not of {problem} seed {seed}"
        )
    return StoredRun(key=key, spec=spec_data, preset=str(preset), result=result)
