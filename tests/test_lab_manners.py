"""The lab's manners at the command line: hyperparameters that cannot run, schedules that fail late,
users' problems that raise, damaged or read-only databases, absurd sizes — each one line on stderr
and exit code 2 (never a traceback), with the stored runs as they were."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
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


# --- damaged stored runs and tables ---------------------------------------------------------------


def test_a_damaged_stored_run_is_named_and_trained_again(
    tmp_path: Path, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = dict(stored_runs(db))
    key = sorted(before)[0]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET result = substr(result, 1, 50) WHERE key = ?", (key,))
    with caplog.at_level("WARNING", logger="optimlab.lab"):
        result = runner.invoke(app, ["compare", *SMALL, "--db", str(db), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 run trained, 3 reused" in " ".join(result.stdout.split())
    warnings = [r.getMessage() for r in caplog.records if r.name == "optimlab.lab"]
    assert len(warnings) == 1 and key[:12] in warnings[0] and "is damaged" in warnings[0]
    after = dict(stored_runs(db))
    assert after.keys() == before.keys() and {k: v for k, v in after.items() if k != key} == {
        k: v for k, v in before.items() if k != key
    }


@pytest.mark.parametrize("table", ["runs", "comparisons"])
def test_a_dropped_table_is_one_line_before_training(tmp_path: Path, db: Path, table: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TABLE {table}")
    before = db.read_bytes()
    result = runner.invoke(app, ["compare", *SMALL, "--db", str(db), "--out", str(tmp_path)])
    one_line_exit_2(result, f"its '{table}' table is missing")
    assert "trained" not in result.stdout and db.read_bytes() == before


# --- read-only databases: in a real process without the right to write ---------------------------

SRC = str(Path(__file__).resolve().parents[1] / "src")


def optimlab_without_write_access(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``optimlab ARGS`` in a process that file permissions bind (root drops its capabilities)."""
    command = [sys.executable, "-m", "optimlab", *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root ignores file permissions, and setpriv is missing to drop that right")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--", *command]
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_read_only_database_gives_the_report_of_its_runs_and_refuses_to_train(
    tmp_path: Path, stored: bytes, read_only: str
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    db = folder / "lab.db"
    db.write_bytes(stored)
    (db if read_only == "file" else folder).chmod(0o444 if read_only == "file" else 0o555)
    try:
        report = optimlab_without_write_access(
            ["compare", *SMALL, "--db", str(db), "--out", str(tmp_path / "out")], tmp_path
        )
        assert report.returncode == 0, report.stderr
        assert "0 runs trained, 4 reused" in " ".join(report.stdout.split()) and report.stderr == ""
        assert (tmp_path / "out" / "summary.json").exists()
        more = ["compare", *SMALL[:3], "sgd,adam,rmsprop", *SMALL[4:]]
        refused = optimlab_without_write_access([*more, "--db", str(db), "--out", str(tmp_path)], tmp_path)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "needs 2 run(s) not stored" in refused.stderr and "Traceback" not in refused.stderr
        assert f"{read_only} is read-only" in refused.stderr
        assert db.read_bytes() == stored and sorted(p.name for p in folder.iterdir()) == ["lab.db"]
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)


