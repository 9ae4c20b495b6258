"""The fused engine: each optimizer's pure rule as one compiled, in-place pass per param group.

An optimizer step is memory-bound (Adam reads θ, ∇, m, v and writes θ, m, v back: 28 bytes per
float32 parameter), so the fastest step touches every byte once. For each param group and each
(device, dtype) of its parameters this engine keeps a *bucket*:

* one flat buffer holds every parameter; each parameter's ``.data`` is a view into it;
* one flat buffer holds the gradients; after a step each ``p.grad`` is pointed at its view, so
  the next ``backward()`` accumulates in place (after ``zero_grad(set_to_none=True)`` autograd
  allocates fresh gradients instead: the engine then gathers them with one copy, 8 bytes per
  float32 parameter, and points ``p.grad`` back at the views);
* one flat buffer per state tensor (``exp_avg``, …), whose per-parameter views are what
  ``optimizer.state`` holds, so ``state_dict()`` keeps torch.optim's per-parameter format;
* the scalar state (``step``, NAdam's ``mu_product``) of the bucket's parameters as 0-d views
  into one small buffer per key.

The optimizer's rule from :mod:`optimlab.optim.rules` (unchanged, ``l1`` included) is compiled
by ``torch.compile`` (inductor: C++/OpenMP on CPU, Triton on GPU) over the flat buffers, with the
results copied back into them inside the compiled region, so inductor writes in place: one loop
over memory, no parameter-sized temporary. Numeric hyperparameters enter as 0-d float64 tensors refreshed in
place, so learning-rate schedulers and ``param_groups`` edits never recompile; only structural
flags (booleans, ``None``-ness of optional terms such as ``l1``), the state keys, the dtype and
the device type select a compiled kernel. Sizes are dynamic: one compilation serves every model.
Inductor caches compiled kernels on disk, so a configuration compiles once per machine.

Every step checks cheaply (identity and data pointers, no device sync) that nothing changed
behind the engine's back — ``p.data`` reassigned, ``model.to()``, a replaced state tensor,
``load_state_dict``, new parameters or gradients — and rebuilds the bucket when something did.
Parameters whose scalar state differs (some had no gradient on some steps) are stepped as
separate runs of the same kernel.

``engine="auto"`` (the default) fuses an optimizer's param groups at once when they hold at least
:data:`AUTO_MIN_NUMEL` elements in all and a compiler is available. A smaller model starts eager
and is fused once its eager steps have taken :data:`AUTO_EAGER_SECONDS` in all (the rent-or-buy
rule: a first compilation costs about that much, so a training loop never pays much more than
twice what the better choice would have cost, and short runs never compile). Anything that cannot
be compiled (no C++ compiler, no Triton, an unsupported dtype or memory layout) runs eagerly, with
one warning when ``"fused"`` was asked for explicitly.

bfloat16/float16 buffers are computed in float32 and rounded once per stored value, as torch's
fused kernels do (torch's for-loop rounds after every operation; the two agree within a few ulps).
A bucket with a sparse gradient (SGD, Adagrad) steps eagerly. CUDA/Triton is implemented, and
tests/test_fused_engine.py and the parity table run on a GPU where one is present, but no GPU has
been available to this project yet: it was developed and measured on CPU only.
"""

from __future__ import annotations

import functools
import itertools
import operator
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from optimlab.optim.engine.eager import EagerEngine

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer

#: "auto" fuses an optimizer whose param groups hold at least this many elements in all ...
AUTO_MIN_NUMEL = 1 << 19
#: ... and a smaller one once its eager steps have taken this many seconds in all (about what
#: compiling a configuration costs the first time on a machine).
AUTO_EAGER_SECONDS = 2.0

_ALIGN_BYTES = 64  # every slot starts on a cache line (and on a complex element)
_FUSABLE_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_LOW_PRECISION = frozenset({torch.float16, torch.bfloat16})


# --- the compiled kernel -------------------------------------------------------------------


