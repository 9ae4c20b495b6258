"""``report.html`` of a comparison: what it states, what it ranks, what it draws, and that user text stays
text. The runs are real but tiny (a few steps of booth and a 64-point parabola)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optimlab.lab.presets import make_config, parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.protocol import Comparison, run_comparison
from optimlab.lab.results import ComparisonData, OptimizerData, ProblemData, load_comparison, summarize
from optimlab.lab.runner import RunResult, train
from optimlab.lab.storage import Store
from optimlab.reports.figures import loss, lr_sensitivity, train_loss
from optimlab.reports.report import write_report

HOSTILE = "<script>alert(1)</script>"
HOSTILE_IMG = '<img src=x onerror="alert(2)">'


def _compare(tmp_path: Path, **settings) -> ComparisonData:
    comparison = Comparison(
        problems=[get_problem("booth"), get_problem("parabola:n=64")],
        optimizers=parse_optimizers("sgd,adam"),
        seeds=2,
        budget=Budget(epochs=3),
        **settings,
    )
    with Store(tmp_path / "lab.db") as store:
        return load_comparison(store, run_comparison(comparison, store))


def _figures(html: str) -> dict[str, dict]:
    """The embedded Plotly figures by title."""
    blocks = re.findall(r'<script type="application/json" data-figure="fig-\d+">(.*?)</script>', html, re.S)
    specs = [json.loads(b) for b in blocks]
    return {s["layout"]["title"]["text"]: s for s in specs}


def _section(html: str, title: str) -> str:
    start = html.index(f">{title}</h2>")
    end = html.find('<section class="card">', start)
    return html[start : end if end > 0 else len(html)]


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory) -> tuple[ComparisonData, Path, str]:
    folder = tmp_path_factory.mktemp("one-shot")
    data = _compare(folder)
    path = write_report(data, folder / "out")
    return data, folder / "out", path.read_text(encoding="utf-8")


def test_the_protocol_is_stated_and_a_one_shot_comparison_says_so(one_shot) -> None:
    data, _, html = one_shot
    headings = re.findall(r"<h2 id=\"sec-\d+\">(.*?)</h2>", html)
    assert headings == ["Protocol", "booth", "parabola:n=64", "Across problems"]
    protocol = _section(html, "Protocol")
    assert "This is a one-shot comparison." in protocol
    assert "optimlab compare --problem booth --problem parabola:n=64 --optimizers sgd,adam" in protocol
    assert "--lr-grid 7" in protocol
    for words in (
        "3 epochs = 6 steps (2 per epoch)",  # parabola:n=64, batch 32
        "1 run (deterministic",  # booth without noise
        "2 seeds (0, 1)",
        "constant learning rate",
        "SGD(lr=0.01)",
        "Adam(betas=(0.9, 0.99), lr=0.01)",
        f"comparison {data.id}",
    ):
        assert words in protocol, words
    assert re.search(r"optimlab [\d.]+ · torch [\w.+]+ · python 3\.\d+", protocol)


def test_each_problem_is_ranked_as_in_the_summary(one_shot) -> None:
    data, _, html = one_shot
    summary = summarize(data)
    for problem in data.problems:
        section = _section(html, problem.spec)
        table = section[section.index("<table>") : section.index("</table>")]
        labels = re.findall(r"<tr[^>]*><td class=num>\d+</td><td>([^<]+)</td>", table)
        assert labels == summary["problems"][problem.spec]["ranking"]
        for column in ("final loss: median [IQR]", "lr", "diverged", "s / run", "steps to"):
            assert column in table
    booth = _section(html, "booth")
    assert "distance to minimum" in booth  # the problem's own metric
    assert "95 % CI" in booth


def test_every_figure_is_drawn_and_has_its_png(one_shot) -> None:
    _, out, html = one_shot
    figures = _figures(html)
    assert set(figures) == {
        "booth: loss at each evaluation",
        "booth: trajectories (seed 0)",
        "parabola:n=64: loss at each evaluation",
        "parabola:n=64: training loss per step",
        "performance profile: steps to target",
    }
    loss = figures["parabola:n=64: loss at each evaluation"]
    buttons = [b["label"] for menu in loss["layout"]["updatemenus"] for b in menu["buttons"]]
    assert {"steps", "gradient evals", "seconds", "log y", "linear y"} <= set(buttons)
    assert loss["layout"]["yaxis2"]["title"]["text"] == "lr"  # the learning rate beside the loss
    surface = figures["booth: trajectories (seed 0)"]
    assert surface["frames"] and surface["layout"]["sliders"]  # the animation
    links = re.findall(r'<a href="(figures/[^"]+)">PNG</a>', html)
    assert len(links) == len(figures)
    for link in links:
        with Image.open(out / link) as image:
            assert image.format == "PNG" and image.size[0] > 600
    assert not list((out / "figures").glob("*.gif"))  # only with gif=True


def test_an_lr_grid_draws_the_sensitivity_and_gif_writes_the_animation(tmp_path: Path) -> None:
    data = _compare(tmp_path, lr_grid=2)
    html = write_report(data, tmp_path / "out", gif=True, static=False).read_text(encoding="utf-8")
    assert "learning-rate grid" in html and "This is a one-shot comparison." not in html
    sensitivity = _figures(html)["parabola:n=64: final loss against learning rate"]
    medians = [t for t in sensitivity["data"] if t.get("mode") == "lines+markers"]
    assert [t["name"] for t in medians] == ["sgd", "adam"]
    stars = [t for t in sensitivity["data"] if t.get("marker", {}).get("symbol") == "star"]
    chosen = {o.label: o.best_lr for o in data.problems[1].optimizers}
    assert {t["name"]: t["x"][0] for t in stars} == chosen  # ★ = the lr the protocol chose
    assert "lr ∈ {0.000316, 0.316}" in _section(html, "Protocol")  # the grid, in the configuration table
    with Image.open(tmp_path / "out" / "figures" / "booth-surface.gif") as gif:
        assert gif.is_animated and gif.n_frames > 2
    assert '<a href="figures/booth-surface.gif">GIF</a>' in html and ">PNG</a>" not in html


def test_optuna_trials_are_drawn_as_points_with_the_chosen_configuration(tmp_path: Path) -> None:
    comparison = Comparison(
        problems=[get_problem("booth")],
        optimizers=parse_optimizers("adam"),
        seeds=1,
        tune="optuna",
        trials=3,
        budget=Budget(steps=20),
    )
    with Store(tmp_path / "lab.db") as store:
        data = load_comparison(store, run_comparison(comparison, store))
    html = write_report(data, tmp_path / "out", static=False).read_text(encoding="utf-8")
    assert "3 Optuna trials" in html and "lr ∈ [1e-05, 0.3] (log)" in html and "optuna " in html
    trials = _figures(html)["booth: Optuna trials, final loss against learning rate"]
    points = [t for t in trials["data"] if t.get("name") == "adam" and t.get("showlegend") is not False]
    assert points and all(t["mode"] == "markers" for t in points)
    assert "chosen configuration" in html and "figures/" not in html  # static=False: no PNGs


def _hostile_data(tmp_path: Path) -> ComparisonData:
    """A comparison whose names and values come from a hostile user: problem spec and description,
    optimizer labels, a string hyperparameter, the schedule text."""
    parabola = get_problem("parabola:n=64")
    booth = get_problem("booth")
    adam = make_config("adam", {"lr": 0.05}, label=HOSTILE)
    sgd = make_config("sgd", label=HOSTILE_IMG)
    problems = []
    for problem, spec, budget in (
        (parabola, f"mine:make:note={HOSTILE}", Budget(epochs=2)),
        (booth, "booth", None),
    ):
        seeds = [0] if spec == "booth" else [0, 1]
        optimizers = [
            OptimizerData(
                label=c.label,
                preset=c.preset,
                cls=c.cls.__name__,
                hyper={**c.hyper, "note": HOSTILE_IMG},
                best_lr=c.lr,
                runs=[train(problem, c, s, budget or Budget(steps=20)) for s in seeds],
            )
            for c in (adam, sgd)
        ]
        problems.append(
            ProblemData(
                spec=spec,
                name=spec,
                description=f"described by {HOSTILE_IMG}",
                target_loss=problem.target_loss,
                budget=(budget or Budget(steps=20)).as_dict(),
                total_steps=(budget or Budget(steps=20)).total_steps(problem.steps_per_epoch),
                steps_per_epoch=problem.steps_per_epoch,
                deterministic=spec == "booth",
                seeds=seeds,
                optimizers=optimizers,
            )
        )
    settings = {
        "protocol": "one-shot",
        "problems": [p.spec for p in problems],
        "optimizers": [
            {"label": o.label, "preset": o.preset, "class": o.cls, "hyper": o.hyper}
            for o in problems[0].optimizers
        ],
        "seeds": 2,
        "schedule": f"lambda:{HOSTILE}",
        "regularization": {},
        "defaults": "seed",
    }
    return ComparisonData(id="hostile", settings=settings, problems=problems, db_path=str(tmp_path / HOSTILE))


def test_names_and_values_from_users_are_escaped(tmp_path: Path) -> None:
    data = _hostile_data(tmp_path)
    html = write_report(data, tmp_path / "out").read_text(encoding="utf-8")
    for text in (HOSTILE, HOSTILE_IMG, "<img", 'onerror="alert'):
        assert text not in html, text
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # headings, tables, protocol, toc
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    # in figure data (legends, titles) the text is made literal for Plotly (&lt;…) inside JSON whose
    # <, > and & are \\u escapes, so nothing can close the script block
    assert "\\u0026lt;script\\u0026gt;alert(1)\\u0026lt;" in html
    files = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())
    assert files and all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in files), files
    assert any(name.startswith("mine-make-note-script-alert-1-script") for name in files)


def _run(losses: list[float], evals: list[tuple[int, float]], *, diverged: bool = False) -> RunResult:
    return RunResult(
        problem="p",
        optimizer="o",
        seed=0,
        final_loss=math.inf if diverged else evals[-1][1],
        final_metrics={"loss": evals[-1][1]},
        losses=losses,
        lrs=[0.1] * len(losses),
        evals=[
            {"epoch": i, "step": s, "grad_evals": s, "wall_s": 0.01 * s, "loss": v}
            for i, (s, v) in enumerate(evals)
        ],
        grad_evals=len(losses),
        steps=len(losses),
        wall_s=0.01 * len(losses),
        diverged=diverged,
        divergence="explosion" if diverged else None,
        target_loss=0.1,
        steps_to_target=math.inf,
        evals_to_target=math.inf,
    )


def test_adapters_pad_diverged_runs_with_infinity() -> None:
    good = _run([4.0, 3.0, 2.0, 1.0], [(0, 5.0), (2, 2.5), (4, 0.5)])
    mid_epoch = _run([4.0, 3.0, 1e9], [(0, 5.0), (2, 2.5)], diverged=True)  # a step's loss stopped it
    at_eval = _run([4.0, 3.0], [(0, 5.0), (2, 1e9)], diverged=True)  # an evaluation stopped it
    curves = loss.eval_curves([good, mid_epoch, at_eval])
    np.testing.assert_array_equal(curves.loss, [[5.0, 2.5, 0.5], [5.0, 2.5, np.inf], [5.0, np.inf, np.inf]])
    np.testing.assert_array_equal(curves.steps[0], [0, 2, 4])
    assert np.isnan(curves.seconds[1, 2]) and curves.seconds[0, 2] == pytest.approx(0.04)
    steps = train_loss.step_curves([good, mid_epoch, at_eval])
    np.testing.assert_array_equal(
        steps.loss, [[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, np.inf, np.inf], [4.0, 3.0, np.inf, np.inf]]
    )
    assert loss.eval_curves([]) is None and train_loss.step_curves([]) is None


def test_adapters_for_the_lr_grid_and_optuna_trials() -> None:
    a = _run([1.0], [(0, 2.0), (1, 1.0)])
    b = _run([1.0], [(0, 2.0), (1, 3.0)], diverged=True)
    s = lr_sensitivity.grid_sensitivity([(0.1, [a, b]), (0.01, [a])])
    np.testing.assert_array_equal(s.lrs, [0.01, 0.1])
    np.testing.assert_array_equal(s.final_loss, [[1.0, np.inf], [1.0, np.inf]])  # a missing run = worst
    assert s.best_lr() is None  # with two seeds, one diverged run makes the median ∞
    assert lr_sensitivity.grid_sensitivity([(0.1, [a, a]), (0.01, [a, b])]).best_lr() == 0.1
    trials = [
        {"params": {"lr": 0.3, "beta1": 0.9}, "value": None},
        {"params": {"lr": 0.01, "beta1": 0.8}, "value": 0.5},
        {"params": {"momentum": 0.9}, "value": 0.1},  # no lr: not on an lr axis
    ]
    t = lr_sensitivity.trial_sensitivity(trials)
    np.testing.assert_array_equal(t.lrs, [0.01, 0.3])
    np.testing.assert_array_equal(t.diverged[:, 0], [False, True])
    assert (
        lr_sensitivity.grid_sensitivity([]) is None
        and lr_sensitivity.trial_sensitivity([{"params": {}}]) is None
    )
