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
"""

from __future__ import annotations

import ctypes
import functools
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

import optimlab.optim.engine.kernels as compiled_kernels

if TYPE_CHECKING:
    from optimlab.optim.engine.kernels import Kernel

#: kernels of at most this many elements run on one thread in a planned step: ATen's own grain size
#: (``at::internal::GRAIN_SIZE``), below which torch's elementwise ops run serially too
SERIAL_MAX_NUMEL = 32768
_CPU = torch.device("cpu")


@functools.cache
def _openmp() -> tuple[Callable[[int], Any], Callable[[], int]] | None:
    """``omp_set_num_threads`` and ``omp_get_max_threads`` of the OpenMP runtime torch runs (checked:
    ``torch.get_num_threads()`` follows the first), or ``None`` where none is found."""
    try:
        process = ctypes.CDLL(None)
        setter, getter = process.omp_set_num_threads, process.omp_get_max_threads
    except (AttributeError, OSError, TypeError):  # no such symbol, or no process handle (Windows)
        return None
    setter.argtypes, setter.restype = [ctypes.c_int], None
    getter.argtypes, getter.restype = [], ctypes.c_int
    before = torch.get_num_threads()  # (initializes this thread's setting first)
    try:
        setter(before + 1)
        same = torch.get_num_threads() == before + 1 and getter() == before + 1
    finally:
        setter(before)
    return (setter, getter) if same else None


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


def _plan_order(order: tuple[int, ...], n_state: int, n_hyper: int) -> tuple[int, ...]:
    """An unwrapped call's argument positions in ``[param, grad, *state, *hyper, numel, *scratch]`` (a
    kernel's operands, its size, its scratch) moved to ``[param, *state, grad, numel, *hyper, *scratch]``,
    the order in which a planned step has them at hand."""
    moved = []
    for old in order:
        if old == 0:
            moved.append(0)
        elif old == 1:
            moved.append(n_state + 1)
        elif old < 2 + n_state:
            moved.append(old - 1)
        elif old < 2 + n_state + n_hyper:
            moved.append(old + 1)
        elif old == 2 + n_state + n_hyper:
            moved.append(n_state + 2)
        else:
            moved.append(old)
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
        #: per distinct kernel: the unwrapped calls it had when last used, and the getter of the
        #: arguments of its one C++ call (see :func:`_plan_order`), or ``None``
        self._getters: list[tuple[Any, Any]] = [(None, None)] * len(distinct)
        self.kernels = distinct
        index = {id(k): i for i, k in enumerate(distinct)}
        limit = compiled_kernels._INT32_LIMIT  # larger tensors take the kernel's guarded route
        self.slots = [
            (index[id(k)], n, n <= SERIAL_MAX_NUMEL, n < limit) for k, n in zip(kernels, numels, strict=True)
        ]

    def _call(self, index: int, hyper: list[Tensor]) -> tuple[Any, Any, list[Any] | None]:
        """The ``index``-th kernel's one C++ call for this step — the function, the getter of its arguments
        from ``[param, *state, grad, numel, *hyper, *scratch]`` and the list ``[*hyper, *scratch]``, with
        scratch buffers of this step's own — or ``(kernel, None, None)`` where it has no such call."""
        kernel = self.kernels[index]
        unwrapped = kernel.unwrapped
        if unwrapped is None or len(unwrapped.calls) != 1:
            return kernel, None, None
        known, getter = self._getters[index]
        ((function, order),) = unwrapped.calls
        if known is not unwrapped:
            getter = operator.itemgetter(*_plan_order(order, len(self.keys), len(kernel.key.hyper_names)))
            self._getters[index] = (unwrapped, getter)
        return function, getter, [*hyper, *unwrapped.scratch_buffers(_CPU)]

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
        calls = [self._call(i, hyper) for i in range(len(self.kernels))]
        width = 1 + len(self.keys)
        openmp = _openmp()
        threads = openmp[1]() if openmp is not None else 1
        switch = openmp[0] if threads > 1 else None
        serial = False
        try:
            for index, (kernel, numel, small, direct) in enumerate(self.slots):
                if switch is not None and small is not serial:
                    switch(1 if small else threads)
                    serial = small
                start = index * width
                function, getter, tail = calls[kernel]
                if direct and getter is not None:
                    function(*getter([*written[start : start + width], grads[index], numel, *tail]))
                else:
                    state = written[start + 1 : start + width]
                    self.kernels[kernel]([written[start], grads[index], *state, *hyper], numel)
        finally:
            if serial:
                switch(threads)  # type: ignore[misc]
        return written
