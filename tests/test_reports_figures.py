"""The Plotly figures: the traces, buttons and frames they are made of, on small synthetic data."""

import json

import numpy as np
import plotly.io as pio
import pytest

from optimlab.lab.lr_find import range_test, summarize
from optimlab.lab.stats import performance_profile
from optimlab.reports.figures.loss import Curves, LossFigure
from optimlab.reports.figures.lr_find import LRFindFigure
from optimlab.reports.figures.lr_sensitivity import Sensitivity, SensitivityFigure
from optimlab.reports.figures.profile import ProfileFigure
from optimlab.reports.figures.schedule import ScheduleFigure
from optimlab.reports.figures.style import color_map
from optimlab.reports.figures.surface import SurfaceFigure
from optimlab.reports.figures.surface_data import grid_surface

HOSTILE = "<script>alert(1)</script>"


def _curves(seed: int, scale: float, diverge: bool = False) -> Curves:
    rng = np.random.default_rng(seed)
    steps = np.arange(1, 51)
    loss = scale * np.exp(-steps / 10.0)[None, :] * (1 + 0.1 * rng.random((3, 50)))
    if diverge:
        loss[2, 30:] = np.nan
    seconds = np.cumsum(np.full((3, 50), 0.01) + 0.001 * rng.random((3, 50)), axis=1)
    return Curves(loss, steps=steps, grad_evals=2 * steps, seconds=seconds, lr=0.1 * (1 - steps / 60))


@pytest.fixture(scope="module")
def curves():
    return {"Adam": _curves(0, 1.0), "SGD": _curves(1, 3.0, diverge=True)}


def _legend(fig):
    return [t.name for t in fig.data if t.showlegend is not False]


def test_loss_figure_median_band_and_lr_panel(curves):
    fig = LossFigure(curves, title="loss", target=0.01).plotly()
    # per optimizer: band low, band high (filled to it), median, lr; then the target
    assert len(fig.data) == 2 * 4 + 1
    low, high, med, lr = fig.data[:4]
    assert high.fill == "tonexty" and low.showlegend is False and high.showlegend is False
    np.testing.assert_allclose(med.y, np.median(curves["Adam"].loss, axis=0), rtol=1e-5)
    np.testing.assert_allclose(low.y, np.quantile(curves["Adam"].loss, 0.25, axis=0), rtol=1e-5)
    np.testing.assert_allclose(high.y, np.quantile(curves["Adam"].loss, 0.75, axis=0), rtol=1e-5)
    assert lr.yaxis == "y2" and lr.legendgroup == med.legendgroup
    assert fig.data[-1].name == "target 0.01" and fig.data[-1].y == (0.01, 0.01)
    assert _legend(fig) == ["Adam", "SGD · 1/3 diverged", "target 0.01"]
    assert fig.layout.yaxis.type == "log"  # the medians span more than two decades


def test_loss_figure_buttons_switch_x_axis_and_scale(curves):
    fig = LossFigure(curves, x="grad_evals").plotly()
    scale, xmenu = fig.layout.updatemenus
    assert [b.label for b in scale.buttons] == ["log y", "linear y"]
    assert scale.buttons[1].args[0]["yaxis.type"] == "linear"
    assert [b.label for b in xmenu.buttons] == ["steps", "gradient evals", "seconds"]
    assert xmenu.active == 1
    np.testing.assert_allclose(fig.data[2].x, 2 * np.arange(1, 51))  # starts on gradient evaluations
    seconds = xmenu.buttons[2]
    restyle, relayout = seconds.args
    assert len(restyle["x"]) == len(fig.data)  # every trace gets its x for the chosen axis
    np.testing.assert_allclose(restyle["x"][2], np.median(curves["Adam"].seconds, axis=0), rtol=1e-5)
    assert relayout["xaxis2.title.text"] == "seconds"


def test_loss_figure_without_optional_axes_or_lr():
    c = {"a": Curves(np.ones((1, 5)) * [5, 4, 3, 2, 1])}
    fig = LossFigure(c).plotly()
    assert len(fig.data) == 1  # one seed: no band; no lr panel; no axis menu
    assert len(fig.layout.updatemenus) == 1 and fig.layout.yaxis.type == "linear"
    with pytest.raises(ValueError, match="seconds"):
        LossFigure(c, x="seconds").plotly()
    with pytest.raises(ValueError):
        LossFigure({}).plotly()


