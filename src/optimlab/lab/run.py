"""What a run is: its regularization, its record, and how a record is made from what was trained.

A run is a problem (its spec), an optimizer configuration, a seed, a budget, an optional learning-
rate schedule and optional :class:`Regularization` — one :class:`RunSpec`. Whatever trains it —
:func:`optimlab.lab.runner.train` step by step, or :mod:`optimlab.lab.replicas` batched under
``torch.vmap`` — records one :class:`RunRecord` and hands it to :func:`make_result`; the
:class:`RunResult` it returns (the same record, with what it achieved) is what storage keeps and
results and reports read. This module imports neither a trainer nor an engine (nor torch), so that storage,
results and reports load without them.

What a run records:

* the training loss of every step (the mini-batch loss the optimizer saw, before its update) and
  the learning rate it used;
* evaluations, at the steps of its :class:`EvaluationSchedule` (one definition: the step-by-step
  loop and the batched replicas both ask it), each with the step count, gradient evaluations, wall
  time and ``epoch`` so far:

  - before the first step and after every epoch (and after the last step, when the budget ends
    within an epoch), ``problem.evaluate(model)`` — the full objective ``loss`` and the validation
    metrics; ``epoch`` is the number of epochs begun, a whole number (what plateau schedules read:
    :meth:`RunResult.epoch_evals`);
  - within epochs, every :attr:`EvaluationSchedule.interval` steps, the full objective ``loss`` alone
    (``problem.evaluate(model)["loss"]``, computed without the other metrics where it can be) —
    about :data:`EVALUATIONS` of them over the budget and at most :data:`EPOCH_EVALUATIONS` an epoch,
    so that loss curves and steps to target are not rounded to whole epochs while evaluating costs
    a bounded part of training; ``epoch`` is the fraction ``step / steps_per_epoch``, never whole;

* gradient evaluations: one per step for first-order optimizers, one per closure call for L-BFGS;
* divergence as a result, never an exception: a NaN or ±Inf loss or evaluation (``"nan"``,
  ``"inf"``) or a loss above ``EXPLOSION_FACTOR × max(|initial loss|, 1)`` (``"explosion"``) ends
  the run with ``diverged=True`` and a final loss of +∞ — checked at every step and every
  evaluation;
* steps and gradient evaluations to the problem's target loss: the first evaluation whose ``loss``
  is at or below ``problem.target_loss`` (∞ when never reached).

Versions. A run's key (:attr:`RunSpec.key`) is the hash of what defines the run — what is trained —
and :data:`RUN_FORMAT` versions that identity. :data:`RECORD_VERSION` versions what a run records of
its training, written into every :class:`RunResult` (``record_version``). Version 1 (every result
stored before it was written: none says so) evaluated only before the first step and after each
epoch; version 2 added the evaluations within epochs. The training itself did not change — the same
steps, losses and parameters — so the keys did not: a stored run of an older record version is found
under the same key, and a comparison that needs it trains it again and replaces its row
(:meth:`optimlab.lab.storage.Store.check`, :meth:`~optimlab.lab.storage.Store.put`), counted as
trained, never reused as it is. Its ``steps_to_target``, ``evals_to_target`` and evaluations
(``evals``: the curves) become finer; its losses, lrs, final loss and final metrics stay the same.
A diverging run can stop earlier than it did, when an evaluation within an epoch finds the divergence
an epoch-end evaluation found later.
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

#: the version of what a run records (see "Versions" above): every new :class:`RunResult` is of this
#: version; a stored one of an older version is trained again when a comparison needs it
RECORD_VERSION = 2

#: a loss above this factor × max(|initial loss|, 1) counts as an explosion
EXPLOSION_FACTOR = 1e4

#: a run is evaluated about this many times within its budget (:class:`EvaluationSchedule`) ...
EVALUATIONS = 50
#: ... and at most this many times an epoch, its end included: an evaluation passes over the whole
#: training set (a fifth of an epoch's training on ``digits-cnn``), so this bounds what evaluating
#: costs — 4 an epoch made a comparison on ``digits-cnn`` take ×1.49 as long, 2 about ×1.2
#: (``benchmarks/evaluation_cost.py``)
EPOCH_EVALUATIONS = 2


@dataclass(frozen=True)
class EvaluationSchedule:
    """When a run of ``total_steps`` steps, ``steps_per_epoch`` to an epoch, is evaluated.

    Fully (``problem.evaluate``) before the first step, after every epoch and after the last step;
    its loss alone in between, after every :attr:`interval`-th step of an epoch, where

        interval = min(steps_per_epoch, max(⌈total_steps / EVALUATIONS⌉,
                                            ⌈steps_per_epoch / EPOCH_EVALUATIONS⌉))

    — at most about :data:`EVALUATIONS` evaluations over the budget and :data:`EPOCH_EVALUATIONS` an
    epoch, its end included (a short budget of long epochs is not evaluated at every step), never
    fewer than one an epoch (a budget of many short epochs is evaluated after each, as before).
    Changing these numbers changes what runs record: it needs a new :data:`RECORD_VERSION`."""

    total_steps: int
    steps_per_epoch: int

    def __post_init__(self) -> None:
        if self.total_steps < 1 or self.steps_per_epoch < 1:
            raise ValueError(
                f"a run needs ≥ 1 step and ≥ 1 step per epoch, got {self.total_steps} steps"
                f" and {self.steps_per_epoch} per epoch"
            )

    @property
    def interval(self) -> int:
        """Steps between two evaluations of the loss within an epoch."""
        spread = math.ceil(self.total_steps / EVALUATIONS)
        return min(self.steps_per_epoch, max(spread, math.ceil(self.steps_per_epoch / EPOCH_EVALUATIONS)))

    def within_epoch(self, step: int) -> bool:
        """Whether the loss alone is evaluated after ``step`` steps: a multiple of :attr:`interval`
        steps into an epoch, neither its end nor the budget's (those are evaluated fully)."""
        into = step % self.steps_per_epoch
        return into != 0 and into % self.interval == 0 and step < self.total_steps

    def count(self) -> int:
        """How many evaluations a run that trains its whole budget records (``len(steps())``, by
        arithmetic)."""
        whole, rest = divmod(self.total_steps, self.steps_per_epoch)
        within = whole * ((self.steps_per_epoch - 1) // self.interval)
        if rest:
            within += (rest - 1) // self.interval
        return 1 + whole + (1 if rest else 0) + within

    def steps(self) -> list[int]:
        """Every step after which a run that trains its whole budget is evaluated (0: before the first)."""
        return [
            s
            for s in range(self.total_steps + 1)
            if s % self.steps_per_epoch % self.interval == 0 or s == self.total_steps
        ]


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


@dataclass(kw_only=True)
class RunRecord:
    """What training one run records, whichever trainer trained it (see the module docstring): the
    step-by-step loop (:func:`optimlab.lab.loop.run_steps`) returns one, a batched replica's
    :class:`~optimlab.lab.replicas.ReplicaRun` and the stored :class:`RunResult` extend it.

    ``losses[k]``/``lrs[k]``: the mini-batch loss of step k (before its update) and its lr;
    ``evals``: ``{"epoch", "step", "grad_evals", "wall_s", "loss", ...}`` at the steps of the
    run's :class:`EvaluationSchedule`; ``divergence``: ``"nan"``, ``"inf"``, ``"explosion"`` or
    ``None``; ``trajectory``: the points of its path (a trainer's own: parameter vectors, or the
    problem's ``trajectory_point``s in a :class:`RunResult`), when recorded."""

    losses: list[float]
    lrs: list[float]
    evals: list[dict[str, float]]
    grad_evals: int
    steps: int
    wall_s: float
    divergence: str | None
    trajectory: list[list[float]] | None = None

    def recorded(self) -> dict[str, Any]:
        """The fields of :class:`RunRecord` this record holds, by name: what a record that extends it
        (a :class:`RunResult`, a replica's run) is made from."""
        return {f.name: getattr(self, f.name) for f in fields(RunRecord)}


@dataclass(kw_only=True)
class RunResult(RunRecord):
    """Everything one run recorded (see the module docstring) with what it is a run of and what it
    achieved: what storage keeps and results read. JSON-friendly via :meth:`to_dict`."""

    problem: str
    optimizer: str
    seed: int
    final_loss: float
    final_metrics: dict[str, float]
    diverged: bool
    target_loss: float
    steps_to_target: float
    evals_to_target: float
    extra: dict[str, Any] = field(default_factory=dict)
    #: what this record holds (:data:`RECORD_VERSION`; a stored result without it is of version 1)
    record_version: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict(self)``: a deep copy; made directly where every field holds JSON's
        kinds (numbers, strings, lists and string-keyed tables of them), as a run's record does —
        ``asdict`` deep-copies every float of every step one by one."""
        try:
            return {f.name: _plain_copy(getattr(self, f.name)) for f in fields(self)}
        except _NotPlain:
            return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values.setdefault("record_version", 1)  # written before records said their version
        return cls(**values)

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
        version = data.get("record_version", 1)
        if not (_whole(version) and version >= 1):
            raise ValueError(f"'record_version' is {_kind_of(version)}, not a version (1, 2, ...)")
        return cls.from_dict(data)

    def eval_curve(self, metric: str = "loss") -> tuple[list[int], list[float]]:
        """(steps, values) of an evaluated metric at each evaluation that holds it (the loss: every
        evaluation; the other metrics: the start and every epoch)."""
        points = [(int(e["step"]), float(e[metric])) for e in self.evals if metric in e]
        return [p[0] for p in points], [p[1] for p in points]

    def epoch_evals(self) -> list[dict[str, float]]:
        """The full evaluations: before the first step and after each epoch (the last one also when
        the budget ends within it) — what a plateau schedule reads; the evaluations within epochs
        (their ``epoch`` a fraction) left out."""
        return [e for e in self.evals if float(e["epoch"]).is_integer()]


class _NotPlain(Exception):
    """A value :func:`_plain_copy` leaves to ``dataclasses.asdict``."""


_SCALARS = frozenset({float, int, str, bool, type(None)})


def _plain_copy(value: Any) -> Any:
    """What ``copy.deepcopy`` gives of a value made of numbers, strings, ``None``, lists and dicts of
    them (the scalars are immutable: shared, as ``deepcopy`` shares them); :class:`_NotPlain` for
    anything else."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        if set(map(type, value)) <= _SCALARS:
            return list(value)
        return [_plain_copy(v) for v in value]
    if kind is dict:
        return {_plain_copy(k): _plain_copy(v) for k, v in value.items()}
    raise _NotPlain


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: Any) -> bool:
    if not isinstance(value, list):
        return False
    return set(map(type, value)) <= {int, float} or all(_number(v) for v in value)  # the first: fast


