"""The fused engine: each parameter stepped by one compiled in-place kernel, where it lives.

For every parameter with a gradient the engine calls a :class:`~optimlab.optim.engine.kernels.Kernel`
— the optimizer's rule compiled into one pass — on the parameter, its gradient and its state as they
are: the parameter is written in its own storage (so ``model``, autograd, FSDP, ZeRO,
``share_memory()`` and checkpoint formats see what they expect), the gradient is only read (a
tensor a user holds never changes), and ``optimizer.state`` keeps torch.optim's per-parameter
tensors. DTensor parameters (FSDP2) are stepped on their local shards. Nothing is copied and
nothing is cached between steps but the compiled kernels, so whatever users or tools do to
parameters, gradients or state between steps is simply seen on the next one.

A parameter the kernel cannot take exactly — a sparse gradient, fewer than two elements, a layout
that differs between the parameter, its gradient and its state, a dtype or device without a
compiler, state the rule creates on this step (SGD's first momentum buffer), a rule declared neither
elementwise nor tensorwise — is stepped by the eager engine, which is torch.optim's for-loop
arithmetic; so is everything while autograd records the step (``differentiable=True``).

A rule declared ``tensorwise`` (Adafactor: reductions over its own tensor's dimensions) is compiled
whole, one kernel per number of dimensions, and each parameter is stepped whole by it (never a flat
run or a shard: DTensors are stepped eagerly). Declared statistics are evaluated by the kernels: a
per-tensor rule's (LAMB's) inside the parameter's kernel, a step-wide rule's (Prodigy's) by
statistics-only kernels before any parameter moves; a DTensor's by DTensor ops.

A group whose step went through kernels whole (plain CPU tensors, no statistics) is *planned*
(:mod:`~optimlab.optim.engine.plans`): later steps read the parameters, gradients and state afresh,
check all their metadata in one C++ call, and call each kernel's generated C++ without inductor's
Python wrapper (:mod:`~optimlab.optim.engine.unwrapped`), small tensors on one thread; anything the
check does not pass takes the full path again. Adam on 195 tensors of 64 elements took 5.7–5.9 µs per
parameter before, 1.5–1.6 µs with plans, kernels included (torch's fused Adam: 2.9–3.1 µs).

``engine="auto"`` (the default) fuses an optimizer whose param groups hold at least
:data:`AUTO_MIN_NUMEL` elements at once, and a smaller one once its eager steps have taken
:data:`AUTO_EAGER_SECONDS` in all (the rent-or-buy rule: a first compilation costs about that much,
so a training loop never pays much more than twice what the better choice would have cost, and
short runs never compile). Where no compiler is available (no C++ compiler, no Triton) it stays
eager; ``"fused"`` then warns once.

bfloat16/float16 are computed in float32 and rounded once per stored value, as torch's fused
kernels do (torch's for-loop rounds after every operation; the two agree within a few ulps). CUDA
(Triton) is implemented and tested where a GPU is present, but no GPU has been available to this
project yet: it was developed and measured on CPU only.
"""

from __future__ import annotations

import operator
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from optimlab.optim.distributed import is_distributed, local, same_layout
from optimlab.optim.engine.eager import EagerEngine
from optimlab.optim.engine.kernels import Kernel, KernelKey, compiler_available, probe_shape
from optimlab.optim.engine.plans import Plan
from optimlab.optim.engine.statistics import rule_statistics, sum_statistics, tensor_statistics
from optimlab.optim.engine.tensors import PLAIN_TYPES, plain_memory, recorded

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer

#: "auto" fuses an optimizer whose param groups hold at least this many elements in all ...
AUTO_MIN_NUMEL = 1 << 19
#: ... and a smaller one once its eager steps have taken this many seconds in all (about what
#: compiling a configuration costs the first time on a machine).
AUTO_EAGER_SECONDS = 2.0

_FUSABLE_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})

_KERNELS: dict[KernelKey, Kernel] = {}
_FAILED: dict[KernelKey, str] = {}
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=5)


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


_Layout = tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[int, ...], ...]]


def _probe_state(
    optimizer: RuleOptimizer, group: dict[str, Any], hyper: dict[str, Any], shape: tuple[int, ...] = (2,)
) -> dict[str, Tensor]:
    """The state the rule keeps, after running it eagerly on a probe of ``shape`` for two steps (SGD's
    momentum buffer appears only after the first). The probe is not zero: Prodigy keeps a zero
    parameter's initial value as a 0-d tensor, any other as a copy."""
    probe = torch.ones(shape, dtype=torch.float64)
    state = dict(optimizer.init_state(probe, group))
    hyper = {k: float(v) if isinstance(v, Tensor) else v for k, v in hyper.items()}
    for _ in range(2):
        _, new_state = optimizer.rule(probe, torch.zeros(shape, dtype=torch.float64), state, **hyper)
        state.update(new_state)
    return state


