"""The matplotlib twins: every figure kind writes a real PNG; the surface animation a looping GIF."""

import numpy as np
import pytest
from PIL import Image

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

ODD = "$cost_{1}$ <b>_x"  # mathtext dollars, a leading-underscore-like piece, HTML


def _check_png(path, min_side=300):
    assert path.exists() and path.stat().st_size > 5_000
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert min(im.size) >= min_side
        # not a blank canvas: a real drawing has many distinct colours
        assert len(im.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 20


@pytest.fixture(scope="module")
def surface():
    return grid_surface(
        lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, (-2, 2), (-1, 3), n=60, minima=[(1, 1)]
    )


@pytest.fixture(scope="module")
def trajectories():
    t = np.linspace(0, 1, 121)[:, None]
    return {
        "GD": np.hstack([-1.2 + 2.2 * t, 1.0 + 0.0 * t]),
        ODD: np.hstack([-1.2 + 1.5 * t, 1.0 - 0.8 * np.sin(3 * t)]),
    }


def test_loss_png(tmp_path):
    steps = np.arange(1, 41)
    loss = np.exp(-steps / 8.0) * (1 + 0.1 * np.random.default_rng(0).random((3, 40)))
    curves = {"a": Curves(loss, lr=0.1 * np.ones(40)), ODD: Curves(2 * loss, lr=0.01 * np.ones(40))}
    out = LossFigure(curves, title=ODD, target=0.01).png(tmp_path / "sub" / "loss.png")
    _check_png(out)
    with pytest.raises(ValueError, match="seconds"):
        LossFigure(curves, x="seconds").png(tmp_path / "x.png")


def test_lr_sensitivity_png(tmp_path):
    data = {
        "a": Sensitivity([1e-3, 1e-2, 1e-1], [[1.0, 1.2], [0.3, 0.2], [np.nan, 1e300]]),
        ODD: Sensitivity([1e-3, 1e-2, 1e-1], [[2.0, 2.2], [1.0, 0.9], [0.5, 0.4]]),
    }
    _check_png(SensitivityFigure(data, title=ODD).png(tmp_path / "sens.png"))


def test_surface_png(tmp_path, surface, trajectories):
    _check_png(SurfaceFigure(surface, trajectories, title=ODD).png(tmp_path / "surface.png"))


def test_surface_gif_is_small_animated_and_loops(tmp_path, surface, trajectories):
    out = SurfaceFigure(surface, trajectories, title=ODD).gif(
        tmp_path / "surface.gif", frames=20, size_px=400
    )
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.size[0] == 400 and im.size[1] <= 400
        assert 5 <= im.n_frames <= 20
        assert im.info.get("loop") == 0
        first = np.asarray(im.convert("RGB")).copy()
        im.seek(im.n_frames - 1)
        last = np.asarray(im.convert("RGB"))
        assert np.any(first != last)  # the paths grow
        # every optimizer keeps its own colour (a palette cut from the greys alone merges blue and green)
        drawn = {tuple(c) for c in last.reshape(-1, 3).tolist()}
        for color in color_map(trajectories).values():
            assert tuple(int(color[i : i + 2], 16) for i in (1, 3, 5)) in drawn, color
    with pytest.raises(ValueError):
        SurfaceFigure(surface, trajectories).gif(tmp_path / "x.gif", frames=1)


def test_profile_schedule_and_lr_find_png(tmp_path):
    profile = performance_profile({"p1": {"A": 10, ODD: 20}, "p2": {"A": 30, ODD: 15}})
    _check_png(ProfileFigure(profile, title=ODD).png(tmp_path / "profile.png"))
    sched = {"step": [0.1] * 5 + [0.01] * 5, ODD: list(0.1 * 0.7 ** np.arange(10))}
    _check_png(
        ScheduleFigure(sched, metric=("loss", np.linspace(1, 0.2, 10)), log_y=True).png(
            tmp_path / "sched.png"
        )
    )
    rng = np.random.default_rng(0)
    res = [
        range_test(
            lambda lr: 1 / (1 + 50 * lr) + lr**2 + 0.01 * rng.random(), min_lr=1e-4, max_lr=10, steps=60
        )
        for _ in range(3)
    ]
    _check_png(LRFindFigure({ODD: summarize(res)}, title=ODD).png(tmp_path / "lrfind.png"))
