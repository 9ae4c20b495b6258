"""The ``optimlab`` command line (typer + rich).

Bad input — an unknown problem or optimizer, malformed hyperparameters, an unwritable output
folder, a corrupt database — prints one line on stderr and exits with code 2, before anything is
written; an interrupted comparison exits with 130 and keeps every finished run.
"""

from __future__ import annotations

import math
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

from optimlab.lab.settings import PROFILE_CHOICES, REPLICAS_CHOICES, TUNE_CHOICES

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


#: the choices of the comparison's settings (defined once, in optimlab.lab.settings)
Tune = StrEnum("Tune", {choice: choice for choice in TUNE_CHOICES})
Defaults = StrEnum("Defaults", {choice: choice for choice in PROFILE_CHOICES})
Replicas = StrEnum("Replicas", {choice: choice for choice in REPLICAS_CHOICES})


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


def _build_comparison(command_line: dict[str, Any], config_path: Path | None = None) -> Any:
    """The comparison of the command line's settings over the config file's (see
    :func:`optimlab.lab.settings.resolve`)."""
    from optimlab.lab.presets import load_config
    from optimlab.lab.protocol import comparison_from
    from optimlab.lab.settings import resolve

    config = load_config(config_path) if config_path is not None else {}
    source = f"config file {str(config_path)!r}"
    return comparison_from(resolve(command_line, config, source))


def _ranked_tables(summary: dict[str, Any]) -> None:
    """Each problem's ranked table, with the same columns and numbers as the report's."""
    from optimlab.reports.html import format_number
    from optimlab.reports.ranking import ranked_table_rows

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
    jobs: Annotated[int, typer.Option(help="processes that train (0: one per CPU core)", min=0)] = 0,
    replicas: Annotated[
        Replicas,
        typer.Option(help="auto: train the first-order runs of a problem together, batched; off: one by one"),
    ] = Replicas.auto,
    gif: Annotated[
        bool, typer.Option("--gif", help="also write the 2-D surfaces' animations as animated GIFs")
    ] = False,
    png: Annotated[
        bool, typer.Option("--png/--no-png", help="write every figure as a PNG under OUT/figures")
    ] = True,
) -> None:
    """Compare optimizers on problems under a fair protocol; keep every run; write a report."""
    import torch

    from optimlab.lab.executor import default_jobs
    from optimlab.lab.problems import ProblemError
    from optimlab.lab.protocol import planned_runs, run_comparison
    from optimlab.lab.results import load_comparison, summarize
    from optimlab.lab.storage import StorageError, Store
    from optimlab.reports import write_report, write_summary
    from optimlab.reports.output import FIGURES

    # tiny models: one thread per process is fastest (benchmarks/compare_settings.py)
    torch.set_num_threads(1)
    try:
        command_line = {
            "problems": problem,
            "optimizers": optimizers,
            "defaults": defaults,
            "seeds": seeds,
            "lr_grid": lr_grid,
            "tune": tune,
            "budget": budget,
            "epochs": epochs,
            "steps": steps,
            "schedule": schedule,
            "weight_decay": weight_decay,
            "l1": l1,
            "clip_norm": clip_norm,
        }
        comparison = _build_comparison(command_line, config)
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

            def on_event(event: str, run: Any, result: Any) -> None:
                if event in ("done", "reused"):
                    counts[event] += 1
                    progress.advance(bar)
                    note = " (stored)" if event == "reused" else ""
                    progress.update(bar, description=f"{run.problem} · {run.config.label}{note}")

            comparison_id = run_comparison(
                comparison, store, jobs=workers, progress=on_event, replicas=replicas.value
            )
            data = load_comparison(store, comparison_id)
        summary = summarize(data)
        summary_path = write_summary(summary, out)
        report_path = write_report(data, out, summary, gif=gif, static=png)
    except KeyboardInterrupt:
        raise fail(
            f"interrupted; every finished run is kept in {db} — run the same command to resume", 130
        ) from None
    except (StorageError, ProblemError) as error:  # every finished run stays stored
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
        f"({workers} worker{'s' if workers > 1 else ''}); wrote {summary_path} and {report_path}"
        + (f", its figures in {report_path.parent / FIGURES}" if png or gif else ""),
        markup=False,
        highlight=False,
    )


