"""The ``optimlab`` command line (typer + rich).

Bad input — an unknown problem or optimizer, malformed hyperparameters, an unwritable output
folder, a corrupt database — prints one line on stderr and exits with code 2, before anything is
written; an interrupted comparison exits with 130 and keeps every finished run.
"""

from __future__ import annotations

import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="optimlab: compare deep-learning optimizers fairly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
if not console.is_terminal:  # tables in logs and pipes: wide enough not to truncate names
    console = Console(width=max(console.width, 120))
err_console = Console(stderr=True)


class Tune(StrEnum):
    none = "none"
    optuna = "optuna"


class Defaults(StrEnum):
    seed = "seed"
    torch = "torch"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; the caller raises the returned Exit."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {str(out)!r} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create output folder {str(out)!r}: {error.strerror or error}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {str(out)!r} is not writable")


def _setting(cli_value: Any, config: dict[str, Any], key: str, default: Any) -> Any:
    if cli_value is not None:
        return cli_value
    return config.get(key, default)


def _build_comparison(
    problem: list[str] | None,
    optimizers: str | None,
    seeds: int | None,
    lr_grid: int | None,
    tune: Tune | None,
    budget: int | None,
    epochs: int | None,
    steps: int | None,
    schedule: str | None,
    weight_decay: float | None,
    l1: float | None,
    clip_norm: float | None,
    defaults: Defaults | None,
    config_path: Path | None,
) -> Any:
    from optimlab.lab.presets import SEED_OPTIMIZERS, load_config, optimizers_from_config, parse_optimizers
    from optimlab.lab.problems import Budget, get_problem
    from optimlab.lab.protocol import Comparison
    from optimlab.lab.runner import Regularization
    from optimlab.lab.schedules import parse_schedule

    config = load_config(config_path) if config_path is not None else {}
    profile = _setting(defaults.value if defaults else None, config, "defaults", "seed")
    if profile not in ("seed", "torch"):
        raise ValueError(f"defaults must be 'seed' or 'torch', got {profile!r}")
    specs = problem or config.get("problems") or ["parabola", "rosenbrock"]
    if isinstance(specs, str):
        specs = [specs]
    problems = [get_problem(str(spec)) for spec in specs]
    if optimizers is not None:
        configs = parse_optimizers(optimizers, profile)
    elif "optimizers" in config:
        configs = optimizers_from_config(config["optimizers"], profile)
    else:
        configs = parse_optimizers(",".join(SEED_OPTIMIZERS), profile)
    epochs = _setting(epochs, config, "epochs", None)
    steps = _setting(steps, config, "steps", None)
    if epochs is not None and steps is not None:
        raise ValueError("give either --epochs or --steps, not both")
    run_budget = None
    if epochs is not None or steps is not None:
        run_budget = Budget(epochs=epochs) if epochs is not None else Budget(steps=steps)
    reg = Regularization(
        weight_decay=_setting(weight_decay, config, "weight_decay", None),
        l1=float(_setting(l1, config, "l1", 0.0)),
        clip_norm=_setting(clip_norm, config, "clip_norm", None),
    )
    tune_value = _setting(tune.value if tune else None, config, "tune", "none")
    grid = _setting(lr_grid, config, "lr_grid", None)
    return Comparison(
        problems=problems,
        optimizers=configs,
        seeds=int(_setting(seeds, config, "seeds", 5)),
        lr_grid=int(grid) if grid is not None else None,
        tune=tune_value,
        trials=int(_setting(budget, config, "budget", 20)),
        budget=run_budget,
        schedule=parse_schedule(_setting(schedule, config, "schedule", None)),
        regularization=reg if reg.active else None,
        defaults=profile,
    )


