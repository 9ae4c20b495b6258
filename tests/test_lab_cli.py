"""``optimlab compare`` and ``optimlab list`` through typer's CliRunner."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab.cli import app, main

runner = CliRunner()
TINY = [
    "--problem",
    "booth",
    "--problem",
    "parabola:n=64",
    "--optimizers",
    "sgd,adam,lbfgs",
    "--seeds",
    "2",
    "--epochs",
    "2",
    "--jobs",
    "1",
]


def _compare(tmp_path: Path, *extra: str):
    return runner.invoke(
        app, ["compare", *TINY, "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path / "out"), *extra]
    )


def test_compare_writes_summary_and_report_and_reuses_stored_runs(tmp_path: Path) -> None:
    result = _compare(tmp_path)
    assert result.exit_code == 0, result.output
    assert "booth" in result.stdout and "One-shot comparison" in result.stdout
    printed = " ".join(result.stdout.split())
    assert f"its figures in {tmp_path / 'out' / 'figures'}" in printed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for spec in ("booth", "parabola:n=64"):
        for preset in ("sgd", "adam", "lbfgs"):
            entry = summary["problems"][spec]["optimizers"][preset]
            assert set(entry["final_loss"]) >= {"median", "q25", "q75"}
            for key in ("diverged", "best_lr", "steps_to_target", "wall_s"):
                assert key in entry
    assert summary["problems"]["parabola:n=64"]["optimizers"]["adam"]["runs"] == 2
    assert summary["problems"]["booth"]["optimizers"]["adam"]["runs"] == 1  # deterministic
    assert set(summary["performance_profile"]["steps"]["score"]) == {"sgd", "adam", "lbfgs"}
    report = (tmp_path / "out" / "report.html").read_text()
    assert "one-shot comparison" in report and "--lr-grid" in report
    assert report.count("data-figure=") >= 5  # per problem: loss (+ per step, surface); the profile
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", report, flags=re.S)  # the page without its scripts
    assert not re.search(r"\b(src|href)\s*=\s*[\"']?(https?:|//)", markup)  # nothing loaded from elsewhere
    assert {p.name for p in (tmp_path / "out" / "figures").iterdir()} >= {
        "booth-loss.png",
        "booth-surface.png",
        "parabola-n-64-loss.png",
        "parabola-n-64-train-loss.png",
        "performance-profile-steps.png",
    }
    assert not list((tmp_path / "out" / "figures").glob("*.gif"))  # only with --gif
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        created = conn.execute("SELECT key, created_at FROM runs ORDER BY key").fetchall()
    assert len(created) == 3 * 2 + 3 * 1  # parabola: 3 optimizers × 2 seeds; booth is deterministic
    again = _compare(tmp_path, "--no-png")
    assert again.exit_code == 0
    with sqlite3.connect(tmp_path / "lab.db") as conn:
        assert conn.execute("SELECT key, created_at FROM runs ORDER BY key").fetchall() == created


def test_compare_with_lr_grid_schedule_and_regularization(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "compare",
            "--problem",
            "sparse-regression",
            "--optimizers",
            "sgd",
            "--seeds",
            "1",
            "--lr-grid",
            "2",
            "--steps",
            "20",
            "--schedule",
            "cosine",
            "--l1",
            "0.01",
            "--clip-norm",
            "5",
            "--jobs",
            "1",
            "--db",
            str(tmp_path / "lab.db"),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    entry = summary["problems"]["sparse-regression"]["optimizers"]["sgd"]
    assert len(entry["lr_sensitivity"]) == 2 and entry["best_lr"] in [
        g["lr"] for g in entry["lr_sensitivity"]
    ]
    assert summary["settings"]["schedule"] == "cosine" and summary["settings"]["regularization"]["l1"] == 0.01
    assert "zero_fraction" in entry["metrics"] and not summary["one_shot"]


def test_compare_reads_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "lab.toml"
    config.write_text('problems = ["booth"]\nsteps = 5\n[optimizers.quick]\npreset = "adam"\nlr = 0.3\n')
    result = runner.invoke(
        app,
        [
            "compare",
            "--config",
            str(config),
            "--jobs",
            "1",
            "--db",
            str(tmp_path / "l.db"),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["problems"]["booth"]["optimizers"]["quick"]["best_lr"] == 0.3


BAD = [
    (["--problem", "nope"], "unknown problem 'nope'"),
    (["--optimizers", "adamm"], "unknown optimizer 'adamm'"),
    (["--optimizers", "adam:lr=abc"], "lr must be a number"),
    (["--optimizers", "adam:betas=0.9"], "betas must be 2 numbers"),
    (["--schedule", "lambda:__import__('os')"], "not allowed"),
    (["--epochs", "2", "--steps", "3"], "either --epochs or --steps"),
    (["--lr-grid", "3", "--tune", "optuna"], "either --lr-grid or --tune"),
]


@pytest.fixture(scope="module")
def stored_db(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("stored")
    assert _compare(folder).exit_code == 0
    return (folder / "lab.db").read_bytes()


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line_exit_2_and_the_database_is_untouched(
    tmp_path: Path, stored_db: bytes, args, message
) -> None:
    db = tmp_path / "lab.db"
    db.write_bytes(stored_db)
    before = db.read_bytes()
    result = runner.invoke(
        app, ["compare", *args, "--db", str(db), "--out", str(tmp_path / "out"), "--jobs", "1"]
    )
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert db.read_bytes() == before


def test_unwritable_output_and_corrupt_database(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = runner.invoke(app, ["compare", *TINY, "--db", str(tmp_path / "lab.db"), "--out", str(blocker)])
    assert result.exit_code == 2 and "is a file" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "lab.db").exists()  # nothing was started
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00not sqlite" * 50)
    before = corrupt.read_bytes()
    result = runner.invoke(app, ["compare", *TINY, "--db", str(corrupt), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not an optimlab database" in result.stderr
    assert result.stderr.count("\n") == 1 and corrupt.read_bytes() == before


def test_usage_errors_through_main_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compare", "--seeds", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "seeds" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        main(["compare", "--no-such-option"])
    assert info.value.code == 2


def test_list_shows_problems_optimizers_and_schedules() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for word in (
        "parabola",
        "goldstein-price",
        "digits-cnn",
        "quadratic-100d",
        "sparse-regression",
        "nesterov",
        "radam",
        "lbfgs",
        "warmup-cosine",
    ):
        assert word in result.stdout


def test_the_default_comparison_is_the_seed_experiment() -> None:
    from optimlab.cli import _build_comparison

    comparison = _build_comparison({})
    assert [p.spec for p in comparison.problems] == ["parabola", "rosenbrock"]
    assert [c.label for c in comparison.optimizers] == [
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "adadelta",
        "rmsprop",
        "adam",
        "adamax",
        "adamw",
        "nadam",
        "lbfgs",
    ]
    assert comparison.seeds == 5 and comparison.protocol == "one-shot" and comparison.budget is None
    assert comparison.schedule is None and comparison.regularization is None
    assert comparison.problems[0].default_budget.epochs == 12 and comparison.problems[0].steps_per_epoch == 32


def test_summary_is_strict_json_even_with_diverged_runs(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "compare",
            "-p",
            "goldstein-price",
            "-o",
            "sgd,adam",
            "--steps",
            "30",
            "--jobs",
            "1",
            "--db",
            str(tmp_path / "lab.db"),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output

    def reject(constant: str) -> None:
        raise AssertionError(f"summary.json holds {constant}")

    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=reject)
    sgd = summary["problems"]["goldstein-price"]["optimizers"]["sgd"]
    assert sgd["diverged"] == 1.0 and sgd["final_loss"]["median"] is None and sgd["rank"] == 2
    assert "data-figure=" in (tmp_path / "report.html").read_text()


FAILING_PROBLEM = """
import torch
from torch import nn
from optimlab.lab.problems import Budget, TensorProblem

