"""A database written before issue 11 resumes with every run reused: stored run keys never change.

tests/fixtures/before_issue_11/README.md says how the database was made (with the code of 714f15c).
"""

from __future__ import annotations

import re
import shlex
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "before_issue_11"
COMMANDS = [line for line in (FIXTURE / "commands.txt").read_text().splitlines() if line.strip()]


def _keys(db: Path) -> dict[str, str]:
    connection = sqlite3.connect(f"file:{db}?immutable=1", uri=True)  # writes nothing beside it
    try:
        return dict(connection.execute("SELECT key, result FROM runs").fetchall())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def old_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("resume") / "runs.db"
    shutil.copy(FIXTURE / "runs.db", db)
    return db


@pytest.mark.parametrize("command", COMMANDS)
def test_every_run_of_the_old_database_is_reused(command: str, old_db: Path, tmp_path: Path) -> None:
    before = _keys(old_db)
    args = [str(FIXTURE / a) if a.endswith(".toml") else a for a in shlex.split(command)]
    result = CliRunner().invoke(
        app, [*args, "--db", str(old_db), "--out", str(tmp_path), "--no-png", "--jobs", "1"]
    )
    assert result.exit_code == 0, result.output
    counts = re.search(r"(\d+) runs? trained, (\d+) reused", " ".join(result.stdout.split()))
    assert counts is not None, result.stdout
    assert int(counts[1]) == 0 and int(counts[2]) > 0
    assert _keys(old_db) == before  # nothing added, nothing rewritten


def test_the_fixture_holds_every_run_of_its_commands() -> None:
    assert len(_keys(FIXTURE / "runs.db")) == 89