def _state_keys(
    optimizer: RuleOptimizer, group: dict[str, Any], hyper: dict[str, Any], shape: tuple[int, ...] = (2,)
) -> tuple[tuple, tuple]:
    """(tensor state keys, 0-d state keys) the rule keeps (see :func:`_probe_state`)."""
    state = _probe_state(optimizer, group, hyper, shape)
    tensor_keys = tuple(sorted(k for k, v in state.items() if v.dim() > 0))
    scalar_keys = tuple(sorted(k for k, v in state.items() if v.dim() == 0))
    return tensor_keys, scalar_keys


def _initial_state_keys(optimizer: RuleOptimizer, group: dict[str, Any]) -> tuple[tuple, tuple]:
    """(tensor state keys, 0-d state keys) the optimizer creates for a parameter (a probe's)."""
    state = optimizer.init_state(torch.ones(2, dtype=torch.float64), group)
    tensor_keys = tuple(sorted(k for k, v in state.items() if v is not None and v.dim() > 0))
    scalar_keys = tuple(sorted(k for k, v in state.items() if v is not None and v.dim() == 0))
    return tensor_keys, scalar_keys


def _split_hyper(hyper: dict[str, Any]) -> tuple[tuple[tuple[str, Any], ...], dict[str, Any]]:
    """(static part: booleans, ``None`` and other non-numbers; numeric part)."""
    static, numeric = [], {}
    for name, value in hyper.items():
        if isinstance(value, bool) or value is None or not isinstance(value, int | float | Tensor):
            static.append((name, value))
        else:
            numeric[name] = value
    return tuple(static), numeric


class _Hyper:
    """A param group's numeric hyperparameters as cached float64 tensors on one device,
    refreshed in place (so a scheduler's new learning rate is a new value, never a recompile)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.tensors: list[Tensor] = []
        self.values: list[Any] = []

    def refresh(self, values: list[Any]) -> list[Tensor]:
        if len(self.tensors) != len(values):  # one-element 1-D: see kernels._update_source
            self.tensors = [torch.zeros(1, dtype=torch.float64, device=self.device) for _ in values]
            self.values = [None] * len(values)
        for index, value in enumerate(values):
            if isinstance(value, Tensor):
                self.tensors[index].copy_(value.detach().reshape(1))
                self.values[index] = None
            elif self.values[index] != value:
                self.tensors[index].fill_(value)
                self.values[index] = value
        return self.tensors


class _GroupConfig:
    """What a param group's current settings select: the state keys, the static flags and the
    numeric hyperparameters' names, and the hyperparameter tensors per device."""

    def __init__(
        self,
        static: tuple,
        names: tuple[str, ...],
        keys: tuple[tuple, tuple],
        probe_hyper: dict[str, Any],
        statistics: tuple[Callable[..., Any], tuple[str, ...], bool] | None = None,
    ) -> None:
        self.static = static
        #: (the declared statistics, their names, whether the kernel only evaluates them) for a kernel
        #: that evaluates the statistics itself; ``None`` otherwise
        self.statistics = statistics
        self.names = names
        self.tensor_keys, self.scalar_keys = keys
        self.probe_hyper = probe_hyper  # the rule's arguments when it runs on a probe
        self.hyper: dict[torch.device, _Hyper] = {}
        self.kernels: dict[tuple[Any, ...], Kernel | None] = {}
        #: a tensor-wise rule's state per number of dimensions: (tensor keys, scalar keys, the probe
        #: shapes of the parameter and of each state tensor), ``None`` where no kernel can take it
        self.layouts: dict[int, _Layout | None] = {}

    def hyper_tensors(self, device: torch.device, values: list[Any]) -> list[Tensor]:
        """The hyperparameter tensors on ``device``, refreshed with this step's ``values``."""
        cache = self.hyper.get(device)
        if cache is None:
            cache = self.hyper[device] = _Hyper(device)
        return cache.refresh(values)

    def layout(self, optimizer: RuleOptimizer, group: dict[str, Any], ndim: int) -> _Layout | None:
        """The state a tensor-wise rule keeps for ``ndim``-dimensional parameters (Adafactor's differs
        between vectors and matrices), learned by running it eagerly on :func:`kernels.probe_shape`."""
        if ndim in self.layouts:
            return self.layouts[ndim]
        try:
            shape = probe_shape(ndim)
        except ValueError:
            self.layouts[ndim] = None
            return None
        try:
            state = _probe_state(optimizer, group, self.probe_hyper, shape)
        except Exception:  # the rule takes no such tensor: the eager engine says why, if it is given one
            self.layouts[ndim] = None
            return None
        tensor_keys = tuple(sorted(k for k, v in state.items() if v.dim() > 0))
        scalar_keys = tuple(sorted(k for k, v in state.items() if v.dim() == 0))
        shapes = (shape, *(tuple(state[k].shape) for k in tensor_keys))
        self.layouts[ndim] = layout = (tensor_keys, scalar_keys, shapes)
        return layout