def test_log_axes_get_one_label_per_nice_number_of_decades():
    steps = np.arange(1, 11)
    wide = {"a": Curves(np.logspace(0, -270, 10)[None, :], steps=steps)}  # a loss falling 270 decades
    fig = LossFigure(wide).plotly()
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.dtick == 50
    narrow = {"a": Curves(np.logspace(0, -3, 10)[None, :], steps=steps)}
    assert LossFigure(narrow).plotly().layout.yaxis.dtick == 1
    linear = fig.layout.updatemenus[0].buttons[1].args[0]
    assert linear["yaxis.type"] == "linear" and linear["yaxis.dtick"] is None  # back to automatic ticks


def test_lr_sensitivity_marks_best_lr_and_divergence():
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    data = {
        "Adam": Sensitivity(lrs, [[1.0, 1.1], [0.2, 0.3], [0.1, 0.12], [np.nan, 0.5]]),
        "SGD": Sensitivity(lrs, [[2.0, 2.0], [1.0, 1.5], [np.inf, np.inf], [np.nan, np.nan]]),
    }
    fig = SensitivityFigure(data).plotly()
    names = [(t.name, t.mode, t.marker.symbol) for t in fig.data]
    stars = [t for t in fig.data if t.marker.symbol == "star"]
    assert [(s.x[0], s.y[0]) for s in stars] == [(1e-1, pytest.approx(0.11)), (1e-2, pytest.approx(1.25))]
    crosses = [t for t in fig.data if t.marker.symbol == "x-thin-open"]
    assert [list(c.x) for c in crosses] == [[1.0], [1e-1, 1.0]], names
    assert list(crosses[1].text) == ["2/2 seeds diverged", "2/2 seeds diverged"]
    assert max(crosses[0].y) > 2.0  # drawn above every finite value
    assert fig.layout.xaxis.type == "log"
    assert _legend(fig) == ["Adam", "SGD"]


def test_surface_frames_made_without_validation_give_the_same_page(monkeypatch) -> None:
    """The animation frames are built without Plotly's validators (most of the figure's cost): the
    page embeds the same JSON as with them."""
    from optimlab.reports.figures import surface
    from optimlab.reports.html import figure_json

    surf = grid_surface(lambda x, y: x**2 + 10 * y**2, (-2, 2), (-1, 1), n=30, minima=[(0, 0)])
    t = np.linspace(0, 1, 301)[:, None]
    traj = {"a": np.hstack([-1.5 * (1 - t), 0.8 * (1 - t)]), "b": np.hstack([-1.5 * (1 - t), 0.8 + 0 * t])}
    assert surface.VALIDATE_FRAMES is False
    fast = figure_json(SurfaceFigure(surf, traj).plotly())
    monkeypatch.setattr(surface, "VALIDATE_FRAMES", True)
    assert figure_json(SurfaceFigure(surf, traj).plotly()) == fast


def test_surface_figure_animates_every_path():
    surf = grid_surface(lambda x, y: x**2 + 10 * y**2, (-2, 2), (-1, 1), n=30, minima=[(0, 0)])
    t = np.linspace(0, 1, 301)[:, None]
    traj = {
        "a": np.hstack([-1.5 * (1 - t), 0.8 * (1 - t)]),
        "b": np.hstack([-1.5 * (1 - t[:120]), 0.8 + 0 * t[:120]]),
    }
    fig = SurfaceFigure(surf, traj).plotly(max_frames=40, max_points=100)
    kinds = [t.type for t in fig.data]
    assert kinds == ["contour"] + ["scatter"] * 6  # paths + heads, minimum, start
    assert [t.name for t in fig.data[5:]] == ["minimum", "start"]
    assert fig.data[6].x == (-1.5,) and fig.data[6].y == (0.8,)  # start = first point
    frames = fig.frames
    assert 2 <= len(frames) <= 40 and frames[-1].name == "300" and frames[0].name == "0"
    assert list(frames[0].traces) == [1, 2, 3, 4]
    last = frames[-1].data
    np.testing.assert_allclose([last[0].x[-1], last[0].y[-1]], traj["a"][-1], atol=1e-6)
    np.testing.assert_allclose([last[2].x[-1], last[2].y[-1]], traj["b"][-1], atol=1e-6)  # b stopped early
    assert len(frames[0].data[0].x) == 1  # frame 0: just the start
    slider = fig.layout.sliders[0]
    assert len(slider.steps) == len(frames) and slider.active == len(frames) - 1
    play, pause = fig.layout.updatemenus[0].buttons
    assert play.method == "animate" and play.args[0] is None and list(pause.args[0]) == [None]
    assert fig.layout.xaxis.range == (-2.0, 2.0)


