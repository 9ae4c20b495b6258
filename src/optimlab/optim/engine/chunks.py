"""The eager engine's path for large tensors: an elementwise rule evaluated slice by slice.

A rule is a string of functional torch ops, each of which allocates a result as large as its
operands. On a whole large tensor every one of them is a parameter-sized temporary: written to main
memory, read back by the next op and — with glibc's defaults, which hand large frees back to the
system — page-faulted in anew at every step. An elementwise rule (the optimizer declares
``elementwise``) gives each element the same result whatever else it is evaluated with, so the engine
may instead run it on consecutive slices (views) of the parameter, its gradient and its state, of
:data:`CHUNK_NUMEL` elements, and copy each slice's results back before the next: the temporaries
then stay in the cache and their memory is reused from one slice to the next. Main memory sees
one read of each operand and one write of each result, as a fused kernel would. Where the rule can
be traced (:mod:`~optimlab.optim.engine.traced`), each slice and run is evaluated by its traced
program instead: the same ops, writing into the slice's tensors and reused temporaries rather than
allocating each result and copying the last ones back — the same bits.

It is exact: every op the rules use (arithmetic, ``sqrt``, ``lerp``, ``where``, comparisons, ...) is
evaluated element by element by the same kernel on a slice as on the whole, and the results are the
eager engine's bit for bit (``tests/test_optim_eager_chunks.py`` checks it for every elementwise
optimizer, odd sizes included). Only plain, contiguous, unwatched tensors are sliced; everything else
— a non-contiguous parameter or state, a sparse gradient, state the rule creates on this step (SGD's
first momentum buffer), stochastically rounded storage, a step autograd or a dispatch mode records —
is evaluated whole, as before.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from optimlab.optim.engine.tensors import PLAIN_TYPES, plain_memory
from optimlab.optim.engine.threads import one_thread
from optimlab.optim.engine.traced import apart, program_for

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer

#: elements per slice: 256 KiB of float32 per operand, so that a rule's operands and temporaries stay
#: in the caches (2 × 1 MiB of L2 and 32 MiB of L3 on the machine it was measured on), and at least
#: two of torch's 32768-element grains, so that each op still runs on two threads (measured:
#: benchmarks/step_throughput.py, README "Performance")
CHUNK_NUMEL = 1 << 16
#: elements per run of gathered small tensors: torch's grain size. A run is evaluated on one thread
#: (:func:`~optimlab.optim.engine.threads.one_thread`), as torch's own ops on each of its small
#: tensors run: on a loaded machine, ops split over two threads wait for each other (runs of 65536
#: on 2 threads made SGD's bare step at 1M 1.7×, 5.3× and 14× torch's for-loop in three runs, and
#: ``sqrt``, which splits below the grain size, took 5 ms on a run of 32,000 elements)
RUN_NUMEL = 1 << 15

#: see :func:`keep_temporaries_mapped`
_PRIMING_BYTES = 4 << 20
_primed = False


def keep_temporaries_mapped() -> None:
    """Once per process, on Linux: allocate and free one 4 MiB block, which raises glibc's mmap
    threshold to that size (glibc adjusts it to any mapped block freed; every program that frees a
    large tensor does the same). Below the threshold freed blocks stay in the process, so that a
    slice's temporaries (256 KiB of float32 each) are reused from one op to the next; at glibc's
    initial 128 KiB each of them would be mapped and page-faulted in anew — measured: Adam's rule on
    65536 float32 elements in 760 µs instead of 116 µs on one thread. The eager engine calls it at
    its first step. (Whole tensors of a few MB are not kept so reliably: glibc trims the heap once 8
    MiB are free at its top, which a rule's dozen temporaries of 1.3 MB exceed — measured, Adam on the
    benchmark's 16M model took 1.7× torch's for-loop whole in one process and 7.3× in another; its
    slices' temporaries, 256 KiB each, stay below that.)"""
    global _primed
    if not _primed:
        _primed = True
        if sys.platform.startswith("linux"):
            torch.empty(_PRIMING_BYTES, dtype=torch.uint8)


def _sliceable(tensor: Any, numel: int) -> bool:
    """A plain, contiguous, strided tensor of ``numel`` elements whose memory holds its values (no
    subclass with ops of its own, no lazy negation or conjugation)."""
    return (
        isinstance(tensor, Tensor)
        and plain_memory(tensor)
        and tensor.layout == torch.strided
        and tensor.numel() == numel
        and tensor.is_contiguous()
        and not tensor.is_neg()
        and not tensor.is_conj()
        and not tensor._is_zerotensor()
    )


def step_in_chunks(
    rule: Callable[..., tuple[Tensor, dict[str, Any]]],
    param: Tensor,
    grad: Tensor,
    state: dict[str, Any],
    hyper: dict[str, Any],
    chunk_numel: int | None = None,
    trace_numel: int = 0,
) -> dict[str, Any] | None:
    """Evaluate the elementwise ``rule`` on slices of ``chunk_numel`` (:data:`CHUNK_NUMEL`) elements
    of ``param``, ``grad`` and the parameter-sized tensors of ``state`` (real tensors, as the eager
    engine hands them to the rule), writing each slice's new parameter and state into them in place.

    Returns the rule's other results — the 0-d state (the step counter, NAdam's μ-product, ...),
    the same for every slice, which the caller writes once — or ``None``, having written nothing,
    where the tensors cannot be sliced or the rule creates a parameter-sized state entry (the caller
    then evaluates the rule whole), as it does for tensors of at most one slice. The others are cut
    into slices of equal size, none larger than ``chunk_numel``. The rule's traced program evaluates
    them where the step evaluates enough elements with it (``trace_numel``: the step's, if more
    than this parameter's; :data:`~optimlab.optim.engine.traced.TRACE_MIN_NUMEL`)."""
    if chunk_numel is None:
        chunk_numel = CHUNK_NUMEL  # read at each call, so that tests may make slices small
    numel = param.numel()
    if numel <= chunk_numel or grad.shape != param.shape:
        return None
    if not (_sliceable(param, numel) and _sliceable(grad, numel)):
        return None
    flat: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, Tensor) and value.dim() > 0:
            if not _sliceable(value, numel):
                return None
            flat[key] = value.view(-1)
        else:
            scalars[key] = value
    flat_param, flat_grad = param.view(-1), grad.view(-1)
    pieces = -(-numel // chunk_numel)
    chunk_numel = -(-numel // pieces)  # slices of equal size (the last one may be shorter)
    tensors = [flat_param, flat_grad, *flat.values()]
    traced = max(numel, trace_numel)
    program = (
        program_for(rule, flat_param, flat_grad, flat, scalars, hyper, traced) if apart(tensors) else None
    )
    if program is not None:  # the rule's ops writing into the slices themselves (engine/traced.py)
        temporaries = program.temporaries(flat_param, chunk_numel)
        for start in range(0, numel, chunk_numel):
            piece = slice(start, start + chunk_numel)
            size = min(chunk_numel, numel - start)
            program.run([tensor[piece] for tensor in tensors], [t[:size] for t in temporaries])
        return dict(program.others)
    others: dict[str, Any] = {}
    sliced: set[str] = set()
    for start in range(0, numel, chunk_numel):
        piece = slice(start, start + chunk_numel)
        part = flat_param[piece]
        new_param, new_state = rule(
            part, flat_grad[piece], {**scalars, **{key: value[piece] for key, value in flat.items()}}, **hyper
        )
        if start == 0:
            sliced = {key for key, value in new_state.items() if isinstance(value, Tensor) and value.dim()}
            shapes = {new_param.shape, *(new_state[key].shape for key in sliced)}
            if shapes != {part.shape} or not sliced <= flat.keys():
                return None  # state the rule creates (SGD's first momentum buffer), or not elementwise
            others = {key: value for key, value in new_state.items() if key not in sliced}
        part.copy_(new_param)
        for key in sliced:
            flat[key][piece].copy_(new_state[key])
    return others


_STRIDED = torch.strided


class _Run:
    """Small parameters gathered for one evaluation of the rule: alike in dtypes, device, state keys
    and 0-d state values, so that the rule treats every element of the run as it would in its own
    tensor."""

    __slots__ = ("grads", "names", "numel", "params", "scalars", "states")

    def __init__(self, names: tuple[str, ...], scalars: dict[str, Any]) -> None:
        self.names = names  # the parameter-sized state entries
        self.scalars = scalars  # the 0-d state, as the rule reads it (the first member's)
        self.params: list[Tensor] = []
        self.grads: list[Tensor] = []
        self.states: list[list[Tensor]] = []  # per entry of ``names``: each member's tensor
        self.numel = 0


class SmallTensorRuns:
    """The small parameters of one param group, gathered into runs of at most :data:`RUN_NUMEL`
    elements, each evaluated by one call of the elementwise rule on the concatenation of its
    members' parameters, gradients and state — one call, whose temporaries stay in the cache,
    instead of one per parameter (torch's ``foreach`` idea, with the rule's own ops).

    A run's members share their dtypes, device, state keys and the values of their 0-d state (bit
    for bit: the step counter, NAdam's μ-product, ...), so each element gets what the rule gives it
    in its own tensor. :meth:`add` takes a parameter or declines it (the caller then steps it on its
    own); :meth:`flush` evaluates the runs and returns what the caller writes per parameter."""

    def __init__(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        hyper: dict[str, Any],
        trace_numel: int = 0,
    ) -> None:
        self.optimizer, self.group, self.hyper = optimizer, group, hyper
        #: called with each run before it is evaluated (engine/run_plans.py keeps what it sees)
        self.record: Callable[[_Run], None] | None = None
        #: the elements the step evaluates with the rule (whether its program is worth a trace)
        self.trace_numel = trace_numel
        self.limit = RUN_NUMEL
        self.host_step = optimizer.host_step
        self.runs: dict[tuple[Any, ...], _Run] = {}
        self.done: list[tuple[Tensor, dict[str, Any]]] = []
        self.declined: list[tuple[Tensor, Tensor]] = []

    def add(self, param: Tensor, grad: Tensor) -> bool:
        """Gather ``param`` (with its gradient ``grad``) into a run, or return False: a 0-d, large,
        complex, sparse or subclassed tensor, one whose gradient or state lives elsewhere, or one
        whose state is not tensors of its size and 0-d ones on the host. (A 0-d parameter is left
        whole because its arithmetic is not its elements': torch promotes an op between two 0-d
        tensors, such as NAdam's float64 step sizes and a 0-d float32 parameter, to float64.)"""
        if type(param) not in PLAIN_TYPES or type(grad) is not Tensor or grad.layout is not _STRIDED:
            return False
        if not param.dim():  # 0-d: the rule's 0-d float64 scalars would promote it (not a run's elements)
            return False
        numel = param.numel()
        device = param.device
        if numel > self.limit or grad.shape != param.shape or grad.device != device or param.is_complex():
            return False
        names: list[str] = []
        tensors: list[Tensor] = []
        scalars: dict[str, Any] = {}
        key: list[Any] = [param.dtype, device, grad.dtype]
        for name, value in self.optimizer.ensure_state(param, self.group).items():
            if type(value) is Tensor:
                if value.dim():
                    if value.numel() != numel or value.layout is not _STRIDED or value.device != device:
                        return False
                    names.append(name)
                    tensors.append(value)
                    key.append(value.dtype)
                    continue
                if not value.is_cpu:  # read on the host at every step: only where it lives
                    return False
                number = value.item()
                if name == "step" and self.host_step and not value.requires_grad:
                    scalars[name] = number  # the counter's value, as the eager engine passes it
                else:
                    scalars[name] = value
                key.append((name, value.dtype, number, number == 0 and math.copysign(1.0, number) < 0))
            elif value is None:  # torch 1.x's SGD saved a missing momentum buffer as None
                continue
            elif type(value) is int or type(value) is float:
                scalars[name] = value
                key.append((name, type(value), value, value == 0 and math.copysign(1.0, value) < 0))
            else:
                return False
        key.append(tuple(names))
        signature = tuple(key)
        run = self.runs.get(signature)
        if run is not None and run.numel + numel > self.limit:
            with one_thread():
                self._record_and_evaluate(run)
            run = None
        if run is None:
            run = self.runs[signature] = _Run(tuple(names), scalars)
            run.states = [[] for _ in names]
        run.params.append(param)
        run.grads.append(grad)
        for members, tensor in zip(run.states, tensors, strict=True):
            members.append(tensor)
        run.numel += numel
        return True

    def flush(self) -> tuple[list[tuple[Tensor, dict[str, Any]]], list[tuple[Tensor, Tensor]]]:
        """Evaluate every run not yet evaluated. Returns, per gathered parameter, the state the caller
        writes (0-d values, and parameter-shaped state the rule created); and the parameters (with
        their gradients) it declined after all, where the rule did not keep to a run's shapes."""
        if self.runs:
            with one_thread():  # as torch's own ops on each small tensor run (engine/threads.py)
                for run in self.runs.values():
                    if run.params:
                        self._record_and_evaluate(run)
            self.runs.clear()
        done, declined = self.done, self.declined
        self.done, self.declined = [], []
        return done, declined

    def _record_and_evaluate(self, run: _Run) -> None:
        if self.record is not None:
            self.record(run)
        self._evaluate(run)

    def _evaluate(self, run: _Run) -> None:
        params, numel, names, stored = run.params, run.numel, run.names, run.states
        flat = {name: _flatten_dense_tensors(members) for name, members in zip(names, stored, strict=True)}
        flat_param, flat_grad = _flatten_dense_tensors(params), _flatten_dense_tensors(run.grads)
        tensors = [flat_param, flat_grad, *flat.values()]
        rule = self.optimizer.rule
        # a run of several tensors is in new memory; one tensor's may be the stored tensors themselves
        separate = len(params) > 1 or apart(tensors)
        program = (
            program_for(
                rule, flat_param, flat_grad, flat, run.scalars, self.hyper, max(numel, self.trace_numel)
            )
            if separate
            else None
        )
        if program is not None:  # the rule's ops writing into the run's tensors (engine/traced.py)
            program.run(tensors)
            new_param, new_state = flat_param, {**program.others, **flat}
        else:
            new_param, new_state = rule(flat_param, flat_grad, {**run.scalars, **flat}, **self.hyper)
        others: dict[str, Any] = {}
        created: dict[str, list[Tensor]] = {}
        shape = (numel,)
        if new_param.shape != shape:
            self.declined.extend(zip(params, run.grads, strict=True))  # not elementwise after all
        else:
            writes = [(params, new_param)]
            for name, value in new_state.items():
                if not isinstance(value, Tensor) or not value.dim():
                    others[name] = value
                elif value.shape != shape:
                    self.declined.extend(zip(params, run.grads, strict=True))
                    writes = []
                    break
                elif name in names:
                    writes.append((stored[names.index(name)], value))
                else:  # created by the rule (SGD's first momentum buffer): the caller makes its tensors
                    created[name] = _unflatten_dense_tensors(value, params)
            for targets, value in writes:
                torch._foreach_copy_(targets, _unflatten_dense_tensors(value, targets))
            if writes and not created:
                self.done.extend((param, others) for param in params)
            elif writes:
                for index, param in enumerate(params):
                    own = {name: views[index] for name, views in created.items()}
                    self.done.append((param, {**others, **own}))
        run.params, run.grads, run.numel = [], [], 0
        run.states = [[] for _ in names]


__all__ = ["CHUNK_NUMEL", "RUN_NUMEL", "SmallTensorRuns", "keep_temporaries_mapped", "step_in_chunks"]
