"""``optimlab surface``: several optimizers' trajectories on one 2-D surface (HTML, PNG, GIF)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

import optimlab.cli.app as cli
from optimlab.cli.output import print_written, table
from optimlab.cli.progress import StepProgress

SURFACE_OPTIMIZERS = "sgd,momentum,nesterov,adagrad,rmsprop,adam"


@cli.app.command()
def surface(
    name: Annotated[str | None, typer.Argument(metavar="SPEC", hidden=True, show_default=False)] = None,
    problem: cli.OneProblemOption = None,
    optimizers: cli.OptimizersOption = None,
    steps: Annotated[
        int | None, typer.Option(metavar="N", min=1, help="steps per optimizer (default: the surface's)")
    ] = None,
    noisy: Annotated[
        bool, typer.Option("--noisy", help="stochastic gradients ∇f + σε at the surface's noise level")
    ] = False,
    lr: Annotated[
        float | None,
        typer.Option(metavar="LR", help="one learning rate for every optimizer (default: each one's own)"),
    ] = None,
    seed: Annotated[
        int, typer.Option(metavar="N", min=0, help="the seed of the gradient noise (with --noisy)")
    ] = 0,
    defaults: cli.DefaultsOption = None,
    out: Annotated[Path, cli.out_option("surface.html and figures/")] = Path("runs"),
    gif: Annotated[bool, typer.Option("--gif/--no-gif", help="write the animation as a GIF")] = True,
) -> None:
    """Trajectories of several optimizers on one 2-D surface (-p rosenbrock; default optimizers
    sgd, momentum, nesterov, adagrad, rmsprop, adam): an animated contour plot (HTML, PNG, GIF)."""
    with cli.errors_as_lines():
        if name is not None and problem is not None:
            raise ValueError(f"give the surface once: -p {problem} or {name}, not both")
        spec = (problem or name or "").strip()
        if not spec:
            raise ValueError("which surface? e.g. optimlab surface -p rosenbrock (optimlab list shows them)")
        if noisy:
            spec += ",noisy=true" if ":" in spec else ":noisy=true"
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"--lr must be a positive number, got {lr!r}")

        import torch

        from optimlab.lab.contours import is_surface
        from optimlab.lab.presets import parse_optimizers
        from optimlab.lab.problems import Budget, get_problem, reporting_user_errors
        from optimlab.lab.run import RunSpec
        from optimlab.lab.runner import train_batch
        from optimlab.reports.pages.surface import surface_rows, write_surface_page

        torch.set_num_threads(1)
        task = get_problem(spec)
        if not is_surface(task):
            from optimlab.lab.problems.surfaces import SURFACES

            raise ValueError(f"problem {spec!r} is not a 2-D surface; surfaces: {', '.join(SURFACES)}")
        configs = parse_optimizers(optimizers or SURFACE_OPTIMIZERS, getattr(defaults, "value", "seed"))
        if lr is not None:
            configs = [c.with_hyper(lr=lr) for c in configs]
        cli.check_out_dir(out)
        budget = Budget(steps=steps) if steps is not None else task.default_budget
        runs = [RunSpec.of(task, c, seed, budget) for c in configs]
        steps_each = budget.total_steps(task.steps_per_epoch)
        bar = StepProgress(f"{len(configs)} optimizers on {task.spec}", len(runs) * steps_each)
        with bar, reporting_user_errors(task):
            # first-order optimizers train together as batched replicas; L-BFGS on its own
            trained = train_batch(task, runs, on_steps=bar.advance)
        results = {c.label: result for c, result in zip(configs, trained, strict=True)}
        by_label = {c.label: c for c in configs}
        written = write_surface_page(task, results, by_label, out, gif=gif)
    columns, rows = surface_rows(results, by_label)
    cli.console.print(table(f"{task.spec} — target f ≤ {task.target_loss:g}", columns, rows))
    print_written(written)