class Failing(TensorProblem):
    name, description, target_loss = "failing", "raises on its fourth loss", 1e-3
    default_budget = Budget(epochs=2)

    def __init__(self):
        super().__init__({})
        self.x = torch.linspace(-1, 1, 64).unsqueeze(1)
        self.y = 2 * self.x
        self.batch_size = 16
        self.calls = 0

    def make_model(self):
        return nn.Linear(1, 1)

    def loss(self, output, target):
        self.calls += 1
        if self.calls > 3:
            raise RuntimeError("boom:\\nsensor offline")
        return nn.functional.mse_loss(output, target)

def make():
    return Failing()
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_users_problem_that_raises_is_one_line_and_stored_runs_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    (tmp_path / "failing_problem.py").write_text(FAILING_PROBLEM)
    monkeypatch.delitem(sys.modules, "failing_problem", raising=False)  # this test's file, not a cached one
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # spawned workers find the module from the working directory
    db = tmp_path / "lab.db"
    first = runner.invoke(app, ["compare", *TINY[:2], "--db", str(db), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    stored = sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0]
    args = ["compare", "-p", "failing_problem:make", "-o", "sgd,adam", "--seeds", "2", "--jobs", jobs]
    result = runner.invoke(app, [*args, "--replicas", "off", "--db", str(db), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    line = FAILING_PROBLEM.splitlines().index('            raise RuntimeError("boom:\\nsensor offline")') + 1
    assert result.stderr == (
        "error: problem failing_problem:make: RuntimeError: boom: sensor offline "
        f"(failing_problem.py:{line})\n"
    ), result.output
    assert sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0] == stored
    lr_find = runner.invoke(
        app, ["lr-find", "-p", "failing_problem:make", "-o", "adam", "--out", str(tmp_path / "c")]
    )
    assert lr_find.exit_code == 2 and ": RuntimeError: boom" in lr_find.stderr
    assert "Traceback" not in result.output + lr_find.output
