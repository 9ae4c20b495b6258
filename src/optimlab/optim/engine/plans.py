"""A param group's fused step, planned once and re-checked at every step in one call.

The fused engine's full path finds, for each parameter, its gradient and state, checks that a
kernel can take them exactly (plain dense tensors of one dtype and layout, real, not lazily negated,
…) and picks the kernel: a few µs of Python per parameter, more than the kernel itself takes on a
10,000-element tensor, so that a small model's step was mostly bookkeeping. When a group's step has
gone that way for every parameter (plain CPU tensors and their state, no statistics), the engine
keeps a :class:`Plan`: each parameter's kernel and element count, and a guard over the metadata of
every operand — Python type, dispatch keys (a sparse or lazily negated tensor, a zero tensor or a
subclass has others), dtype, device, ``requires_grad``, sizes and strides — dynamo's
``TensorGuards``, which checks a whole group in one C++ call (about 3 µs for 1000 tensors).

At the next step the engine reads the parameters, gradients and state entries afresh, as the full
path does (the plan keeps no tensor, only metadata, kernels and sizes), and when the guard passes
every check of the full path would give the same answer, so the kernels are called at once; when
it does not (a new dtype, a replaced state entry, a gradient of another layout, autocast's or
inference mode's dispatch keys…), the full path runs and plans again.

A planned step also runs the kernels of small tensors on one thread: OpenMP's fork and join cost
microseconds per kernel (far more when the machine is busy), about what a second core saves below
:data:`SERIAL_MAX_NUMEL` elements. Only the calling thread's OpenMP setting changes, for the
duration of those calls; an elementwise kernel's results do not depend on its thread count.

Where it can, a planned step makes all its kernel calls in one C++ call
(:mod:`~optimlab.optim.engine.launcher`): the same kernels with the same arguments, the small ones
side by side on the OpenMP threads when no two parameters' operands share memory. Otherwise (the
launcher cannot be built here, a kernel's entry point is missing or fails its check) the kernels'
C++ functions are called from Python, one after another.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

import optimlab.optim.engine.kernels as compiled_kernels
from optimlab.optim.engine import launcher
from optimlab.optim.engine.threads import openmp as _openmp

if TYPE_CHECKING:
    from optimlab.optim.engine.kernels import Kernel

#: kernels of at most this many elements run on one thread in a planned step: ATen's own grain size
#: (``at::internal::GRAIN_SIZE``), below which torch's elementwise ops run serially too
SERIAL_MAX_NUMEL = 32768
_CPU = torch.device("cpu")


def _tensor_guards(tensors: list[Tensor]) -> Any | None:
    """Dynamo's C++ check of ``tensors``' metadata (exact sizes and strides), or ``None``."""
    try:
        from torch._C._dynamo.guards import TensorGuards

        return TensorGuards(
            *tensors,
            dynamic_dims_sizes=[list(t.shape) for t in tensors],
            dynamic_dims_strides=[list(t.stride()) for t in tensors],
        )
    except Exception:
        return None


def _slot_order(
    order: tuple[int, ...], slot: int, count: int, width: int, n_hyper: int, scratch_at: int
) -> tuple[int, ...]:
    """An unwrapped call's argument positions in a kernel's values ``[param, grad, *state, *hyper, numel,
    *scratch]`` moved to where a planned step has them for parameter ``slot``: one flat list of
    ``[*written (width per parameter: param, *state), *grads, *hyper, *every kernel's scratch,
    *numels]`` (``scratch_at``: where this kernel's scratch starts)."""
    n_state = width - 1
    grads_at = count * width
    hyper_at = grads_at + count
    moved = []
    for old in order:
        if old == 0:
            moved.append(slot * width)
        elif old == 1:
            moved.append(grads_at + slot)
        elif old < 2 + n_state:
            moved.append(slot * width + old - 1)
        elif old < 2 + n_state + n_hyper:
            moved.append(hyper_at + old - 2 - n_state)
        elif old == 2 + n_state + n_hyper:
            moved.append(slot - count)  # the numels close the list: counted from its end
        else:
            moved.append(scratch_at + old - 3 - n_state - n_hyper)
    return tuple(moved)


class Plan:
    """One group's planned fused step (see the module's docstring): ``config`` the engine's group
    configuration it was made for, ``keys`` the state entries each kernel takes after the parameter
    and its gradient (tensors, then 0-d), and per parameter its kernel and element count."""

    def __init__(
        self,
        config: Any,
        keys: tuple[str, ...],
        kernels: list[Kernel],
        numels: list[int],
        guard: Any,
    ) -> None:
        self.config = config
        self.keys = keys
        self.count = len(numels)
        self.guard = guard
        self._get = operator.itemgetter(*keys) if len(keys) > 1 else None
        distinct = list({id(k): k for k in kernels}.values())
        self.kernels = distinct
        index = {id(k): i for i, k in enumerate(distinct)}
        limit = compiled_kernels._INT32_LIMIT  # larger tensors take the kernel's guarded route
        #: per parameter: its kernel (an index into ``kernels``), element count, whether it runs on
        #: one thread, and whether it may take the unwrapped call
        self.slots = [
            (index[id(k)], n, n <= SERIAL_MAX_NUMEL, n < limit) for k, n in zip(kernels, numels, strict=True)
        ]
        self._numels = list(numels)
        #: the kernels' unwrapped calls the slot calls below were made for
        self._unwrapped: list[Any] = []
        #: per parameter: (C++ function, getter of its arguments from the step's flat list), or
        #: ``None`` where the kernel is called as a whole
        self._slot_calls: list[tuple[Any, Any] | None] = []
        #: the unwrapped calls whose scratch buffers the step's flat list holds, in order
        self._scratched: list[Any] = []
        #: per parameter, its slot call's argument positions in the flat list (``None``: no slot call)
        self._slot_positions: list[tuple[int, ...] | None] = []
        #: every kernel call of a step as one C++ call (engine/launcher.py), made with the slot calls;
        #: ``None`` where a parameter's kernel has no checked entry point or the launcher is missing
        self._launch: launcher.Launch | None = None
        self._launch_made = False  # (or found impossible, for these slot calls)
        #: whether the last planned step went through the launcher, and ran the small kernels side by side
        self.launched = self.side_by_side = False

    def _calls(self, n_hyper: int) -> list[tuple[Any, Any] | None]:
        """Per parameter, its unwrapped C++ call (see :func:`_slot_order`), remade when a kernel's
        unwrapped calls are not those they were made for."""
        current = [kernel.unwrapped for kernel in self.kernels]
        if len(current) == len(self._unwrapped) and all(map(operator.is_, current, self._unwrapped)):
            return self._slot_calls
        width = 1 + len(self.keys)
        scratch_at, kernel_calls, scratched = self.count * (width + 1) + n_hyper, [], []
        for kernel, unwrapped in zip(self.kernels, current, strict=True):
            usable = (
                unwrapped is not None
                and len(unwrapped.calls) == 1
                and len(kernel.key.hyper_names) == n_hyper
                and len(kernel.key.state_keys) + len(kernel.key.scalar_keys) == len(self.keys)
                and kernel.key.n_outputs == 0
            )
            kernel_calls.append((unwrapped.calls[0], scratch_at) if usable else None)
            if usable:
                scratch_at += len(unwrapped.scratch)
                scratched.append(unwrapped)
        slot_calls: list[tuple[Any, Any] | None] = []
        positions: list[tuple[int, ...] | None] = []
        for slot, (kernel, _, _, direct) in enumerate(self.slots):
            found = kernel_calls[kernel]
            if not direct or found is None:
                slot_calls.append(None)
                positions.append(None)
                continue
            (function, order), at = found
            moved = _slot_order(order, slot, self.count, width, n_hyper, at)
            slot_calls.append((function, operator.itemgetter(*moved)))
            positions.append(moved)
        self._unwrapped, self._slot_calls, self._scratched = current, slot_calls, scratched
        self._slot_positions = positions
        self._launch, self._launch_made = None, False
        return slot_calls

    def _launcher(
        self, written: list[Tensor], grads: list[Tensor], hyper: list[Tensor]
    ) -> launcher.Launch | None:
        """The step's kernel calls as one C++ call (the slot calls' arguments, in the same flat list
        but for the scratch buffers, which the launcher gives each of its threads), made once per slot
        calls; ``None`` where a slot has none or a kernel's entry point is missing."""
        if self._launch_made or not launcher.available():
            return self._launch
        self._launch_made = True
        entries = [launcher.entry(kernel) for kernel in self.kernels]
        n_operands = len(written) + len(grads) + len(hyper)
        layouts = [launcher.scratch_layout(u.scratch) for u in self._scratched]
        offsets, at = [], 0
        for layout, size in layouts:  # every kernel's scratch buffers in one block per thread
            offsets += [at + offset for offset in layout]
            at += size
        slots = []
        for index, (kernel, _, small, _) in enumerate(self.slots):
            positions, entry = self._slot_positions[index], entries[kernel]
            if positions is None or entry is None:
                return None
            arguments = []
            for position in positions:
                if position < 0:  # (the element counts close the flat list)
                    arguments.append((launcher.CONSTANT, self._numels[position]))
                elif position < n_operands:
                    arguments.append((launcher.OPERAND, position))
                else:
                    arguments.append((launcher.SCRATCH, offsets[position - n_operands]))
            slots.append(launcher.Slot(entry, small, tuple(arguments)))
        self._launch = launcher.Launch([*written, *grads, *hyper], len(written), slots, at)
        return self._launch

    @classmethod
    def make(
        cls,
        config: Any,
        keys: tuple[str, ...],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        kernels: list[Kernel],
        numels: list[int],
    ) -> Plan | None:
        """The plan of a step that just ran every parameter through ``kernels`` with the operands
        ``[param, grad, *(state[k] for k in keys)]`` themselves; ``None`` if no guard can be made."""
        written = []
        for param, state in zip(params, states, strict=True):
            written.append(param)
            written.extend(state[k] for k in keys)
        guard = _tensor_guards([*written, *grads])
        return None if guard is None else cls(config, keys, kernels, numels, guard)

    def gather(self, state_of: Callable[[Tensor], Any], params: list[Tensor]) -> list[Any] | None:
        """``[param, *its state entries]`` for each parameter, as the plan orders them (what the
        kernels write), or ``None`` when an entry is missing."""
        written: list[Any] = []
        append, extend = written.append, written.extend
        try:
            if self._get is not None:
                get = self._get
                for param in params:
                    append(param)
                    extend(get(state_of(param)))
            elif self.keys:
                (key,) = self.keys
                for param in params:
                    append(param)
                    append(state_of(param)[key])
            else:
                written.extend(params)
        except (KeyError, TypeError):  # no state yet, or an entry missing
            return None
        return written

    def run(
        self,
        state_of: Callable[[Tensor], Any],
        params: list[Tensor],
        grads: list[Tensor],
        hyper: list[Tensor],
    ) -> list[Any] | None:
        """Step ``params`` as planned if the guard passes on what they hold now; returns the tensors
        written (for autograd's version counters), or ``None`` (nothing done) when the full path must
        run."""
        if len(params) != self.count:
            return None
        written = self.gather(state_of, params)
        if written is None:
            return None
        try:
            if not self.guard.check(*written, *grads):
                return None
        except Exception:  # (a count or type the guard refuses to compare)
            return None
        calls = self._calls(len(hyper))
        launch = self._launcher(written, grads, hyper)
        self.launched = launch is not None
        if launch is not None:
            self.side_by_side = launch([*written, *grads, *hyper])
            return written
        values = [*written, *grads, *hyper]  # the flat list the slots' getters read (_slot_order)
        for unwrapped in self._scratched:
            values += unwrapped.scratch_buffers(_CPU)  # this step's own
        values += self._numels
        width = 1 + len(self.keys)
        openmp = _openmp()
        threads = openmp[1]() if openmp is not None else 1
        switch = openmp[0] if threads > 1 else None
        serial = False
        try:
            for index, call in enumerate(calls):
                kernel, numel, small, _ = self.slots[index]
                if switch is not None and small is not serial:
                    switch(1 if small else threads)
                    serial = small
                if call is not None:
                    call[0](*call[1](values))
                else:
                    start = index * width
                    state = written[start + 1 : start + width]
                    self.kernels[kernel]([written[start], grads[index], *state, *hyper], numel)
        finally:
            if serial:
                switch(threads)  # type: ignore[misc]
        return written
