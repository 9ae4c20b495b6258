"""The eager engine's runs of small tensors, planned once and re-checked at every step.

:class:`~optimlab.optim.engine.chunks.SmallTensorRuns` decides, parameter by parameter, whether a
small parameter may join a run and which: its Python type, layout, device, dtypes and sizes, its
state entries (tensors of its size and 0-d ones on the host) and the values of its 0-d state. That
is a few µs of Python per parameter and step: on a model of 195 small tensors, a third of SGD's
eager step. The runs a step forms are recorded as they are evaluated (:class:`RunRecorder`), and
after the step the eager engine keeps them as a :class:`RunPlan`: which positions of the group's
parameter list formed each run, each run's state keys, and dynamo's ``TensorGuards`` over the
metadata of every operand (Python type, dispatch keys, dtype, device, ``requires_grad``, sizes,
strides), as the fused engine's plans do (:mod:`~optimlab.optim.engine.plans`). A step whose state
changes its keys (SGD's first, which makes the momentum buffers) is not planned; the next one is.

At the next step the plan reads the parameters, gradients and state afresh (it keeps no tensor) and
checks, besides the guard, what the guard cannot see: that each member's state has the same keys,
and that the 0-d values a run's members share (the step counter, NAdam's μ-product) are still equal.
When everything holds, :meth:`~SmallTensorRuns.add` would form the same runs — or runs as exact —
so they are evaluated at once; when anything differs, the step takes the full path and plans again.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor

from optimlab.optim.engine.chunks import SmallTensorRuns, _Run
from optimlab.optim.engine.plans import _tensor_guards
from optimlab.optim.engine.threads import one_thread

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer

#: how a run reads a 0-d state entry: the counter's value on the host (``host_step``), the 0-d
#: tensor itself, or a Python number stored as such
_HOST, _TENSOR, _NUMBER = "host", "tensor", "number"
_NO_STATE: dict[str, Any] = {}


class _RunLayout:
    """One planned run: the positions of its members, their element count, the state keys they all
    have (``count`` of them), the parameter-sized entries and the 0-d ones (each with how the rule
    reads it)."""

    __slots__ = ("count", "names", "numel", "positions", "scalars", "tensors_of")

    def __init__(
        self,
        positions: tuple[int, ...],
        numel: int,
        names: tuple[str, ...],
        scalars: tuple[tuple[str, str], ...],
        count: int,
    ) -> None:
        self.positions = positions
        self.numel = numel
        self.names = names
        self.scalars = scalars
        self.count = count
        #: a member's parameter-sized state entries, as a tuple
        self.tensors_of: Callable[[dict[str, Any]], tuple[Tensor, ...]]
        if len(names) > 1:
            self.tensors_of = operator.itemgetter(*names)
        elif names:
            (name,) = names
            self.tensors_of = lambda state: (state[name],)
        else:
            self.tensors_of = lambda state: ()


class RunRecorder:
    """Records the runs a step's :class:`SmallTensorRuns` evaluates (its ``record``): each run's
    members as positions in the step's parameter list, and its state keys as they were read."""

    def __init__(self, optimizer: RuleOptimizer, params: list[Tensor]) -> None:
        self.optimizer = optimizer
        self.position_of = {id(param): position for position, param in enumerate(params)}
        self.layouts: list[_RunLayout] = []
        self.plannable = True

    def __call__(self, run: _Run) -> None:
        first = self.optimizer.state.get(run.params[0]) or _NO_STATE
        if any(value is None for value in first.values()):  # (a torch 1.x momentum buffer of None)
            self.plannable = False
        scalars = []
        for key, value in run.scalars.items():
            stored = first[key]
            kind = _TENSOR if isinstance(value, Tensor) else _HOST if isinstance(stored, Tensor) else _NUMBER
            scalars.append((key, kind))
        positions = tuple(self.position_of[id(param)] for param in run.params)
        self.layouts.append(_RunLayout(positions, run.numel, run.names, tuple(scalars), len(first)))


def _same(value: Any, first: Any) -> bool:
    """Whether two 0-d values read the same to the rule (bit for bit: the sign of a zero counts)."""
    return value == first and (value != 0 or math.copysign(1.0, value) == math.copysign(1.0, first))


