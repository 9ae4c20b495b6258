"""A database written before issue 11 resumes: its runs are found under the keys they had, and trained
again in place because their records are of an older version.

tests/fixtures/before_issue_11/README.md says how the database was made (with the code of 714f15c).
Stored run keys never changed: every run these commands need is in the database under its old key
(nothing is added). What a run records did change — evaluations within epochs, ``RECORD_VERSION`` 2 —
and a result of version 1 (evaluated after each epoch only) is not reused as it is: the comparison
trains it again and its row is replaced by the new record (same key, same training, finer
evaluations); the next resume reuses it. See the module docstring of ``optimlab.lab.run``.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab.cli import app
from optimlab.lab.run import RECORD_VERSION
from optimlab.lab.storage import FLOAT_COLUMNS, decode_floats

FIXTURE = Path(__file__).parent / "fixtures" / "before_issue_11"
COMMANDS = [line for line in (FIXTURE / "commands.txt").read_text().splitlines() if line.strip()]


def _rows(db: Path) -> dict[str, dict]:
    """Every stored result as plain data: its JSON, with the per-step columns its BLOBs hold (schema
    version 2; a row of version 1, the fixture's, holds them in its JSON)."""
    connection = sqlite3.connect(f"file:{db}?immutable=1", uri=True)  # writes nothing beside it
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
        blobs = [c for c in FLOAT_COLUMNS if c in columns]
        rows = {}
        for key, result, *values in connection.execute(
            f"SELECT {', '.join(['key', 'result', *blobs])} FROM runs"
        ):
            rows[key] = json.loads(result)
            rows[key].update(
                {c: decode_floats(v) for c, v in zip(blobs, values, strict=True) if v is not None}
            )
        return rows
    finally:
        connection.close()


def _compare(command: str, db: Path, out: Path) -> tuple[int, int]:
    """Run one of the fixture's commands on ``db``; (runs trained, runs reused)."""
    args = [str(FIXTURE / a) if a.endswith(".toml") else a for a in shlex.split(command)]
    result = CliRunner().invoke(app, [*args, "--db", str(db), "--out", str(out), "--no-png", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    counts = re.search(r"(\d+) runs? trained, (\d+) reused", " ".join(result.stdout.split()))
    assert counts is not None, result.stdout
    return int(counts[1]), int(counts[2])


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6, abs=1e-9)


#: how far a loss of the fixture, trained on another machine, may be from today's on this one: BLAS
#: and vectorized reductions differ in the last bits from one CPU to another (measured: 4e-5–6e-5
#: after 20 steps of Adam, 1.5e-4 for L-BFGS on parabola). L-BFGS's line search amplifies such
#: differences without bound (a quadratic-100d run's losses differed by 100 %, another run took 192
#: gradient evaluations instead of 193), so its numbers are compared with a fresh training on this
#: machine only.
ACROSS_MACHINES = {"rel": 1e-3, "abs": 1e-9}


def _close(new: float, old: float) -> bool:
    return new == old or (math.isnan(new) and math.isnan(old)) or new == pytest.approx(old, **ACROSS_MACHINES)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_old_run_is_found_under_its_key_and_trained_again(command: str, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    shutil.copy(FIXTURE / "runs.db", db)
    before = _rows(db)
    assert all("record_version" not in result for result in before.values())  # all of version 1

    trained, reused = _compare(command, db, tmp_path / "first")
    after = _rows(db)
    fresh = tmp_path / "fresh.db"  # the same command trained from nothing, on this machine
    _compare(command, fresh, tmp_path / "fresh")
    trained_afresh = _rows(fresh)
    assert set(after) == set(before)  # nothing added: every run the command needs has its old key
    upgraded = {key for key in after if after[key] != before[key]}
    assert trained == len(upgraded) > 0 and reused == 0  # found, and not reused as they were
    for key in upgraded:
        old, new, afresh = before[key], after[key], trained_afresh[key]
        assert new["record_version"] == RECORD_VERSION
        assert all(new[name] == old[name] for name in ("problem", "optimizer", "seed")), key
        # the same training as a fresh one of today's code on this machine ...
        assert all(new[name] == afresh[name] for name in ("diverged", "steps", "grad_evals", "lrs")), key
        assert _same(new["final_loss"], afresh["final_loss"]), key
        assert all(_same(a, b) for a, b in zip(new["losses"], afresh["losses"], strict=True)), key
        # ... and as the fixture's, as far as machines differ: L-BFGS's only in its learning rates (its
        # line search may take another evaluation on another CPU); a diverging run may be stopped
        # sooner (an evaluation within an epoch can find what only the epoch's end found before)
        steps = new["steps"]
        assert new["lrs"] == old["lrs"][:steps], key
        ends = [e for e in new["evals"] if float(e["epoch"]).is_integer()]
        old_ends = [e for e in old["evals"] if e["step"] <= ends[-1]["step"]]
        assert ends[0].keys() == old["evals"][0].keys()
        within = [e for e in new["evals"] if not float(e["epoch"]).is_integer()]
        assert all(e.keys() == {"epoch", "step", "grad_evals", "wall_s", "loss"} for e in within)
        if new["optimizer"].split(":")[0] == "lbfgs":
            continue
        assert new["diverged"] == old["diverged"], key
        if old["diverged"]:
            assert new["steps"] <= old["steps"] and math.isinf(new["final_loss"])
        else:
            for name in ("steps", "grad_evals", "divergence"):
                assert new[name] == old[name], (key, name)
            assert _close(new["final_loss"], old["final_loss"]), key
        assert all(_close(a, b) for a, b in zip(new["losses"], old["losses"][:steps], strict=True)), key
        # ... with its evaluations after each epoch as they were, and the loss alone within epochs
        assert [(e["epoch"], e["step"]) for e in ends] == [(e["epoch"], e["step"]) for e in old_ends]
        assert all(_close(a["loss"], b["loss"]) for a, b in zip(ends, old_ends, strict=True)), key
        assert new["steps_to_target"] <= old["steps_to_target"]  # never later, often earlier

    # the next resume reuses them all, as they now are
    assert _compare(command, db, tmp_path / "second") == (0, trained)
    assert _rows(db) == after


def test_the_fixture_holds_every_run_of_its_commands() -> None:
    assert len(_rows(FIXTURE / "runs.db")) == 89


def test_a_read_only_old_database_still_gives_its_report(tmp_path: Path) -> None:
    """Runs of an older record cannot be replaced in a database that cannot be written: they are
    reused as recorded (the same training, coarser curves), with one note saying so."""
    from test_lab_manners import optimlab_without_write_access

    folder = tmp_path / "db"
    folder.mkdir()
    db = folder / "runs.db"
    shutil.copy(FIXTURE / "runs.db", db)
    before = db.read_bytes()
    db.chmod(0o444)
    try:
        args = shlex.split(COMMANDS[0])
        result = optimlab_without_write_access(
            [*args, "--db", str(db), "--out", str(tmp_path / "out")], tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert re.search(r"\b0 runs trained, [1-9]\d* reused", " ".join(result.stdout.split())), result.stdout
        note = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(note) == 1 and "evaluated once an epoch" in note[0] and "read-only" in note[0], (
            result.stderr
        )
        assert (tmp_path / "out" / "summary.json").exists()
        assert db.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["runs.db"]
    finally:
        db.chmod(0o644)
