"""The contour of a 2-D problem is stored with the comparison's plan, so a report draws it from the
database alone: without the problem registry, for a user's problem whose module is gone, and (without
the contour, saying so) for a comparison stored before contours were."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import optimlab.lab.problems
from optimlab.lab.contours import GRID, contour_entry, from_entry, is_surface, sample
from optimlab.lab.presets import parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.protocol import Comparison, run_comparison
from optimlab.lab.results import load_comparison
from optimlab.lab.run import canonical_json
from optimlab.lab.storage import Store
from optimlab.reports.figures.surface import NO_CONTOUR
from optimlab.reports.report import write_report

USER_PROBLEM = """
from optimlab.lab.problems.surfaces import Surface, SurfaceProblem


def bowl(x, y):
    return (x - 1) ** 2 + 2 * (y + 0.5) ** 2


def make():
    return SurfaceProblem(
        Surface(
            "my bowl", "a bowl of my own", bowl, ((1.0, -0.5),), 0.0, (-2.0, 1.5), 1e-3, 1.0,
            ((-3.0, 3.0), (-2.0, 2.0)), steps=30,
        )
    )
"""


def _figures(html: str) -> dict[str, dict]:
    blocks = re.findall(r'<script type="application/json" data-figure="fig-\d+">(.*?)</script>', html, re.S)
    return {s["layout"]["title"]["text"]: s for s in map(json.loads, blocks)}


def _no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(spec: str) -> None:
        raise AssertionError(f"a report called the problem registry for {spec!r}")

    monkeypatch.setattr(optimlab.lab.problems, "get_problem", refuse)


def test_the_stored_contour_is_the_sampled_grid_to_the_last_bit() -> None:
    for spec in ("rosenbrock", "saddle", "goldstein-price", "ravine:condition=1000"):
        problem = get_problem(spec)
        entry = json.loads(canonical_json(contour_entry(problem)))  # as the database holds it
        stored, sampled = from_entry(entry), sample(problem)
        assert stored.z.shape == (GRID, GRID)
        np.testing.assert_array_equal(stored.z, sampled.z)
        np.testing.assert_array_equal(stored.x, np.linspace(*problem.window[0], GRID))
        assert stored.minima == tuple(problem.minima) and stored.start == tuple(problem.start)
        assert stored.min_value == problem.min_value
    assert contour_entry(get_problem("parabola")) is None and from_entry(None) is None
    assert not is_surface(get_problem("parabola"))


def test_a_surface_whose_f_fails_on_the_grid_costs_the_contour_not_the_comparison() -> None:
    class Broken:
        window, minima, start = ((0.0, 1.0), (0.0, 1.0)), (), (0.5, 0.5)

        def fn(self, x, y):
            raise RuntimeError("only scalars, please")

    assert contour_entry(Broken()) is None


def test_a_users_problem_keeps_its_contour_once_its_module_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_bowl.py").write_text(USER_PROBLEM, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    comparison = Comparison(
        problems=[get_problem("my_bowl:make")], optimizers=parse_optimizers("sgd,adam"), seeds=1
    )
    with Store(tmp_path / "lab.db") as store:
        cid = run_comparison(comparison, store)
    sys.path.remove(str(tmp_path))
    del sys.modules["my_bowl"]
    (tmp_path / "my_bowl.py").unlink()
    _no_registry(monkeypatch)
    with Store(tmp_path / "lab.db") as store:
        data = load_comparison(store, cid)
    html = write_report(data, tmp_path / "out").read_text(encoding="utf-8")
    assert re.search(r"<h2 id=\"sec-\d+\">my bowl</h2>", html)  # the problem's own name is its title
    assert "Spec: my_bowl:make." in html
    surface = _figures(html)["my bowl: trajectories (seed 0)"]
    contour = [t for t in surface["data"] if t["type"] == "contour"]
    assert len(contour) == 1 and surface["layout"]["xaxis"]["range"] == [-3.0, 3.0]
    minimum = next(t for t in surface["data"] if t.get("name") == "minimum")
    assert minimum["x"] == [1.0] and minimum["y"] == [-0.5]
    assert NO_CONTOUR not in html
    assert (tmp_path / "out" / "figures" / "my_bowl-make-surface.png").is_file()


def test_a_comparison_stored_before_contours_draws_its_paths_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comparison = Comparison(
        problems=[get_problem("booth")], optimizers=parse_optimizers("sgd"), seeds=1, budget=Budget(steps=20)
    )
    with Store(tmp_path / "lab.db") as store:
        cid = run_comparison(comparison, store)
        _, settings, plan = store.comparison(cid)
        for entry in plan["problems"]:
            del entry["contour"]  # the plan as it was written before contours were stored
        store.save_comparison(cid, settings, plan)
        data = load_comparison(store, cid)
    assert data.problems[0].contour is None
    _no_registry(monkeypatch)
    html = write_report(data, tmp_path / "out").read_text(encoding="utf-8")
    assert NO_CONTOUR in html
    surface = _figures(html)["booth: trajectories (seed 0)"]
    assert [t["type"] for t in surface["data"]] == ["scatter"] * 3  # the path, its head, the start
    assert (tmp_path / "out" / "figures" / "booth-surface.png").is_file()
