"""``surface.html``: every optimizer's trajectory on one 2-D surface (contour, animation, GIF) and f along
the way, the runs ranked in a table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optimlab.lab.contours import is_surface, sample
from optimlab.lab.run import RunResult
from optimlab.reports.figures import surface
from optimlab.reports.figures.loss import LossFigure, eval_curves
from optimlab.reports.figures.style import color_map
from optimlab.reports.figures.surface import SurfaceFigure
from optimlab.reports.figures.surface_data import from_contour, trajectories
from optimlab.reports.html import Page, format_number
from optimlab.reports.output import Output
from optimlab.reports.protocol import describe_config, versions_line
from optimlab.reports.ranking import cell
from optimlab.reports.section import problem_title

__all__ = ["surface_rows", "write_surface_page"]


def surface_rows(
    results: Mapping[str, RunResult], configs: Mapping[str, Any]
) -> tuple[list[str], list[list]]:
    """The table of a surface run: optimizers ranked by final f (diverged last), with the lr, the final
    distance to the nearest known minimum, the steps and gradient evaluations to the target, how the
    run diverged (nan, inf or explosion) and the wall time."""
    order = sorted(results, key=lambda k: (results[k].final_loss, results[k].steps_to_target, k))
    columns = ["#", "optimizer", "lr", "final f", "to a minimum", "steps→target", "evals→target"]
    columns += ["diverged", "wall s"]
    rows = []
    for rank, label in enumerate(order, start=1):
        r = results[label]
        distance = r.final_metrics.get("distance_to_minimum")
        rows.append(
            [
                rank,
                label,
                cell(configs[label].lr, 3) if label in configs else "–",
                cell(r.final_loss),
                "–" if distance is None or r.diverged else cell(distance, 3),
                cell(r.steps_to_target),
                cell(r.evals_to_target),
                (r.divergence or "yes") if r.diverged else "no",
                cell(r.wall_s, 3),
            ]
        )
    return columns, rows


def write_surface_page(
    problem: Any,
    results: Mapping[str, RunResult],
    configs: Mapping[str, Any],
    out_dir: str | Path,
    *,
    gif: bool = True,
) -> list[Path]:
    """``out_dir/surface.html``: every optimizer's trajectory on the 2-D ``problem`` (contour, animation)
    and its loss, with PNGs (and the GIF) under ``figures/``. ``results`` and ``configs`` map optimizer
    labels to their run and :class:`~optimlab.lab.presets.OptimizerConfig`. Returns the files written,
    the page last."""
    if not is_surface(problem):
        raise ValueError(f"problem {problem.spec!r} is not a 2-D surface")
    if not results:
        raise ValueError("no runs to draw")
    colors = color_map(list(results))
    first = next(iter(results.values()))
    noise = float(getattr(problem, "noise", 0.0))
    page = Page(
        f"{problem_title(problem.spec, problem.name)}: optimizers on a 2-D surface",
        subtitle=f"{problem.description} · {len(results)} optimizer{'s' if len(results) != 1 else ''}, "
        f"{first.steps} steps from ({problem.start[0]:g}, {problem.start[1]:g})"
        + (f" · noisy gradients (σ = {noise:g})" if noise else ""),
    )
    out = Output(page, out_dir, "surface.html", gif=gif)
    spec = problem.spec
    page.section("Trajectories")
    page.text(
        f"Each optimizer starts at ({problem.start[0]:g}, {problem.start[1]:g}) and takes up to "
        f"{first.steps} steps on f; a step sees "
        + (
            f"a noisy gradient ∇f + σε with σ = {noise:g} and ε ~ N(0, I) drawn from seed {first.seed}."
            if noise
            else "the exact gradient of f."
        )
        + f" Target: f ≤ {format_number(problem.target_loss)}."
    )
    columns, rows = surface_rows(results, configs)
    page.table(columns, rows, numeric=[c != "optimizer" for c in columns], highlight=[0])
    paths = trajectories(results)
    if paths:
        grid = sample(problem)
        title = f"{problem_title(spec, problem.name)}: trajectories"
        figure = SurfaceFigure(from_contour(grid), paths, title=title, colors=colors, start=grid.start)
        out.figure(figure, out.name("surface", spec), caption=surface.CAPTION)
    curves = {label: c for label, r in results.items() if (c := eval_curves([r])) is not None}
    if curves:
        title, target = f"{problem_title(spec, problem.name)}: f along the way", float(problem.target_loss)
        out.figure(
            LossFigure(curves, title=title, colors=colors, target=target),
            out.name("surface", spec, "loss"),
            caption="f (without noise) at the start and every "
            f"{problem.steps_per_epoch} steps; the lower panel shows the learning rate. Buttons switch the "
            "x axis between steps, gradient evaluations (L-BFGS evaluates several per step) and seconds.",
        )
    page.section("Settings")
    page.key_values(
        {
            "problem": spec,
            "optimizers": {label: describe_config(c.cls.__name__, c.hyper) for label, c in configs.items()},
            "seed": first.seed,
            "versions": versions_line(),
        }
    )
    out.write()
    return out.written
