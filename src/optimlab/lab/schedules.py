"""Learning-rate schedules for the lab, from one-line specs, built on ``torch.optim.lr_scheduler``.

A spec is ``kind`` or ``kind:key=value,...`` (``/`` separates list items)::

    step:step_size=4,gamma=0.5          StepLR                      (per epoch)
    multistep:milestones=8/24/28,gamma=0.5   MultiStepLR            (per epoch)
    exponential:gamma=0.5               ExponentialLR               (per epoch)
    cosine:T_max=32,eta_min=1e-4        CosineAnnealingLR           (per epoch; T_max = epochs)
    plateau:factor=0.1,patience=5       ReduceLROnPlateau           (per epoch, on the epoch's loss)
    lambda:0.95**epoch                  LambdaLR, a safe arithmetic expression of ``epoch``
    onecycle:max_lr=0.1,pct_start=0.3   OneCycleLR                  (per step; max_lr = the optimizer's lr)
    warmup:warmup_steps=100             LinearLR warm-up, then constant      (per step)
    warmup-cosine:warmup_steps=100      LinearLR warm-up, then CosineAnnealingLR, via SequentialLR (per step)

Parameters that depend on the run's length default to sensible values for the budget (``T_max`` =
the number of epochs, ``step_size`` = a third of them, ``warmup_steps`` = 10 % of the steps).
``lambda`` expressions may use numbers, ``epoch``, + − × / // % **, comparisons, ``a if c else b``
and the functions min, max, abs, exp, log, sqrt, cos, sin; nothing else is evaluated (the
expression is checked node by node with :mod:`ast`, never passed to ``eval``).

Public API: :func:`parse_schedule` → :class:`ScheduleSpec` (``build``, ``interval``,
``needs_metric``); :func:`lr_curve` samples a schedule's learning rate per step, for plots;
:data:`SCHEDULES` describes the kinds.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.optim import Optimizer, lr_scheduler

from optimlab.lab.loop import step_scheduler
from optimlab.lab.spec import format_spec, format_value, parse_options

Interval = Literal["epoch", "step"]


@dataclass(frozen=True)
class ScheduleKind:
    """A schedule kind: its torch class(es), when it steps, and its parameters with descriptions."""

    name: str
    description: str
    interval: Interval
    params: Mapping[str, str]
    needs_metric: bool = False


SCHEDULES: dict[str, ScheduleKind] = {
    k.name: k
    for k in (
        ScheduleKind("constant", "no schedule: the optimizer's lr throughout", "epoch", {}),
        ScheduleKind(
            "step",
            "StepLR: lr × gamma every step_size epochs",
            "epoch",
            {"step_size": "epochs between decays (default epochs/3)", "gamma": "decay factor (0.1)"},
        ),
        ScheduleKind(
            "multistep",
            "MultiStepLR: lr × gamma at each milestone epoch",
            "epoch",
            {"milestones": "epochs a/b/c (default 1/2 and 3/4 of the epochs)", "gamma": "factor (0.1)"},
        ),
        ScheduleKind(
            "exponential", "ExponentialLR: lr × gamma every epoch", "epoch", {"gamma": "factor (0.9)"}
        ),
        ScheduleKind(
            "cosine",
            "CosineAnnealingLR: half a cosine from lr to eta_min",
            "epoch",
            {"T_max": "epochs of the half cosine (default all)", "eta_min": "final lr (0)"},
        ),
        ScheduleKind(
            "plateau",
            "ReduceLROnPlateau: lr × factor when the epoch's loss stalls",
            "epoch",
            {
                "factor": "0.1",
                "patience": "epochs without improvement (10)",
                "threshold": "1e-4",
                "cooldown": "0",
                "min_lr": "0",
                "mode": "min",
            },
            needs_metric=True,
        ),
        ScheduleKind(
            "lambda",
            "LambdaLR: lr × f(epoch), f a safe arithmetic expression",
            "epoch",
            {"expression": "e.g. 0.95**epoch or min(1, (epoch+1)/5)"},
        ),
        ScheduleKind(
            "onecycle",
            "OneCycleLR: warm up to max_lr, anneal far below (per step)",
            "step",
            {
                "max_lr": "peak lr (default the optimizer's lr)",
                "pct_start": "0.3",
                "anneal_strategy": "cos | linear",
                "div_factor": "25",
                "final_div_factor": "1e4",
                "three_phase": "false",
                "cycle_momentum": "false (true cycles momentum/beta1)",
                "total_steps": "steps the cycle spans (default the run's epochs × steps per epoch)",
            },
        ),
        ScheduleKind(
            "warmup",
            "LinearLR warm-up from start_factor·lr to lr, then constant (per step)",
            "step",
            {
                "warmup_steps": "default 10% of the steps",
                "start_factor": "0.01",
                "total_steps": "steps the schedule spans (default the run's epochs × steps per epoch)",
            },
        ),
        ScheduleKind(
            "warmup-cosine",
            "linear warm-up then cosine annealing, SequentialLR (per step)",
            "step",
            {
                "warmup_steps": "default 10% of the steps",
                "start_factor": "0.01",
                "eta_min": "0",
                "total_steps": "steps the schedule spans, its cosine ending there (default the run's "
                "epochs × steps per epoch)",
            },
        ),
    )
}


#: what each parameter must be: (a test, its wording); the same name means the same in every kind
_PARAMETER_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {}


def _whole(minimum: int) -> Callable[[Any], bool]:
    def test(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        return v == int(v) and v >= minimum

    return test


def _number(
    low: float, high: float = math.inf, *, low_open: bool = True, high_open: bool = False
) -> Callable[[Any], bool]:
    def test(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above and below

    return test


_PARAMETER_KINDS.update(
    {
        "step_size": (_whole(1), "a whole number of epochs ≥ 1"),
        "T_max": (_whole(1), "a whole number of epochs ≥ 1"),
        "warmup_steps": (_whole(1), "a whole number of steps ≥ 1"),
        "total_steps": (_whole(1), "a whole number of steps ≥ 1"),
        "patience": (_whole(0), "a whole number of epochs ≥ 0"),
        "cooldown": (_whole(0), "a whole number of epochs ≥ 0"),
        "gamma": (_number(0), "a factor > 0 (a factor ≤ 0 makes the lr zero or negative)"),
        "max_lr": (_number(0), "a learning rate > 0"),
        "div_factor": (_number(0), "a number > 0"),
        "final_div_factor": (_number(0), "a number > 0"),
        "eta_min": (_number(0, low_open=False), "a learning rate ≥ 0"),
        "min_lr": (_number(0, low_open=False), "a learning rate ≥ 0"),
        "threshold": (_number(0, low_open=False), "a number ≥ 0"),
        "factor": (_number(0, 1, high_open=True), "a factor between 0 and 1 (exclusive)"),
        "pct_start": (_number(0, 1, high_open=True), "a fraction between 0 and 1 (exclusive)"),
        "start_factor": (_number(0, 1), "a factor in (0, 1]"),
        "three_phase": (lambda v: isinstance(v, bool), "true or false"),
        "cycle_momentum": (lambda v: isinstance(v, bool), "true or false"),
        "mode": (lambda v: v in ("min", "max"), "min or max"),
        "anneal_strategy": (lambda v: v in ("cos", "linear"), "cos or linear"),
        "milestones": (
            lambda v: all(_whole(1)(m) for m in (v if isinstance(v, tuple) else (v,))),
            "whole epochs ≥ 1 separated by '/' (e.g. 8/24/28)",
        ),
    }
)


def _check_parameter(text: str, key: str, value: Any) -> None:
    test, wording = _PARAMETER_KINDS[key]
    if not test(value):
        raise ValueError(f"schedule {text!r}: {key} must be {wording}, got {format_value(value)}")


# --- the safe lambda expression ---------------------------------------------------------------

_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "cos": math.cos,
    "sin": math.sin,
}
_VARIABLES = ("epoch",)


class SafeExpression:
    """An arithmetic expression of ``epoch``, checked against a whitelist of ``ast`` nodes.

    Calling it evaluates the tree directly with floats (so ``10**10**10`` overflows instead of
    building a huge integer), compiled once into closures; :meth:`check_epochs` evaluates it at
    every epoch of a run before the run starts; anything outside the whitelist — attributes, subscripts, names
    other than ``epoch`` and the listed functions, lambdas, comprehensions — is refused at parse
    time with ``ValueError``.
    """

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        if not self.text:
            raise ValueError("empty lambda expression")
        if len(self.text) > 500:
            raise ValueError("lambda expression is too long (500 characters at most)")
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as error:
            raise ValueError(f"lambda expression {self.text!r} is not valid: {error.msg}") from None
        self._check(tree.body)
        self.tree = tree.body
        self._function = self._compile(tree.body)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ValueError(
                    f"lambda expression {self.text!r}: only numbers are allowed, not {node.value!r}"
                )
        elif isinstance(node, ast.Name):
            if node.id not in _VARIABLES:
                raise ValueError(f"lambda expression {self.text!r}: unknown name {node.id!r} (use epoch)")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for child in (node.left, *node.comparators):
                self._check(child)
        elif isinstance(node, ast.IfExp):
            for child in (node.test, node.body, node.orelse):
                self._check(child)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS
            and not node.keywords
            and node.args
        ):
            for arg in node.args:
                self._check(arg)
        else:
            raise ValueError(
                f"lambda expression {self.text!r}: {type(node).__name__} is not allowed "
                f"(numbers, epoch, arithmetic, comparisons, if/else, {', '.join(_FUNCTIONS)})"
            )

    def _compile(self, node: ast.AST) -> Callable[[float], float]:
        """The checked tree as nested closures of ``epoch`` (floats throughout): what ``__call__``
        runs, fast enough to check every epoch of a long run before it starts."""
        if isinstance(node, ast.Constant):
            constant = float(node.value)
            return lambda epoch: constant
        if isinstance(node, ast.Name):
            return lambda epoch: epoch
        if isinstance(node, ast.BinOp):
            binary, left, right = _BINARY[type(node.op)], self._compile(node.left), self._compile(node.right)
            return lambda epoch: binary(left(epoch), right(epoch))
        if isinstance(node, ast.UnaryOp):
            unary, operand = _UNARY[type(node.op)], self._compile(node.operand)
            return lambda epoch: unary(operand(epoch))
        if isinstance(node, ast.Compare):
            first = self._compile(node.left)
            chain = [
                (_COMPARE[type(op)], self._compile(c))
                for op, c in zip(node.ops, node.comparators, strict=True)
            ]

            def compare(epoch: float) -> float:
                left = first(epoch)
                for test, comparator in chain:
                    right = comparator(epoch)
                    if not test(left, right):
                        return 0.0
                    left = right
                return 1.0

            return compare
        if isinstance(node, ast.IfExp):
            condition, body, orelse = (self._compile(n) for n in (node.test, node.body, node.orelse))
            return lambda epoch: body(epoch) if condition(epoch) else orelse(epoch)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        function, args = _FUNCTIONS[node.func.id], [self._compile(arg) for arg in node.args]
        return lambda epoch: float(function(*(arg(epoch) for arg in args)))

    def __call__(self, epoch: int | float) -> float:
        try:
            value = self._function(float(epoch))
        except (OverflowError, ZeroDivisionError, ValueError) as error:
            raise ValueError(f"lambda expression {self.text!r} fails at epoch {epoch}: {error}") from None
        if isinstance(value, complex) or not math.isfinite(value) or value < 0:
            shown = f"{value:.4g}" if isinstance(value, float) else repr(value)
            raise ValueError(f"lambda expression {self.text!r} gives {shown} at epoch {epoch} (need ≥ 0)")
        return value

    def check_epochs(self, epochs: int) -> None:
        """Raise ``ValueError`` naming the first epoch of ``0 … epochs`` where the expression fails or
        gives a negative or non-finite factor (a run of ``epochs`` epochs evaluates each: at the
        start and after every epoch)."""
        _check_lambda(self.text, epochs)

    def __repr__(self) -> str:
        return f"SafeExpression({self.text!r})"


class _ScaleEpoch(ast.NodeTransformer):
    """Replaces ``epoch`` by ``(epoch / fraction)`` in a checked lambda expression."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id != "epoch":
            return node
        return ast.BinOp(left=ast.Name("epoch", ast.Load()), op=ast.Div(), right=ast.Constant(self.fraction))