def _ranked_tables(summary: dict[str, Any]) -> None:
    """Each problem's ranked table, with the same columns and numbers as the report's."""
    from optimlab.reports.page import format_number
    from optimlab.reports.report import ranked_table_rows

    for spec, info in summary["problems"].items():
        runs = "1 run each (deterministic)" if info["deterministic"] else f"{len(info['seeds'])} seeds"
        title = f"{spec} — target loss {format_number(float(info['target_loss']))}, {runs}"
        table = Table(title=title, title_justify="left")
        columns, rows = ranked_table_rows(summary, spec, compact=True)
        for column in columns:
            table.add_column(column, justify="left" if column == "optimizer" else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(c if isinstance(c, str) else format_number(c) for c in row))
        console.print(table)


@app.command()
def compare(
    problem: Annotated[
        list[str] | None,
        typer.Option("--problem", "-p", help="problem spec (repeatable); default: parabola and rosenbrock"),
    ] = None,
    optimizers: Annotated[
        str | None,
        typer.Option(
            "--optimizers",
            "-o",
            help="comma-separated presets with overrides, e.g. sgd,adam:lr=0.01,betas=0.9/0.99",
        ),
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="seeds per configuration (default 5)", min=1)] = None,
    lr_grid: Annotated[
        int | None, typer.Option("--lr-grid", help="tune: N log-spaced lrs per optimizer", min=1)
    ] = None,
    tune: Annotated[Tune | None, typer.Option(help="tuning: none or optuna (default none)")] = None,
    budget: Annotated[
        int | None, typer.Option(help="Optuna trials per optimizer (default 20)", min=1)
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs per run (default: the problem's)", min=1)] = None,
    steps: Annotated[int | None, typer.Option(help="steps per run instead of epochs", min=1)] = None,
    schedule: Annotated[
        str | None, typer.Option(help="lr schedule, e.g. cosine or step:step_size=4,gamma=0.5")
    ] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="L2 / decoupled decay")] = None,
    l1: Annotated[float | None, typer.Option("--l1", help="L1 (proximal, exact zeros)")] = None,
    clip_norm: Annotated[float | None, typer.Option("--clip-norm", help="clip the gradient norm")] = None,
    defaults: Annotated[
        Defaults | None,
        typer.Option(
            help="default hyperparameters: seed (the post's) or torch (torch.optim's) (default seed)"
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML/JSON file with these settings")
    ] = None,
    db: Annotated[Path, typer.Option(help="SQLite file of all runs")] = Path("runs/optimlab.db"),
    out: Annotated[Path, typer.Option(help="folder for summary.json and report.html")] = Path("runs"),
    jobs: Annotated[int, typer.Option(help="worker processes (0: one per CPU core)", min=0)] = 0,
    gif: Annotated[
        bool, typer.Option("--gif", help="also write the 2-D surfaces' animations as animated GIFs")
    ] = False,
    png: Annotated[
        bool, typer.Option("--png/--no-png", help="write every figure as a PNG under OUT/figures")
    ] = True,
) -> None:
    """Compare optimizers on problems under a fair protocol; keep every run; write a report."""
    import torch

    from optimlab.lab.protocol import default_jobs, planned_runs, run_comparison
    from optimlab.lab.results import load_comparison, summarize
    from optimlab.lab.storage import StorageError, Store
    from optimlab.reports import write_report, write_summary

    torch.set_num_threads(1)  # tiny models: one thread per process is fastest (benchmarks/lab_throughput.py)
    try:
        comparison = _build_comparison(
            problem,
            optimizers,
            seeds,
            lr_grid,
            tune,
            budget,
            epochs,
            steps,
            schedule,
            weight_decay,
            l1,
            clip_norm,
            defaults,
            config,
        )
        _check_out_dir(out)
        store = Store(db)
    except ValueError as error:  # StorageError is a ValueError
        raise fail(str(error)) from None
    started = time.perf_counter()
    total = planned_runs(comparison)
    workers = jobs or default_jobs()
    counts = {"done": 0, "reused": 0}
    try:
        with (
            store,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress,
        ):
            bar = progress.add_task(f"{comparison.protocol} comparison", total=total)

            def on_event(event: str, task: Any, result: Any) -> None:
                if event in ("done", "reused"):
                    counts[event] += 1
                    progress.advance(bar)
                    note = " (stored)" if event == "reused" else ""
                    progress.update(bar, description=f"{task.problem} · {task.config.label}{note}")

            comparison_id = run_comparison(comparison, store, jobs=workers, progress=on_event)
            data = load_comparison(store, comparison_id)
        summary = summarize(data)
        summary_path = write_summary(summary, out)
        report_path = write_report(data, out, summary, gif=gif, static=png)
    except KeyboardInterrupt:
        raise fail(
            f"interrupted; every finished run is kept in {db} — run the same command to resume", 130
        ) from None
    except StorageError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot write the report: {error.strerror or error}") from None
    _ranked_tables(summary)
    if summary["one_shot"]:
        console.print(
            "[bold]One-shot comparison[/]: every optimizer at fixed default settings, which says "
            "little about which is better. A tuned comparison:"
        )
        console.print(f"  {summary['tuned_command']}", markup=False, highlight=False)
    elapsed = time.perf_counter() - started
    console.print(
        f"{counts['done']} runs trained, {counts['reused']} reused from {db}, in {elapsed:.1f} s "
        f"({workers} worker{'s' if workers > 1 else ''}); wrote {summary_path} and {report_path}",
        markup=False,
        highlight=False,
    )