class FusedEngine:
    """Steps each parameter with a compiled in-place kernel of the optimizer's rule.

    ``mode="fused"`` compiles for every parameter it can (eager for the rest, with one warning
    where compiling is impossible); ``mode="auto"`` does so when the optimizer holds at least
    :data:`AUTO_MIN_NUMEL` elements, or once its eager steps have taken :data:`AUTO_EAGER_SECONDS`,
    and a compiler is available; until then it is exactly the eager engine.
    """

    def __init__(self, mode: str = "fused") -> None:
        if mode not in ("fused", "auto"):
            raise ValueError(f"Invalid fused engine mode: {mode!r}")
        self.name = mode
        self._eager = EagerEngine()
        self._fusing = mode == "fused"
        self.eager_seconds = 0.0  # time "auto" has spent in eager steps so far
        #: parameter steps taken so far by a compiled kernel and by the eager engine
        self.counts = {"fused": 0, "eager": 0}
        #: of the kernels' parameter steps, those a group's plan took (engine/plans.py)
        self.planned_steps = 0
        #: per param group (by id), its planned fused step
        self._plans: dict[int, Plan] = {}
        #: parameters whose declared statistics a kernel evaluated (on its own, or inside the step's
        #: kernel) and those the eager ops evaluated, on the fused path
        self.statistics_counts = {"fused": 0, "eager": 0}
        #: per optimizer class and group settings (static flags, hyperparameter names)
        self._configs: dict[tuple[Any, ...], _GroupConfig] = {}
        self._statistic_names: dict[tuple[Any, ...], tuple[str, ...]] = {}

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

    def step_group(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        extras: list[dict[str, Any]] | None = None,
    ) -> None:
        """Step ``params`` (``extras``: their rule's statistics, where the caller has evaluated them)."""
        if not (optimizer.elementwise or optimizer.tensorwise) or recorded():
            self._step_eager(optimizer, group, params, grads, extras)
            return
        if not self._fusing and not self._auto_fuses(optimizer):
            start = time.perf_counter()
            self._step_eager(optimizer, group, params, grads, extras)
            self.eager_seconds += time.perf_counter() - start
            return
        if optimizer.elementwise:
            self._step_fused(optimizer, group, params, grads, extras)
        else:
            self._step_tensorwise(optimizer, group, params, grads, extras)

    def _config(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        hyper: dict[str, Any],
        extra_names: tuple[str, ...],
        statistics: str | None = None,
    ) -> tuple[_GroupConfig, list[Any]]:
        """The group's configuration and its numeric hyperparameters' values; ``extra_names`` are the
        rule's statistics, which follow them as operands of their own for each parameter — or, with
        ``statistics="inside"`` (the kernel evaluates them before the update) or ``"only"`` (the
        kernel evaluates them and moves nothing), the statistics the kernels compute themselves."""
        static, numeric = _split_hyper(hyper)
        names = tuple(numeric) + (extra_names if statistics is None else ())
        key = (type(optimizer), static, names, extra_names, statistics)
        config = self._configs.get(key)
        if config is None:
            probe_hyper = {**hyper, **dict.fromkeys(extra_names, 1.0)}
            probe_hyper = {k: float(v) if isinstance(v, Tensor) else v for k, v in probe_hyper.items()}
            declared = None
            if statistics is not None:
                declared = (type(optimizer).statistics, extra_names, statistics == "only")
            if statistics == "only":  # the state as it is when statistics are read: before the rule
                keys = _initial_state_keys(optimizer, group)
            elif not optimizer.elementwise:  # tensor-wise: learned per number of dimensions (layout)
                keys = ((), ())
            else:
                keys = _state_keys(optimizer, group, probe_hyper)
            config = self._configs[key] = _GroupConfig(static, names, keys, probe_hyper, declared)
        return config, list(numeric.values())

    def _statistics_names(
        self, optimizer: RuleOptimizer, group: dict[str, Any], hyper: dict[str, Any]
    ) -> tuple[str, ...]:
        """The names of the rule's statistics for these settings, from one evaluation on a probe."""
        static, numeric = _split_hyper(hyper)
        key = (type(optimizer), static, tuple(numeric))
        names = self._statistic_names.get(key)
        if names is None:
            probe = torch.ones(2, dtype=torch.float64)
            state = dict(optimizer.init_state(probe, group))
            floats = {k: float(v) if isinstance(v, Tensor) else v for k, v in hyper.items()}
            found = type(optimizer).statistics(probe, torch.zeros(2, dtype=torch.float64), state, **floats)
            names = self._statistic_names[key] = tuple(found)
        return names

    def _kernel_statistics_on(self, optimizer: RuleOptimizer) -> bool:
        """Whether kernels evaluate the rule's statistics now: an elementwise rule (whose statistics
        are then sums over its elements, which flat runs keep), while fusing and unwatched."""
        if not optimizer.elementwise or type(optimizer).statistics is None or recorded():
            return False
        return self._fusing or self._auto_fuses(optimizer)

    def summed_statistics(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        hyper: dict[str, Any],
    ) -> dict[str, Tensor]:
        """The rule's statistics summed over ``params`` (``statistics_scope = "step"``): each plain
        parameter's by one statistics-only kernel — a single read of the parameter, its gradient and
        state, no temporaries — into one float64 buffer summed at the end; a DTensor's (reduced over
        its shards) and anything else a kernel cannot take by the eager ops."""
        if not self._kernel_statistics_on(optimizer):
            return sum_statistics(tensor_statistics(optimizer, group, params, grads, hyper))
        names = self._statistics_names(optimizer, group, hyper)
        if not names:
            return {}
        config, values = self._config(optimizer, group, hyper, names, statistics="only")
        rule, k = type(optimizer).rule, len(names)
        buffers: dict[torch.device, tuple[Tensor, tuple[Tensor, ...]]] = {}
        hyper_by_device: dict[torch.device, list[Tensor]] = {}
        rest = []
        state_of, ensure_state = optimizer.state.get, optimizer.ensure_state
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            state = state_of(param) or ensure_state(param, group)
            prepared = _flat_operands(param, grad, state, config, whole=True)
            kernel = None
            if prepared is not None:
                operands, numel, device, dtype, scalar_dtypes = prepared
                kernel = self._kernel(config, rule, device, dtype, scalar_dtypes)
            if kernel is None:
                rest.append(index)
                continue
            if device not in buffers:  # a row of k one-element outputs per parameter, zero if unused
                buffer = torch.zeros(len(params) * k, dtype=torch.float64, device=device)
                buffers[device] = (buffer, buffer.split(1))
                hyper_by_device[device] = config.hyper_tensors(device, values)
            operands.extend(buffers[device][1][index * k : index * k + k])
            operands.extend(hyper_by_device[device])
            kernel(operands, numel)
        self.statistics_counts["fused"] += len(params) - len(rest)
        self.statistics_counts["eager"] += len(rest)
        parts = [dict(zip(names, b.view(-1, k).sum(0).unbind(), strict=True)) for b, _ in buffers.values()]
        if rest:
            eager = tensor_statistics(
                optimizer, group, [params[i] for i in rest], [grads[i] for i in rest], hyper
            )
            parts.append(sum_statistics(eager))
        return sum_statistics(parts)

    def _step_fused(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        extras: list[dict[str, Any]] | None = None,
    ) -> None:
        hyper_values = optimizer.hyperparameters(group)
        # A group without statistics is planned (engine/plans.py): once a step has taken every
        # parameter through a kernel as it is, later steps check all operands in one call.
        planning = extras is None and type(optimizer).statistics is None and bool(params)
        if planning:
            config, values = self._config(optimizer, group, hyper_values, ())
            plan = self._plans.get(id(group))
            if plan is not None and plan.config is config:
                stepped = plan.run(optimizer.state.get, params, grads, config.hyper_tensors(_CPU, values))
                if stepped is not None:
                    torch.autograd.graph.increment_version(stepped)
                    self.counts["fused"] += len(params)
                    self.planned_steps += len(params)
                    return
        # Per-tensor statistics (LAMB's norms) are evaluated by the kernel itself, before the update,
        # for each parameter it takes whole; a DTensor's (reduced over its shards) first, eagerly.
        inside = (
            extras is None
            and type(optimizer).statistics is not None
            and optimizer.statistics_scope == "tensor"
            and self._kernel_statistics_on(optimizer)
        )
        names: tuple[str, ...] = ()
        inside_config = None
        if inside:
            names = self._statistics_names(optimizer, group, hyper_values)
            inside_config, _ = self._config(optimizer, group, hyper_values, names, statistics="inside")
            extras = [None] * len(params)  # type: ignore[list-item]
            sharded = [i for i, (p, g) in enumerate(zip(params, grads, strict=True)) if _sharded(p, g)]
            if sharded:
                found = tensor_statistics(
                    optimizer, group, [params[i] for i in sharded], [grads[i] for i in sharded], hyper_values
                )
                for i, values in zip(sharded, found, strict=True):
                    extras[i] = values
        else:
            if extras is None:
                extras = rule_statistics(optimizer, group, params, grads, hyper_values)
            names = tuple(extras[0]) if extras else ()
        config, values = self._config(optimizer, group, hyper_values, names)
        state_of, ensure_state = optimizer.state.get, optimizer.ensure_state
        rule = type(optimizer).rule
        hyper_by_device: dict[torch.device, list[Tensor]] = {}
        extra_operands: dict[tuple[int, torch.device], list[Tensor]] = {}
        eager_params, eager_grads, eager_extras, written = [], [], [], []
        plan_keys = config.tensor_keys + config.scalar_keys
        plan_states: list[dict[str, Any]] = []
        plan_kernels: list[Kernel] = []
        plan_numels: list[int] = []
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            state = state_of(param) or ensure_state(param, group)
            extra = extras[index]
            chosen = inside_config if extra is None else config
            prepared = _flat_operands(param, grad, state, chosen)
            kernel = None
            if prepared is not None:
                operands, numel, device, dtype, scalar_dtypes = prepared
                kernel = self._kernel(chosen, rule, device, dtype, scalar_dtypes)
            if kernel is None:
                planning = False
                eager_params.append(param)
                eager_grads.append(grad)
                eager_extras.append(extra)
                continue
            if planning:  # the operands must be the tensors themselves (not views, shards, moved copies)
                planning = (
                    device == _CPU
                    and len(operands) == 2 + len(plan_keys)
                    and operands[0] is param
                    and operands[1] is grad
                    and all(t is state.get(k) for t, k in zip(operands[2:], plan_keys, strict=True))
                )
                plan_states.append(state)
                plan_kernels.append(kernel)
                plan_numels.append(numel)
            hyper = hyper_by_device.get(device)
            if hyper is None:
                hyper = hyper_by_device[device] = config.hyper_tensors(device, values)
            n_written = len(operands)  # the parameter, its state and scalar state (and the gradient)
            operands.extend(hyper)
            if extra:  # the rule's statistics for this parameter, as float64 scalar operands
                # (converted once per step for a group's or a step's, which every parameter shares)
                shared = extra_operands.get((id(extra), device))
                if shared is None:
                    shared = [_scalar_operand(extra[name], device) for name in names]
                    extra_operands[id(extra), device] = shared
                operands.extend(shared)
            kernel(operands, numel)
            written.append(param)
            written.extend(operands[:1] + operands[2:n_written])
        if written:
            # The kernel wrote through data pointers: tell autograd, as in-place ops would.
            torch.autograd.graph.increment_version(written)
        self.counts["fused"] += len(params) - len(eager_params)
        if planning:
            plan = Plan.make(config, plan_keys, params, grads, plan_states, plan_kernels, plan_numels)
            if plan is not None:
                live = {id(g) for g in optimizer.param_groups}  # (load_state_dict makes new groups)
                for stale in [key for key in self._plans if key not in live]:
                    del self._plans[stale]
                self._plans[id(group)] = plan
        if inside:  # evaluated by a kernel: the parameters it stepped without statistics operands
            by_kernel = sum(extra is None for extra in extras) - sum(e is None for e in eager_extras)
            self.statistics_counts["fused"] += by_kernel
            self.statistics_counts["eager"] += len(params) - by_kernel
        if eager_params:
            missing = [i for i, extra in enumerate(eager_extras) if extra is None]
            if missing:  # statistics a kernel would have evaluated: the eager engine's own
                found = tensor_statistics(
                    optimizer,
                    group,
                    [eager_params[i] for i in missing],
                    [eager_grads[i] for i in missing],
                    hyper_values,
                )
                for i, values in zip(missing, found, strict=True):
                    eager_extras[i] = values
            self._step_eager(optimizer, group, eager_params, eager_grads, eager_extras)

    def _step_tensorwise(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        extras: list[dict[str, Any]] | None = None,
    ) -> None:
        """A :attr:`~optimlab.optim.base.RuleOptimizer.tensorwise` rule: each parameter stepped whole by
        one compiled kernel of the rule, its reductions included — a kernel per number of dimensions,
        sizes dynamic. Never on a shard or a flat run: what the kernel cannot take whole and exactly
        (a DTensor, a size-1 dimension, another layout or state shape) is stepped eagerly."""
        hyper_values = optimizer.hyperparameters(group)
        if extras is None:
            extras = rule_statistics(optimizer, group, params, grads, hyper_values)
        extra_names = tuple(extras[0]) if extras else ()
        config, values = self._config(optimizer, group, hyper_values, extra_names)
        rule = type(optimizer).rule
        hyper_by_device: dict[torch.device, list[Tensor]] = {}
        eager_params, eager_grads, eager_extras, written = [], [], [], []
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            state = optimizer.state.get(param) or optimizer.ensure_state(param, group)
            layout = config.layout(optimizer, group, param.dim())
            prepared = None if layout is None else _whole_operands(param, grad, state, layout[0], layout[1])
            kernel = None
            if prepared is not None:
                operands, device, dtype, scalar_dtypes = prepared
                kernel = self._kernel(config, rule, device, dtype, scalar_dtypes, layout)
            shape = tuple(param.shape)
            if kernel is None or tuple(
                tuple(t.shape) for t in operands[2 : 2 + len(layout[0])]
            ) != kernel.state_shapes(shape):
                eager_params.append(param)
                eager_grads.append(grad)
                eager_extras.append(extras[index])
                continue
            hyper = hyper_by_device.get(device)
            if hyper is None:
                hyper = hyper_by_device[device] = config.hyper_tensors(device, values)
            n_written = len(operands)
            operands.extend(hyper)
            if extra_names:
                operands.extend(_scalar_operand(extras[index][name], device) for name in extra_names)
            kernel(operands, param.numel(), shape)
            written.append(param)
            written.extend(operands[2:n_written])
        if written:
            torch.autograd.graph.increment_version(written)
        self.counts["fused"] += len(params) - len(eager_params)
        if eager_params:
            self._step_eager(optimizer, group, eager_params, eager_grads, eager_extras)

    def _step_eager(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        extras: list[dict[str, Any]] | None = None,
    ) -> None:
        self.counts["eager"] += len(params)
        self._eager.step_group(optimizer, group, params, grads, extras)

    def _kernel(
        self,
        config: _GroupConfig,
        rule: Callable[..., Any],
        device: torch.device,
        dtype: torch.dtype,
        scalar_dtypes: tuple[torch.dtype, ...],
        layout: _Layout | None = None,
    ) -> Kernel | None:
        """The compiled kernel for this configuration (``layout``: a tensor-wise rule's, for one number
        of dimensions), or ``None`` where compiling is impossible."""
        selector = (device, dtype, scalar_dtypes, layout)
        try:
            return config.kernels[selector]
        except KeyError:
            pass
        kernel = None
        tensor_keys, scalar_keys, shapes = layout or (config.tensor_keys, config.scalar_keys, None)
        measure, statistics_names, statistics_only = config.statistics or (None, (), False)
        key = KernelKey(
            rule,
            config.static,
            tensor_keys,
            scalar_keys,
            scalar_dtypes,
            config.names,
            dtype,
            device,
            shapes,
            measure,
            statistics_names,
            statistics_only,
        )
        if not compiler_available(device.type):
            if self.name == "fused" and device.type != "meta":
                _warn_once(
                    f"optimlab fused engine: no compiler for {device.type} tensors "
                    "(a C++ compiler on CPU, Triton on GPU); running eagerly"
                )
        elif key in _FAILED:
            pass
        elif key in _KERNELS:
            kernel = _KERNELS[key]
        else:
            try:
                kernel = _KERNELS[key] = Kernel(key)
            except Exception as error:  # no working compiler, an unsupported op, ...
                _FAILED[key] = repr(error)
                _warn_once(
                    f"optimlab fused engine: compiling {rule.__name__} for {dtype} on {device.type} "
                    f"failed ({type(error).__name__}: {error}); running eagerly"
                )
        config.kernels[selector] = kernel
        return kernel


