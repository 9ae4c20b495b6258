"""``optimlab compare``: a fair comparison — train (or reuse) every run, store it, write the report."""

from __future__ import annotations

import contextlib
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

import optimlab.cli.app as cli
from optimlab.cli.output import print_ranked_tables, print_verdict
from optimlab.cli.phases import Phases
from optimlab.lab.settings import REPLICAS_CHOICES, SETTINGS, TUNE_CHOICES

Tune = StrEnum("Tune", {choice: choice for choice in TUNE_CHOICES})  # type: ignore[misc]
Replicas = StrEnum("Replicas", {choice: choice for choice in REPLICAS_CHOICES})  # type: ignore[misc]
ExecutorChoice = StrEnum("ExecutorChoice", {choice: choice for choice in ("local", "ray")})  # type: ignore[misc]


def _help(name: str, extra: str = "") -> str:
    setting = SETTINGS[name]
    default = (
        ""
        if setting.default is None or isinstance(setting.default, list)
        else f" (default {setting.default})"
    )
    return setting.help + extra + default


def _build_comparison(command_line: dict[str, Any], config_path: Path | None = None) -> Any:
    """The comparison of the command line's settings over the config file's (see
    :func:`optimlab.lab.settings.resolve`)."""
    from optimlab.lab.presets import load_config
    from optimlab.lab.protocol import comparison_from
    from optimlab.lab.settings import resolve

    config = load_config(config_path) if config_path is not None else {}
    return comparison_from(resolve(command_line, config, f"config file {str(config_path)!r}"))


@cli.app.command()
def compare(
    problem: cli.ProblemsOption = None,
    optimizers: cli.OptimizersOption = None,
    seeds: Annotated[int | None, typer.Option(metavar="N", min=1, help=_help("seeds"))] = None,
    lr_grid: Annotated[
        int | None, typer.Option("--lr-grid", metavar="N", min=1, help=_help("lr_grid"))
    ] = None,
    tune: Annotated[Tune | None, typer.Option(metavar="none|optuna", help=_help("tune"))] = None,  # type: ignore[valid-type]
    budget: Annotated[int | None, typer.Option(metavar="TRIALS", min=1, help=_help("budget"))] = None,
    epochs: Annotated[int | None, typer.Option(metavar="N", min=1, help=_help("epochs"))] = None,
    steps: Annotated[int | None, typer.Option(metavar="N", min=1, help=_help("steps"))] = None,
    schedule: Annotated[
        str | None, typer.Option(metavar="KIND[:key=value,...]", help=_help("schedule", ", e.g. cosine"))
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option("--weight-decay", metavar="λ", help=_help("weight_decay"))
    ] = None,
    l1: Annotated[float | None, typer.Option("--l1", metavar="λ", help=_help("l1"))] = None,
    clip_norm: Annotated[
        float | None, typer.Option("--clip-norm", metavar="NORM", help=_help("clip_norm"))
    ] = None,
    defaults: cli.DefaultsOption = None,
    baseline: Annotated[str | None, typer.Option(metavar="OPTIMIZER", help=_help("baseline"))] = None,
    horizons: Annotated[
        str | None, typer.Option(metavar="F[,F...]", help=_help("horizons", ", e.g. 0.25,1"))
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", metavar="FILE", help="a TOML/JSON file of these settings")
    ] = None,
    db: Annotated[Path, typer.Option(metavar="FILE", help="the SQLite file of all runs")] = Path(
        "runs/optimlab.db"
    ),
    out: Annotated[Path, cli.out_option("summary.json, report.html and figures/")] = Path("runs"),
    jobs: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            help="processes that train (0: one per idle CPU core); with --executor ray: the local Ray's CPUs",
        ),
    ] = 0,
    replicas: Annotated[
        Replicas,  # type: ignore[valid-type]
        typer.Option(
            metavar="auto|off",
            help="auto: train the first-order runs of a problem together, batched; off: one by one",
        ),
    ] = Replicas.auto,  # type: ignore[attr-defined]
    executor: Annotated[
        ExecutorChoice,  # type: ignore[valid-type]
        typer.Option(
            metavar="local|ray",
            help="where runs train: this machine's processes, or a Ray cluster (pip install 'optimlab[ray]')",
        ),
    ] = ExecutorChoice.local,  # type: ignore[attr-defined]
    address: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="the Ray cluster's head (`ray start --head`); default: a local Ray of --jobs CPUs",
        ),
    ] = None,
    gif: Annotated[
        bool, typer.Option("--gif", help="also write the 2-D surfaces' animations as GIFs")
    ] = False,
    png: Annotated[bool, typer.Option("--png/--no-png", help="write every figure as a PNG too")] = True,
) -> None:
    """Compare optimizers on problems under a fair protocol; keep every run; write a report."""
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
        "baseline": baseline,
        "horizons": horizons,
    }
    where = str(getattr(executor, "value", executor))
    from optimlab.lab.workers import default_jobs, start_workers, stop_workers

    phases = Phases()
    workers = jobs or default_jobs()
    # a new database: every run is to train, so the worker processes start now and import torch
    # beside this one (which does so to read the settings); otherwise at the first unit they train
    # (a rerun that trains nothing starts none)
    fresh = where == "local" and workers > 1 and not db.exists()
    pool = start_workers(workers - 1) if fresh else None
    try:
        with cli.errors_as_lines():
            _check_executor(where, address)
            comparison = _build_comparison(command_line, config)
            cli.check_out_dir(out)
            _warn_of_a_zero_lr(comparison)
        phases.mark("settings")
        replicas_mode = str(getattr(replicas, "value", replicas))
        _run(
            comparison,
            db,
            out,
            workers,
            replicas_mode,
            gif=gif,
            png=png,
            executor=where,
            address=address,
            pool=pool,
            phases=phases,
        )
    finally:
        if pool is not None:
            stop_workers(pool)
    phases.write()