def test_a_damaged_run_is_one_warning_line_on_stderr(tmp_path: Path, stored: bytes) -> None:
    db = tmp_path / "lab.db"
    db.write_bytes(stored)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET result = 'null' WHERE rowid = 1")
    result = subprocess.run(
        [sys.executable, "-m", "optimlab", "compare", *SMALL, "--db", str(db), "--out", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("warning: the stored run of parabola")
    assert "null, not a run's record" in result.stderr


def test_a_failed_summary_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optimlab.reports import summary as summary_module

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(summary_module.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        summary_module.write_summary({"a": 1}, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- absurd sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-o", "sgd,adam", "--lr-grid", "100000"], "would train 1,000,000 runs"),
        (["-o", "sgd", "--seeds", "100000"], "would train 100,000 runs"),
        (["-o", "sgd", "--epochs", "1000000000"], "would take 32,000,000,000 steps"),
        (["-o", "sgd", "--steps", "1000000000000000"], "would take 1,000,000,000,000,000 steps"),
        (["-o", "sgd", "--tune", "optuna", "--budget", "100000"], "would train 100,005 runs"),
        (["-o", "sgd", "--epochs", "1000000000", "--schedule", "lambda:0.9**epoch"], "32,000,000,000 steps"),
    ],
)
def test_absurd_sizes_are_refused_at_once_with_their_numbers(
    tmp_path: Path, db: Path, args: list[str], words: str
) -> None:
    import time

    before = stored_runs(db)
    started = time.perf_counter()
    result = runner.invoke(
        app, ["compare", "-p", "parabola", *args, "--jobs", "1", "--db", str(db), "--out", str(tmp_path)]
    )
    assert time.perf_counter() - started < 5  # arithmetic, not a million planned runs
    one_line_exit_2(result, words)
    assert stored_runs(db) == before


def test_plan_size_counts_by_arithmetic_and_estimates_the_stored_bytes(tmp_path: Path) -> None:
    from optimlab.lab.plansize import PlanSize, plan_size
    from optimlab.lab.presets import parse_optimizers
    from optimlab.lab.problems import Budget, get_problem
    from optimlab.lab.protocol import Comparison, planned_runs, run_comparison
    from optimlab.lab.storage import Store

    problems = [get_problem("parabola:n=64"), get_problem("booth")]  # booth: deterministic, one seed
    comparison = Comparison(
        problems, parse_optimizers("sgd,adam,lbfgs"), seeds=3, lr_grid=2, budget=Budget(epochs=3)
    )
    size = plan_size(comparison)
    assert isinstance(size, PlanSize) and size == (size.runs, size.steps, size.bytes)
    assert size.runs == planned_runs(comparison) == 3 * 2 * 3 + 3 * 2 * 1
    assert size.steps == 18 * 3 * 2 + 6 * 3 * 10  # parabola:n=64 has 2 steps per epoch, booth 10
    assert "24 runs (288 steps, about" in str(size)
    db = tmp_path / "lab.db"
    with Store(db) as store:
        run_comparison(comparison, store)
        assert store.count() == size.runs
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT SUM(length(result) + length(spec) + 200) FROM runs").fetchone()[0]
    assert stored <= size.bytes <= 4 * stored  # an estimate that errs on the safe side
    comparison.seeds, comparison.lr_grid = 10**9, 10**6  # what no comparison may be: counted, not built
    assert plan_size(comparison).runs == 3 * 10**6 * 10**9 + 3 * 10**6  # booth: one seed
    with Store(db) as store, pytest.raises(ValueError, match="at most 50,000 runs"):
        run_comparison(comparison, store)


def test_a_comparison_that_cannot_fit_on_the_disk_is_refused_before_training(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optimlab.lab.storage import Store

    before = stored_runs(db)
    monkeypatch.setattr(Store, "free_bytes", lambda self: 2_000)
    more = ["compare", *SMALL[:3], "sgd,adam,rmsprop", *SMALL[4:]]
    result = runner.invoke(app, [*more, "--db", str(db), "--out", str(tmp_path)])
    one_line_exit_2(result, "would store about", "(2 runs of 2 steps on average)", "its disk has 2.0 kB free")
    assert stored_runs(db) == before and "trained" not in result.stdout
    # every run stored: nothing to write but the comparison, so a full disk still gives the report
    report = runner.invoke(app, ["compare", *SMALL, "--db", str(db), "--out", str(tmp_path)])
    assert report.exit_code == 0, report.output


# --- the suggested tuned command reproduces the comparison it tunes -------------------------------

TUNED_CONFIG = """
defaults = "torch"
seeds = 2
[optimizers."my sgd"]
preset = "sgd"
lr = 0.05
[optimizers.fast]
preset = "adam"
lr = 0.05
betas = [0.8, 0.99]
[optimizers.lbfgs]
"""


def test_the_suggested_tuned_command_runs_the_tuned_comparison(tmp_path: Path) -> None:
    import json
    import shlex

    from optimlab.lab.storage import Store

    folder = tmp_path / "dir with space"
    folder.mkdir()
    (folder / "my config.toml").write_text(TUNED_CONFIG)
    db, out = folder / "lab.db", folder / "out"
    first = runner.invoke(
        app,
        [
            "compare",
            *("-p", "parabola:n=64", "-p", "booth"),
            *("--config", str(folder / "my config.toml"), "--steps", "12"),
            *(
                "--schedule",
                "lambda:0.95**epoch",
                "--weight-decay",
                "0.01",
                "--l1",
                "0.001",
                "--clip-norm",
                "1",
            ),
            *("--jobs", "1", "--no-png", "--db", str(db), "--out", str(out)),
        ],
    )
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "summary.json").read_text())
    command = summary["tuned_command"]
    assert "my sgd" not in command and "fast" not in command  # labels are not specs
    args = shlex.split(command)
    assert args[:2] == ["optimlab", "compare"]
    assert args[args.index("--optimizers") + 1] == "sgd:lr=0.05,adam:betas=0.8/0.99,lr=0.05,lbfgs"
    assert args[args.index("--db") + 1] == str(db) and args[args.index("--out") + 1] == str(out)
    tuned = runner.invoke(app, [*args[1:], "--jobs", "1", "--no-png"])
    assert tuned.exit_code == 0, tuned.output
    counts = [
        int(n) for n in re.findall(r"(\d+) runs? trained, (\d+) reused", " ".join(tuned.stdout.split()))[0]
    ]
    assert sum(counts) == summary["tuned_runs"] == 3 * 7 * 2 + 3 * 7 * 1  # booth is deterministic: one seed
    # the one-shot runs of sgd and adam are the middle of their grids (L-BFGS under torch's defaults
    # has no explicit lr, and a grid's lr=1 is another key)
    assert counts[1] == 2 * 2 + 2 * 1
    with Store(db) as store:
        one_shot = store.comparison(summary["comparison"])[1]
        latest = store.comparison()[1]
    assert latest["protocol"] == "lr-grid" and latest["lr_grid"] == 7
    for name in ("problems", "seeds", "budget", "schedule", "regularization", "defaults"):
        assert latest[name] == one_shot[name], name
    same = [(o["preset"], o["class"], o["hyper"]) for o in latest["optimizers"]]
    assert same == [(o["preset"], o["class"], o["hyper"]) for o in one_shot["optimizers"]]
