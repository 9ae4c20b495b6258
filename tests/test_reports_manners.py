"""The figures' manners (issue 11): a loss evaluated once per epoch is drawn with markers, PNG legends
sit outside the axes, long labels are shortened with the full text on hover, a problem's own name is
its title, loss axes are logarithmic where losses span decades and symmetric-log where they go negative,
per-epoch schedules are drawn against epochs, and a schedule that holds the lr at 0 is drawn but warned
about."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from optimlab.lab.lr_find import range_test, summarize
from optimlab.lab.presets import parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.protocol import Comparison, run_comparison
from optimlab.lab.results import load_comparison
from optimlab.lab.schedules import parse_schedule
from optimlab.lab.stats import performance_profile
from optimlab.lab.storage import Store
from optimlab.reports.figures.loss import Curves, LossFigure
from optimlab.reports.figures.lr_find import LRFindFigure
from optimlab.reports.figures.lr_sensitivity import Sensitivity, SensitivityFigure
from optimlab.reports.figures.profile import ProfileFigure
from optimlab.reports.figures.schedule import ScheduleFigure, zero_spans
from optimlab.reports.figures.style import LEGEND_CHARS, PNG_LEGEND_CHARS, short_labels
from optimlab.reports.figures.surface import SurfaceFigure
from optimlab.reports.figures.surface_data import grid_surface
from optimlab.reports.pages.schedule import write_schedule_page
from optimlab.reports.report import write_report
from optimlab.reports.section import problem_title, problem_titles

LONG = "adam:lr=0.001,betas=0.9/0.999,eps=1e-08,weight_decay=0.0001,amsgrad=true,maximize=false,foreach=true"
LONGER = LONG.replace("eps=1e-08", "eps=1e-07")  # differs from LONG only in the middle


def _curves(points: int, scale: float = 1.0) -> Curves:
    steps = np.arange(points, dtype=float)
    loss = scale * np.exp(-steps / max(points / 8, 1))[None, :] * np.array([[1.0], [1.1], [0.9]])
    return Curves(loss, steps=steps, lr=0.01 * np.ones(points))


def _figures(html: str) -> dict[str, dict]:
    blocks = re.findall(r'<script type="application/json" data-figure="fig-\d+">(.*?)</script>', html, re.S)
    return {s["layout"]["title"]["text"]: s for s in map(json.loads, blocks)}


def test_a_curve_of_few_evaluations_marks_each_one() -> None:
    few = LossFigure({"a": _curves(11)})
    many = LossFigure({"a": _curves(400)})
    assert few.plotly().data[2].mode == "lines+markers" and many.plotly().data[2].mode == "lines"
    assert LossFigure({"a": _curves(1000)}).plotly(max_points=50).data[2].mode == "lines"  # subsampled
    assert few.draw().axes[0].lines[0].get_marker() == "o"
    assert many.draw().axes[0].lines[0].get_marker() in ("None", None, "")


def _every_png() -> dict[str, object]:
    rng = np.random.default_rng(0)
    tests = [
        range_test(
            lambda lr: 1 / (1 + 50 * lr) + lr**2 + 0.01 * rng.random(), min_lr=1e-4, max_lr=10, steps=60
        )
        for _ in range(2)
    ]
    surface = grid_surface(lambda x, y: x**2 + y**2, (-1, 1), (-1, 1), n=20, minima=[(0, 0)])
    labels = ["sgd", LONG, LONGER]
    return {
        "loss": LossFigure({label: _curves(30, k + 1.0) for k, label in enumerate(labels)}, target=0.01),
        "sensitivity": SensitivityFigure(
            {label: Sensitivity([1e-3, 1e-2], [[1.0], [0.5]]) for label in labels}
        ),
        "surface": SurfaceFigure(surface, {label: np.linspace([-0.8, 0.6], [0, 0], 10) for label in labels}),
        "profile": ProfileFigure(
            performance_profile({"p": {"sgd": 1.0, LONG: 2.0}, "q": {"sgd": 3.0, LONG: 1.0}})
        ),
        "schedule": ScheduleFigure({"step": [0.1] * 4 + [0.05] * 4}, metric=("loss", np.linspace(1, 0, 8))),
        "lr-find": LRFindFigure({LONG: summarize(tests)}),
    }


@pytest.mark.parametrize("kind", ["loss", "sensitivity", "surface", "profile", "schedule", "lr-find"])
def test_png_legends_sit_outside_the_axes_and_long_labels_are_shortened(kind: str) -> None:
    fig = _every_png()[kind].draw()
    fig.canvas.draw()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    box = legends[0].get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent()), (kind, ax)
    texts = [t.get_text() for t in legends[0].get_texts()]
    assert all(len(t) <= PNG_LEGEND_CHARS + 30 for t in texts), texts  # + "(0.75)", "(2 seeds)", …
    assert not any(LONG in t for t in texts)


@pytest.mark.parametrize("kind", ["loss", "sensitivity", "surface", "profile", "lr-find"])
def test_long_labels_are_shortened_in_plotly_legends_with_the_full_text_on_hover(kind: str) -> None:
    fig = _every_png()[kind].plotly()
    named = [t for t in fig.data if t.name and t.showlegend is not False]
    assert not any(LONG in t.name for t in named)
    assert all(len(t.name) <= LEGEND_CHARS + 24 for t in named), [t.name for t in named]  # + "(2 seeds)"…
    hovers = " ".join(t.hovertemplate or "" for t in fig.data)
    assert LONG in hovers


def test_shortened_labels_stay_distinct() -> None:
    short = short_labels(["sgd", LONG, LONGER], 24)
    assert short["sgd"] == "sgd" and len(set(short.values())) == 3
    assert len(short[LONG]) < len(LONG) and "…" in short[LONG]


def test_a_problems_own_name_is_its_title() -> None:
    assert problem_title("parabola:n=64", "parabola") == "parabola:n=64"
    assert problem_title("mypkg.problems:make", "line") == "line"
    assert problem_title("mypkg.problems:make:n=3", "line") == "line:n=3"
    two = [SimpleNamespace(spec=f"pkg{i}:make", name="line") for i in (1, 2)]
    assert problem_titles(two) == {"pkg1:make": "line (pkg1:make)", "pkg2:make": "line (pkg2:make)"}


def test_loss_axes_are_log_across_decades_and_symlog_where_losses_go_negative(tmp_path: Path) -> None:
    assert LossFigure({"a": _curves(30, 1.0)}).draw().axes[0].get_yscale() == "log"
    comparison = Comparison(
        problems=[get_problem("saddle")],
        optimizers=parse_optimizers("sgd,adam"),
        seeds=1,
        budget=Budget(steps=200),
    )
    with Store(tmp_path / "lab.db") as store:
        data = load_comparison(store, run_comparison(comparison, store))
    html = write_report(data, tmp_path / "out").read_text(encoding="utf-8")
    loss = _figures(html)["saddle: loss at each evaluation"]
    menu = loss["layout"]["updatemenus"][0]
    assert [b["label"] for b in menu["buttons"]] == ["symlog y", "linear y"]
    assert "−1" in loss["layout"]["yaxis"]["ticktext"] and "0" in loss["layout"]["yaxis"]["ticktext"]
    adam = next(t for t in loss["data"] if t.get("name") == "adam")
    final = data.problems[0].optimizers[1].runs[0].final_loss
    assert final < -1 and adam["customdata"][-1] == pytest.approx(final, rel=1e-5)  # hover: the loss itself
    drawn = adam["y"][-1]  # in symlog units, sign(v)·log10(1 + |v|/linthresh), linthresh a power of ten:
    linthresh = abs(final) / (10.0 ** abs(drawn) - 1.0)
    assert final < drawn < 0 and math.log10(linthresh) == pytest.approx(
        round(math.log10(linthresh)), abs=1e-4
    )
    curves = {o.label: c for o in data.problems[0].optimizers if (c := _eval(o.runs)) is not None}
    assert LossFigure(curves).draw().axes[0].get_yscale() == "symlog"
    assert (tmp_path / "out" / "figures" / "saddle-loss.png").is_file()


def _eval(runs):
    from optimlab.reports.figures.loss import eval_curves

    return eval_curves(runs)


def test_per_epoch_schedules_are_drawn_against_epochs_and_a_zero_lr_is_drawn_but_warned_about(
    tmp_path: Path,
) -> None:
    curves = {"lambda:epoch//30": [0.0] * 30 + [0.1] * 10, "onecycle": list(np.linspace(0.01, 0.1, 40))}
    paths = write_schedule_page(curves, tmp_path, lr=0.1, steps=40)
    html = paths[-1].read_text(encoding="utf-8")
    assert "lambda:epoch//30 holds the learning rate at 0 for 30 of its 40 epochs (epochs 0–29)" in html
    figure = next(iter(_figures(html).values()))
    assert figure["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert figure["layout"]["xaxis2"]["title"]["text"] == "step"
    drawn = next(t for t in figure["data"] if t["name"] == "lambda:epoch//30")
    assert drawn["y"][:30] == [0.0] * 30  # drawn, not dropped
    assert zero_spans([0, 0, 1, 0, 1, 0]) == [(0, 1), (3, 3), (5, 5)] and zero_spans([1.0]) == []
    only_epochs = ScheduleFigure({"cosine": [0.1, 0.05]}, units={"cosine": "epoch"}).plotly()
    assert (
        only_epochs.layout.xaxis.title.text == "epoch" and "xaxis2" not in only_epochs.layout.to_plotly_json()
    )


def test_a_comparison_whose_schedule_holds_the_lr_at_0_says_so(tmp_path: Path) -> None:
    settings = {"seeds": 1, "budget": Budget(epochs=3), "schedule": parse_schedule("lambda:epoch//2")}
    comparison = Comparison([get_problem("parabola:n=64")], parse_optimizers("sgd"), **settings)
    with Store(tmp_path / "lab.db") as store:
        data = load_comparison(store, run_comparison(comparison, store))
    html = write_report(data, tmp_path / "out", static=False).read_text(encoding="utf-8")
    assert (
        "The schedule lambda:epoch//2 holds the learning rate at 0 for 4 of its 6 steps (steps 0–3)" in html
    )
