"""``optimlab learn l1-vs-l2``: SGD's proximal l1 gives exact zeros (and wins with features ≫ samples),
weight_decay (L2) and the L1 penalty put into the loss give none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app

runner = CliRunner()


def test_l1_gives_exact_zeros_and_l2_only_shrinks(tmp_path: Path) -> None:
    result = runner.invoke(app, ["learn", "l1-vs-l2", "--json", "--no-png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    outcome = learn.run("l1-vs-l2")
    assert numbers == json.loads(json.dumps(outcome.numbers))  # the CLI and Python agree
    assert [v.kind for v in outcome.verdicts] == ["confirmed", "partly", "confirmed", "confirmed"]
    zf = numbers["zero_fraction"]
    # 5 of 100 features matter: at κ = 0.03 the proximal step zeroes most of the 95 irrelevant ones
    assert 0.9 <= zf["l1"] <= 0.95 and zf["l2"] == 0 and zf["none"] == 0
    assert zf["l1_in_loss"] == 0 and numbers["min_abs_weight"]["l1_in_loss"] > 0  # subgradient: no zeros
    base, wide, dense = (
        numbers["regimes"][k] for k in ("samples>features", "features>>samples", "relevant>samples")
    )
    for regime in (base, wide):
        z1 = list(regime["zero_fraction"]["l1"].values())
        assert z1 == sorted(z1) and z1[0] > 0  # more zeros with a larger κ
        assert regime["support_recall"]["l1"] == 1.0  # every relevant feature kept at the best κ
        assert max(z1) <= 1 - 5 / (100 if regime is base else 1000)  # never a relevant one dropped
    for regime in numbers["regimes"].values():
        assert set(regime["zero_fraction"]["l2"].values()) == {0.0}  # L2: never an exact zero
    norms = [numbers["weight_norm"]["none"]] + [v for k, v in numbers["weight_norm"].items() if k != "none"]
    assert norms == sorted(norms, reverse=True) and norms[-1] < 0.7 * norms[0]  # ...but smaller weights
    # features ≫ samples, 5 relevant: L1 near the noise floor (0.1² = 0.01), L2 hardly better than nothing
    assert wide["val_loss"]["l1"] < 0.02 and wide["val_loss"]["l2"] > 0.7 * wide["val_variance"]
    assert wide["val_loss"]["l2"] / wide["val_loss"]["l1"] > 100
    # 600 relevant features > 200 samples: neither explains half of the variance
    assert max(dense["val_loss"]["l1"], dense["val_loss"]["l2"]) > 0.5 * dense["val_variance"]
    assert min(dense["val_loss"]["l1"], dense["val_loss"]["l2"]) > 0.5 * dense["val_variance"]
    assert numbers["regimes"]["samples>features"]["lr"] == pytest.approx(0.157, abs=1e-3)
