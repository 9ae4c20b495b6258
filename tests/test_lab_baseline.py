"""``optimlab compare --baseline``: the baseline tuned like every optimizer, horizons trained
separately with their schedules decayed to them, speed-ups in summary.json and the report's first
table; resume; bad input."""

from __future__ import annotations

import html
import json
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab.cli import app
from optimlab.lab.plansize import plan_size
from optimlab.lab.protocol import comparison_from, run_comparison
from optimlab.lab.results import load_comparison
from optimlab.lab.schedules import lr_curve, parse_schedule
from optimlab.lab.settings import parse_fractions, resolve
from optimlab.lab.storage import Store

runner = CliRunner()
PROBLEM = "parabola:n=64"
BASE = ["--problem", PROBLEM, "--optimizers", "sgd,adam", "--steps", "40", "--jobs", "1", "--no-png"]
BASELINE = [*BASE, "--baseline", "adamw", "--lr-grid", "2", "--seeds", "2", "--horizons", "0.5,1"]


def _compare(tmp_path: Path, *args: str):
    return runner.invoke(
        app, ["compare", *args, "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path / "out")]
    )


def _rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT key, created_at FROM runs ORDER BY key").fetchall()


def test_compare_against_a_baseline_writes_speedups_and_leads_the_report_with_the_verdict(
    tmp_path: Path,
) -> None:
    result = _compare(tmp_path, *BASELINE)
    assert result.exit_code == 0, result.output
    assert "Verdict against adamw" in result.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    problem = summary["problems"][PROBLEM]
    assert set(problem["optimizers"]) == {"adamw", "sgd", "adam"}  # the baseline was added
    for label, entry in problem["optimizers"].items():
        speedup = entry["speedup"]
        assert set(speedup) >= {
            "median",
            "ci95",
            "unit",
            "reached",
            "seeds",
            "grad_evals",
            "seconds",
            "verdict",
        }
        assert len(speedup["ci95"]) == 2 and speedup["seeds"] == [0, 1]
        if label == "adamw":
            assert (
                speedup["median"] == 1.0
                and speedup["ci95"] == [1.0, 1.0]
                and speedup["verdict"] == "baseline"
            )
            assert speedup["loss_ratio"] == 1.0
        else:
            low, high = speedup["ci95"]
            assert speedup["median"] is not None and low <= speedup["median"] <= high
            assert speedup["verdict"] in ("faster", "slower", "inside the noise")
    # each horizon its own budget, schedule and tuned lrs
    assert set(problem["horizons"]) == {"0.5", "1"}
    assert problem["horizons"]["0.5"]["total_steps"] == 20 and problem["horizons"]["1"]["total_steps"] == 40
    assert problem["horizons"]["1"]["schedule"] == "warmup-cosine"
    assert problem["horizons"]["1"]["optimizers"]["sgd"]["speedup"] == problem["optimizers"]["sgd"]["speedup"]
    verdict = summary["verdict"]
    assert verdict["baseline"] == "adamw" and verdict["horizons"] == [0.5, 1.0]
    assert len(verdict["rows"]) == 2 * 3 and "lr grid of 2" in verdict["tuning"]
    assert all(row["tuning_runs"] == 4 for row in verdict["rows"])  # 2 lrs × 2 seeds, the baseline too
    assert summary["settings"]["baseline"] == "adamw" and summary["settings"]["horizons"] == [0.5, 1.0]
    # the report's first section is the verdict table
    report = (tmp_path / "out" / "report.html").read_text()
    headings = re.findall(r"<h2 id=\"[^\"]+\">([^<]*)</h2>", report)
    assert headings[0] == "Verdict against the baseline" and headings[1] == "Protocol"
    first = html.unescape(report[report.index(f">{headings[0]}</h2>") : report.index(">Protocol</h2>")])
    assert "speed-up [95 % CI]" in first and "adamw" in first
    assert "final loss ÷ target" in first
    assert "warm-up + cosine, decayed to each horizon" in report  # the Protocol section's schedule
    assert "under a linear warm-up then a cosine decay to 0 at each horizon's end" in first
    assert "Few seeds." in first  # 2 seeds
    # every (horizon, optimizer, lr, seed) is a run of its own: the horizon is part of the key
    created = _rows(tmp_path / "lab.db")
    assert len(created) == 2 * 3 * 2 * 2
    # resume: nothing new is trained, the same numbers come out
    again = _compare(tmp_path, *BASELINE)
    assert again.exit_code == 0, again.output
    assert "0 runs trained, 24 reused" in " ".join(again.stdout.split())
    assert _rows(tmp_path / "lab.db") == created
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["verdict"] == verdict


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "nosuch"], "--baseline 'nosuch'"),
        (["--baseline", "adamw", "--horizons", "0,1"], "(0, 1]"),
        (["--baseline", "adamw", "--horizons", "1.5"], "(0, 1]"),
        (["--baseline", "adamw", "--horizons", "a,b"], "fractions such as 0.25,1"),
        (["--baseline", "adamw", "--horizons", ""], "fractions such as 0.25,1"),
        (["--horizons", "0.5,1"], "needs a --baseline"),
    ],
)
def test_bad_baseline_or_horizons_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = _compare(tmp_path, *BASE, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "lab.db").exists()  # nothing was started