def _update(
    rule: Callable[..., Any],
    static: dict[str, Any],
    param: Tensor,
    grad: Tensor,
    state: dict[str, Tensor],
    scalar_state: dict[str, Tensor],
    hyper: dict[str, Tensor],
    upcast: bool,
) -> dict[str, Tensor]:
    """One step of ``rule`` over flat buffers, written back in place; returns the new scalar state.

    With ``upcast`` (bfloat16/float16 buffers) the rule computes in float32 and each result is
    rounded once when stored, as torch's fused kernels do; the buffers stay in their dtype.
    """
    if upcast:
        inputs = {**{k: v.float() for k, v in state.items()}, **scalar_state}
        new_param, new_state = rule(param.float(), grad.float(), inputs, **hyper, **static)
    else:
        new_param, new_state = rule(param, grad, {**state, **scalar_state}, **hyper, **static)
    param.copy_(new_param)
    scalars = {}
    for key, value in new_state.items():
        if key in state:
            state[key].copy_(value)
        else:
            scalars[key] = value
    return scalars


def _hoist_scalars(gm: torch.fx.GraphModule) -> None:
    """Make every 0-d value that feeds a tensor computation a buffer of its own.

    Inductor inlines scalar arithmetic (Adam's ``β₁ᵗ``, ``√(1 − β₂ᵗ)``) into the consumer's loop
    and, on CPU, recomputes it for every vector of elements: ``pow`` per element made a step ten
    times slower than memory. ``as_strided`` forces its input to be realized, so the scalars are
    computed once per step and the main loop only loads them.
    """
    for node in list(gm.graph.nodes):
        if node.op not in ("call_function", "call_method"):
            continue
        value = node.meta.get("example_value")
        if not isinstance(value, Tensor) or value.dim() != 0:
            continue
        consumers = [
            user
            for user in node.users
            if isinstance(user.meta.get("example_value"), Tensor) and user.meta["example_value"].dim() > 0
        ]
        if not consumers:
            continue
        with gm.graph.inserting_after(node):
            realized = gm.graph.call_function(torch.as_strided, (node, (), ()))
        realized.meta["example_value"] = value
        for user in consumers:
            user.replace_input_with(node, realized)
    gm.recompile()


#: Inductor settings for the engine's kernels. ``dynamic_threads``: the C++ kernel asks OpenMP for
#: the thread count when it runs instead of baking in ``torch.get_num_threads()`` at compile time,
#: so one compiled kernel serves every thread count (with the baked-in count we saw serial kernels,
#: compiled while a run used one thread, come back from inductor's caches into 2-thread processes).
_INDUCTOR_CONFIG: dict[str, Any] = {"cpp.dynamic_threads": True}

#: how many graphs this process has compiled for the fused engine (tests check that a scheduler
#: or an edit of param_groups does not add any)
compilations = 0


def _backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
    from torch._inductor.compile_fx import compile_fx

    global compilations
    compilations += 1
    _hoist_scalars(gm)
    return compile_fx(gm, example_inputs, config_patches=_INDUCTOR_CONFIG)


_KERNELS: dict[tuple[Any, ...], Callable[..., Any]] = {}
_FAILED: dict[tuple[Any, ...], str] = {}
_CALLED: set[tuple[Any, ...]] = set()  # kernels that have run (compiled) at least once
_counter = itertools.count()


def _kernel(key: tuple[Any, ...]) -> Callable[..., Any]:
    """The compiled ``_update`` for one configuration, with a code object of its own.

    torch.compile caches on the code object and gives up after a few recompilations of it; one
    code object per configuration keeps every configuration's kernel (sizes are dynamic).
    """
    kernel = _KERNELS.get(key)
    if kernel is None:
        name = f"_fused_update_{next(_counter)}"
        code = _update.__code__.replace(co_name=name, co_qualname=name)
        function = types.FunctionType(code, _update.__globals__, name)
        kernel = torch.compile(function, backend=_backend, dynamic=True, fullgraph=True)
        _KERNELS[key] = kernel
    return kernel


@functools.cache
def compiler_available(device_type: str) -> bool:
    """Whether torch.compile can generate kernels for ``device_type`` here (C++ / Triton)."""
    try:
        if device_type == "cpu":
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
            return True
        if device_type in ("cuda", "xpu"):
            from torch.utils._triton import has_triton

            return bool(has_triton())
    except Exception:
        return False
    return False


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


# --- layout ------------------------------------------------------------------------------