def _print_written(paths: list[Path]) -> None:
    """Where a command wrote its files: the page, then its figures."""
    page, figures = paths[-1], paths[:-1]
    console.print(f"wrote {page}", markup=False, highlight=False, soft_wrap=True)
    if figures:
        names = ", ".join(p.name for p in figures)
        console.print(f"  and in {figures[0].parent}: {names}", markup=False, highlight=False, soft_wrap=True)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    from optimlab.reports.html import format_number

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("optimizer", "rule") else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(c if isinstance(c, str) else format_number(c) for c in row))
    return table


SURFACE_OPTIMIZERS = "sgd,momentum,nesterov,adagrad,rmsprop,adam"


@app.command()
def surface(
    name: Annotated[
        str, typer.Argument(help="a 2-D surface with options, e.g. rosenbrock or ravine:condition=1000")
    ],
    optimizers: Annotated[
        str,
        typer.Option(
            "--optimizers", "-o", help="comma-separated presets with overrides, e.g. sgd,adam:lr=0.1"
        ),
    ] = SURFACE_OPTIMIZERS,
    steps: Annotated[
        int | None, typer.Option(help="steps per optimizer (default: the surface's)", min=1)
    ] = None,
    noisy: Annotated[
        bool, typer.Option("--noisy", help="stochastic gradients ∇f + σε at the surface's noise level")
    ] = False,
    lr: Annotated[
        float | None, typer.Option(help="one learning rate for every optimizer (default: each one's own)")
    ] = None,
    seed: Annotated[int, typer.Option(help="the seed of the gradient noise (with --noisy)", min=0)] = 0,
    defaults: Annotated[
        Defaults | None,
        typer.Option(help="default hyperparameters: seed (the post's) or torch (default seed)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for surface.html and figures/")] = Path("runs"),
    gif: Annotated[bool, typer.Option("--gif/--no-gif", help="write the animation as a GIF")] = True,
) -> None:
    """Trajectories of several optimizers on one 2-D surface: an animated contour plot (HTML, PNG, GIF)."""
    import torch

    from optimlab.lab.contours import is_surface
    from optimlab.lab.presets import parse_optimizers
    from optimlab.lab.problems import Budget, get_problem
    from optimlab.lab.run import RunSpec
    from optimlab.lab.runner import train_batch
    from optimlab.reports.pages.surface import surface_rows, write_surface_page

    torch.set_num_threads(1)
    try:
        spec = name.strip()
        if noisy:
            spec += ",noisy=true" if ":" in spec else ":noisy=true"
        problem = get_problem(spec)
        if not is_surface(problem):
            from optimlab.lab.problems.surfaces import SURFACES

            raise ValueError(f"problem {name!r} is not a 2-D surface; surfaces: {', '.join(SURFACES)}")
        configs = parse_optimizers(optimizers, defaults.value if defaults else "seed")
        if lr is not None:
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"--lr must be a positive number, got {lr!r}")
            configs = [c.with_hyper(lr=lr) for c in configs]
        _check_out_dir(out)
    except ValueError as error:
        raise fail(str(error)) from None
    budget = Budget(steps=steps) if steps is not None else problem.default_budget
    # first-order optimizers train together as batched replicas; L-BFGS on its own
    trained = train_batch(problem, [RunSpec.of(problem, c, seed, budget) for c in configs])
    results = {c.label: result for c, result in zip(configs, trained, strict=True)}
    by_label = {c.label: c for c in configs}
    try:
        written = write_surface_page(problem, results, by_label, out, gif=gif)
    except OSError as error:
        raise fail(f"cannot write the page: {error.strerror or error}") from None
    columns, rows = surface_rows(results, by_label)
    console.print(_table(f"{problem.spec} — target f ≤ {problem.target_loss:g}", columns, rows))
    _print_written(written)


