"""Protocols (one-shot, lr grid, Optuna), statistics, performance profiles and summaries."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from optimlab.lab.presets import make_config, parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.protocol import Comparison, lr_grid, planned_runs, run_comparison
from optimlab.lab.results import aggregate, load_comparison, summarize, summary_profile
from optimlab.lab.runner import train
from optimlab.lab.stats import bootstrap_ci, quantile, summary
from optimlab.lab.storage import Store

INF = math.inf


def test_median_and_iqr_treat_infinity_as_the_worst_value() -> None:
    assert summary([1.0, 2.0, 3.0, 4.0, 5.0]) == {"median": 3.0, "q25": 2.0, "q75": 4.0}
    assert summary([1.0, 2.0, 3.0, INF, INF]) == {"median": 3.0, "q25": 2.0, "q75": INF}
    assert summary([INF, INF]) == {"median": INF, "q25": INF, "q75": INF}
    assert quantile([1.0, INF], 0.5) == INF and quantile([4.0], 0.9) == 4.0
    assert math.isnan(quantile([], 0.5))


def test_bootstrap_ci_brackets_the_median_and_is_deterministic() -> None:
    values = [0.9, 1.0, 1.1, 1.2, 5.0, 0.8, 1.05]
    low, high = bootstrap_ci(values)
    assert low <= 1.05 <= high and (low, high) == bootstrap_ci(values)
    assert bootstrap_ci([2.0]) == (2.0, 2.0)
    assert bootstrap_ci([1.0, 2.0, INF, INF, INF])[1] == INF


def test_summary_profile_reads_steps_to_target_with_null_as_a_miss() -> None:
    def entry(steps: float | None, evals: float | None) -> dict:
        return {"steps_to_target": steps, "evals_to_target": evals}

    problems = {
        "p1": {"optimizers": {"a": entry(10, 10), "b": entry(20, 20), "c": entry(None, None)}},
        "p2": {"optimizers": {"a": entry(40, 40), "b": entry(10, 100), "c": entry(None, None)}},
        "p3": {"optimizers": {"a": entry(0, 0), "b": entry(None, None), "c": entry(2, 2)}},
    }
    steps = summary_profile(problems, "steps")
    assert steps is not None and steps.solvers == ("a", "b", "c")
    # p3: a met the target before the first step, which costs one step (ratio c = 2)
    assert steps.ratio_table()["a"] == {"p1": 1.0, "p2": 4.0, "p3": 1.0}
    assert steps.ratio_table()["c"] == {"p1": INF, "p2": INF, "p3": 2.0}
    # score = mean over problems of (τmax − r)/(τmax − 1) for r ≤ τmax
    assert steps.scores == pytest.approx({"a": (1 + 0 + 1) / 3, "b": (2 / 3 + 1) / 3, "c": (2 / 3) / 3})
    evals = summary_profile(problems, "grad_evals")
    assert evals is not None and evals.ratio_table()["b"]["p2"] == pytest.approx(2.5)
    assert summary_profile({}, "steps") is None


def test_lr_grid_is_log_spaced_around_the_default() -> None:
    assert lr_grid(0.01, 1) == [0.01]
    grid = lr_grid(0.01, 3)
    assert grid == pytest.approx([0.01 / 10**1.5, 0.01, 0.01 * 10**1.5], rel=1e-3)
    assert len(lr_grid(0.01, 7)) == 7 and sorted(lr_grid(0.01, 7)) == lr_grid(0.01, 7)


def test_aggregate_counts_divergence_and_misses() -> None:
    booth = get_problem("booth")
    good = train(booth, make_config("adam", {"lr": 0.5}), 0, Budget(steps=150))
    miss = train(booth, make_config("sgd", {"lr": 1e-5}), 0, Budget(steps=20))
    bad = train(booth, make_config("sgd", {"lr": 10.0}), 0, Budget(steps=20))
    stats = aggregate([good, miss, bad])
    assert stats["runs"] == 3 and stats["diverged_runs"] == 1 and stats["diverged"] == pytest.approx(1 / 3)
    assert stats["final_loss"]["median"] == miss.final_loss and stats["final_loss"]["q75"] is None
    assert stats["target_reached"] == 1 and stats["steps_to_target"] is None  # median of (s, ∞, ∞) = ∞


def test_one_shot_runs_every_seed_and_deterministic_problems_once(tmp_path: Path) -> None:
    comparison = Comparison(
        problems=[get_problem("parabola:n=64"), get_problem("booth")],
        optimizers=parse_optimizers("sgd,adam"),
        seeds=3,
        budget=Budget(epochs=2),
    )
    assert planned_runs(comparison) == 2 * 3 + 2 * 1
    with Store(tmp_path / "lab.db") as store:
        cid = run_comparison(comparison, store)
        assert store.count() == 8
        data = load_comparison(store, cid)
    assert [p.spec for p in data.problems] == ["parabola:n=64", "booth"]
    assert [r.seed for r in data.problems[0].optimizers[0].runs] == [0, 1, 2]
    assert data.problems[1].deterministic and len(data.problems[1].optimizers[1].runs) == 1
    summary_ = summarize(data)
    entry = summary_["problems"]["parabola:n=64"]["optimizers"]["adam"]
    assert entry["best_lr"] == 0.01 and entry["runs"] == 3
    assert summary_["one_shot"] and "--lr-grid" in summary_["tuned_command"]


def test_lr_grid_runs_the_full_grid_on_all_seeds_and_picks_the_best_median(tmp_path: Path) -> None:
    comparison = Comparison(
        problems=[get_problem("booth:noise=1")],
        optimizers=parse_optimizers("sgd,adam"),
        seeds=2,
        lr_grid=3,
        budget=Budget(steps=40),
    )
    with Store(tmp_path / "lab.db") as store:
        cid = run_comparison(comparison, store)
        assert store.count() == 2 * 3 * 2  # the best lr's runs are part of the grid
        data = load_comparison(store, cid)
    for opt in data.problems[0].optimizers:
        assert [lr for lr, _ in opt.grid] == lr_grid(0.01, 3)
        assert all(len(runs) == 2 for _, runs in opt.grid)
        medians = {lr: summary([r.final_loss for r in runs])["median"] for lr, runs in opt.grid}
        assert opt.best_lr == min(medians, key=medians.get)
        assert [r.final_loss for r in opt.runs] == [r.final_loss for r in dict(opt.grid)[opt.best_lr]]
    entry = summarize(data)["problems"]["booth:noise=1"]["optimizers"]["sgd"]
    assert [g["lr"] for g in entry["lr_sensitivity"]] == lr_grid(0.01, 3)


def test_optuna_gives_every_optimizer_the_same_number_of_trials(tmp_path: Path) -> None:
    comparison = Comparison(
        problems=[get_problem("booth")],
        optimizers=parse_optimizers("sgd,adam,lbfgs"),
        seeds=2,
        tune="optuna",
        trials=3,
        budget=Budget(steps=15),
    )
    with Store(tmp_path / "lab.db") as store:
        cid = run_comparison(comparison, store)
        data = load_comparison(store, cid)
        count = store.count()
        # resumable: the seeded sampler proposes the same trials again, which are all stored
        events: list[str] = []
        run_comparison(comparison, store, progress=lambda event: events.append(event.kind))
        assert "done" not in events and store.count() == count
    for opt in data.problems[0].optimizers:
        assert len(opt.trials) == 3
        finite = [t for t in opt.trials if t["value"] is not None]
        best = min(finite, key=lambda t: t["value"])
        assert opt.hyper == best["hyper"]
        assert len(opt.runs) == 1  # booth is deterministic: one evaluation run
    adam_trials = data.problems[0].optimizers[1].trials
    assert all({"lr", "beta1"} == set(t["params"]) for t in adam_trials)


def test_worker_processes_give_the_same_numbers(tmp_path: Path) -> None:
    comparison = Comparison(
        problems=[get_problem("parabola:n=64")],
        optimizers=parse_optimizers("adam,lbfgs"),
        seeds=2,
        budget=Budget(epochs=2),
    )
    finals = []
    for jobs in (1, 2):
        with Store(tmp_path / f"lab{jobs}.db") as store:
            cid = run_comparison(comparison, store, jobs=jobs)
            data = load_comparison(store, cid)
            finals.append([[r.losses for r in o.runs] for o in data.problems[0].optimizers])
    assert finals[0] == finals[1]


def test_bad_comparisons() -> None:
    booth = get_problem("booth")
    with pytest.raises(ValueError, match="either --lr-grid or --tune"):
        Comparison(problems=[booth], optimizers=parse_optimizers("sgd"), lr_grid=3, tune="optuna")
    with pytest.raises(ValueError, match="listed twice"):
        Comparison(problems=[booth, get_problem("booth")], optimizers=parse_optimizers("sgd"))
    with pytest.raises(ValueError, match="seeds"):
        Comparison(problems=[booth], optimizers=parse_optimizers("sgd"), seeds=0)
    from optimlab.lab.schedules import parse_schedule

    with pytest.raises(ValueError, match="warmup_steps"):
        Comparison(
            problems=[booth],
            optimizers=parse_optimizers("sgd"),
            budget=Budget(steps=50),
            schedule=parse_schedule("warmup:warmup_steps=100"),
        )


def test_the_summary_flags_a_best_lr_at_the_grids_edge_and_problems_of_few_seeds(tmp_path: Path) -> None:
    comparison = Comparison(
        problems=[get_problem("parabola:n=64"), get_problem("booth")],
        # sgd from a tiny lr: its best is the grid's top; sgd from a huge one diverges but at the bottom
        optimizers=parse_optimizers("sgd:lr=0.00001,sgd:lr=3,adam:lr=0.03"),
        seeds=2,
        lr_grid=3,
        budget=Budget(epochs=3),
    )
    with Store(tmp_path / "lab.db") as store:
        data = load_comparison(store, run_comparison(comparison, store))
    summary_ = summarize(data)
    parabola = summary_["problems"]["parabola:n=64"]
    edges = {label: entry["lr_at_grid_edge"] for label, entry in parabola["optimizers"].items()}
    assert edges == {"sgd:lr=1e-05": "high", "sgd:lr=3": "low", "adam:lr=0.03": None}
    for label, entry in parabola["optimizers"].items():
        grid = [g["lr"] for g in entry["lr_sensitivity"]]
        expected = {min(grid): "low", max(grid): "high"}.get(entry["best_lr"])
        assert entry["lr_at_grid_edge"] == expected, label
    assert parabola["few_seeds"] is True  # 2 seeds: its IQR and CI say little
    assert summary_["problems"]["booth"]["few_seeds"] is False  # deterministic: one seed is all seeds
    comparison.seeds, comparison.lr_grid = 3, None
    with Store(tmp_path / "lab.db") as store:
        one_shot = summarize(load_comparison(store, run_comparison(comparison, store)))
    assert one_shot["problems"]["parabola:n=64"]["few_seeds"] is False
    assert all(
        e["lr_at_grid_edge"] is None for e in one_shot["problems"]["parabola:n=64"]["optimizers"].values()
    )
    assert one_shot["tuned_runs"] == 3 * 7 * 3 + 3 * 7 * 1
