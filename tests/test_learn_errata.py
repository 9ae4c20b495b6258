"""``optimlab learn errata``: the seed posts' errata — their count, their quotes (verbatim in the posts,
where the posts are at hand), a correction and a reference for each, and the evidence computed with
optimlab.optim's rules against the posts' own formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from learn_cases import SEEDS
from optimlab import learn
from optimlab.cli import app
from optimlab.learn.demo import Outcome
from optimlab.learn.demos.errata import CLAIMS, DEMO, post_adadelta, post_adam, post_nesterov

MU = 0.9


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("errata")
    result = CliRunner().invoke(app, ["learn", "errata", "--json", "--no-png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def outcome() -> Outcome:
    return learn.run("errata")


def test_the_cli_and_python_agree(numbers: dict, outcome: Outcome) -> None:
    assert numbers == json.loads(json.dumps(outcome.numbers))
    assert DEMO.order == 15 and "errata" in learn.demo_names()


def test_the_count_by_post_and_by_kind(numbers: dict, outcome: Outcome) -> None:
    assert numbers["count"] == len(outcome.verdicts) == len(CLAIMS) == 29
    assert numbers["by_post"] == {"000": 10, "001": 8, "002": 4, "003": 6, "004": 1}
    assert numbers["by_kind"] == {"wrong": 15, "partly": 14}  # no measurement contradicts an erratum
    kinds = {key: e["kind"] for key, e in numbers["errata"].items()}
    assert kinds["plateau-verbose"] == "partly"  # verbose was right for the post's torch, gone since
    assert kinds["adadelta-formula"] == kinds["nesterov-004"] == "wrong"
    assert sum(numbers["by_post"].values()) == numbers["count"] == sum(numbers["by_kind"].values())
    assert len(outcome.rows) == numbers["count"] and list(outcome.columns)[:2] == ["post", "passage"]


def test_every_erratum_has_a_correction_a_reference_and_both_languages(outcome: Outcome) -> None:
    assert [v.claim for v in outcome.verdicts] == list(DEMO.claims)
    for verdict in outcome.verdicts:
        assert verdict.kind in ("wrong", "partly")
        assert verdict.correction is not None and verdict.reference
        for prose in (verdict.evidence, verdict.correction):
            assert prose.en.strip() and any("\u4e00" <= ch <= "\u9fff" for ch in prose.zh)
        assert verdict.claim.translation.strip()


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed posts are not on this machine")
def test_every_quote_is_verbatim_in_the_post_it_names() -> None:
    for claim in CLAIMS.values():
        post = SEEDS / claim.post
        assert post.is_file(), claim.post
        assert claim.quote in post.read_text(encoding="utf-8"), (claim.post, claim.quote)


def test_the_posts_adadelta_walks_away_where_torchs_descends(numbers: dict) -> None:
    dd = numbers["computed"]["adadelta"]
    xs = post_adadelta()
    assert np.all(np.diff(xs) < 0) and dd["post_moves_one_way"]  # ΔW < 0 whatever the gradient's sign
    assert dd["post_x"] == pytest.approx(xs[-1]) and dd["post_x"] < -10
    assert 0.5 < dd["torch_x"] < 1 and dd["torch_x"] < dd["torch_x_lr_0.1"] < 1  # lr scales its steps


def test_the_posts_adam_climbs_the_gradient(numbers: dict) -> None:
    adam = numbers["computed"]["adam"]
    assert adam["post_x"] == pytest.approx(post_adam()[-1]) and adam["post_x"] > 30
    assert abs(adam["torch_x"]) < 0.01


def test_the_posts_nesterov_diverges_past_its_own_limit(numbers: dict) -> None:
    nag = numbers["computed"]["nesterov_004"]
    limit = 2 * (1 + MU) / (1 + 2 * MU + 2 * MU**2)
    assert nag["post_limit"] == pytest.approx(limit) and nag["nesterov_limit"] == pytest.approx(3.8 / 2.8)
    assert nag["post_limit"] < nag["lr"] < nag["nesterov_limit"]
    assert nag["post_x"] > 1e5 and nag["nesterov_x"] < 1e-30 and nag["heavy_ball_x"] < 0.1
    assert abs(post_nesterov(400, 0.97 * limit)[-1]) < 1e-3  # the limit, checked either side
    assert abs(post_nesterov(400, 1.03 * limit)[-1]) > 1e3
    large = numbers["computed"]["nesterov_large_lr"]  # torch's NAG past its limit, the heavy ball within
    assert large["nesterov_x"] > 1e15 and large["heavy_ball_x"] < 0.1


def test_momentum_sums_dampening_averages(numbers: dict) -> None:
    buf = numbers["computed"]["momentum_buffer"]
    assert buf["dampening_0"] == pytest.approx((1 - MU**50) / (1 - MU), rel=1e-12)
    assert buf["dampening_0.9"] == pytest.approx(1.0) and buf["average_s2"] == pytest.approx(1.0)
    assert buf["post_002_s2"] == pytest.approx(2.0)
    plateau = numbers["computed"]["plateau"]  # Σ_t (1 − μᵗ)/(1 − μ) steps of lr·slope, against 100
    assert plateau["sgd"] == pytest.approx(100 * 0.1 * 0.01, rel=1e-12)
    expected = 0.1 * 0.01 * (100 - MU * (1 - MU**100) / (1 - MU)) / (1 - MU)
    assert plateau["momentum"] == pytest.approx(expected, rel=1e-9) and plateau["ratio"] > 9


def test_landscapes_saddle_and_ripples(numbers: dict) -> None:
    saddle = numbers["computed"]["saddle"]["escape_step"]
    assert saddle == {"sgd": {"near": 177, "ridge": None}, "momentum": {"near": 46, "ridge": None}}
    # plain GD: x ← 0.96x, y ← 1.04y, so f ≤ −1 at the first t with 0.96^2t − 1e-6·1.04^2t ≤ −1
    assert saddle["sgd"]["near"] == next(
        t for t in range(1, 400) if 0.96 ** (2 * t) - 1e-6 * 1.04 ** (2 * t) <= -1
    )
    ripples = numbers["computed"]["ripples"]
    assert ripples["global"] == {"sgd": 3, "momentum": 9} and ripples["starts"] == 19


def test_l1_weight_decay_and_the_gradient_direction(numbers: dict) -> None:
    c = numbers["computed"]
    assert c["l1"]["solution_zeros"] == 7 and c["l1"]["sgd_zeros"] == 0
    assert 0 < c["l1"]["sgd_largest_should_be_zero"] < 0.1
    wd = c["weight_decay"]
    assert wd["sgd_vs_l2"] < 1e-15 and wd["adam_vs_l2"] < 1e-12 and wd["adamw_vs_adam"] > 1e-3
    gd = c["gradient_direction"]
    assert gd["descent"] == pytest.approx(0.5 * (0.99**2 + 10 * 0.9**2))
    assert gd["ascent"] == pytest.approx(0.5 * (1.01**2 + 10 * 1.1**2))
    ag = c["adagrad_lr"]
    assert ag["0.01"] > 0.8 > ag["0.1"] > ag["0.5"]
    assert c["autograd"] == {"grad_from_backward": 3.0, "step_without_backward_moved": False}


def test_torchs_api_as_read_off_the_installed_torch(numbers: dict) -> None:
    api = numbers["computed"]["api"]
    assert api["adam_betas"] == [0.9, 0.999] and api["adam_eps"] == 1e-8 and api["ten_e_minus_8"] == 1e-7
    assert api["adadelta_lr"] == 1.0 and api["nadam"] == {"in_torch": True, "in_optimlab": True, "lr": 0.002}
    assert len(api["schedulers"]) > 6 and {"StepLR", "LambdaLR", "ReduceLROnPlateau"} <= set(
        api["schedulers"]
    )
    plateau = api["reduce_lr_on_plateau"]
    assert not plateau["class_ReduceLROnPlateauLR"] and not plateau["verbose_accepted"]
    assert "verbose" not in plateau["parameters"] and "patience" in plateau["parameters"]
    assert api["lambda_lr"]["zero_epochs"] == 30
    lrs = api["lambda_lr"]["lr"]
    assert lrs["29"] == 0.0 and [lrs[e] for e in ("30", "60", "90")] == pytest.approx([0.1, 0.2, 0.3])
    assert api["linear_shapes"] == {"1-D (1,)": [10], "3-D (4, 7, 1)": [4, 7, 10]}
    assert api["clip_arguments"] == []
    assert math.isclose(float("10e-8") / api["adam_eps"], 10.0)


def test_every_demonstration_an_erratum_names_exists() -> None:
    from optimlab import learn
    from optimlab.learn.demos.errata import errata, measure

    names = set(learn.demo_names())
    for erratum in errata(measure()):
        shown = [part.strip() for part in erratum.shown_by.split(";")]
        assert all(part in names or part in ("computed here", "reference") for part in shown), (
            erratum.shown_by
        )
