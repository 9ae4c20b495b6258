"""The lab's manners at the command line: hyperparameters that cannot run, schedules that fail late,
users' problems that raise, damaged or read-only databases, absurd sizes — each one line on stderr
and exit code 2 (never a traceback), with the stored runs as they were."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab.cli import app

runner = CliRunner()
SMALL = ["-p", "parabola:n=64", "-o", "sgd,adam", "--seeds", "2", "--epochs", "1", "--jobs", "1", "--no-png"]


def stored_runs(db: Path) -> list[tuple[str, str]]:
    """Every stored run's key and a hash of its row (what "the stored runs unchanged" compares)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key, spec, result FROM runs ORDER BY key").fetchall()
    return [(key, hashlib.sha256((spec + result).encode()).hexdigest()) for key, spec, result in rows]


def one_line_exit_2(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A database holding the runs of SMALL."""
    folder = tmp_path_factory.mktemp("stored")
    result = runner.invoke(app, ["compare", *SMALL, "--db", str(folder / "lab.db"), "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return (folder / "lab.db").read_bytes()


@pytest.fixture
def db(tmp_path: Path, stored: bytes) -> Path:
    path = tmp_path / "lab.db"
    path.write_bytes(stored)
    return path


# --- optimizer hyperparameters torch takes but that crash later or train nothing ----------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("lbfgs:history_size=0", "history_size must be a whole number ≥ 1"),
        ("lbfgs:max_eval=abc", "max_eval must be a whole number"),
        ("lbfgs:max_iter=0", "max_iter must be a whole number ≥ 1"),
    ],
)
def test_hyperparameters_that_cannot_run_are_one_line_in_every_command(
    tmp_path: Path, db: Path, spec: str, words: str
) -> None:
    before = stored_runs(db)
    compare = ["compare", "-p", "parabola:n=64", "-o", spec, "--seeds", "1", "--epochs", "1", "--jobs", "1"]
    one_line_exit_2(runner.invoke(app, [*compare, "--db", str(db), "--out", str(tmp_path)]), words)
    assert stored_runs(db) == before
    surface = ["surface", "-p", "booth", "-o", spec, "--steps", "5", "--no-gif", "--out", str(tmp_path)]
    one_line_exit_2(runner.invoke(app, surface), words)
    lr_find = ["lr-find", "-p", "parabola:n=64", "-o", spec, "--steps", "5", "--out", str(tmp_path)]
    one_line_exit_2(runner.invoke(app, lr_find), words)


# --- schedules checked over the whole run --------------------------------------------------------


def test_a_lambda_negative_after_epoch_10_is_refused_before_training(tmp_path: Path, db: Path) -> None:
    before = stored_runs(db)
    args = ["compare", "-p", "parabola:n=64", "-o", "sgd", "--seeds", "1", "--epochs", "20", "--jobs", "1"]
    result = runner.invoke(
        app, [*args, "--schedule", "lambda:1-epoch/12", "--db", str(db), "--out", str(tmp_path)]
    )
    one_line_exit_2(result, "at epoch 13", "problem parabola:n=64")
    assert stored_runs(db) == before
    warmup = runner.invoke(
        app, [*args, "--schedule", "warmup:warmup_steps=5000", "--db", str(db), "--out", str(tmp_path)]
    )
    one_line_exit_2(warmup, "(the run has 40 steps)")
    assert "1000000" not in warmup.stderr
