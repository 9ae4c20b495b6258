"""``optimlab list``: the problems, optimizers, schedules and compare's settings, with their options
and defaults."""

from __future__ import annotations

from rich.table import Table

from optimlab.cli.app import app, console
from optimlab.lab.settings import SETTINGS
from optimlab.lab.spec import format_value


def _lines(options: dict[str, str]) -> str:
    return "\n".join(f"{key}: {doc}" for key, doc in options.items()) or "–"


def _defaults(hyper: dict[str, object]) -> str:
    return ", ".join(f"{key}={format_value(value)}" for key, value in hyper.items())


@app.command("list")
def list_command() -> None:
    """Show the problems, optimizer presets, lr schedules and compare's settings, with their options
    and defaults."""
    from optimlab.lab.presets import PRESETS, SEED_OPTIMIZERS
    from optimlab.lab.problems import PROBLEMS
    from optimlab.lab.schedules import SCHEDULES

    problems = Table(title="problems (-p NAME[:key=value,...])", title_justify="left", show_lines=True)
    for column in ("name", "description", "options (default)"):
        problems.add_column(column)
    for info in PROBLEMS.values():
        problems.add_row(info.name, info.description, _lines(dict(info.options)))
    console.print(problems)

    presets = Table(title="optimizers (-o NAME[:key=value,...],...)", title_justify="left", show_lines=True)
    for column in ("name", "class", "description", "seed defaults (--defaults seed)", "--defaults torch"):
        presets.add_column(column)
    for preset in PRESETS.values():
        mark = "" if preset.name in SEED_OPTIMIZERS else " (not in the default set)"
        presets.add_row(
            preset.name,
            preset.cls.__name__,
            preset.description + mark,
            _defaults(preset.hyperparameters("seed")),
            _defaults(preset.hyperparameters("torch")) or "torch.optim's",
        )
    console.print(presets)

    schedules = Table(
        title="lr schedules (--schedule KIND[:key=value,...])", title_justify="left", show_lines=True
    )
    for column in ("kind", "description", "steps per", "parameters (default)"):
        schedules.add_column(column)
    for kind in SCHEDULES.values():
        if kind.name != "constant":
            schedules.add_row(kind.name, kind.description, kind.interval, _lines(dict(kind.params)))
    console.print(schedules)

    settings = Table(
        title="optimlab compare's settings (options, or keys of --config FILE)", title_justify="left"
    )
    for column in ("setting", "default", "meaning"):
        settings.add_column(column)
    for setting in SETTINGS.values():
        default = setting.default
        shown = (
            "–"
            if default is None
            else ", ".join(default)
            if isinstance(default, list)
            else format_value(default)
        )
        settings.add_row(setting.name, shown, setting.help)
    console.print(settings)
