"""The lab's manners at the command line: hyperparameters that cannot run, schedules that fail late,
users' problems that raise, damaged or read-only databases, absurd sizes — each one line on stderr
and exit code 2 (never a traceback), with the stored runs as they were."""

from __future__ import annotations

import hashlib
import sqlite3
import sys
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


# --- a user's problem that raises ----------------------------------------------------------------

USER_PROBLEMS = """
import torch
from torch import nn
from optimlab.lab.problems import Budget, TensorProblem

class Line(TensorProblem):
    name, description, target_loss = "line", "fit y = 3x", 1e-3
    default_budget = Budget(epochs=1)

    def __init__(self):
        super().__init__({})
        self.x = torch.linspace(-1, 1, 32).unsqueeze(1)
        self.y = 3 * self.x
        self.batch_size = 16

    def make_model(self):
        return nn.Linear(1, 1)

    def loss(self, output, target):
        return nn.functional.mse_loss(output, target)

class BadModel(Line):
    def make_model(self):
        return {}["no-such-layer"]  # BAD MODEL

class BadLoss(Line):
    def loss(self, output, target):
        raise RuntimeError("loss exploded on purpose")  # BAD LOSS

class NoLoss(Line):
    def evaluate(self, model):  # NO LOSS
        return {"accuracy": 1.0}

def make_bad_model():
    return BadModel()

def make_bad_loss():
    return BadLoss()

def make_no_loss():
    return NoLoss()

def make_raising():
    raise LookupError("the data went missing")  # FACTORY
"""


def _line(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if marker in line)


@pytest.fixture
def user_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "user_problems.py").write_text(USER_PROBLEMS)
    (tmp_path / "import_crash.py").write_text("import math\nx = 1 / 0\n")
    (tmp_path / "syntax_err.py").write_text("def make():\n    return 1\ndef broken(:\n")
    for name in ("user_problems", "import_crash", "syntax_err"):  # this test's files, not cached ones
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # spawned workers find the modules from the working directory
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("user_problems:make_raising", "LookupError: the data went missing (user_problems.py:{FACTORY})"),
        ("user_problems:make_bad_model", "KeyError: 'no-such-layer' (user_problems.py:{BAD MODEL})"),
        (
            "user_problems:make_bad_loss",
            "RuntimeError: loss exploded on purpose (user_problems.py:{BAD LOSS})",
        ),
        (
            "user_problems:make_no_loss",
            "evaluate() must return a dict with a 'loss' (the full objective), got keys ['accuracy'] "
            "(user_problems.py:{NO LOSS})",
        ),
        ("import_crash:make", "ZeroDivisionError: division by zero (import_crash.py:2)"),
        ("syntax_err:make", "SyntaxError: invalid syntax (syntax_err.py:3)"),
    ],
)
def test_a_users_problem_that_raises_is_one_line_with_its_file_and_line(
    user_problems: Path, db: Path, spec: str, expected: str
) -> None:
    for marker in ("FACTORY", "BAD MODEL", "BAD LOSS", "NO LOSS"):
        expected = expected.replace("{" + marker + "}", str(_line(USER_PROBLEMS, "# " + marker)))
    before = stored_runs(db)
    args = ["compare", "-p", spec, "-o", "sgd,lbfgs", "--seeds", "1", "--jobs", "1", "--no-png"]
    result = runner.invoke(app, [*args, "--db", str(db), "--out", str(user_problems / "out")])
    assert one_line_exit_2(result) == f"error: problem {spec}: {expected}\n"
    assert stored_runs(db) == before


def test_a_problem_error_keeps_the_original_exception_and_crosses_processes(user_problems: Path) -> None:
    import concurrent.futures
    import multiprocessing

    from optimlab.lab.executor import _worker_unit
    from optimlab.lab.presets import make_config
    from optimlab.lab.problems import Budget, ProblemError, get_problem
    from optimlab.lab.run import RunSpec

    with pytest.raises(ProblemError) as info:
        get_problem("user_problems:make_raising")
    assert isinstance(info.value.__cause__, LookupError)
    assert info.value.location == f"user_problems.py:{_line(USER_PROBLEMS, '# FACTORY')}"
    with pytest.raises(ProblemError) as info:
        get_problem("import_crash:make")
    assert isinstance(info.value.__cause__, ZeroDivisionError)

    problem = get_problem("user_problems:make_bad_loss")
    unit = [RunSpec.of(problem, make_config("sgd"), 0, Budget(epochs=1))]
    context = multiprocessing.get_context("spawn")
    with (
        concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool,
        pytest.raises(ProblemError) as info,
    ):
        pool.submit(_worker_unit, unit, 10**8).result()
    line = _line(USER_PROBLEMS, "# BAD LOSS")
    assert str(info.value) == (
        "problem user_problems:make_bad_loss: RuntimeError: loss exploded on purpose "
        f"(user_problems.py:{line})"
    )
    assert info.value.spec == "user_problems:make_bad_loss"
    assert "Traceback" in str(info.value.__cause__) and "user_problems.py" in str(info.value.__cause__)