def _sharded(param: Tensor, grad: Tensor) -> bool:
    return is_distributed(param) or is_distributed(grad)


def _flat_operands(
    param: Tensor, grad: Tensor, state: dict[str, Any], config: _GroupConfig, whole: bool = False
) -> tuple[list[Tensor], int, torch.device, torch.dtype, tuple[torch.dtype, ...]] | None:
    """An elementwise kernel's operands for one parameter (see :func:`_prepare`); ``whole``: only
    a whole tensor (not a DTensor's shard), as statistics sum over the whole tensor."""
    tensor_keys, scalar_keys = config.tensor_keys, config.scalar_keys
    plain = _plain_cpu_operands(param, grad, state, tensor_keys, scalar_keys)
    if plain is not None:  # the common case, checked with as few reads as possible
        operands, dtype, scalar_dtypes = plain
        return operands, param.numel(), _CPU, dtype, scalar_dtypes
    if whole and _sharded(param, grad):
        return None
    get_tensors = operator.itemgetter(*tensor_keys) if tensor_keys else None
    return _prepare(param, grad, state, get_tensors, len(tensor_keys), scalar_keys)


def _scalar_operand(value: Any, device: torch.device) -> Tensor:
    """A statistic as a kernel operand: a one-element float64 tensor on ``device``."""
    if isinstance(value, Tensor):
        return value.detach().to(device=device, dtype=torch.float64).reshape(1)
    return torch.tensor([float(value)], dtype=torch.float64, device=device)