@app.command("list")
def list_command() -> None:
    """Show the problems, optimizer presets and lr schedules with one-line descriptions."""
    from optimlab.lab.presets import PRESETS, SEED_OPTIMIZERS
    from optimlab.lab.problems import PROBLEMS
    from optimlab.lab.schedules import SCHEDULES

    problems = Table(title="problems (--problem NAME[:key=value,...])", title_justify="left")
    problems.add_column("name")
    problems.add_column("description")
    problems.add_column("options")
    for info in PROBLEMS.values():
        problems.add_row(info.name, info.description, ", ".join(info.options))
    console.print(problems)
    presets = Table(title="optimizers (--optimizers NAME[:key=value,...],...)", title_justify="left")
    presets.add_column("name")
    presets.add_column("class")
    presets.add_column("description")
    presets.add_column("seed defaults")
    for preset in PRESETS.values():
        hyper = preset.hyperparameters("seed")
        shown = ", ".join(
            f"{k}={'/'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in hyper.items()
        )
        mark = "" if preset.name in SEED_OPTIMIZERS else " (not in the default set)"
        presets.add_row(preset.name, preset.cls.__name__, preset.description + mark, shown)
    console.print(presets)
    schedules = Table(title="lr schedules (--schedule KIND[:key=value,...])", title_justify="left")
    schedules.add_column("kind")
    schedules.add_column("description")
    schedules.add_column("steps per")
    for kind in SCHEDULES.values():
        if kind.name != "constant":
            schedules.add_row(kind.name, kind.description, kind.interval)
    console.print(schedules)


def main(argv: list[str] | None = None) -> None:
    """The console entry point: usage errors (an unknown option, a malformed number) become one line
    on stderr with exit code 2, like the command's own input errors."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="optimlab", standalone_mode=False)
    except typer.Exit as error:
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("error: interrupted", markup=False, highlight=False)
        sys.exit(130)
    except Exception as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            console.print(error.format_message(), markup=False, highlight=False)  # type: ignore[attr-defined]
            sys.exit(0)
        if getattr(error, "exit_code", None) == 2 and hasattr(error, "format_message"):
            err_console.print(
                f"error: {error.format_message()}", markup=False, highlight=False, soft_wrap=True
            )
            sys.exit(2)
        if type(error).__name__ == "Abort":
            err_console.print("error: interrupted", markup=False, highlight=False)
            sys.exit(130)
        raise
    if isinstance(result, int) and result:
        sys.exit(result)