def _dense(tensor: Tensor) -> bool:
    """Non-overlapping and dense: its elements fill a block of memory of exactly numel()."""
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride(), strict=True), key=lambda d: d[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _fusable(param: Tensor) -> bool:
    real = param.dtype.to_real() if param.is_complex() else param.dtype
    return (
        real in _FUSABLE_DTYPES
        and param.dtype != torch.complex32
        and param.numel() > 0
        and param.layout == torch.strided
        and _dense(param)
    )


_data_ptr = Tensor.data_ptr
_grad_of = operator.attrgetter("grad")


def _real_dtype(param: Tensor) -> torch.dtype:
    return param.dtype.to_real() if param.is_complex() else param.dtype


def _view(flat: Tensor, like: Tensor, offset: int) -> Tensor:
    """A view of ``flat`` from ``offset`` with ``like``'s shape, strides and (complex) dtype."""
    if like.is_complex():
        size = (*like.shape, 2)
        stride = (*(2 * s for s in like.stride()), 1)
        return torch.view_as_complex(flat.as_strided(size, stride, offset))
    return flat.as_strided(like.shape, like.stride(), offset)


@dataclass
class _Probe:
    """What the rule keeps per parameter: param-shaped state keys and scalar state keys."""

    tensor_keys: tuple[str, ...]
    scalar_keys: tuple[str, ...]


def _probe(optimizer: RuleOptimizer, group: dict[str, Any], hyper: dict[str, Any]) -> _Probe:
    """Run the rule eagerly on a 2-element probe to learn which state it keeps (SGD's momentum
    buffer appears only after the first step)."""
    probe = torch.zeros(2)
    state = dict(optimizer.init_state(probe, group))
    hyper = {k: float(v) if isinstance(v, Tensor) else v for k, v in hyper.items()}
    for _ in range(2):
        _, new_state = optimizer.rule(probe, torch.zeros(2), state, **hyper)
        state.update(new_state)
    tensor_keys = tuple(sorted(k for k, v in state.items() if v.dim() > 0))
    scalar_keys = tuple(sorted(k for k, v in state.items() if v.dim() == 0))
    return _Probe(tensor_keys, scalar_keys)


class _Hyper:
    """A group's numeric hyperparameters as cached 0-d float64 tensors on one device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.tensors: dict[str, Tensor] = {}
        self.values: dict[str, Any] = {}

    def refresh(self, numeric: dict[str, Any]) -> dict[str, Tensor]:
        tensors = self.tensors
        if tensors.keys() != numeric.keys():
            self.tensors = tensors = {}
            self.values = {}
        for name, value in numeric.items():
            tensor = tensors.get(name)
            if tensor is None:
                tensor = tensors[name] = torch.zeros((), dtype=torch.float64, device=self.device)
                self.values[name] = None
            if isinstance(value, Tensor):
                tensor.copy_(value.detach())
                self.values[name] = None
            elif self.values[name] != value:
                tensor.fill_(value)
                self.values[name] = value
        return tensors


def _split_hyper(hyper: dict[str, Any]) -> tuple[tuple[tuple[str, Any], ...], dict[str, Any]]:
    """(static part: booleans, ``None`` and other non-numbers; numeric part)."""
    static, numeric = [], {}
    for name, value in hyper.items():
        if isinstance(value, bool) or value is None or not isinstance(value, int | float | Tensor):
            static.append((name, value))
        else:
            numeric[name] = value
    return tuple(static), numeric


@dataclass
class _Bucket:
    """The flat storage of one (device, dtype) share of a param group."""

    device: torch.device
    dtype: torch.dtype
    members: list[Tensor]
    offsets: list[int]  # slot start of each member; offsets[-1] is the padded total
    pointers: list[int]  # expected ``p.data_ptr()``
    flat_param: Tensor
    flat_grad: Tensor
    grad_views: list[Tensor]
    flat_state: dict[str, Tensor]
    scalar_state: dict[str, Tensor]  # key -> 1-D buffer, one element per member
    state_dicts: list[dict[str, Any] | None]  # expected optimizer.state[p] of each member
    state_views: list[dict[str, Tensor]]  # expected tensors in it
    #: the same expectations per state key, for checks at C speed: (key, dicts, tensors)
    checks: list[tuple[str, list[dict[str, Any]], list[Tensor]]] = field(default_factory=list)
    failed: bool = False
    runs: list[tuple[int, int]] | None = field(default=None)  # member ranges when all have grads
    #: per run: the kernel's tensor arguments (param, grad, state, scalar state)
    run_inputs: dict[tuple[int, int], tuple[Any, ...]] = field(default_factory=dict)

    def inputs(self, start: int, end: int, tensor_keys: tuple[str, ...], scalar_keys: tuple[str, ...]):
        """Slices of the buffers for members ``start:end``, detached from their base: torch.compile
        guards on the base of a view input, and would recompile for every run otherwise."""
        cached = self.run_inputs.get((start, end))
        if cached is None:
            begin, stop = self.offsets[start], self.offsets[end]
            cached = self.run_inputs[start, end] = (
                self.flat_param[begin:stop].detach(),
                self.flat_grad[begin:stop].detach(),
                {k: self.flat_state[k][begin:stop].detach() for k in tensor_keys},
                {k: self.scalar_state[k][start].detach() for k in scalar_keys},
                {k: self.scalar_state[k][start:end] for k in scalar_keys},
            )
        return cached


def _allocate_bucket(
    optimizer: RuleOptimizer, members: list[Tensor], probe: _Probe, device: torch.device, dtype: torch.dtype
) -> _Bucket:
    align = max(1, _ALIGN_BYTES // dtype.itemsize)
    offsets = [0]
    gaps = []  # the padding after each slot
    for p in members:
        real_numel = p.numel() * (2 if p.is_complex() else 1)
        offsets.append(offsets[-1] + -(-real_numel // align) * align)
        gaps.append((offsets[-2] + real_numel, offsets[-1]))

    def flat() -> Tensor:
        # Left uninitialized, so pages are committed as the slots are filled while the members'
        # old storage is freed one by one: the first step does not need twice the memory.
        buffer = torch.empty(offsets[-1], dtype=dtype, device=device)
        for start, stop in gaps:
            if stop > start:
                buffer[start:stop].zero_()
        return buffer

    flat_param = flat()
    flat_grad = flat()
    flat_state = {key: flat() for key in probe.tensor_keys}
    states = [optimizer.state.get(p) for p in members]
    scalar_state: dict[str, Tensor] = {}
    for key in probe.scalar_keys:
        values = [s[key] for s in states if s is not None and key in s]
        if not values:
            continue
        like = values[0]
        scalar_device = like.device if device.type == "cpu" else device
        scalar_state[key] = torch.zeros(len(members), dtype=like.dtype, device=scalar_device)

    pointers, grad_views, state_dicts, state_views = [], [], [], []
    for index, p in enumerate(members):
        offset = offsets[index]
        view = _view(flat_param, p, offset)
        view.copy_(p.detach())
        p.data = view
        pointers.append(p.data_ptr())
        grad_view = _view(flat_grad, p, offset)
        if p.grad is not None and p.grad.layout == torch.strided:
            grad_view.copy_(p.grad)
            p.grad = grad_view
        else:  # filled when a gradient arrives
            grad_view.zero_()
        grad_views.append(grad_view)
        state = states[index]
        expected: dict[str, Tensor] = {}
        for key, buffer in flat_state.items():
            state_view = _view(buffer, p, offset)
            if state is not None and key in state:
                state_view.copy_(state[key])
                state[key] = expected[key] = state_view
            else:  # created by the rule later (SGD's momentum buffer)
                state_view.zero_()
        if state is not None:
            for key, scalars in scalar_state.items():
                if key in state:
                    scalars[index].copy_(state[key])
                    state[key] = expected[key] = scalars[index]
        state_dicts.append(state)
        state_views.append(expected)
    checks = []
    for key in (*flat_state, *scalar_state):
        holders = [(d, views[key]) for d, views in zip(state_dicts, state_views, strict=True) if key in views]
        checks.append((key, [d for d, _ in holders], [v for _, v in holders]))
    return _Bucket(
        device=device,
        dtype=dtype,
        members=members,
        offsets=offsets,
        pointers=pointers,
        flat_param=flat_param,
        flat_grad=flat_grad,
        grad_views=grad_views,
        flat_state=flat_state,
        scalar_state=scalar_state,
        state_dicts=state_dicts,
        state_views=state_views,
        checks=checks,
    )


def _release(bucket: _Bucket, keep: set[int], optimizer: RuleOptimizer) -> None:
    """Give the members leaving ``bucket`` storage of their own, so its buffers can be freed."""
    for index, p in enumerate(bucket.members):
        if id(p) in keep:
            continue
        if p.data_ptr() == bucket.pointers[index]:
            p.data = p.data.clone()
        if p.grad is bucket.grad_views[index]:
            p.grad = p.grad.clone()
        state = optimizer.state.get(p)
        if state:
            for key, view in bucket.state_views[index].items():
                if state.get(key) is view:
                    state[key] = view.clone()


@dataclass
class _Plan:
    """Everything the engine keeps for one param group."""

    group: dict[str, Any]
    state: Any  # optimizer.state when built (load_state_dict replaces it)
    grad_ids: tuple[int, ...]  # ids of the params that had gradients when last checked
    grad_set: set[int]  # the same, as a set
    known_ids: set[int]  # members of the buckets and params left to the eager path
    buckets: list[_Bucket]
    eager: list[Tensor]  # params this engine leaves to the eager path
    probe: _Probe
    static: tuple[tuple[str, Any], ...]
    hyper: dict[torch.device, _Hyper]
    dirty: bool = False  # set when an eager step changed the state's structure
    #: ``optimizer.state``'s values when last found consistent: while they are the same objects
    #: in the same order, no member's state dict was replaced (checked without hashing tensors)
    state_values: tuple[Any, ...] = ()


# --- the engine ----------------------------------------------------------------------------


class FusedEngine:
    """Runs each param group's rule as compiled in-place passes over flat buffers.

    ``mode="fused"`` always fuses (eager only where compiling is impossible, with a warning);
    ``mode="auto"`` fuses when the optimizer holds at least :data:`AUTO_MIN_NUMEL` elements, or
    once its eager steps have taken :data:`AUTO_EAGER_SECONDS`, and a compiler is available;
    until then it is exactly the eager engine.
    """

    def __init__(self, mode: str = "fused") -> None:
        if mode not in ("fused", "auto"):
            raise ValueError(f"Invalid fused engine mode: {mode!r}")
        self.name = mode
        self._eager = EagerEngine()
        self._plans: dict[int, _Plan] = {}
        self._fused_step: Callable[..., None] | None = None
        self._fusing = mode == "fused"
        self.eager_seconds = 0.0  # time "auto" has spent in eager steps so far

    # -- choosing -----------------------------------------------------------------------------

    def _auto_fuses(self, optimizer: RuleOptimizer) -> bool:
        """Whether "auto" fuses from now on (a decision it never takes back)."""
        if self.eager_seconds >= AUTO_EAGER_SECONDS:
            self._fusing = True
        else:
            total = 0
            for group in optimizer.param_groups:
                for p in group["params"]:
                    total += p.numel()
            self._fusing = total >= AUTO_MIN_NUMEL
        return self._fusing

    # -- stepping -----------------------------------------------------------------------------

    def step_group(self, optimizer: RuleOptimizer, group: dict[str, Any], params: list[Tensor]) -> None:
        if not self._fusing and not self._auto_fuses(optimizer):
            start = time.perf_counter()
            self._eager.step_group(optimizer, group, params)
            self.eager_seconds += time.perf_counter() - start
            return
        if self._fused_step is None:
            # torch.compile of a training step that calls optimizer.step() must not trace the
            # engine's bookkeeping: it runs as it is, calling its own compiled kernels.
            self._fused_step = torch.compiler.disable(self._step_fused, recursive=True)
        self._fused_step(optimizer, group, params)

    def _step_fused(self, optimizer: RuleOptimizer, group: dict[str, Any], params: list[Tensor]) -> None:
        plan = self._plans.get(id(group))
        hyper = optimizer.rule_hyperparameters(group)
        static, numeric = _split_hyper(hyper)
        grad_ids = tuple(map(id, params))
        if plan is None or not self._still_valid(plan, optimizer, group, grad_ids, static):
            plan = self._build(optimizer, group, params, hyper, static)
        eager_now = [p for p in plan.eager if id(p) in plan.grad_set]
        for bucket in plan.buckets:
            if bucket.failed:
                eager_now.extend(p for p in bucket.members if id(p) in plan.grad_set)
                continue
            runs = self._runs(plan, bucket)
            if not runs:
                continue
            if not self._gather_grads(bucket, runs):  # a sparse gradient: this bucket steps eagerly
                eager_now.extend(p for p in bucket.members if id(p) in plan.grad_set)
                continue
            hyper_device = plan.hyper.get(bucket.device)
            if hyper_device is None:
                hyper_device = plan.hyper[bucket.device] = _Hyper(bucket.device)
            tensors = hyper_device.refresh(numeric)
            ok = self._run_kernels(optimizer, plan, bucket, runs, static, tensors, eager_now)
            if not ok:
                eager_now.extend(p for p in bucket.members if id(p) in plan.grad_set)
        if eager_now:
            unique = list({id(p): p for p in eager_now}.values())
            self._eager.step_group(optimizer, group, unique)

    def _still_valid(
        self,
        plan: _Plan,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        grad_ids: tuple[int, ...],
        static: tuple[tuple[str, Any], ...],
    ) -> bool:
        if plan.group is not group or plan.state is not optimizer.state or plan.dirty:
            return False
        if static != plan.static:
            return False  # e.g. momentum switched on: the kept state changes
        if grad_ids != plan.grad_ids:
            known = plan.known_ids
            if not all(i in known for i in grad_ids):
                return False  # a parameter with its first gradient, or a new one in the group
            if not known <= set(map(id, group["params"])):
                return False  # a parameter left the group
            plan.grad_ids = grad_ids
            plan.grad_set = set(grad_ids)
            for bucket in plan.buckets:
                bucket.runs = None
        # Parameters still in their slots (not reassigned, moved or converted), their state dicts
        # and state tensors still the ones that are views of the buffers: C-speed loops.
        same = operator.is_
        state_values = optimizer.state.values()
        if len(state_values) != len(plan.state_values) or not all(map(same, state_values, plan.state_values)):
            # Some state dict was added or replaced (perhaps another group's): look up ours.
            get_state = optimizer.state.get
            for bucket in plan.buckets:
                if not all(map(same, map(get_state, bucket.members), bucket.state_dicts)):
                    return False
            plan.state_values = tuple(state_values)
        for bucket in plan.buckets:
            if list(map(_data_ptr, bucket.members)) != bucket.pointers:
                return False
            try:
                for key, dicts, views in bucket.checks:
                    if not all(map(same, map(operator.itemgetter(key), dicts), views)):
                        return False
            except KeyError:
                return False
        return True

    def _build(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[Tensor],
        hyper: dict[str, Any],
        static: tuple[tuple[str, Any], ...],
    ) -> _Plan:
        old = self._plans.pop(id(group), None)
        # Plans of groups the optimizer no longer has (load_state_dict replaces every group dict)
        # go too, or their buffers would stay alive.
        current = {id(g) for g in optimizer.param_groups}
        stale = [self._plans.pop(key) for key in list(self._plans) if key not in current]
        for p in params:
            optimizer.ensure_state(p, group)
        with_grad = {id(p) for p in params}
        state = optimizer.state
        members: list[Tensor] = []
        eager: list[Tensor] = []
        for p in group["params"]:
            if id(p) not in with_grad and not state.get(p):
                continue
            (members if _fusable(p) else eager).append(p)
        probe = _probe(optimizer, group, hyper)
        by_bucket: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for p in members:
            by_bucket.setdefault((p.device, _real_dtype(p)), []).append(p)
        buckets = []
        for (device, dtype), bucket_members in by_bucket.items():
            if not compiler_available(device.type):
                if self.name == "fused":
                    _warn_once(
                        f"optimlab fused engine: no compiler for {device.type} tensors "
                        "(a C++ compiler on CPU, Triton on GPU); running eagerly"
                    )
                eager.extend(bucket_members)
                continue
            # Parameters sharing their scalar state (step, …) next to each other: one run each.
            ordered = sorted(bucket_members, key=lambda p: _scalar_key(state.get(p), probe))
            buckets.append(_allocate_bucket(optimizer, ordered, probe, device, dtype))
        keep = {id(p) for bucket in buckets for p in bucket.members}
        for previous in ([old] if old is not None else []) + stale:
            for bucket in previous.buckets:
                _release(bucket, keep, optimizer)
        plan = _Plan(
            group=group,
            state=state,
            grad_ids=tuple(map(id, params)),
            grad_set=with_grad,
            known_ids={id(p) for bucket in buckets for p in bucket.members} | {id(p) for p in eager},
            buckets=buckets,
            eager=eager,
            probe=probe,
            static=static,
            hyper=old.hyper if old is not None else {},
            state_values=tuple(state.values()),
        )
        self._plans[id(group)] = plan
        return plan

    def _runs(self, plan: _Plan, bucket: _Bucket) -> list[tuple[int, int]]:
        """Ranges of consecutive members that have gradients and share their scalar state."""
        if bucket.runs is not None:
            return bucket.runs
        members = bucket.members
        with_grad = plan.grad_set
        scalars = {key: buffer.tolist() for key, buffer in bucket.scalar_state.items()}
        runs: list[tuple[int, int]] = []
        start, start_key = None, None
        for index, p in enumerate(members):
            if id(p) not in with_grad:
                key = None
            else:
                views = bucket.state_views[index]
                key = (
                    tuple(k in views for k in plan.probe.tensor_keys + plan.probe.scalar_keys),
                    tuple(values[index] for values in scalars.values()),
                )
            if start is not None and key != start_key:
                runs.append((start, index))
                start = None
            if start is None and key is not None:
                start, start_key = index, key
        if start is not None:
            runs.append((start, len(members)))
        bucket.runs = runs
        return runs

    def _gather_grads(self, bucket: _Bucket, runs: list[tuple[int, int]]) -> bool:
        """Point every gradient of the runs at its view of the flat gradient buffer (one copy of
        the gradients autograd allocated afresh after ``zero_grad(set_to_none=True)``).

        Returns False, gathering nothing, when a gradient is sparse (those stay as they are)."""
        if all(map(operator.is_, map(_grad_of, bucket.members), bucket.grad_views)):
            return True  # backward accumulated into the views (zero_grad(set_to_none=False))
        views, grads, owners = [], [], []
        for start, end in runs:
            for index in range(start, end):
                p = bucket.members[index]
                view = bucket.grad_views[index]
                grad = p.grad
                if grad is not view:
                    if grad.layout != torch.strided:
                        return False
                    views.append(view)
                    grads.append(grad)
                    owners.append(p)
        if not views:
            return True
        torch._foreach_copy_(views, grads)
        for p, view in zip(owners, views, strict=True):
            p.grad = view
        return True

    def _run_kernels(
        self,
        optimizer: RuleOptimizer,
        plan: _Plan,
        bucket: _Bucket,
        runs: list[tuple[int, int]],
        static: tuple[tuple[str, Any], ...],
        hyper: dict[str, Tensor],
        eager_now: list[Tensor],
    ) -> bool:
        rule = type(optimizer).rule
        probe = plan.probe
        static_dict = dict(static)
        for start, end in runs:
            present = bucket.state_views[start]
            tensor_keys = tuple(k for k in probe.tensor_keys if k in present)
            if tensor_keys != probe.tensor_keys:
                # The rule creates state on this step (SGD's first momentum buffer): eager, once.
                eager_now.extend(bucket.members[start:end])
                plan.dirty = True
                continue
            scalar_keys = tuple(k for k in probe.scalar_keys if k in present)
            key = (rule, static, tensor_keys, scalar_keys, bucket.dtype, bucket.device.type)
            if key in _FAILED:
                return False
            kernel = _kernel(key)
            param, grad, state_in, scalar_in, scalar_out = bucket.inputs(start, end, tensor_keys, scalar_keys)
            upcast = bucket.dtype in _LOW_PRECISION
            arguments = (rule, static_dict, param, grad, state_in, scalar_in, hyper, upcast)
            try:
                if key in _CALLED:
                    new_scalars = kernel(*arguments)
                else:  # compiling: torch's internals warn (deprecations) in ways users need not see
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        warnings.simplefilter("ignore", FutureWarning)
                        new_scalars = kernel(*arguments)
                    _CALLED.add(key)
            except Exception as error:  # no working compiler, unsupported op, …
                _FAILED[key] = repr(error)
                _warn_once(
                    f"optimlab fused engine: compiling {rule.__name__} for {bucket.dtype} on "
                    f"{bucket.device.type} failed ({type(error).__name__}: {error}); running eagerly"
                )
                bucket.failed = True
                if start != runs[0][0]:
                    raise  # part of the bucket already stepped: cannot redo it eagerly
                return False
            for k, value in new_scalars.items():
                target = scalar_out.get(k)
                if target is None:
                    raise RuntimeError(f"fused engine: {rule.__name__} returned unknown scalar state {k!r}")
                target.copy_(value)
        return True


def _scalar_key(state: dict[str, Any] | None, probe: _Probe) -> tuple[Any, ...]:
    if not state:
        return (False,)
    return (
        True,
        tuple(k in state for k in probe.tensor_keys),
        tuple((k in state, float(state[k]) if k in state else 0.0) for k in probe.scalar_keys),
    )


__all__ = ["AUTO_EAGER_SECONDS", "AUTO_MIN_NUMEL", "FusedEngine", "compiler_available"]