_CPU = torch.device("cpu")


def _plain_cpu_operands(
    param: Tensor,
    grad: Tensor,
    state: dict[str, Any],
    tensor_keys: tuple[str, ...],
    scalar_keys: tuple[str, ...],
) -> tuple[list[Tensor], torch.dtype, tuple[torch.dtype, ...]] | None:
    """:func:`_prepare`'s answer for the common case — plain contiguous real CPU tensors whose state
    is all there — with as few reads as possible; ``None`` for anything else (``_prepare`` decides)."""
    if type(param) not in PLAIN_TYPES or type(grad) is not Tensor or not (param.is_cpu and grad.is_cpu):
        return None
    dtype, shape = param.dtype, param.shape
    if (
        dtype not in _FUSABLE_DTYPES
        or grad.dtype is not dtype
        or grad.shape != shape
        or not param.is_contiguous()
        or not grad.is_contiguous()
        or param.numel() < 2
        or grad.is_neg()  # lazy negation or a ZeroTensor: not what its memory holds
        or grad._is_zerotensor()
    ):
        return None
    operands = [param, grad]
    for key in tensor_keys:
        tensor = state.get(key)
        if (
            type(tensor) is not Tensor
            or tensor.dtype is not dtype
            or (tensor.shape != shape and not _flattened(tensor, param))
            or not tensor.is_contiguous()
            or not tensor.is_cpu
        ):
            return None
        operands.append(tensor)
    scalar_dtypes = []
    for key in scalar_keys:
        scalar = state.get(key)
        if type(scalar) is not Tensor or scalar.dim() != 0 or not scalar.is_cpu or scalar.requires_grad:
            return None
        operands.append(scalar)
        scalar_dtypes.append(scalar.dtype)
    return operands, dtype, tuple(scalar_dtypes)


