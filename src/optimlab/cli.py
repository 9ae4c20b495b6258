"""The ``optimlab`` command line (typer + rich)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

import optimlab.optim as optim

app = typer.Typer(help="optimlab: compare deep-learning optimizers fairly.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_command() -> None:
    """Show the available optimizers."""
    table = Table(title="optimizers")
    table.add_column("name")
    table.add_column("description")
    for name in optim.__all__:
        obj = getattr(optim, name)
        if isinstance(obj, type) and obj.__doc__ and name != "RuleOptimizer":
            table.add_row(name, obj.__doc__.strip().splitlines()[0])
    console.print(table)


def main() -> None:
    app()
