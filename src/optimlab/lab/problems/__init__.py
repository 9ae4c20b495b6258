"""Problems for the optimizer lab: a registry of built-in problems and the protocol of your own.

A problem is named by a *spec*: ``name`` or ``name:key=value,...`` for a built-in one
(``ravine:condition=1000``, ``parabola:batch=full``, ``rosenbrock:noisy=true``), or
``package.module:factory`` (optionally ``package.module:factory:key=value,...``) for your own, where
``factory(**options)`` returns an object that follows :class:`Problem`. :func:`get_problem` turns a
spec into a problem, :func:`problem_names` lists the built-in ones.

The Problem protocol
--------------------
Training is functional: everything a run needs comes from the problem and the run's seed, so the
same run gives the same numbers in any process (and the lab's batched replicas can train many seeds
of one problem at once with ``torch.func``).

``name: str``, ``description: str``
    a short name and a one-line description (shown by ``optimlab list``).
``spec: str``
    the canonical spec with its options; part of every stored run's key.
``version: str``
    bump it when you change the problem's data or model, so stored results are not reused.
``target_loss: float``
    the loss that counts as "solved" (steps-to-target, performance profiles).
``default_budget: Budget``
    how long a run trains unless ``--epochs``/``--steps`` says otherwise.
``steps_per_epoch: int``
    the number of batches :meth:`batches` yields per epoch; the lab evaluates fully after each epoch
    and the loss alone within epochs (:class:`optimlab.lab.run.EvaluationSchedule`).
``build_model(seed) -> nn.Module``
    the model with its initial parameters, reproducible from ``seed`` alone.
``batches(seed, epoch) -> Iterable[(inputs, target)]``
    one epoch's batches, reproducible from ``(seed, epoch)`` alone (use a ``torch.Generator``).
``loss(output, target) -> Tensor``
    the scalar training loss of ``model(inputs)``.
``evaluate(model) -> dict[str, float]``
    metrics before the first step and after each epoch, without gradients; must contain ``"loss"``
    (the full objective, used for the final loss and steps-to-target; within epochs the lab records
    it alone) and may contain ``val_loss``, ``val_accuracy``, ….
``trajectory_point(model) -> list[float] | None`` (optional)
    the point to record after each step (2-D surfaces record θ = (x, y)).
``deterministic: bool`` (optional, default False)
    True when every seed gives the same run (a noiseless surface from a fixed start); the lab then
    runs one seed instead of repeating identical numbers.

A minimal problem of your own (``mypkg/problems.py``)::

    import torch
    from torch import nn
    from optimlab.lab.problems import Budget, TensorProblem

    class Line(TensorProblem):
        name, description, target_loss = "line", "fit y = 3x", 1e-3
        default_budget = Budget(epochs=5)

        def __init__(self, **options):
            super().__init__(options)
            self.x = torch.linspace(-1, 1, 256).unsqueeze(1)
            self.y = 3 * self.x
            self.batch_size = 32

        def make_model(self):
            return nn.Linear(1, 1)

        def loss(self, output, target):
            return nn.functional.mse_loss(output, target)

    def make_problem(**options):
        return Line(**options)

and then ``optimlab compare --problem mypkg.problems:make_problem`` (the current folder is searched
for the module too).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from optimlab.lab.problems.base import Batch, Budget, TensorProblem, mix_seed, seeded_module
from optimlab.lab.problems.digits import DigitsCNN, DigitsMLP
from optimlab.lab.problems.digits_resnet import DigitsResNet
from optimlab.lab.problems.finetune import Finetune
from optimlab.lab.problems.modular_addition import ModularAddition
from optimlab.lab.problems.parabola import Parabola
from optimlab.lab.problems.quadratic import Quadratic100D
from optimlab.lab.problems.sparse import SparseRegression
from optimlab.lab.problems.surfaces import SURFACES, Surface, SurfaceProblem
from optimlab.lab.problems.tiny_lm import TinyLanguageModel
from optimlab.lab.spec import format_spec, parse_options

__all__ = [
    "PROBLEMS",
    "Batch",
    "Budget",
    "Problem",
    "ProblemError",
    "ProblemInfo",
    "Surface",
    "SurfaceProblem",
    "TensorProblem",
    "format_spec",
    "get_problem",
    "mix_seed",
    "parse_options",
    "problem_error",
    "problem_names",
    "reporting_user_errors",
    "seeded_module",
]


@runtime_checkable
class Problem(Protocol):
    """What the lab needs from a problem (see the module docstring)."""

    name: str
    description: str
    target_loss: float
    default_budget: Budget
    version: str

    @property
    def spec(self) -> str: ...

    @property
    def steps_per_epoch(self) -> int: ...

    def build_model(self, seed: int) -> nn.Module: ...

    def batches(self, seed: int, epoch: int) -> Iterable[Batch]: ...

    def loss(self, output: Tensor, target: Tensor) -> Tensor: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...


class ProblemInfo:
    """A registry entry: a name, a one-line description, its options and a factory."""

    def __init__(self, name: str, description: str, factory: Callable[..., Problem], options: dict[str, str]):
        self.name, self.description, self.factory, self.options = name, description, factory, options


def _surface_factory(surface: Surface) -> Callable[..., Problem]:
    return lambda options: SurfaceProblem(surface, options)


def _registry() -> dict[str, ProblemInfo]:
    from optimlab.lab.problems import (
        digits,
        digits_resnet,
        finetune,
        modular_addition,
        parabola,
        quadratic,
        sparse,
        surfaces,
        tiny_lm,
    )

    entries = [
        ProblemInfo("parabola", Parabola.description, Parabola, parabola.OPTIONS),
        *(
            ProblemInfo(s.name, s.description, _surface_factory(s), {**surfaces._COMMON_OPTIONS, **s.options})
            for s in SURFACES.values()
        ),
        ProblemInfo("digits-mlp", DigitsMLP.description, DigitsMLP, digits.OPTIONS),
        ProblemInfo("digits-cnn", DigitsCNN.description, DigitsCNN, digits.OPTIONS),
        ProblemInfo("quadratic-100d", Quadratic100D.description, Quadratic100D, quadratic.OPTIONS),
        ProblemInfo("sparse-regression", SparseRegression.description, SparseRegression, sparse.OPTIONS),
        # realistic workloads that still run on a laptop CPU in minutes
        ProblemInfo("tiny-lm", TinyLanguageModel.description, TinyLanguageModel, tiny_lm.OPTIONS),
        ProblemInfo(
            "modular-addition", ModularAddition.description, ModularAddition, modular_addition.OPTIONS
        ),
        ProblemInfo("digits-resnet", DigitsResNet.description, DigitsResNet, digits_resnet.OPTIONS),
        ProblemInfo("finetune", Finetune.description, Finetune, finetune.OPTIONS),
    ]
    return {entry.name: entry for entry in entries}


#: the built-in problems by name
PROBLEMS: dict[str, ProblemInfo] = _registry()


def problem_names() -> list[str]:
    """The names of the built-in problems, in the order ``optimlab list`` shows them."""
    return list(PROBLEMS)


def get_problem(spec: str) -> Problem:
    """The problem for ``spec`` (``name[:options]`` or ``module.path:factory[:options]``).

    Raises ``ValueError`` with one clear line for an unknown name, bad options, or a user
    factory that cannot be imported or does not return a :class:`Problem`.
    """
    spec = spec.strip()
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name in PROBLEMS:
        return PROBLEMS[name].factory(parse_options(rest, spec))
    factory_name, _, option_text = rest.partition(":")
    if all(part.isidentifier() for part in name.split(".")) and factory_name.isidentifier():
        return _user_problem(name, factory_name, parse_options(option_text, spec), spec)
    raise ValueError(
        f"unknown problem {name!r}; built-in problems: {', '.join(PROBLEMS)} "
        "(or your own as package.module:factory)"
    )


def _user_problem(module_name: str, factory_name: str, options: dict[str, Any], spec: str) -> Problem:
    cwd = os.getcwd()
    if cwd not in sys.path:  # `optimlab compare -p myproblems:make` from the folder that holds it
        sys.path.append(cwd)
    files = _module_files(module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if error.name is not None and (module_name + ".").startswith(error.name + "."):
            raise ValueError(f"cannot import problem module {module_name!r}: {error}") from None
        raise problem_error(spec, error, files) from error  # the module imports something missing
    except Exception as error:  # the module itself fails: a SyntaxError, 1/0 at import, …
        raise problem_error(spec, error, files) from error
    files |= _module_files(module_name)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"module {module_name!r} has no callable {factory_name!r} (problem spec {spec!r})")
    try:
        problem = factory(**options)
        missing = [attr for attr in _PROTOCOL if not hasattr(problem, attr)]
        budget, steps_per_epoch = (
            getattr(problem, "default_budget", None),
            getattr(problem, "steps_per_epoch", 1),
        )
        version = str(getattr(problem, "version", "1"))
    except Exception as error:
        raise problem_error(spec, error, files) from error
    if missing:
        raise ValueError(
            f"{module_name}:{factory_name} returned an object without {', '.join(missing)} "
            "(see the Problem protocol in optimlab.lab.problems)"
        )
    if not isinstance(budget, Budget):
        raise ValueError(f"{module_name}:{factory_name}: default_budget must be an optimlab Budget")
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(
            f"{module_name}:{factory_name}: steps_per_epoch must be a whole number ≥ 1, "
            f"got {steps_per_epoch!r}"
        )
    # the stored key must name the user's factory and options, whatever the object calls itself
    user_spec = format_spec(f"{module_name}:{factory_name}", options)
    return UserProblem(problem, user_spec, version, frozenset(files))


#: what a user's problem object must have (the Problem protocol)
_PROTOCOL = (
    "name",
    "description",
    "target_loss",
    "default_budget",
    "steps_per_epoch",
    "build_model",
    "batches",
    "loss",
    "evaluate",
)


def _module_files(module_name: str) -> set[str]:
    """The source file of ``module_name`` (found without importing it; empty when it cannot be)."""
    module = sys.modules.get(module_name)
    origin = getattr(module, "__file__", None)
    if origin is None:
        try:
            found = importlib.util.find_spec(module_name)
        except Exception:  # a parent package that fails: its own error comes with the import
            found = None
        origin = getattr(found, "origin", None)
    return {os.path.abspath(origin)} if origin and os.path.exists(origin) else set()


class ProblemError(ValueError):
    """A user's problem raised while the lab loaded, planned or trained it, in this process or a
    worker: one line ``problem SPEC: ExcType: message (file.py:LINE)`` naming the innermost place
    in the user's module (:attr:`location`, ``""`` when none is known), with the original
    exception as ``__cause__`` (out of a worker: its traceback as text), for ``--debug``."""

    def __init__(self, message: str, spec: str = "", location: str = "") -> None:
        super().__init__(message)
        self.spec, self.location = spec, location

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries with its fields
        return (type(self), (str(self), self.spec, self.location))


def _where(filename: str, line: int | None) -> str:
    """``file.py:LINE``, the file relative to the working directory when it is inside it."""
    path = os.path.abspath(filename)
    relative = os.path.relpath(path)
    shown = relative if not relative.startswith("..") else path
    return f"{shown}:{line}" if line else shown


def _location(error: BaseException, files: frozenset[str] | set[str]) -> str:
    """The innermost frame of ``error``'s traceback inside ``files`` (a SyntaxError: its own
    file and line); ``""`` when none."""
    if isinstance(error, SyntaxError) and error.filename and os.path.abspath(error.filename) in files:
        return _where(error.filename, error.lineno)
    inside = [f for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) in files]
    return _where(inside[-1].filename, inside[-1].lineno) if inside else ""


def problem_error(spec: str, error: BaseException, files: frozenset[str] | set[str]) -> ProblemError:
    """The :class:`ProblemError` of ``error``, raised by the code of the problem ``spec`` whose
    module is ``files`` (raise it ``from error``)."""
    text = error.msg if isinstance(error, SyntaxError) else str(error)
    message = " ".join(text.split())  # one line, whatever the user's message holds
    location = _location(error, files)
    line = f"problem {spec}: {type(error).__name__}" + (f": {message}" if message else "")
    return ProblemError(line + (f" ({location})" if location else ""), spec, location)


@contextlib.contextmanager
def reporting_user_errors(problem: Any) -> Iterator[None]:
    """Turn an exception raised by a user's problem code into one :class:`ProblemError` line; the
    lab's own problems raise as they are (an error there is the lab's bug, with its traceback)."""
    if not isinstance(problem, UserProblem):
        yield
        return
    try:
        yield
    except Exception as error:
        if isinstance(error, ProblemError):
            raise
        raise problem_error(problem.spec, error, problem.files) from error


class UserProblem:
    """A user's problem object with the spec it was loaded by (``module:factory[:options]``) and
    its module's files; every other attribute is the object's own. ``evaluate`` checks what the
    user's ``evaluate`` returns (a mapping with ``"loss"``, numbers)."""

    def __init__(
        self, problem: Any, spec: str, version: str = "1", files: frozenset[str] = frozenset()
    ) -> None:
        self._problem = problem
        self.spec = spec
        self.version = version
        self.files = files

    def __getattr__(self, name: str) -> Any:
        return getattr(self._problem, name)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics = self._problem.evaluate(model)
        if not isinstance(metrics, Mapping) or "loss" not in metrics:
            got = f"keys {sorted(map(str, metrics))}" if isinstance(metrics, Mapping) else repr(metrics)
            raise self._error(f"evaluate() must return a dict with a 'loss' (the full objective), got {got}")
        try:
            return {str(key): float(value) for key, value in metrics.items()}
        except (TypeError, ValueError, RuntimeError):
            bad = next(k for k, v in metrics.items() if not _is_number(v))
            raise self._error(f"evaluate() must return numbers, got {bad!r}: {metrics[bad]!r}") from None

    def _error(self, message: str) -> ProblemError:
        method = getattr(type(self._problem), "evaluate", None)
        try:
            filename, line = inspect.getsourcefile(method), inspect.getsourcelines(method)[1]  # type: ignore[arg-type]
        except (TypeError, OSError):
            filename, line = None, None
        where = _where(filename, line) if filename and os.path.abspath(filename) in self.files else ""
        text = f"problem {self.spec}: {message}" + (f" ({where})" if where else "")
        return ProblemError(text, self.spec, where)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return True