@functools.lru_cache(maxsize=64)
def _check_lambda(text: str, epochs: int) -> None:
    expression = SafeExpression(text)
    for epoch in range(epochs + 1):
        expression(epoch)


# --- specs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    """A parsed schedule: ``kind`` with its ``params``; builds the torch scheduler for a run.

    ``interval`` says whether the scheduler steps after every epoch or every batch, and
    ``needs_metric`` whether ``step`` takes the epoch's loss (``plateau``).
    """

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def interval(self) -> Interval:
        return SCHEDULES[self.kind].interval

    @property
    def needs_metric(self) -> bool:
        return SCHEDULES[self.kind].needs_metric

    @property
    def text(self) -> str:
        """The canonical spec (keys sorted), used in stored run keys."""
        if self.kind == "lambda":
            return f"lambda:{self.params['expression']}"
        if not self.params:
            return self.kind
        return format_spec(self.kind, self.params)

    def __str__(self) -> str:
        return self.text

    def build(
        self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int, probe: bool = False
    ) -> lr_scheduler.LRScheduler | None:
        """The torch scheduler for ``optimizer`` over a run of ``epochs`` × ``steps_per_epoch`` steps
        (``None`` for ``constant``). Raises ``ValueError`` for parameters torch rejects, and for a
        warm-up as long as the run; ``probe`` (a stand-in run, no real length) skips that."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return self._build(optimizer, max(1, epochs), max(1, steps_per_epoch), probe)
        except (TypeError, ValueError, KeyError, ZeroDivisionError) as error:
            raise ValueError(f"schedule {self.text!r}: {error}") from None

    def check_for(self, epochs: int, steps_per_epoch: int, steps: int | None = None) -> None:
        """Raise ``ValueError`` if this schedule cannot run ``epochs`` × ``steps_per_epoch`` steps
        (``steps`` of them when the run ends within its last epoch): parameters that do not fit that
        length (a warm-up as long as the run, a ``total_steps`` shorter than it), or a ``lambda``
        that fails or gives a negative or non-finite factor at any epoch of it (each is evaluated,
        so a run never stops half-way on its schedule)."""
        spans = self.params.get("total_steps")
        run_steps = steps if steps is not None else epochs * steps_per_epoch
        if spans is not None and int(spans) < run_steps:
            raise ValueError(
                f"schedule {self.text!r} spans {int(spans)} steps but the run has {run_steps}: "
                "give total_steps ≥ the run's steps"
            )
        probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
        self.build(probe, epochs=epochs, steps_per_epoch=steps_per_epoch)
        if self.kind == "lambda":
            try:
                SafeExpression(self.params["expression"]).check_epochs(max(1, epochs))
            except ValueError as error:
                raise ValueError(f"schedule {self.text!r} over a run of {epochs} epochs: {error}") from None

    def spanning(self, steps: int, epochs: int, steps_per_epoch: int) -> ScheduleSpec:
        """This schedule laid over exactly ``steps`` steps where the run ends within its last epoch
        (``steps`` < ``epochs`` × ``steps_per_epoch``): a per-step schedule that reads the run's
        length (``warmup``, ``warmup-cosine``, ``onecycle``) gets ``total_steps = steps``, so that it
        ends at the run's last step; others, and a run of whole epochs, are returned as they are."""
        if self.interval != "step" or "total_steps" in self.params or steps >= epochs * steps_per_epoch:
            return self
        return ScheduleSpec(self.kind, {**self.params, "total_steps": int(steps)})

    def rescaled(self, fraction: float) -> ScheduleSpec:
        """This schedule compressed in time to a run ``fraction`` as long (a horizon, 0 < fraction ≤ 1):
        lr_h(t) = lr(t / fraction), up to whole epochs and steps.

        Lengths given explicitly are multiplied by ``fraction`` and rounded (at least 1): ``T_max``,
        ``step_size``, ``milestones``, ``warmup_steps``; ``exponential``'s ``gamma`` becomes
        gamma^(1/fraction); a ``lambda`` expression reads ``epoch / fraction``. Lengths left to their
        defaults already follow the run's length, and so do ``onecycle``'s phases; ``plateau``
        reacts to the loss and is kept as it is. ``fraction == 1`` returns this schedule."""
        if not 0 < fraction <= 1:
            raise ValueError(f"a horizon must be in (0, 1], got {fraction!r}")
        if fraction == 1:
            return self

        def shorter(value: Any) -> int:
            return max(1, round(float(value) * fraction))

        params = dict(self.params)
        if self.kind == "lambda":
            tree = ast.parse(params["expression"].strip(), mode="eval")
            scaled = _ScaleEpoch(fraction).visit(tree)
            return ScheduleSpec("lambda", {"expression": ast.unparse(ast.fix_missing_locations(scaled))})
        for key in ("T_max", "step_size", "warmup_steps", "total_steps"):
            if key in params:
                params[key] = shorter(params[key])
        if "milestones" in params:
            milestones = params["milestones"]
            scaled_milestones = tuple(
                shorter(m) for m in (milestones if isinstance(milestones, tuple) else (milestones,))
            )
            if len(set(scaled_milestones)) != len(scaled_milestones):
                raise ValueError(
                    f"schedule {self.text!r} cannot be rescaled to a horizon of {fraction:g}: its milestones "
                    f"fall on the same epoch ({'/'.join(map(str, scaled_milestones))})"
                )
            params["milestones"] = scaled_milestones
        if self.kind == "exponential":
            params["gamma"] = float(f"{float(params.get('gamma', 0.9)) ** (1 / fraction):.6g}")
        return ScheduleSpec(self.kind, params)

    def _build(
        self, optimizer: Optimizer, epochs: int, steps_per_epoch: int, probe: bool = False
    ) -> lr_scheduler.LRScheduler | None:
        p = dict(self.params)
        total_steps = int(p.pop("total_steps", epochs * steps_per_epoch))
        if self.kind == "constant":
            return None
        if self.kind == "step":
            return lr_scheduler.StepLR(optimizer, step_size=int(p.pop("step_size", max(1, epochs // 3))), **p)
        if self.kind == "multistep":
            milestones = p.pop("milestones", (max(1, epochs // 2), max(1, 3 * epochs // 4)))
            milestones = [int(m) for m in (milestones if isinstance(milestones, tuple) else (milestones,))]
            if milestones != sorted(set(milestones)):
                raise ValueError(f"milestones must increase, got {'/'.join(map(str, milestones))}")
            return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, **p)
        if self.kind == "exponential":
            return lr_scheduler.ExponentialLR(optimizer, gamma=float(p.pop("gamma", 0.9)), **p)
        if self.kind == "cosine":
            return lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(p.pop("T_max", epochs)), **p)
        if self.kind == "plateau":
            return lr_scheduler.ReduceLROnPlateau(optimizer, **p)
        if self.kind == "lambda":
            return lr_scheduler.LambdaLR(optimizer, lr_lambda=SafeExpression(p["expression"]))
        if self.kind == "onecycle":
            max_lr = p.pop("max_lr", [group["lr"] for group in optimizer.param_groups])
            p.setdefault("cycle_momentum", False)
            return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, **p)
        warmup = int(p.pop("warmup_steps", max(1, total_steps // 10)))
        if probe:  # a stand-in run: only check_for knows the run's length
            total_steps = max(total_steps, warmup + 1)
        if warmup < 1 or warmup >= total_steps:
            raise ValueError(
                f"warmup_steps must be between 1 and {total_steps - 1} (the run has {total_steps} steps)"
            )
        start_factor = float(p.pop("start_factor", 0.01))
        linear = lr_scheduler.LinearLR(
            optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup
        )
        if self.kind == "warmup":
            if p:
                raise ValueError(f"unexpected parameter {next(iter(p))!r}")
            return linear
        cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup, **p)
        return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def parse_schedule(spec: str | None) -> ScheduleSpec | None:
    """Parse a schedule spec (see the module docstring); ``None``/``""``/``"none"`` → ``None``.

    Raises ``ValueError`` with one clear line for an unknown kind, an unknown or malformed
    parameter, an unsafe lambda expression, or values torch's scheduler rejects.
    """
    if spec is None or not spec.strip() or spec.strip().lower() in ("none", "constant"):
        return None
    text = spec.strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    if kind not in SCHEDULES:
        raise ValueError(
            f"unknown schedule {kind!r}; schedules: {', '.join(k for k in SCHEDULES if k != 'constant')}"
        )
    if kind == "lambda":
        if not rest.strip():
            raise ValueError("schedule 'lambda' needs an expression, e.g. lambda:0.95**epoch")
        expression = SafeExpression(rest)
        for epoch in (0, 1, 10):  # fail now, not in the middle of a run
            expression(epoch)
        spec_obj = ScheduleSpec("lambda", {"expression": expression.text})
    else:
        params = parse_options(rest, text)
        for key, value in params.items():
            if key not in SCHEDULES[kind].params:
                known = ", ".join(SCHEDULES[kind].params) or "none"
                raise ValueError(f"schedule {kind!r} has no parameter {key!r}; its parameters: {known}")
            _check_parameter(text, key, value)
        spec_obj = ScheduleSpec(kind, params)
    # build once on a dummy optimizer so that bad values fail here, with the spec in the message
    # (on a long run: limits that depend on the run's length are checked by ``check_for``)
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    spec_obj.build(probe, epochs=1000, steps_per_epoch=1000, probe=True)
    return spec_obj


def lr_curve(
    spec: ScheduleSpec | str | None,
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    metrics: Sequence[float] | None = None,
) -> list[float]:
    """The learning rate used at every step of a run of ``epochs`` × ``steps_per_epoch`` steps.

    ``metrics`` (one loss per epoch) drives ``plateau``; without it the loss never improves after
    the first epoch, which shows the schedule's decay pattern. Used for plots (``optimlab
    schedule``); the runner steps the same scheduler during training.
    """
    parsed = parse_schedule(spec) if isinstance(spec, str) else spec
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    scheduler = parsed.build(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch) if parsed else None
    curve: list[float] = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            curve.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()
            if scheduler is not None and parsed is not None and parsed.interval == "step":
                step_scheduler(scheduler)
        if scheduler is not None and parsed is not None and parsed.interval == "epoch":
            metric = metrics[epoch] if metrics is not None and epoch < len(metrics) else 1.0
            step_scheduler(scheduler, metric)
    return curve


def zero_lr_steps(spec: ScheduleSpec | None, epochs: int, steps_per_epoch: int) -> tuple[int, int] | None:
    """The first and last step (0-based) of a run where ``spec`` holds the learning rate at exactly
    0, or ``None``: such steps change nothing (seed 001's ``lambda epoch: epoch // 30`` does it for
    its first 30 epochs)."""
    if spec is None:
        return None
    zeros = [step for step, lr in enumerate(lr_curve(spec, 1.0, epochs, steps_per_epoch)) if lr == 0]
    return (zeros[0], zeros[-1]) if zeros else None