def _check_executor(executor: str, address: str | None) -> None:
    """Refuse, before anything runs, an address without Ray, Ray not installed, an address that is
    no HOST:PORT or where nothing answers."""
    if executor != "ray":
        if address is not None:
            raise ValueError("--address is the Ray cluster's: give it with --executor ray")
        return
    from optimlab.lab.ray_executor import check_address, check_reachable, require_ray

    require_ray()
    if address is not None:
        check_reachable(check_address(address))


def _warn_of_a_zero_lr(comparison: Any) -> None:
    """A schedule that holds the lr at 0 trains nothing while it does: said, not refused."""
    from optimlab.lab.schedules import zero_lr_steps

    if comparison.schedule is None:
        return
    for problem in comparison.problems:  # the full budget (shorter horizons: the same schedule, rescaled)
        budget = comparison.budget_for(problem)
        steps = budget.total_steps(problem.steps_per_epoch)
        if steps > 200_000:  # too long to trace the schedule step by step here
            continue
        span = zero_lr_steps(
            comparison.schedule, budget.epochs_needed(problem.steps_per_epoch), problem.steps_per_epoch
        )
        if span is not None:
            cli.err_console.print(
                f"warning: schedule {comparison.schedule.text!r} holds the lr at 0 from step {span[0]} "
                f"to {span[1]} of {problem.spec}'s {steps} steps: nothing is learned there",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def _run(
    comparison: Any,
    db: Path,
    out: Path,
    jobs: int,
    replicas: str,
    *,
    gif: bool,
    png: bool,
    executor: str = "local",
    address: str | None = None,
    pool: Any = None,
    phases: Phases | None = None,
) -> None:
    """Run ``comparison`` with ``jobs`` (≥ 1) processes (``pool``: the ``jobs − 1`` workers, started),
    store it, write its summary and report and print its tables."""
    import torch

    from optimlab.cli.progress import CostProgress
    from optimlab.lab.executor import LocalExecutor
    from optimlab.lab.plansize import plan_size
    from optimlab.lab.protocol import RunEvent, run_comparison
    from optimlab.lab.results import load_comparison, summarize
    from optimlab.lab.storage import Store
    from optimlab.reports import write_report, write_summary
    from optimlab.reports.output import FIGURES

    # tiny models: one thread per process is fastest (benchmarks/compare_settings.py)
    torch.set_num_threads(1)
    phases = phases or Phases()
    started = time.perf_counter()
    workers = jobs  # resolved once by the command: its pool was started for this many
    interrupted = f"interrupted; every finished run is kept in {db} — run the same command to resume"
    with cli.errors_as_lines(interrupted), contextlib.ExitStack() as resources:
        ray = _ray_executor(comparison, address, workers) if executor == "ray" else None
        problems = {problem.spec: problem for problem in comparison.problems}
        local = LocalExecutor(problems, workers, pool=pool) if ray is None else None
        store = Store(db)
        size = plan_size(comparison)  # what it needs, stored or not (a run stored is reused)
        title = f"{comparison.protocol} comparison of {size.runs:,} run{'s' if size.runs != 1 else ''}"
        renderer: list[Any] = []  # runs to train change the figures: their files are drawn aside
        with store, CostProgress(title) as bar:

            def on_event(event: RunEvent) -> None:
                if event.kind == "planned":
                    phases.mark("planned")
                    bar.plan(event.cost)
                    if event.cost > 0 and (png or gif) and workers > 1 and not renderer:
                        from optimlab.reports.renderer import Renderer

                        renderer.append(resources.enter_context(Renderer()))
                elif event.run is not None:
                    label = f"{event.run.problem} · {event.run.config.label}"
                    bar.done(event.cost, label) if event.kind == "done" else bar.found(label)

            comparison_id = run_comparison(
                comparison,
                store,
                jobs=workers,
                progress=on_event,
                replicas=replicas,
                executor=ray or local,
            )
            phases.mark("trained")
            phases.extra["store_put_s"] = store.put_seconds
            data = load_comparison(store, comparison_id)
            phases.mark("loaded")
        counts = (bar.trained, bar.reused)
        summary = summarize(data, out)
        try:
            summary_path = write_summary(summary, out)
            phases.mark("summary")
            report_path = write_report(
                data, out, summary, gif=gif, static=png, renderer=renderer[0] if renderer else None
            )
            phases.mark("report")
        except OSError as error:
            raise cli.fail(cli.os_message(error, "cannot write the report")) from None
    print_ranked_tables(summary)
    print_verdict(summary)
    if summary["one_shot"]:
        cli.console.print(
            "[bold]One-shot comparison[/]: every optimizer at fixed default settings, which says "
            f"little about which is better. A tuned comparison ({summary['tuned_runs']:,} runs):"
        )
        cli.console.print(f"  {summary['tuned_command']}", markup=False, highlight=False, soft_wrap=True)
    elapsed = time.perf_counter() - started
    where = ray.where if ray is not None else f"{workers} worker{'s' if workers > 1 else ''}"
    cli.console.print(
        f"{counts[0]} run{'s' if counts[0] != 1 else ''} trained, {counts[1]} reused from {db}, "
        f"in {elapsed:.1f} s "
        f"({where}); wrote {summary_path} and {report_path}"
        + (f", its figures in {report_path.parent / FIGURES}" if png or gif else ""),
        markup=False,
        highlight=False,
    )


def _ray_executor(comparison: Any, address: str | None, workers: int) -> Any:
    """The executor of ``--executor ray``: the cluster at ``address``, else a local Ray of
    ``workers`` CPUs."""
    from optimlab.lab.ray_executor import RayExecutor

    problems = {problem.spec: problem for problem in comparison.problems}
    return RayExecutor(problems, address, num_cpus=None if address else workers)