def _whole_operands(
    param: Tensor,
    grad: Tensor,
    state: dict[str, Any],
    tensor_keys: tuple[str, ...],
    scalar_keys: tuple[str, ...],
) -> tuple[list[Tensor], torch.device, torch.dtype, tuple[torch.dtype, ...]] | None:
    """A tensor-wise kernel's operands for one parameter — ``[param, grad, *state, *scalar state]``,
    whole, real, contiguous tensors of one dtype and device, every size of the parameter at least 2
    (the kernel was generated for sizes of at least 2, as dynamo assumes them) — with the device,
    dtype and scalar dtypes; ``None`` where the kernel cannot take them exactly (the eager engine
    will): a DTensor (its local shard is not the tensor the rule reduces over), a sparse gradient, a
    tensor subclass, lazy negation or conjugation, state the rule creates on this step."""
    try:
        tensors = [state[key] for key in tensor_keys]
        scalars = [state[key] for key in scalar_keys]
    except KeyError:
        return None
    operands = [param, grad, *tensors]
    if not all(isinstance(t, Tensor) for t in (*operands, *scalars)):
        return None
    dtype, device = param.dtype, param.device
    if dtype not in _FUSABLE_DTYPES or device.type == "meta" or param.dim() == 0 or min(param.shape) < 2:
        return None
    if grad.shape != param.shape:
        return None
    for tensor in operands:
        if (
            tensor.layout != torch.strided
            or is_distributed(tensor)
            or not plain_memory(tensor)
            or tensor.dtype != dtype
            or tensor.device != device
            or not tensor.is_contiguous()
            or tensor.is_neg()
            or tensor.is_conj()
            or tensor._is_zerotensor()
        ):
            return None
    for index, scalar in enumerate(scalars):
        if scalar.dim() != 0 or scalar.requires_grad or is_distributed(scalar) or not plain_memory(scalar):
            return None
        if scalar.device != device:
            if device.type == "cpu" or scalar.device.type != "cpu":
                return None
            scalars[index] = state[scalar_keys[index]] = scalar.to(device)
    return [*operands, *scalars], device, dtype, tuple(s.dtype for s in scalars)


