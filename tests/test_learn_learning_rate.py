"""``optimlab learn learning-rate``: gradient descent on ``booth`` from too small an lr to past the
divergence edge 2/L, and the range test's suggestion, asserted against theory and the verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from learn_cases import SEEDS, printed_numbers
from optimlab import learn
from optimlab.learn.demos import learning_rate

SEEDS_DIR = SEEDS


@pytest.fixture(scope="module")
def outcome() -> learn.Outcome:
    return learn.run("learning-rate")


def test_the_cli_prints_the_same_numbers_as_python(outcome: learn.Outcome, tmp_path: Path) -> None:
    printed = printed_numbers("learning-rate", tmp_path, outcome.numbers)
    assert printed["final_loss"]["0.12"] is None  # diverged: null in JSON


def test_the_edge_is_two_over_the_largest_curvature(outcome: learn.Outcome) -> None:
    n = outcome.numbers
    assert n["curvature"] == pytest.approx({"mu": 2.0, "L": 18.0}, rel=1e-9)  # Hessian [[10, 8], [8, 10]]
    assert n["smallest_diverging_lr"] == pytest.approx(2 / 18, rel=1e-3)  # bisection finds 2/L
    assert n["theory"] == pytest.approx({"edge": 2 / 18, "fastest": 0.1, "overshoot": 1 / 18})


def test_too_small_is_slow_too_large_diverges(outcome: learn.Outcome) -> None:
    n = outcome.numbers
    final, steps, target = n["final_loss"], n["steps_to_target"], n["target"]
    assert list(final) == ["0.001", "0.01", "0.05", "0.1", "0.12"]
    assert final["0.001"] > 1 and steps["0.001"] is None  # 200 steps at 0.001: (1 − 0.004)^200 ≈ 0.45
    assert target > final["0.01"] > 1e-4 and steps["0.01"] == pytest.approx(190, abs=5)
    assert final["0.05"] < 1e-9 and final["0.1"] < 1e-9 and final["0.12"] == float("inf")
    assert steps["0.1"] < steps["0.05"] < steps["0.01"]  # faster as γ grows up to 2/(L + μ) = 0.1
    # overshooting: none below 1/L, at every step above it (the steep coordinate's factor 1 − γL < 0)
    assert n["overshoots"] == {"0.001": 0, "0.01": 0, "0.05": 0, "0.1": 20, "0.12": 20}


def test_the_range_test_suggests_a_stable_lr(outcome: learn.Outcome) -> None:
    n = outcome.numbers
    assert n["suggested_lr"] == n["suggestions"]["valley"]
    assert all(lr < n["smallest_diverging_lr"] for lr in n["suggestions"].values())
    assert 0.01 < n["suggested_lr"] < 0.05 and n["range_test_minimum_lr"] > n["smallest_diverging_lr"]
    run = n["suggested_run"]
    assert run["final_loss"] < n["target"] and n["steps_to_target"]["0.1"] < run["steps_to_target"] < 190


def test_the_verdicts_follow_the_numbers(outcome: learn.Outcome) -> None:
    kinds = {v.claim.post[:3]: v.kind for v in outcome.verdicts}
    assert kinds == {"004": "confirmed", "000": "partly"}
    partly = next(v for v in outcome.verdicts if v.kind == "partly")
    assert partly.correction is not None and "2/L" in partly.correction("en")
    assert outcome.notes and "valley" in outcome.notes[0]("en")


@pytest.mark.skipif(not SEEDS_DIR.is_dir(), reason="the seed posts are not on this machine")
def test_the_claims_quote_the_seed_posts_as_written() -> None:
    for claim in learning_rate.DEMO.claims:
        assert claim.quote in (SEEDS_DIR / claim.post).read_text(encoding="utf-8")
