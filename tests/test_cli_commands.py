"""``optimlab surface``, ``schedule`` and ``lr-find`` through typer's CliRunner: the files they write,
the paths they print, and one line with exit code 2 for bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from optimlab.cli import app, main

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def _printed_paths(stdout: str) -> list[Path]:
    """The files a command says it wrote: ``wrote PAGE`` and ``and in FOLDER: a, b``."""
    text = " ".join(stdout.split())  # the console may wrap long lines
    page = Path(re.search(r"wrote (\S+\.html)", text).group(1))
    found = [page]
    more = re.search(r"and in (\S+): (.+)$", text)
    if more:
        found += [Path(more.group(1)) / name.strip() for name in more.group(2).split(",")]
    return found


def _figure_count(html: Path) -> int:
    return html.read_text(encoding="utf-8").count("data-figure=")


def test_surface_writes_the_page_pngs_and_the_gif_and_says_where(tmp_path: Path) -> None:
    result = _invoke(
        "surface", "rosenbrock", "-o", "sgd:lr=0.001,adam:lr=0.05", "--steps", "30", "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    paths = _printed_paths(result.stdout)
    assert paths[0] == tmp_path / "surface.html"
    names = {p.name for p in paths[1:]}
    assert names == {"surface-rosenbrock.png", "surface-rosenbrock.gif", "surface-rosenbrock-loss.png"}
    assert all(p.is_file() for p in paths)
    with Image.open(tmp_path / "figures" / "surface-rosenbrock.gif") as gif:
        assert gif.is_animated
    assert _figure_count(paths[0]) == 2
    assert "adam" in result.stdout and "steps→target" in result.stdout  # the table


def test_surface_options_noisy_lr_and_no_gif(tmp_path: Path) -> None:
    result = _invoke(
        "surface", "ravine:condition=10", "-o", "sgd,momentum", "--noisy", "--lr", "0.05", "--steps", "20",
        "--seed", "3", "--no-gif", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = (tmp_path / "surface.html").read_text(encoding="utf-8")
    assert "ravine:condition=10,noisy=true" in html and "drawn from seed 3" in html
    assert "SGD(lr=0.05)" in html and "SGD(lr=0.05, momentum=0.9)" in html  # --lr for every optimizer
    assert not list((tmp_path / "figures").glob("*.gif"))


def test_schedule_overlays_every_schedule_and_drives_plateau_by_a_real_run(tmp_path: Path) -> None:
    result = _invoke(
        "schedule", "step:step_size=4,gamma=0.5", "multistep:milestones=8/24/28,gamma=0.5",
        "exponential:gamma=0.5", "cosine:T_max=32,eta_min=1e-4", "plateau:factor=0.1,patience=2",
        "lambda:0.95**epoch", "onecycle", "warmup-cosine", "--steps", "40", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    paths = _printed_paths(result.stdout)
    assert paths[0] == tmp_path / "schedule.html" and all(p.is_file() for p in paths)
    assert {p.name for p in paths[1:]} == {"schedule.png", "schedule-plateau-factor-0.1-patience-2.png"}
    html = paths[0].read_text(encoding="utf-8")
    assert _figure_count(paths[0]) == 2
    assert "The real run: SGD (lr 0.1) on parabola" in html and "driven by the loss of a real run" in html
    assert "lambda:0.95**epoch" in html and "warmup-cosine" in html


def test_lr_find_prints_its_suggestions_and_writes_the_page(tmp_path: Path) -> None:
    result = _invoke(
        "lr-find", "-p", "parabola:n=64", "-o", "adam,sgd", "--seeds", "2", "--steps", "30",
        "--min-lr", "1e-5", "--max-lr", "10", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for word in ("steepest", "valley", "minimum/10", "adam", "sgd", "suggested lr"):
        assert word in result.stdout
    paths = _printed_paths(result.stdout)
    assert paths[0] == tmp_path / "lr_find.html" and all(p.is_file() for p in paths)
    assert [p.name for p in paths[1:]] == ["lr-find-parabola-n-64.png"]
    html = paths[0].read_text(encoding="utf-8")
    assert "from 1e-05 to 10 over 30 steps" in html and _figure_count(paths[0]) == 1


def test_commands_writing_to_one_folder_keep_each_others_figures_and_drop_their_own_stale_ones(
    tmp_path: Path,
) -> None:
    out = ["--out", str(tmp_path)]
    surface = _invoke("surface", "rosenbrock", "-o", "sgd:lr=0.001", "--steps", "20", "--no-gif", *out)
    compare = _invoke(
        "compare", "-p", "rosenbrock", "-o", "sgd", "--seeds", "1", "--steps", "20", "--jobs", "1",
        "--db", str(tmp_path / "lab.db"), *out,
    )  # fmt: skip
    lr_find = _invoke("lr-find", "-p", "rosenbrock", "-o", "sgd", "--seeds", "1", "--steps", "20", *out)
    schedule = _invoke("schedule", "cosine", "--steps", "10", *out)
    for result in (surface, compare, lr_find, schedule):
        assert result.exit_code == 0, result.output
    written = {p for r in (surface, lr_find, schedule) for p in _printed_paths(r.stdout)}
    assert all(p.is_file() for p in written)  # nothing of one command was overwritten by another
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {"surface-rosenbrock.png", "rosenbrock-surface.png", "rosenbrock-loss.png"} <= figures
    assert {"surface-rosenbrock-loss.png", "lr-find-rosenbrock.png", "schedule.png"} <= figures
    again = _invoke("surface", "booth", "-o", "sgd:lr=0.001", "--steps", "20", "--no-gif", *out)
    assert again.exit_code == 0, again.output
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert "surface-rosenbrock.png" not in figures and "surface-rosenbrock-loss.png" not in figures
    assert {"surface-booth.png", "rosenbrock-surface.png", "lr-find-rosenbrock.png"} <= figures


BAD = [
    (["surface", "parabola"], "is not a 2-D surface"),
    (["surface", "nope"], "unknown problem 'nope'"),
    (["surface", "booth", "--lr", "-1"], "--lr must be a positive number"),
    (["surface", "booth", "-o", "adam:lr=abc"], "lr must be a number"),
    (["schedule", "lambda:__import__('os')"], "not allowed"),
    (["schedule", "warmup-cosine:warmup_steps=50", "--steps", "10"], "warmup_steps must be between"),
    (["schedule", "cosine", "cosine"], "listed twice"),
    (["schedule", "step", "--lr", "0"], "--lr must be a positive number"),
    (["schedule", "wobble"], "unknown schedule 'wobble'"),
    (
        ["lr-find", "-p", "parabola", "-o", "adam", "--min-lr", "1", "--max-lr", "0.1"],
        "need 0 < min_lr < max_lr",
    ),
    (["lr-find", "-p", "parabola", "-o", "adamm"], "unknown optimizer 'adamm'"),
    (["lr-find", "-p", "nope", "-o", "adam"], "unknown problem 'nope'"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_is_written(tmp_path: Path, args, message) -> None:
    result = _invoke(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "command", [["surface", "booth"], ["schedule", "step"], ["lr-find", "-p", "booth", "-o", "sgd"]]
)
def test_an_output_folder_that_is_a_file_is_refused(tmp_path: Path, command) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = _invoke(*command, "--out", str(blocker))
    assert result.exit_code == 2 and "is a file" in result.stderr and result.stderr.count("\n") == 1


def test_usage_errors_through_main_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["lr-find", "-p", "parabola"], ["schedule"], ["surface", "booth", "--steps", "x"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, err
