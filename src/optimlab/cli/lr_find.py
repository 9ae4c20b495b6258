"""``optimlab lr-find``: the learning-rate range test, with suggested learning rates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import optimlab.cli.app as cli
from optimlab.cli.output import print_written, table
from optimlab.cli.progress import StepProgress


@cli.app.command("lr-find")
def lr_find(
    problem: cli.OneProblemOption = None,
    optimizers: cli.OptimizersOption = None,
    seeds: Annotated[int, typer.Option(metavar="N", min=1, help="runs of the test, one per seed")] = 3,
    min_lr: Annotated[
        float, typer.Option("--min-lr", metavar="LR", help="the ramp's first learning rate")
    ] = 1e-7,
    max_lr: Annotated[
        float, typer.Option("--max-lr", metavar="LR", help="the ramp's last learning rate")
    ] = 10.0,
    steps: Annotated[int, typer.Option(metavar="N", min=2, help="steps of the ramp (one batch each)")] = 100,
    defaults: cli.DefaultsOption = None,
    out: Annotated[Path, cli.out_option("lr_find.html and figures/")] = Path("runs"),
) -> None:
    """The learning-rate range test (-p PROBLEM -o OPTIMIZERS): loss against an exponentially
    growing lr, with suggested learning rates."""
    with cli.errors_as_lines():
        if problem is None or optimizers is None:
            raise ValueError(
                "lr-find needs a problem and optimizers, e.g. optimlab lr-find -p parabola -o sgd,adam"
            )
        import torch

        from optimlab.lab.lr_find import lr_ramp, problem_range_test, summarize
        from optimlab.lab.presets import parse_optimizers
        from optimlab.lab.problems import get_problem, reporting_user_errors
        from optimlab.reports.pages.lr_find import lr_find_rows, write_lr_find_page

        torch.set_num_threads(1)
        lr_ramp(min_lr, max_lr, steps)
        task = get_problem(problem)
        configs = parse_optimizers(optimizers, getattr(defaults, "value", "seed"))
        cli.check_out_dir(out)
        seed_list = list(range(seeds))
        summaries = {}
        stopped = {}
        bar = StepProgress("lr range test", len(configs) * seeds * steps)
        with bar, reporting_user_errors(task):
            for number, config in enumerate(configs, 1):
                bar.describe(f"lr range test · {config.label} ({number}/{len(configs)})")
                results = []
                for seed in seed_list:
                    result = problem_range_test(
                        task, config, seed, min_lr=min_lr, max_lr=max_lr, steps=steps, on_steps=bar.advance
                    )
                    bar.advance(steps - len(result.losses))  # a test that stopped early is done
                    results.append(result)
                stopped[config.label] = sum(r.diverged for r in results)
                summaries[config.label] = summarize(results)
        written = write_lr_find_page(
            task,
            summaries,
            {c.label: c for c in configs},
            out,
            min_lr=min_lr,
            max_lr=max_lr,
            steps=steps,
            seeds=seed_list,
            stopped=stopped,
        )
    columns, rows = lr_find_rows(summaries)
    cli.console.print(table(f"{task.spec} — suggested learning rates ({seeds} seeds)", columns, rows))
    print_written(written)
