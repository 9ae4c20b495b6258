"""What a run is: its regularization, its record, and how a record is made from what was trained.

A run is a problem (its spec), an optimizer configuration, a seed, a budget, an optional learning-
rate schedule and optional :class:`Regularization`. Whatever trains it — :func:`optimlab.lab.runner.train`
step by step, or :mod:`optimlab.lab.replicas` batched under ``torch.vmap`` — hands what it recorded to
:func:`make_result`, and the :class:`RunResult` it returns is what storage keeps and results and
reports read. This module imports neither a trainer nor an engine (nor torch), so that storage,
results and reports load without them.

What a run records:

* the training loss of every step (the mini-batch loss the optimizer saw, before its update) and
  the learning rate it used;
* after every epoch (and before the first step), ``problem.evaluate(model)`` — the full objective
  ``loss`` and validation metrics — with the step count, gradient evaluations and wall time so far;
* gradient evaluations: one per step for first-order optimizers, one per closure call for L-BFGS;
* divergence as a result, never an exception: a NaN or ±Inf loss or evaluation (``"nan"``,
  ``"inf"``) or a loss above ``EXPLOSION_FACTOR × max(|initial loss|, 1)`` (``"explosion"``) ends
  the run with ``diverged=True`` and a final loss of +∞;
* steps and gradient evaluations to the problem's target loss: the first evaluation whose ``loss``
  is at or below ``problem.target_loss`` (∞ when never reached).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optimlab.lab.presets import OptimizerConfig
    from optimlab.lab.problems import Budget, Problem
    from optimlab.lab.schedules import ScheduleSpec

#: the version of a run's identity: part of every key, so that a change of what defines a run
#: (a new field, another canonical form) can never make an old run pass for a new one
RUN_FORMAT = "run-v1"

#: a loss above this factor × max(|initial loss|, 1) counts as an explosion
EXPLOSION_FACTOR = 1e4


@dataclass(frozen=True)
class Regularization:
    """Regularization applied on top of an optimizer configuration (all off by default)."""

    weight_decay: float | None = None  #: None keeps the configuration's own weight_decay
    l1: float = 0.0
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        for name in ("weight_decay", "l1", "clip_norm"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if self.clip_norm == 0:
            raise ValueError("clip_norm must be > 0")

    @property
    def active(self) -> bool:
        return self.weight_decay is not None or self.l1 > 0 or self.clip_norm is not None

    def canonical(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != 0.0}


def apply_regularization(config: OptimizerConfig, regularization: Regularization | None) -> OptimizerConfig:
    """``config`` with the regularization's weight decay and L1 moved into its hyperparameters
    (first-order optimizers); L-BFGS keeps its configuration (its penalty goes into the loss)."""
    if regularization is None or config.is_lbfgs:
        return config
    changes: dict[str, Any] = {}
    if regularization.weight_decay is not None:
        changes["weight_decay"] = regularization.weight_decay
    if regularization.l1 > 0:
        changes["l1"] = regularization.l1
    return config.with_hyper(**changes) if changes else config


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces, tuples as lists, non-finite floats as strings)."""

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return repr(item)
        if isinstance(item, Mapping):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_key(identity: Mapping[str, Any]) -> str:
    """The content hash of a run's identity (:meth:`RunSpec.identity`)."""
    return hashlib.sha256(canonical_json({"format": RUN_FORMAT, **identity}).encode()).hexdigest()


@dataclass(frozen=True)
class RunSpec:
    """One run: what defines it — and so its key, whoever trains it (the runner step by step, the
    batched replicas, a worker process, a cluster) and however often it is asked for.

    ``problem`` is the problem's canonical spec (``name:key=value,...``) and ``problem_version`` its
    version; ``config`` the optimizer configuration (its class and explicit hyperparameters count,
    its label does not); ``budget``, ``schedule`` and ``regularization`` as the runner takes them."""

    problem: str
    config: OptimizerConfig
    seed: int
    budget: Budget
    schedule: ScheduleSpec | None = None
    regularization: Regularization | None = None
    problem_version: str = "1"

    @classmethod
    def of(
        cls,
        problem: Problem,
        config: OptimizerConfig,
        seed: int,
        budget: Budget,
        schedule: ScheduleSpec | None = None,
        regularization: Regularization | None = None,
    ) -> RunSpec:
        """The run of ``problem`` (an object of the registry) with the rest as given."""
        version = str(getattr(problem, "version", "1"))
        return cls(problem.spec, config, int(seed), budget, schedule, regularization, version)

    def identity(self) -> dict[str, Any]:
        """What identifies the run, as plain data (what storage keeps beside the result)."""
        return {
            "problem": self.problem,
            "problem_version": self.problem_version,
            "optimizer": self.config.canonical(),
            "seed": int(self.seed),
            "budget": self.budget.as_dict(),
            "schedule": self.schedule.text if self.schedule is not None else None,
            "regularization": self.regularization.canonical() if self.regularization is not None else {},
        }

    @functools.cached_property
    def key(self) -> str:
        """The run's key: the content hash of its identity."""
        return run_key(self.identity())