def _values(**settings):
    command_line = {"problems": [PROBLEM], "optimizers": "sgd,adam", "steps": 40, "seeds": 2, **settings}
    return resolve(command_line, {})


def test_a_baseline_among_the_optimizers_is_not_added_and_no_baseline_keeps_the_ids() -> None:
    comparison = comparison_from(_values(baseline="adam"))
    assert [c.label for c in comparison.optimizers] == ["sgd", "adam"] and comparison.baseline == "adam"
    assert comparison.settings()["horizons"] == [1.0]
    plain = comparison_from(_values())
    assert "baseline" not in plain.settings() and plain.run_schedule is None  # as before: same ids
    assert comparison.run_schedule is not None and comparison.run_schedule.text == "warmup-cosine"
    assert parse_fractions("1,0.25,1") == (0.25, 1.0)
    # every horizon is runs of its own: counted before anything is planned, and refused alike
    two = comparison_from(_values(baseline="adam", horizons="0.5,1"))
    assert plan_size(two).runs == 2 * plan_size(comparison).runs
    assert plan_size(two).steps == plan_size(comparison).steps * 3 // 2  # 20 + 40 steps a configuration
    with pytest.raises(ValueError, match="× 2 horizons"):
        comparison_from(_values(baseline="adam", horizons="0.5,1", seeds=10_000, lr_grid=2))


def test_a_given_schedule_is_rescaled_to_each_horizon() -> None:
    comparison = comparison_from(_values(baseline="adam", horizons="0.25,1", schedule="cosine:T_max=8"))
    stages = comparison.stages()
    assert [s.horizon for s in stages] == [0.25, 1.0]
    assert [s.run_schedule.text for s in stages] == ["cosine:T_max=2", "cosine:T_max=8"]
    problem = comparison.problems[0]
    assert [s.budget_for(problem).total_steps(problem.steps_per_epoch) for s in stages] == [10, 40]
    # lr_h(t) = lr(t / h): a step schedule compressed 4× runs through the same learning rates
    full = lr_curve("warmup-cosine:warmup_steps=8", 1.0, 1, 40)
    quarter = lr_curve(parse_schedule("warmup-cosine:warmup_steps=8").rescaled(0.25), 1.0, 1, 10)
    assert quarter == pytest.approx(full[::4], abs=1e-12)
    assert parse_schedule("exponential:gamma=0.81").rescaled(0.5).params["gamma"] == pytest.approx(0.6561)
    assert parse_schedule("step:step_size=6").rescaled(0.5).text == "step:step_size=3"
    assert parse_schedule("lambda:0.5**epoch").rescaled(0.5).text == "lambda:0.5 ** (epoch / 0.5)"
    assert parse_schedule("onecycle:total_steps=40").rescaled(0.25).text == "onecycle:total_steps=10"
    with pytest.raises(ValueError, match="spans 5 steps but the run has 10"):
        parse_schedule("warmup-cosine:total_steps=5").check_for(10, 1)
    parse_schedule("warmup-cosine:total_steps=5").check_for(3, 2, steps=5)  # a run within its last epoch
    with pytest.raises(ValueError, match="milestones fall on the same epoch"):
        parse_schedule("multistep:milestones=2/3").rescaled(0.25)


def test_optuna_tunes_the_baseline_at_every_horizon(tmp_path: Path) -> None:
    comparison = comparison_from(
        _values(optimizers="sgd", baseline="adamw", horizons="0.5,1", tune="optuna", budget=2, seeds=1)
    )
    with Store(tmp_path / "lab.db") as store:
        cid = run_comparison(comparison, store)
        _, _, plan = store.comparison(cid)
    assert plan["baseline"] == "adamw" and [h["horizon"] for h in plan["horizons"]] == [0.5, 1.0]
    for horizon in plan["horizons"]:
        for entry in horizon["problems"][0]["optimizers"]:
            assert len(entry["trials"]) == 2  # the baseline's budget is everyone's
    assert plan["problems"] == plan["horizons"][-1]["problems"]


def test_one_shot_against_a_baseline_on_one_seed_says_there_is_no_interval(tmp_path: Path) -> None:
    result = _compare(tmp_path, *BASE, "--baseline", "adamw", "--seeds", "1")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    verdicts = {row["optimizer"]: row["verdict"] for row in summary["verdict"]["rows"]}
    assert verdicts["adamw"] == "baseline"
    assert verdicts["sgd"] in ("one seed: no CI",) and verdicts["adam"] == "one seed: no CI"
    assert "--baseline adamw" in summary["tuned_command"] and "--horizons" not in summary["tuned_command"]
    assert "One seed." in (tmp_path / "out" / "report.html").read_text()