def _flattened(tensor: Tensor, param: Tensor) -> bool:
    """State kept as the flattening of a contiguous parameter (Prodigy's ``s`` and ``p0``): the same
    run of memory to a kernel, which sees every operand as one flat run."""
    return tensor.dim() == 1 and tensor.numel() == param.numel() and tensor.is_contiguous()


def _prepare(
    param: Tensor,
    grad: Tensor,
    state: dict[str, Any],
    get_tensors: Callable[[dict[str, Any]], Any] | None,
    n_tensors: int,
    scalar_keys: tuple[str, ...],
) -> tuple[list[Tensor], int, torch.device, torch.dtype, tuple[torch.dtype, ...]] | None:
    """The kernel's operands for one parameter — ``[param, grad, *state, *scalar state]`` as local,
    real, dense tensors of one dtype, device and layout — with the element count, device, dtype
    and scalar dtypes; ``None`` where the kernel cannot take them exactly (the eager engine will).

    On an accelerator the 0-d state (``step``, ...) moves to the parameter's device, where torch's
    fused kernels keep it too, so the kernel never waits for the host."""
    if grad.layout != torch.strided or param.layout != torch.strided:
        return None
    try:
        tensors = get_tensors(state) if get_tensors is not None else ()
        scalars = [state[key] for key in scalar_keys]
    except KeyError:  # state the rule creates on this step (SGD's first momentum buffer)
        return None
    if n_tensors == 1:
        tensors = (tensors,)
    if any(t is None for t in tensors) or any(s is None for s in scalars):
        return None  # a state entry of None (torch 1.x's SGD): the eager engine treats it as none
    if is_distributed(param) or is_distributed(grad):
        if not (same_layout(param, grad) and all(same_layout(param, t) for t in tensors)):
            return None
        param, grad = local(param), local(grad)
        tensors = tuple(map(local, tensors))
    operands = (param, grad, *tensors, *scalars)
    if not all(map(plain_memory, operands)):
        return None  # a tensor subclass whose ops mean more than its memory: its own ops, eagerly
    if any(t.is_neg() or t.is_conj() or t._is_zerotensor() for t in operands):
        return None  # lazy negation, conjugation or zeros: not what the memory holds
    if param.is_complex():
        if not (grad.is_complex() and all(t.is_complex() for t in tensors)):
            return None
        param, grad = torch.view_as_real(param), torch.view_as_real(grad)
        tensors = tuple(map(torch.view_as_real, tensors))
    dtype, device = param.dtype, param.device
    numel = param.numel()
    if numel < 2 or dtype not in _FUSABLE_DTYPES or device.type == "meta":
        return None
    if grad.dtype != dtype or grad.device != device or grad.shape != param.shape:
        return None
    for tensor in tensors:
        if tensor.dtype != dtype or tensor.device != device:
            return None
        if tensor.shape != param.shape and not (param.is_contiguous() and _flattened(tensor, param)):
            return None
    if not (param.is_contiguous() and grad.is_contiguous() and all(t.is_contiguous() for t in tensors)):
        # Any dense layout works if every operand has the same one: the kernel sees one flat run.
        stride = param.stride()
        if not _dense(param) or grad.stride() != stride or any(t.stride() != stride for t in tensors):
            return None
    for index, scalar in enumerate(scalars):
        if not isinstance(scalar, Tensor) or scalar.dim() != 0 or scalar.requires_grad:
            return None
        if scalar.device != device:
            if device.type == "cpu" or scalar.device.type != "cpu" or is_distributed(scalar):
                return None
            scalars[index] = state[scalar_keys[index]] = scalar.to(device)
    scalar_dtypes = tuple(s.dtype for s in scalars)
    return [param, grad, *tensors, *scalars], numel, device, dtype, scalar_dtypes


__all__ = ["AUTO_EAGER_SECONDS", "AUTO_MIN_NUMEL", "FusedEngine", "compiler_available"]