@dataclass
class RunResult:
    """Everything one run recorded (see the module docstring). JSON-friendly via :meth:`to_dict`."""

    problem: str
    optimizer: str
    seed: int
    final_loss: float
    final_metrics: dict[str, float]
    losses: list[float]
    lrs: list[float]
    evals: list[dict[str, float]]
    grad_evals: int
    steps: int
    wall_s: float
    diverged: bool
    divergence: str | None
    target_loss: float
    steps_to_target: float
    evals_to_target: float
    trajectory: list[list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_stored(cls, data: Any) -> RunResult:
        """The record of stored (untrusted) data: every field present and of its kind, or a
        ``ValueError`` saying what is wrong (a truncated or hand-edited row must never pass for a
        run)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{_kind_of(data)}, not a run's record")
        missing = [name for name in _RESULT_FIELDS if name not in data]
        if missing:
            more = f" and {len(missing) - 3} more fields" if len(missing) > 4 else ""
            raise ValueError(f"lacks {', '.join(missing[:3] if more else missing)}{more}")
        for name, (test, wording) in _RESULT_FIELDS.items():
            if not test(data[name]):
                raise ValueError(f"{name!r} is {_kind_of(data[name])}, not {wording}")
        trajectory = data.get("trajectory")
        if trajectory is not None and not (
            isinstance(trajectory, list) and all(p is None or _numbers(p) for p in trajectory)
        ):
            raise ValueError(f"'trajectory' is {_kind_of(trajectory)}, not a list of points")
        if not isinstance(data.get("extra", {}), dict):
            raise ValueError(f"'extra' is {_kind_of(data['extra'])}, not a table")
        return cls.from_dict(data)

    def eval_curve(self, metric: str = "loss") -> tuple[list[int], list[float]]:
        """(steps, values) of an evaluated metric, one point per epoch (and the start)."""
        points = [(int(e["step"]), float(e[metric])) for e in self.evals if metric in e]
        return [p[0] for p in points], [p[1] for p in points]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(_number(v) for v in value)


def _metrics(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _number(v) for k, v in value.items())


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _kind_of(value: Any) -> str:
    """How a wrong stored value is named in a message (short: a row can hold megabytes)."""
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


#: what every stored result holds: field → (test, what it must be); ``trajectory`` and ``extra``
#: are optional
_RESULT_FIELDS: dict[str, tuple[Any, str]] = {
    "problem": (lambda v: isinstance(v, str), "a problem spec"),
    "optimizer": (lambda v: isinstance(v, str), "a label"),
    "seed": (_whole, "a seed"),
    "final_loss": (_number, "a number"),
    "final_metrics": (_metrics, "a table of numbers"),
    "losses": (_numbers, "a list of numbers"),
    "lrs": (_numbers, "a list of numbers"),
    "evals": (
        lambda v: (
            isinstance(v, list) and bool(v) and all(_metrics(e) and "loss" in e and "step" in e for e in v)
        ),
        "a list of evaluations (with loss and step)",
    ),
    "grad_evals": (_whole, "a count"),
    "steps": (_whole, "a count"),
    "wall_s": (_number, "a number"),
    "diverged": (lambda v: isinstance(v, bool), "true or false"),
    "divergence": (lambda v: v is None or isinstance(v, str), "a reason or null"),
    "target_loss": (_number, "a number"),
    "steps_to_target": (_number, "a number"),
    "evals_to_target": (_number, "a number"),
}


def make_result(
    problem: Problem,
    optimizer: OptimizerConfig,
    seed: int,
    *,
    losses: list[float],
    lrs: list[float],
    evals: list[dict[str, float]],
    grad_evals: int,
    steps: int,
    wall_s: float,
    divergence: str | None,
    trajectory: list[list[float]] | None = None,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """The :class:`RunResult` of what a run recorded, however it was trained (:func:`train` or a
    batched replica): the final loss (+∞ when diverged) and metrics from the last evaluation, and
    steps/gradient evaluations to the target from the first evaluation at or below it."""
    target = float(problem.target_loss)
    reached = next((e for e in evals if math.isfinite(e["loss"]) and e["loss"] <= target), None)
    final_metrics = {k: v for k, v in evals[-1].items() if k not in ("epoch", "step", "grad_evals", "wall_s")}
    return RunResult(
        problem=problem.spec,
        optimizer=optimizer.label,
        seed=seed,
        final_loss=math.inf if divergence else float(final_metrics["loss"]),
        final_metrics=final_metrics,
        losses=losses,
        lrs=lrs,
        evals=evals,
        grad_evals=grad_evals,
        steps=steps,
        wall_s=wall_s,
        diverged=divergence is not None,
        divergence=divergence,
        target_loss=target,
        steps_to_target=math.inf if reached is None else float(reached["step"]),
        evals_to_target=math.inf if reached is None else float(reached["grad_evals"]),
        trajectory=trajectory,
        extra=dict(extra or {}),
    )