@app.command()
def schedule(
    specs: Annotated[
        list[str],
        typer.Argument(
            help="schedules, e.g. step:step_size=4,gamma=0.5 multistep:milestones=8/24/28,gamma=0.5 "
            "exponential:gamma=0.5 cosine:T_max=32,eta_min=1e-4 plateau:factor=0.1,patience=5 "
            "lambda:0.95**epoch onecycle warmup-cosine",
            show_default=False,
        ),
    ],
    steps: Annotated[int, typer.Option(help="scheduler steps to draw", min=2)] = 40,
    lr: Annotated[float, typer.Option(help="the initial learning rate")] = 0.1,
    out: Annotated[Path, typer.Option(help="folder for schedule.html and figures/")] = Path("runs"),
) -> None:
    """The learning rate over steps for torch's schedulers, several overlaid in one figure (HTML, PNG).

    plateau (ReduceLROnPlateau) is driven by a real run: SGD on parabola, one scheduler step per epoch
    on the epoch's loss."""
    import torch

    from optimlab.lab.presets import make_config
    from optimlab.lab.problems import Budget, get_problem
    from optimlab.lab.runner import train
    from optimlab.lab.schedules import lr_curve, parse_schedule
    from optimlab.reports.pages.schedule import write_schedule_page

    torch.set_num_threads(1)
    try:
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"--lr must be a positive number, got {lr!r}")
        parsed = {}
        for text in specs:
            spec = parse_schedule(text)
            if spec is None:
                raise ValueError(f"{text!r} is a constant learning rate, not a schedule")
            if text.strip() in parsed:
                raise ValueError(f"schedule {text.strip()!r} is listed twice")
            spec.check_for(steps, 1)
            parsed[text.strip()] = spec
        _check_out_dir(out)
    except ValueError as error:
        raise fail(str(error)) from None
    curves: dict[str, list[float]] = {}
    plateau: dict[str, tuple[list[float], list[float], str]] = {}
    for text, spec in parsed.items():
        if spec.needs_metric:
            problem = get_problem("parabola")
            run = train(problem, make_config("sgd", {"lr": lr}), 0, Budget(epochs=steps), spec)
            per_epoch = run.lrs[:: problem.steps_per_epoch]
            metric = [float(e["loss"]) for e in run.evals[1 : len(per_epoch) + 1]]
            source = (
                f"The real run: SGD (lr {lr:g}) on parabola, seed 0, {len(per_epoch)} epochs of "
                f"{problem.steps_per_epoch} mini-batches"
                + (f" (it diverged after {run.steps} steps)" if run.diverged else "")
            )
            curves[text] = per_epoch
            plateau[text] = (per_epoch, metric, source)
        else:
            curves[text] = lr_curve(spec, lr, steps, 1)
    try:
        written = write_schedule_page(curves, out, lr=lr, steps=steps, plateau=plateau)
    except OSError as error:
        raise fail(f"cannot write the page: {error.strerror or error}") from None
    _print_written(written)


@app.command("lr-find")
def lr_find(
    problem: Annotated[
        str, typer.Option("--problem", "-p", help="problem spec, e.g. parabola", show_default=False)
    ],
    optimizer: Annotated[
        str,
        typer.Option(
            "--optimizer",
            "-o",
            help="optimizer preset with overrides (several: comma-separated)",
            show_default=False,
        ),
    ],
    seeds: Annotated[int, typer.Option(help="runs of the test, one per seed", min=1)] = 3,
    min_lr: Annotated[float, typer.Option("--min-lr", help="the ramp's first learning rate")] = 1e-7,
    max_lr: Annotated[float, typer.Option("--max-lr", help="the ramp's last learning rate")] = 10.0,
    steps: Annotated[int, typer.Option(help="steps of the ramp (one batch each)", min=2)] = 100,
    defaults: Annotated[
        Defaults | None,
        typer.Option(help="default hyperparameters: seed (the post's) or torch (default seed)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for lr_find.html and figures/")] = Path("runs"),
) -> None:
    """The learning-rate range test: loss against an exponentially growing lr, with suggested lrs."""
    import torch

    from optimlab.lab.lr_find import lr_ramp, problem_range_test, summarize
    from optimlab.lab.presets import parse_optimizers
    from optimlab.lab.problems import ProblemError, get_problem, reporting_user_errors
    from optimlab.reports.pages.lr_find import lr_find_rows, write_lr_find_page

    torch.set_num_threads(1)
    try:
        lr_ramp(min_lr, max_lr, steps)
        task = get_problem(problem)
        configs = parse_optimizers(optimizer, defaults.value if defaults else "seed")
        _check_out_dir(out)
    except ValueError as error:
        raise fail(str(error)) from None
    seed_list = list(range(seeds))
    summaries = {}
    stopped = {}
    try:
        with reporting_user_errors(task):
            for config in configs:
                results = [
                    problem_range_test(task, config, seed, min_lr=min_lr, max_lr=max_lr, steps=steps)
                    for seed in seed_list
                ]
                stopped[config.label] = sum(r.diverged for r in results)
                summaries[config.label] = summarize(results)
    except ProblemError as error:
        raise fail(str(error)) from None
    try:
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
    except OSError as error:
        raise fail(f"cannot write the page: {error.strerror or error}") from None
    columns, rows = lr_find_rows(summaries)
    console.print(_table(f"{task.spec} — suggested learning rates ({seeds} seeds)", columns, rows))
    _print_written(written)


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
