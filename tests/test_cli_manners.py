"""The command line's manners: every bad input is one line and exit code 2 (never a traceback), Ctrl-C
is one line and 130 in every command, stored runs stay as they were; --version, -h, --debug, the
same -p/-o everywhere, and ``list`` with every option's default."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab.cli import app, main

runner = CliRunner()
SMALL = ["-p", "parabola:n=64", "-o", "sgd,adam", "--seeds", "1", "--epochs", "1", "--jobs", "1", "--no-png"]


def _one_line_exit_2(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


# a config file's setting of the wrong kind: (file name, text, words of the message)
CONFIGS = [
    ("list-for-number.toml", "seeds = [1, 2]", "seeds (config file"),
    ("bool-for-number.toml", "seeds = true", "whole number"),
    ("fraction-for-count.json", '{"lr_grid": 2.7}', "lr_grid"),
    ("null.json", '{"seeds": null}', "has no value"),
    ("number-for-list.toml", "problems = 5", "problems (config file"),
    ("table-for-list.toml", "problems = {parabola = 1}", "problems (config file"),
    ("number-for-spec.toml", "schedule = 5", "schedule (config file"),
    ("table-for-spec.toml", "schedule = {kind = 'step'}", "schedule (config file"),
    ("text-for-number.toml", 'weight_decay = "a lot"', "weight_decay (config file"),
    ("list-for-rate.toml", "l1 = [0.1]", "l1 (config file"),
    ("bool-for-norm.toml", "clip_norm = true", "clip_norm (config file"),
    ("number-for-optimizer.toml", "[optimizers]\nadam = 5", "must be a table of hyperparameters"),
    ("list-for-optimizer.toml", "[optimizers]\nadam = [1, 2]", "must be a table of hyperparameters"),
    ("number-for-preset.toml", "[optimizers.fast]\npreset = 3", "preset must be a name"),
    ("unknown.toml", "sedes = 3", "unknown setting 'sedes'"),
    ("malformed.toml", "seeds = = 3", "is malformed"),
]


@pytest.mark.parametrize(("name", "text", "message"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_a_config_file_of_the_wrong_kinds_is_one_line(
    tmp_path: Path, stored: bytes, name: str, text: str, message: str
) -> None:
    config = tmp_path / name
    config.write_text(text)
    db = tmp_path / "lab.db"
    db.write_bytes(stored)
    result = runner.invoke(app, ["compare", "--config", str(config), "--db", str(db), "--out", str(tmp_path)])
    _one_line_exit_2(result, message)
    assert db.read_bytes() == stored


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("step:step_size=0", "step_size must be a whole number"),
        ("cosine:T_max=0", "T_max must be a whole number"),
        ("cosine:T_max=1e400", "T_max must be a whole number"),
        ("exponential:gamma=-0.5", "makes the lr zero or negative"),
        ("onecycle:max_lr=-1", "max_lr must be a learning rate > 0"),
        ("cosine:eta_min=-1", "eta_min must be a learning rate ≥ 0"),
        ("exponential:gamma=nan", "gamma must be"),
        ("plateau:patience=abc", "patience must be a whole number"),
        ("multistep:milestones=-1/2", "milestones must be"),
        ("onecycle:three_phase=maybe", "three_phase must be true or false"),
    ],
)
def test_schedules_that_cannot_work_are_one_line_in_compare_and_schedule(
    tmp_path: Path, stored: bytes, schedule: str, message: str
) -> None:
    db = tmp_path / "lab.db"
    db.write_bytes(stored)
    compare = runner.invoke(
        app, ["compare", *SMALL, "--schedule", schedule, "--db", str(db), "--out", str(tmp_path)]
    )
    _one_line_exit_2(compare, message)
    assert db.read_bytes() == stored
    _one_line_exit_2(runner.invoke(app, ["schedule", schedule, "--out", str(tmp_path)]), message)


def test_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    from optimlab import __version__

    for flag in ("--version", "-V"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0 and result.stdout.strip() == f"optimlab {__version__}"
    for command in ([], ["compare"], ["surface"], ["schedule"], ["lr-find"], ["list"]):
        result = runner.invoke(app, [*command, "-h"])
        assert result.exit_code == 0 and result.stdout.startswith("Usage: "), command
        assert "<bool>" not in result.stdout and "<int range>" not in result.stdout  # readable placeholders


def test_every_command_takes_problems_and_optimizers_as_p_and_o(tmp_path: Path) -> None:
    for command in ("compare", "surface", "lr-find"):
        text = runner.invoke(app, [command, "-h"]).stdout
        assert "-p, --problem SPEC" in text and "-o, --optimizers" in text, command
    surface = runner.invoke(
        app, ["surface", "-p", "booth", "-o", "sgd,adam", "--steps", "5", "--no-gif", "--out", str(tmp_path)]
    )
    assert surface.exit_code == 0, surface.output
    found = runner.invoke(
        app,
        [
            "lr-find",
            "-p",
            "parabola:n=64",
            "-o",
            "sgd",
            "--seeds",
            "1",
            "--steps",
            "10",
            "--out",
            str(tmp_path),
        ],
    )
    assert found.exit_code == 0, found.output
    both = runner.invoke(app, ["surface", "booth", "-p", "booth", "--out", str(tmp_path)])
    _one_line_exit_2(both, "give the surface once")


def test_list_shows_every_option_with_its_default() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    for words in (
        "step_size: epochs between decays",  # a schedule's parameters
        "T_max",
        "warmup_steps",
        "n: number of training points (default 1000)",  # a problem's options
        "lr=0.01",  # the seed defaults, written as specs
        "betas=0.9/0.99",
        "nesterov=true",
        "seeds 5 seeds per configuration",  # compare's settings and their defaults
    ):
        assert words in text, words
    assert "True" not in result.stdout  # values as a spec writes them, not Python's


# Ctrl-C at any moment of every command: one line, exit code 130, nothing else
INTERRUPTED = [
    (["compare", *SMALL], "optimlab.lab.protocol.run_comparison"),
    (["compare", *SMALL], "optimlab.lab.protocol.comparison_from"),
    (["surface", "-p", "booth", "--steps", "5"], "optimlab.lab.runner.train_batch"),
    (["schedule", "step"], "optimlab.lab.schedules.lr_curve"),
    (["lr-find", "-p", "parabola", "-o", "sgd"], "optimlab.lab.lr_find.problem_range_test"),
    (["list"], "optimlab.cli.listing._lines"),
]


@pytest.mark.parametrize(
    ("args", "target"), INTERRUPTED, ids=[f"{a[0]}-{t.split('.')[-1]}" for a, t in INTERRUPTED]
)
def test_ctrl_c_in_every_command_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args, target
) -> None:
    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    module, _, name = target.rpartition(".")
    monkeypatch.setattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name, interrupt)
    extra = ["--db", str(tmp_path / "lab.db")] if args[0] == "compare" else []
    out = [] if args[0] == "list" else ["--out", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        main([*args, *extra, *out])
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith("error: interrupted") and err.count("\n") == 1 and "Traceback" not in err


def test_a_users_problem_error_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "myproblems.py").write_text(
        textwrap.dedent("""
            import torch
            from torch import nn
            from optimlab.lab.problems import Budget, TensorProblem

            class Broken(TensorProblem):
                name, description, target_loss = "broken", "a loss that raises", 1e-3
                default_budget = Budget(epochs=1)

                def __init__(self):
                    super().__init__({})
                    self.x = torch.linspace(-1, 1, 8).unsqueeze(1)
                    self.y = self.x

                def make_model(self):
                    return nn.Linear(1, 1)

                def loss(self, output, target):
                    raise RuntimeError("no loss today")

            def make():
                return Broken()
        """)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["compare", "-p", "myproblems:make", "-o", "sgd", "--seeds", "1", "--jobs", "1", "--no-png"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "no loss today" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        main([*args, "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path), "--debug"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" in err and "myproblems.py" in err
    assert (
        err.strip().splitlines()[-1].startswith("error:") and "no loss today" in err.strip().splitlines()[-1]
    )


def test_a_schedule_that_holds_the_lr_at_zero_is_trained_but_warned_about(tmp_path: Path) -> None:
    args = ["compare", "-p", "parabola:n=64", "-o", "sgd", "--seeds", "1", "--epochs", "40", "--no-png"]
    result = runner.invoke(
        app,
        [*args, "--schedule", "lambda:epoch//30", "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert "holds the lr at 0 from step 0 to 59" in " ".join(result.stderr.split())
    assert "1 run trained" in " ".join(result.stdout.split())
    fine = runner.invoke(
        app, [*args, "--schedule", "cosine", "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path)]
    )
    assert fine.exit_code == 0 and "warning" not in fine.stderr


def test_the_table_and_the_report_flag_an_lr_at_the_grids_edge_and_few_seeds(tmp_path: Path) -> None:
    # sgd from a tiny lr: its best is the grid's highest; adam's best lies inside its grid
    args = ["compare", "-p", "parabola:n=64", "-o", "sgd:lr=0.00001,adam:lr=0.03", "--seeds", "2"]
    args += ["--lr-grid", "3", "--epochs", "3", "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "lr-grid comparison of 12 runs" in text  # 2 optimizers × 3 learning rates × 2 seeds
    assert "3.16e-4 ↑" in text and "sgd:lr=1e-05: 3.16e-4, its highest" in text
    assert "the grid did not bracket the optimum" in text and "Only 2 seeds" in text
    assert "adam:lr=0.03: " not in text  # only the optimizer at its grid's edge is named
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "3.16e-4 ↑" in html and "the grid did not bracket the optimum" in html and "Only 2 seeds" in html
    # three seeds, no grid: nothing to flag
    result = runner.invoke(
        app, [*args[:6], "3", "--epochs", "3", "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "↑" not in result.stdout and "Only" not in result.stdout and "note:" not in result.stdout


def test_the_terminal_shows_the_problems_own_metrics_as_the_report_does(tmp_path: Path) -> None:
    args = ["compare", "-p", "sparse-regression:features=20,relevant=3", "-o", "sgd,adam", "--seeds", "3"]
    result = runner.invoke(
        app, [*args, "--steps", "20", "--l1", "0.01", "--db", str(tmp_path / "l.db"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    metrics = summary["problems"]["sparse-regression:features=20,relevant=3"]["optimizers"]["adam"]["metrics"]
    assert {"zero_fraction", "support_recall"} <= metrics.keys()
    for header in ("zero frac", "support recall"):  # beside the ranking, or below it when too wide
        assert header in result.stdout
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "zero fraction" in html and "support recall" in html


def test_a_narrow_terminal_folds_the_table_and_loses_no_number(tmp_path: Path, monkeypatch) -> None:
    import io

    from rich.console import Console

    import optimlab.cli.output as output
    from optimlab.reports.ranking import ranked_table_rows

    args = [
        "compare",
        "-p",
        "digits-mlp",
        "-o",
        "sgd,adam",
        "--seeds",
        "2",
        "--steps",
        "30",
        "--lr-grid",
        "3",
    ]
    result = runner.invoke(app, [*args, "--db", str(tmp_path / "l.db"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    _, rows = ranked_table_rows(summary, "digits-mlp", compact=True)
    for width in (80, 100, 120):
        text = io.StringIO()
        monkeypatch.setattr(output, "console", Console(file=text, width=width))
        output.print_ranked_tables(summary)
        lines = text.getvalue().splitlines()
        assert max(len(line) for line in lines) <= width
        cells = {c if isinstance(c, str) else output._cells([[c]])[0][0] for row in rows for c in row}
        # every cell whole, or folded into pieces that stand in one column on consecutive lines
        pieces = " ".join(part.strip() for line in lines for part in line.split("│"))
        for cell in cells:
            assert cell in pieces or all(p in pieces for p in cell.split()), (width, cell)
        assert "…" not in text.getvalue()


def test_tables_show_text_as_written_never_as_markup() -> None:
    import io

    from rich.console import Console

    from optimlab.cli.output import table

    text = io.StringIO()
    Console(file=text, width=120).print(
        table("E[g²] [bold]", ["E[g²]", "v"], [["[red]adam[/red] E[g²]", 1.5]])
    )
    shown = text.getvalue()
    assert "E[g²] [bold]" in shown and "[red]adam[/red] E[g²]" in shown and shown.count("E[g²]") == 3


def test_the_program_leaves_at_once_with_its_exit_code_and_everything_written(tmp_path: Path) -> None:
    """``python -m optimlab`` (and the console script, :func:`optimlab.cli.run`) skips Python's
    teardown of the modules: what it printed reaches a pipe in full, the exit code is the command's,
    and the database and report it wrote are whole."""
    import os
    import sqlite3
    import subprocess

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}

    def program(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "optimlab", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    listing = program("list")
    in_process = runner.invoke(app, ["list"])
    assert listing.returncode == 0 and listing.stdout.splitlines()[-1] == in_process.stdout.splitlines()[-1]
    assert "parabola" in listing.stdout
    bad = program("compare", "--seeds", "abc")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    db, out = tmp_path / "lab.db", tmp_path / "out"
    # two units (L-BFGS trains apart) on a pool of two worker processes, whose queues' semaphores
    # multiprocessing unlinks at exit (else its resource tracker warns of leaked semaphores)
    pooled = ["-p", "parabola:n=64", "-o", "sgd,lbfgs", "--seeds", "1", "--epochs", "1", "--jobs", "2"]
    pooled.append("--no-png")
    done = program("compare", *pooled, "--db", str(db), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "(2 workers)" in " ".join(done.stdout.split()) and done.stderr == "", done.stderr
    assert "2 runs trained" in done.stdout and done.stdout.endswith("\n")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    assert (out / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))
