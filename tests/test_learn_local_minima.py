"""``optimlab learn local-minima``: on a tilted double well, momentum carries starts over the barrier in
both directions — out of the local well and out of the global one — for a small net gain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimlab import learn
from optimlab.cli import app

runner = CliRunner()


def test_local_minima_momentum_crosses_barriers_both_ways(tmp_path: Path) -> None:
    result = runner.invoke(app, ["learn", "local-minima", "--json", "--no-png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    outcome = learn.run("local-minima")
    assert numbers == json.loads(json.dumps(outcome.numbers))  # the CLI and Python agree
    points = numbers["points"]
    for x in points.values():  # the stationary points of (x² − 1)² + 0.3x: 4x³ − 4x + 0.3 = 0
        assert 4 * x**3 - 4 * x + 0.3 == pytest.approx(0, abs=1e-9)
    assert points["global"] == pytest.approx(-1.0356, abs=1e-4) and points["local"] == pytest.approx(
        0.9601, abs=1e-4
    )
    basin, frac = numbers["basin_fraction"], numbers["global_fraction"]
    assert 0.45 < basin < 0.6  # ~ (2 + 0.075)/4 of uniform starts in [−2, 2]
    # without (or with little) momentum at lr = 0.01, every start ends in the minimum of its own basin
    assert frac["0"] == frac["0.5"] == basin
    assert numbers["escaped_local_basin"]["0"] == numbers["lost_global_basin"]["0"] == 0.0
    assert all(v == 1.0 for v in numbers["settled"].values())
    # with μ ≥ 0.9 starts cross the barrier both ways: out of the local basin and out of the global one
    for mu in ("0.9", "0.95", "0.99"):
        assert numbers["escaped_local_basin"][mu] > 0.15
        assert numbers["lost_global_basin"][mu] > 0.05
        assert numbers["escaped_from_below_barrier"][mu] == 0.0  # no energy, no escape
    # the net gain is a few percentage points, far from "on to the global valley"
    assert 0.0 < max(frac.values()) - basin < 0.1
    grid, diverged = numbers["global_fraction_grid"], numbers["diverged_grid"]
    assert grid["0.01"] == frac and all(v == 0.0 for v in diverged["0.01"].values())
    assert diverged["0.1"]["0.99"] > 0.1 and grid["0.1"]["0.99"] < basin  # too much momentum: blow-ups
    assert [v.kind for v in outcome.verdicts] == ["partly"]