def test_surface_rejects_bad_trajectories():
    surf = grid_surface(lambda x, y: x**2 + y**2, (-1, 1), (-1, 1), n=10)
    with pytest.raises(ValueError, match="shape"):
        SurfaceFigure(surf, {"a": np.zeros((5, 3))}).plotly()
    with pytest.raises(ValueError, match="no trajectories"):
        SurfaceFigure(surf, {}).plotly()


def test_performance_profile_figure_orders_by_score():
    profile = performance_profile(
        {"p1": {"A": 10, "B": 20}, "p2": {"A": 30, "B": 15}, "p3": {"A": 9, "B": None}}
    )
    fig = ProfileFigure(profile).plotly()
    assert [t.name for t in fig.data] == [
        "A (0.89)",
        "B (0.56)",
        "score window τ ≤ 4",
    ]  # (3+2+3)/9, (2+3+0)/9
    assert fig.data[0].line.shape == "hv" and fig.layout.xaxis.type == "log"
    np.testing.assert_allclose(fig.data[0].x[:2], [1.0, 2.0])
    np.testing.assert_allclose(fig.data[0].y[:2], [2 / 3, 1.0], rtol=1e-5)


def test_schedule_figure_overlays_and_metric_axis():
    sched = {"step": [0.1] * 4 + [0.05] * 4, "exp": list(0.1 * 0.5 ** np.arange(8))}
    fig = ScheduleFigure(sched, metric=("val loss", np.linspace(1, 0.5, 8)), log_y=True).plotly()
    assert [t.name for t in fig.data] == ["step", "exp", "val loss"]
    assert fig.data[0].line.shape == "hv" and list(fig.data[1].y) == pytest.approx(sched["exp"])
    assert fig.data[2].yaxis == "y2" and fig.layout.yaxis.type == "log"
    assert fig.layout.updatemenus[0].active == 0


def test_lr_find_figure_draws_suggestions():
    rng = np.random.default_rng(0)
    res = [
        range_test(
            lambda lr: 1 / (1 + 50 * lr) + lr**2 + 0.01 * rng.random(), min_lr=1e-4, max_lr=10, steps=60
        )
        for _ in range(3)
    ]
    summary = summarize(res)
    fig = LRFindFigure({"SGD": summary}).plotly()
    lines = {
        t.name.split(" ")[0]: t for t in fig.data if t.name and t.name.split(" ")[0] in summary.suggestions
    }
    assert set(lines) == set(summary.suggestions)
    for rule, t in lines.items():
        assert set(t.x) == {summary.suggestions[rule]}  # a vertical line at the suggestion
    assert fig.data[2].name == "SGD (3 seeds)" and fig.layout.xaxis.type == "log"


def test_user_labels_are_escaped_in_every_figure(curves):
    evil = {HOSTILE: curves["Adam"]}
    figs = [
        LossFigure(evil, title=HOSTILE).plotly(),
        SensitivityFigure({HOSTILE: Sensitivity([1e-2, 1e-1], [[1.0], [0.5]])}, title=HOSTILE).plotly(),
        ScheduleFigure({HOSTILE: [1.0, 0.5]}, title=HOSTILE, x_title=HOSTILE).plotly(),
        ProfileFigure(performance_profile({"p": {HOSTILE: 1.0, "b": 2.0}}), title=HOSTILE).plotly(),
    ]
    for fig in figs:
        text = pio.to_json(fig, validate=False)
        decoded = json.dumps(json.loads(text), ensure_ascii=False)
        assert "<script>" not in decoded
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in decoded


def test_colors_follow_the_callers_map(curves):
    cmap = color_map(["SGD", "Adam"])
    fig = LossFigure(curves, colors=cmap).plotly()
    meds = [t for t in fig.data if t.showlegend is not False and t.name != "target"]
    assert meds[0].line.color == cmap["Adam"] and meds[1].line.color == cmap["SGD"]
