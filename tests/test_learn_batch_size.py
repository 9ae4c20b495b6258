"""``optimlab learn batch-size``: full-batch GD, mini-batches of 32 and one-sample SGD on ``parabola``,
its headline numbers asserted against what its verdicts say."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from learn_cases import SEEDS, printed_numbers
from optimlab import learn
from optimlab.learn.demos import batch_size

SEEDS_DIR = SEEDS


@pytest.fixture(scope="module")
def outcome() -> learn.Outcome:
    return learn.run("batch-size")


def test_the_cli_prints_the_same_numbers_as_python(outcome: learn.Outcome, tmp_path: Path) -> None:
    printed = printed_numbers("batch-size", tmp_path, outcome.numbers)
    for key in ("steps_to_target", "samples_to_target", "loss_std"):
        assert set(printed[key]) == {"full", "32", "1"}


def test_smaller_batches_need_far_fewer_samples_at_about_the_same_steps(outcome: learn.Outcome) -> None:
    n = outcome.numbers
    assert n["batch"] == {"full": 1000, "32": 32, "1": 1}
    steps, samples = n["steps_to_target"], n["samples_to_target"]
    for name, batch in n["batch"].items():  # every variant reaches the target 0.02; samples = steps × B
        assert steps[name] is not None and samples[name] == steps[name] * batch
    assert 120 <= steps["full"] <= 175 and abs(steps["32"] - steps["full"]) <= 10  # same lr: same pace
    assert steps["1"] < 1.5 * steps["full"]
    assert samples["1"] < samples["32"] / 10 and samples["32"] < samples["full"] / 25


def test_gradient_noise_grows_as_the_batch_shrinks(outcome: learn.Outcome) -> None:
    n = outcome.numbers
    std, rising = n["loss_std"], n["rising_share"]
    assert rising["full"] == 0.0  # full-batch GD at lr 0.1 < 2/L: the loss never goes up
    assert 0.3 < rising["32"] < rising["1"] < 0.6  # sampling noise: up after about as many steps as down
    assert std["full"] < 1e-3 < std["32"] < std["1"]  # full batch: only the slow descent of the window
    # a batch of 32 averages 32 per-sample losses: ≈ √32 ≈ 5.7 × less scatter at fixed parameters,
    # somewhat more here, since the one-sample run's parameters jitter too
    assert math.sqrt(32) * 0.9 < n["noise_ratio"]["1/32"] < 2 * math.sqrt(32)
    floor = n["final_loss"]  # the noise floor is 0.01 (noise σ = 0.1)
    assert 0.01 < floor["full"] < 0.013 and 0.01 < floor["32"] < 0.013 and floor["1"] > floor["32"]


def test_the_verdicts_follow_the_numbers(outcome: learn.Outcome) -> None:
    kinds = [v.kind for v in outcome.verdicts]
    assert kinds == ["wrong", "partly", "partly"]
    assert all(v.correction is not None and v.reference for v in outcome.verdicts)
    assert outcome.figures and len(outcome.rows) == 3


@pytest.mark.skipif(not SEEDS_DIR.is_dir(), reason="the seed posts are not on this machine")
def test_the_claims_quote_the_seed_post_as_written() -> None:
    for claim in batch_size.DEMO.claims:
        assert claim.quote in (SEEDS_DIR / claim.post).read_text(encoding="utf-8")
