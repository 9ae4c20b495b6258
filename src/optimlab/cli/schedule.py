"""``optimlab schedule``: torch's learning-rate schedulers drawn over steps, several in one figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

import optimlab.cli.app as cli
from optimlab.cli.output import print_written


@cli.app.command()
def schedule(
    specs: Annotated[
        list[str],
        typer.Argument(
            metavar="SCHEDULE",
            help="schedules, e.g. step:step_size=4,gamma=0.5 multistep:milestones=8/24/28,gamma=0.5 "
            "exponential:gamma=0.5 cosine:T_max=32,eta_min=1e-4 plateau:factor=0.1,patience=5 "
            "lambda:0.95**epoch onecycle warmup-cosine (optimlab list shows every parameter)",
            show_default=False,
        ),
    ],
    steps: Annotated[int, typer.Option(metavar="N", min=2, help="scheduler steps to draw")] = 40,
    lr: Annotated[float, typer.Option(metavar="LR", help="the initial learning rate")] = 0.1,
    out: Annotated[Path, cli.out_option("schedule.html and figures/")] = Path("runs"),
) -> None:
    """The learning rate over steps for torch's schedulers, several overlaid in one figure (HTML, PNG).

    plateau (ReduceLROnPlateau) is driven by a real run: SGD on parabola, one scheduler step per epoch
    on the epoch's loss."""
    with cli.errors_as_lines():
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"--lr must be a positive number, got {lr!r}")
        import torch

        from optimlab.lab.presets import make_config
        from optimlab.lab.problems import Budget, get_problem
        from optimlab.lab.runner import train
        from optimlab.lab.schedules import lr_curve, parse_schedule
        from optimlab.reports.pages.schedule import write_schedule_page

        torch.set_num_threads(1)
        parsed = {}
        for text in specs:
            spec = parse_schedule(text)
            if spec is None:
                raise ValueError(f"{text!r} is a constant learning rate, not a schedule")
            if text.strip() in parsed:
                raise ValueError(f"schedule {text.strip()!r} is listed twice")
            spec.check_for(steps, 1)
            parsed[text.strip()] = spec
        cli.check_out_dir(out)
        curves: dict[str, list[float]] = {}
        plateau: dict[str, tuple[list[float], list[float], str]] = {}
        for text, spec in parsed.items():
            if spec.needs_metric:
                problem = get_problem("parabola")
                with cli.console.status(f"{text}: training SGD on parabola for {steps} epochs …"):
                    run = train(problem, make_config("sgd", {"lr": lr}), 0, Budget(epochs=steps), spec)
                per_epoch = run.lrs[:: problem.steps_per_epoch]
                metric = [float(e["loss"]) for e in run.epoch_evals()[1 : len(per_epoch) + 1]]
                source = (
                    f"The real run: SGD (lr {lr:g}) on parabola, seed 0, {len(per_epoch)} epochs of "
                    f"{problem.steps_per_epoch} mini-batches"
                    + (f" (it diverged after {run.steps} steps)" if run.diverged else "")
                )
                curves[text] = per_epoch
                plateau[text] = (per_epoch, metric, source)
            else:
                curves[text] = lr_curve(spec, lr, steps, 1)
        written = write_schedule_page(curves, out, lr=lr, steps=steps, plateau=plateau)
    print_written(written)
