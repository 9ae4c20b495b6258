"""What every command shares: the typer app, the consoles, the options spelled alike everywhere, and
how errors end a command.

Bad input — an unknown name, a malformed spec, a wrong type in a config file, an unwritable folder, a
damaged database, a user's problem that raises — prints one line on stderr (``error: ...``) and
exits with code 2; Ctrl-C prints one line and exits with 130, keeping everything already stored.
``optimlab --debug COMMAND ...`` shows the traceback as well.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from optimlab import __version__
from optimlab.lab.settings import PROFILE_CHOICES, SETTINGS

app = typer.Typer(
    help="optimlab: compare deep-learning optimizers fairly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    rich_markup_mode=None,
)
console = Console()
if not console.is_terminal:  # tables in logs and pipes: wide enough not to truncate names
    console = Console(width=max(console.width, 120))
err_console = Console(stderr=True)

#: --debug (a global option): errors show their traceback too
_state = {"debug": False, "reported": False}

#: the choice of default hyperparameters (defined once, in optimlab.lab.settings)
Defaults = StrEnum("Defaults", {choice: choice for choice in PROFILE_CHOICES})  # type: ignore[misc]

# --- the options every command spells alike ------------------------------------------------------

ProblemsOption = Annotated[
    list[str] | None,
    typer.Option("--problem", "-p", metavar="SPEC", help="a problem, e.g. ravine:condition=100 (repeatable)"),
]
OneProblemOption = Annotated[
    str | None, typer.Option("--problem", "-p", metavar="SPEC", help="the problem, e.g. parabola")
]
OptimizersOption = Annotated[
    str | None,
    typer.Option(
        "--optimizers",
        "-o",
        "--optimizer",
        metavar="NAME[:key=value],...",
        help="optimizers with overrides, e.g. sgd,adam:lr=0.01,betas=0.9/0.99",
    ),
]
DefaultsOption = Annotated[
    Defaults | None,  # type: ignore[valid-type]
    typer.Option(metavar="seed|torch", help=SETTINGS["defaults"].help + ": the seed posts' or torch.optim's"),
]


def out_option(what: str) -> Any:
    return typer.Option("--out", metavar="DIR", help=f"folder for {what}")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; the caller raises the returned Exit."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    _state["reported"] = True
    return typer.Exit(code)


@contextlib.contextmanager
def errors_as_lines(interrupted: str = "interrupted") -> Iterator[None]:
    """Inside: a ``ValueError`` (bad input, a damaged database, a user's problem that raised) or an
    ``OSError`` ends the command with one line and exit code 2, Ctrl-C with ``interrupted`` and
    130; with ``--debug`` the traceback is printed first."""
    try:
        yield
    except KeyboardInterrupt:
        raise fail(interrupted, 130) from None
    except (ValueError, OSError) as error:
        if _state["debug"]:
            traceback.print_exception(error)
        raise fail(
            os_message(error) if isinstance(error, OSError) else " ".join(str(error).split())
        ) from None


def os_message(error: OSError, doing: str = "cannot write") -> str:
    """One line for a failed file operation, naming the file and the reason (a full disk, a
    read-only file system, a missing permission)."""
    where = f" {str(error.filename)!r}" if error.filename else ""
    return f"{doing}{where}: {error.strerror or error}"


def check_out_dir(out: Path) -> None:
    """Make ``out`` (a writable folder) or raise one clear ``ValueError``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {str(out)!r} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create output folder {str(out)!r}: {error.strerror or error}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {str(out)!r} is not writable")


def _show_version(value: bool) -> None:
    if value:
        console.print(f"optimlab {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_show_version, is_eager=True, help="show the version and exit"
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="on an error, show its traceback too (e.g. your problem's)")
    ] = False,
) -> None:
    """optimlab: compare deep-learning optimizers fairly (optimlab list shows what there is)."""
    _state["debug"] = debug
    _state["reported"] = False


def run() -> None:
    """The ``optimlab`` program (its console script and ``python -m optimlab``): :func:`main`, then
    out of the process at once with its exit code.

    Python's orderly shutdown tears down every module it imported — torch's thousands — which
    takes about 0.4 s after the command has done everything and closed its files (the database, the
    report). The streams are flushed and multiprocessing's exit handler is run first; only a process
    that loaded what needs its other exit handlers (Ray, which stops its local cluster; coverage,
    which writes its data) or runs under a profiler or tracer (``python -m cProfile``, which writes
    after the program returns) shuts down the usual way."""
    code = 0
    try:
        main()
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
        if not isinstance(error.code, int | None):
            print(error.code, file=sys.stderr)
    watched = sys.getprofile() is not None or sys.gettrace() is not None  # a profiler writes at exit
    if watched or any(name in sys.modules for name in ("ray", "coverage")):
        sys.exit(code)
    if "multiprocessing" in sys.modules:
        # What multiprocessing does at exit: its finalizers unlink the semaphores of the worker
        # pool's queues (else its resource tracker warns of "leaked semaphore objects") and it
        # reaps any child left.
        import multiprocessing.util

        with contextlib.suppress(Exception):
            multiprocessing.util._exit_function()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """The console entry point. Usage errors (an unknown option, a malformed number) become one line
    on stderr with exit code 2, like the commands' own input errors; Ctrl-C anywhere is one line and
    exit code 130. ``--debug`` may come anywhere before ``--``."""
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:end]:
        args.remove("--debug")
        args.insert(0, "--debug")
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="optimlab", standalone_mode=False)
    except typer.Exit as error:
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        result = 130
    except Exception as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            console.print(error.format_message(), markup=False, highlight=False)  # type: ignore[attr-defined]
            sys.exit(0)
        if getattr(error, "exit_code", None) == 2 and hasattr(error, "format_message"):
            err_console.print(
                f"error: {error.format_message()}", markup=False, highlight=False, soft_wrap=True
            )
            sys.exit(2)
        raise
    if result == 130 and not _state["reported"]:  # typer turns a stray Ctrl-C into a silent 130
        err_console.print("error: interrupted", markup=False, highlight=False)
    if isinstance(result, int) and result:
        sys.exit(result)