def _metrics(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if set(map(type, value)) <= {str} and set(map(type, value.values())) <= {int, float}:
        return True  # (fast: what every stored evaluation holds; bools are of neither type)
    return all(isinstance(k, str) and _number(v) for k, v in value.items())


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _kind_of(value: Any) -> str:
    """How a wrong stored value is named in a message (short: a row can hold megabytes)."""
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


#: what every evaluation of a stored result holds
_EVALUATION_KEYS = {"epoch", "step", "grad_evals", "wall_s", "loss"}

#: what every stored result holds: field → (test, what it must be); ``trajectory``, ``extra`` and
#: ``record_version`` (1 when absent) are optional
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
            isinstance(v, list) and bool(v) and all(_metrics(e) and e.keys() >= _EVALUATION_KEYS for e in v)
        ),
        "a list of evaluations (with epoch, step, grad_evals, wall_s and loss)",
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
    record: RunRecord,
    *,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """The :class:`RunResult` of what a run recorded, whichever trainer trained it: the final loss
    (+∞ when diverged) and metrics from the last evaluation, and steps/gradient evaluations to the
    target from the first evaluation at or below it. ``record.trajectory`` must hold the problem's
    ``trajectory_point``s (a trainer's parameter path is turned into them first)."""
    evals = record.evals
    target = float(problem.target_loss)
    reached = next((e for e in evals if math.isfinite(e["loss"]) and e["loss"] <= target), None)
    final_metrics = {k: v for k, v in evals[-1].items() if k not in ("epoch", "step", "grad_evals", "wall_s")}
    return RunResult(
        **record.recorded(),
        problem=problem.spec,
        optimizer=optimizer.label,
        seed=seed,
        final_loss=math.inf if record.divergence else float(final_metrics["loss"]),
        final_metrics=final_metrics,
        diverged=record.divergence is not None,
        target_loss=target,
        steps_to_target=math.inf if reached is None else float(reached["step"]),
        evals_to_target=math.inf if reached is None else float(reached["grad_evals"]),
        extra=dict(extra or {}),
    )
