"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A database holding the runs of ``optimlab compare`` with the test module's ``SMALL`` arguments."""
    from optimlab.cli import app

    folder = tmp_path_factory.mktemp("stored")
    args = ["compare", *request.module.SMALL, "--db", str(folder / "lab.db"), "--out", str(folder)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return (folder / "lab.db").read_bytes()