def _row(horizon: float, optimizer: str, median, ci95, verdict: str, reached=1.0, evals=None) -> dict:
    return {
        "problem": "p",
        "horizon": horizon,
        "total_steps": int(100 * horizon),
        "optimizer": optimizer,
        "median": median,
        "ci95": ci95,
        "grad_evals": evals or {"median": median, "ci95": ci95},
        "reached": reached,
        "verdict": verdict,
        "best_lr": 0.01,
        "baseline_lr": 0.003,
        "tuning_runs": 12,
    }


def test_the_verdict_section_says_noise_flips_and_never_reached_plainly() -> None:
    from optimlab.reports.html import Page
    from optimlab.reports.verdict import verdict_section

    rows = [
        _row(0.25, "adamw", 1.0, [1.0, 1.0], "baseline"),
        _row(0.25, "lion", 1.5, [1.2, 1.9], "faster"),
        _row(0.25, "sgd", 1.1, [0.8, 1.4], "inside the noise"),
        _row(0.25, "lbfgs", 2.0, [1.5, 2.5], "faster", evals={"median": 0.25, "ci95": [0.2, 0.3]}),
        _row(1.0, "adamw", 1.0, [1.0, 1.0], "baseline"),
        _row(1.0, "lion", 0.7, [0.5, 0.9], "slower"),
        _row(1.0, "sgd", 0.0, [0.0, 0.0], "slower", reached=0.0),
        _row(1.0, "lbfgs", None, [None, None], "faster"),
    ]
    summary = {
        "verdict": {"baseline": "adamw", "horizons": [0.25, 1.0], "tuning": "an lr grid", "rows": rows}
    }
    page = Page("t")
    verdict_section(page, summary)
    text = " ".join(page.render().split())
    assert "Verdict against the baseline" in text and "Baseline: adamw." in text
    assert "1.5× [1.2, 1.9]" in text and "0× (never reached)" in text and "∞×" in text
    assert "in grad evals" in text and "0.25× [0.2, 0.3]" in text  # L-BFGS spends several a step
    assert "sgd on p at horizon 0.25: the 95 % interval contains 1" in text
    assert "p · lion: faster than adamw at one horizon and slower at another" in text
    assert "own tuned lr: p at 0.25 0.003; p at 1 0.003." in text
    empty = Page("t")
    verdict_section(empty, {"problems": {}})  # no baseline: no section
    assert "Verdict" not in empty.render()


def test_baseline_and_horizons_from_a_config_file() -> None:
    from optimlab.lab.settings import check_config

    config = check_config({"baseline": "adamw", "horizons": [1, 0.5]}, "config file 'c.toml'")
    values = resolve({"problems": [PROBLEM], "optimizers": "sgd", "steps": 40}, config)
    comparison = comparison_from(values)
    assert comparison.baseline == "adamw" and comparison.horizons == (0.5, 1.0)
    with pytest.raises(ValueError, match=r"horizons \(config file 'c.toml'\).*\(0, 1\]"):
        check_config({"horizons": [0.5, 2]}, "config file 'c.toml'")


def test_a_constant_schedule_asked_for_is_kept_against_a_baseline(tmp_path: Path) -> None:
    values = _values(optimizers="sgd,lbfgs", baseline="adamw", schedule="constant", seeds=1, steps=10)
    comparison = comparison_from(values)
    assert comparison.run_schedule is not None and comparison.run_schedule.text == "constant"
    with Store(tmp_path / "lab.db") as store:
        cid = run_comparison(comparison, store)  # batched replicas and L-BFGS alone: lr held
        data = load_comparison(store, cid)
    for problem in data.problems:
        for opt in problem.optimizers:
            assert all(len(set(run.lrs)) == 1 for run in opt.runs)


def test_the_default_schedule_against_a_baseline_warms_up_and_decays_to_each_horizon(tmp_path: Path) -> None:
    # parabola:n=64 has 2 steps an epoch: a horizon of 5 steps ends within its third epoch, and its
    # schedule still ends at its last step (total_steps=5), not at the end of that epoch
    values = _values(optimizers="sgd,lbfgs", baseline="adamw", horizons="0.25,0.5,1", seeds=1, steps=20)
    comparison = comparison_from(values)
    problem = comparison.problems[0]
    assert problem.steps_per_epoch == 2
    texts = [stage.schedule_for(problem).text for stage in comparison.stages()]
    assert texts == ["warmup-cosine:total_steps=5", "warmup-cosine", "warmup-cosine"]
    with Store(tmp_path / "lab.db") as store:
        data = load_comparison(store, run_comparison(comparison, store))
    for horizon in data.horizons:
        for opt in horizon.problems[0].optimizers:
            for run in opt.runs:
                steps = {0.25: 5, 0.5: 10, 1.0: 20}[horizon.horizon]
                assert len(run.lrs) == steps
                expected = lr_curve("warmup-cosine", opt.best_lr, 1, steps)
                assert run.lrs == pytest.approx(expected, rel=1e-6), opt.label
