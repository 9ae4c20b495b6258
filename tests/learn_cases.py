"""What the demonstrations' tests share: comparing the numbers ``optimlab learn NAME --json`` prints with
those ``optimlab.learn.run(NAME)`` returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from optimlab.cli import app
from optimlab.cli.learn import jsonable

#: the seed posts, beside the repository (absent on a fresh machine: tests reading them skip)
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def assert_close(got: Any, expected: Any) -> None:
    """Equal JSON, numbers to 1e-9 relative (the CLI trains on one thread, pytest maybe on more)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected)
        for key, value in expected.items():
            assert_close(got[key], value)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)
    else:
        assert got == expected


def printed_numbers(name: str, tmp_path: Path, expected: Any) -> dict[str, Any]:
    """``optimlab learn NAME --json``'s numbers, asserted equal to ``expected`` (a run's numbers)."""
    result = CliRunner().invoke(app, ["learn", name, "--json", "--no-png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert_close(printed, json.loads(json.dumps(jsonable(expected))))
    return printed