class RunPlan:
    """A group's runs (see the module's docstring): ``count`` parameters, ``layouts`` of the runs,
    ``alone`` the positions stepped on their own, ``limit`` the run size they were formed under."""

    def __init__(
        self, count: int, layouts: list[_RunLayout], alone: tuple[int, ...], limit: int, guard: Any
    ) -> None:
        self.count, self.layouts, self.alone, self.limit, self.guard = count, layouts, alone, limit, guard

    @classmethod
    def make(
        cls,
        optimizer: RuleOptimizer,
        recorded: RunRecorder,
        params: list[Tensor],
        grads: list[Tensor],
        alone: list[int],
        limit: int,
    ) -> RunPlan | None:
        """The plan of the runs a step just ``recorded`` (``alone``: the positions it stepped on their
        own), checked against the state that step left; ``None`` where there were no runs, where
        that state no longer has the keys they were formed with (SGD's first step makes its momentum
        buffers: the next step plans) or where no guard can be made."""
        if not recorded.layouts or not recorded.plannable:
            return None
        plan = cls(len(params), recorded.layouts, tuple(alone), limit, None)
        operands = plan._operands(optimizer, params, grads)
        if operands is None:
            return None
        plan.guard = _tensor_guards(operands[0])
        return None if plan.guard is None else plan

    def _operands(
        self, optimizer: RuleOptimizer, params: list[Tensor], grads: list[Tensor]
    ) -> tuple[list[Tensor], list[_Run]] | None:
        """Every tensor the guard checks, and the runs to evaluate; ``None`` where a member's state
        keys or a run's shared 0-d values are not those planned."""
        state_of = optimizer.state.get
        checked: list[Tensor] = []
        runs: list[_Run] = []
        for layout in self.layouts:
            members = [params[position] for position in layout.positions]
            member_grads = [grads[position] for position in layout.positions]
            states = [state_of(param) or _NO_STATE for param in members]
            count = layout.count
            for state in states:
                if len(state) != count:
                    return None
            try:
                tensors = list(map(layout.tensors_of, states))
            except KeyError:
                return None
            checked += members
            checked += member_grads
            for own in tensors:
                checked += own
            scalars: dict[str, Any] = {}
            if layout.scalars:
                shared = None
                for state in states:
                    read = []
                    for key, kind in layout.scalars:
                        value = state.get(key)
                        if kind == _NUMBER:
                            if type(value) is not float and type(value) is not int:
                                return None
                            read.append(value)
                        else:
                            if not isinstance(value, Tensor):
                                return None
                            checked.append(value)
                            read.append(value.item())
                    if shared is None:
                        shared = read
                        for (key, kind), number in zip(layout.scalars, read, strict=True):
                            scalars[key] = state[key] if kind == _TENSOR else number
                    elif not all(map(_same, read, shared)):
                        return None
            run = _Run(layout.names, scalars)
            run.params, run.grads, run.numel = members, member_grads, layout.numel
            run.states = [list(entry) for entry in zip(*tensors, strict=True)] if layout.names else []
            runs.append(run)
        return checked, runs

    def replay(
        self, runs: SmallTensorRuns, params: list[Tensor], grads: list[Tensor]
    ) -> tuple[int, ...] | None:
        """Evaluate the planned runs of ``params`` into ``runs`` (whose :meth:`~SmallTensorRuns.flush`
        then returns what to write) and return the positions the caller steps on their own; or
        ``None``, having evaluated nothing, where the plan does not hold."""
        if len(params) != self.count or runs.limit != self.limit:
            return None
        operands = self._operands(runs.optimizer, params, grads)
        if operands is None:
            return None
        checked, planned = operands
        try:
            if not self.guard.check(*checked):
                return None
        except Exception:  # (a count or type the guard refuses to compare)
            return None
        with one_thread():  # as SmallTensorRuns evaluates its runs (engine/threads.py)
            for run in planned:
                runs._evaluate(run)
        return self.alone


__all__ = ["RunPlan", "RunRecorder"]
