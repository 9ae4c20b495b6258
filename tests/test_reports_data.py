"""Plain-data containers the report figures are drawn from."""

import math

import numpy as np
import pytest

from optimlab.reports.figures.arrays import finite_list, subsample
from optimlab.reports.figures.loss import Curves
from optimlab.reports.figures.lr_sensitivity import Sensitivity
from optimlab.reports.figures.style import PALETTE, color_map, mpl_text, plotly_text
from optimlab.reports.figures.surface_data import Surface, grid_surface


def test_curves_normalize_shapes():
    c = Curves(
        loss=[[3.0, 2.0, 1.0], [4.0, 2.0, 0.5]], seconds=[0.1, 0.2, 0.3], lr=[[1, 1, 1], [1, 0.5, 0.1]]
    )
    assert (c.seeds, c.points) == (2, 3)
    np.testing.assert_array_equal(c.steps, [[1, 2, 3], [1, 2, 3]])  # default steps 1..points
    np.testing.assert_array_equal(c.axis("seconds"), [[0.1, 0.2, 0.3]] * 2)
    assert c.grad_evals is None and c.axis("grad_evals") is None
    q25, med, q75 = c.band()
    np.testing.assert_allclose(med, [3.5, 2.0, 0.75])
    np.testing.assert_allclose(q25, [3.25, 2.0, 0.625])
    np.testing.assert_allclose(q75, [3.75, 2.0, 0.875])
    assert Curves(loss=[1.0, 0.5]).seeds == 1  # one seed given as a 1-D array
    with pytest.raises(ValueError, match="unknown x axis"):
        c.axis("epochs")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": np.zeros((2, 0))},
        {"loss": np.zeros((2, 3)), "steps": [1, 2]},
        {"loss": np.zeros((2, 3)), "seconds": np.zeros((3, 3))},
        {"loss": "abc"},
    ],
)
def test_curves_reject_bad_shapes(kwargs):
    with pytest.raises(ValueError):
        Curves(**kwargs)


def test_sensitivity_sorts_flags_and_finds_the_best_lr():
    s = Sensitivity(
        lrs=[1e-1, 1e-3, 1e-2],
        final_loss=[[np.nan, 5.0, 9.0], [1.0, 1.2, 0.8], [0.5, 0.4, 0.6]],
        diverged=[[False, False, True], [False, False, False], [False, False, False]],
    )
    np.testing.assert_array_equal(s.lrs, [1e-3, 1e-2, 1e-1])
    np.testing.assert_array_equal(s.diverged[2], [True, False, True])  # nan OR the given flag
    assert math.isinf(s.final_loss[2, 2])
    assert s.best_lr() == 1e-2
    assert Sensitivity([1.0], [[np.inf, np.nan]]).best_lr() is None
    for bad in ([0.0, 1.0], [-1.0, 1.0], [np.nan, 1.0]):
        with pytest.raises(ValueError, match="positive"):
            Sensitivity(bad, [[1.0], [1.0]])
    with pytest.raises(ValueError, match="shape"):
        Sensitivity([1.0, 2.0], [[1.0]])


def test_surface_levels_are_logarithmic_only_where_they_should_be():
    rosen = grid_surface(lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, (-2, 2), (-1, 3), n=60, fmin=0.0)
    lv = rosen.levels(20)
    assert lv.is_log and lv.levels.size == 20 and lv.floor == 0.0
    np.testing.assert_allclose(lv.values, np.log10(rosen.z + lv.eps))
    bowl = grid_surface(lambda x, y: x**2 + y**2, (-1, 1), (-1, 1), n=40)
    lv = bowl.levels()
    assert not lv.is_log and lv.levels[0] == pytest.approx(bowl.z.min())
    flat = Surface(x=[0, 1], y=[0, 1], z=[[2.0, 2.0], [2.0, np.inf]])
    assert not flat.levels().is_log  # the non-finite value is clipped, nothing breaks
    with pytest.raises(ValueError, match="shape"):
        Surface(x=[0, 1, 2], y=[0, 1], z=np.zeros((3, 2)))


def test_text_escaping_helpers():
    assert plotly_text("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"
    assert mpl_text("cost in $ and $x$") == r"cost in \$ and \$x\$"
    assert mpl_text("_hidden") == " _hidden"


def test_colors_are_stable_and_respect_the_callers_choice():
    cmap = color_map(["a", "b", "c"], {"b": PALETTE[0]})
    assert cmap["b"] == PALETTE[0]
    assert len(set(cmap.values())) == 3
    assert color_map(["a", "b", "c"], {"b": PALETTE[0]}) == cmap
    many = color_map([str(i) for i in range(30)])
    assert len(many) == 30 and set(many.values()) <= set(PALETTE)


def test_subsample_and_finite_list():
    idx = subsample(1000, 50)
    assert idx[0] == 0 and idx[-1] == 999 and idx.size <= 50 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(subsample(5, 50), np.arange(5))
    assert subsample(0, 10).size == 0
    assert finite_list([1.23456789, np.nan, np.inf, -2.0]) == [1.23457, None, None, -2.0]


def test_sensitivity_marks_the_lr_a_protocol_chose():
    s = Sensitivity([0.1, 0.01], [[1.0, 2.0], [1.5, 1.5]])  # equal medians
    assert s.best_lr() == 0.01  # the lowest median, the first (smaller) lr on a tie
    assert Sensitivity([0.1, 0.01], [[1.0, 2.0], [1.5, 1.5]], chosen=0.1).best_lr() == 0.1
    assert Sensitivity([0.1, 0.01], [[1.0], [2.0]], chosen=0.5).best_lr() == 0.1  # not on the grid
