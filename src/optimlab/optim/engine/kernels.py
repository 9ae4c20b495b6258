"""A rule compiled into an in-place kernel: one pass over one parameter's memory.

An optimizer step is memory-bound (Adam reads θ, ∇, m, v and writes θ, m, v: 28 bytes per float32
parameter), so the fastest step touches each byte once. A :class:`Kernel` is an optimizer's pure
rule from :mod:`optimlab.optim.rules`, unchanged, for one configuration — the rule, its structural
flags, its state keys, the dtypes and the device — compiled by ``torch.compile`` (inductor: C++ and
OpenMP on CPU, Triton on GPU) into a single loop that reads the parameter, its gradient and its
state where they are and writes the parameter and the state back in place. The gradient is only
read. Sizes are dynamic, so one compilation serves every tensor of every model; numeric
hyperparameters enter as 0-d float64 tensors, so schedulers never recompile; inductor caches the
generated code on disk, so a configuration compiles once per machine.

Calling a ``torch.compile``-d function costs about 25 µs of guards and wrappers, as much as the
whole step of a 100k-element tensor. So the kernel compiles once on a small probe of its own and
then calls inductor's generated ``call`` directly, with the caller's tensors in the order of the
graph's inputs and the element count as the size: the C++/Triton code only reads each tensor's
data pointer, so any dense tensors whose strides agree (a parameter, its gradient and its state)
are one flat run of memory to it. Before it is trusted, that direct call is checked on the probe
against the compiled function's own result, bit for bit; a configuration where anything differs or
cannot be matched up keeps calling the compiled function on flat views (guarded, slower, exact).
An elementwise CPU kernel also traces that ``call`` once (:mod:`~optimlab.optim.engine.unwrapped`):
the C++ it calls, with which arguments and scratch buffers, so that the engine's planned steps can
call the C++ without the Python wrapper; those calls are checked bit for bit the same way.

A *tensor-wise* kernel (``KernelKey.shapes`` set: a rule declared
:attr:`~optimlab.optim.base.RuleOptimizer.tensorwise`, Adafactor's) compiles the whole rule for one
number of dimensions, its reductions (row and column means, RMS) included, every size dynamic: its
probe is a tensor of distinct sizes per dimension (:func:`probe_shape`), its state tensors of the
shapes the optimizer creates for that probe, and the direct call passes the caller's sizes for the
probe's. It is checked the same ways (the rule run eagerly, the direct call bit for bit, the thread
race scan).
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optimlab.optim.engine.unwrapped import Unwrapped, trace

#: Inductor settings for the kernels. ``dynamic_threads``: the C++ kernel asks OpenMP for the thread
#: count when it runs instead of baking in ``torch.get_num_threads()`` at compile time (with the
#: baked-in count, serial kernels compiled while a run used one thread came back from inductor's
#: caches into 2-thread processes). ``cpp.threads``: the thread count the code generation assumes,
#: pinned above one. Even with ``dynamic_threads`` torch 2.13's inductor asks
#: ``torch.get_num_threads()`` whether to put serial code that follows a parallel loop (the new
#: scalar state) under ``omp single`` — while it makes every loop parallel, and leaves the count out
#: of its cache key — so a kernel compiled while the process used one thread wrote ASGD's ``step``,
#: η and μ (Rprop's ``step``) from every thread when it ran on several: a race, its numbers right
#: or wrong from one call to the next (see :func:`_unsynchronized_stores`). Pinned, the code is the
#: same whatever the process's thread count and correct for any. ``size_asserts``: the generated
#: wrapper does not insist on the probe's 1-D shape, so the direct call can pass the caller's
#: tensors as they are (the element count is the size; layouts are checked by the engine).
_INDUCTOR_CONFIG: dict[str, Any] = {"cpp.dynamic_threads": True, "cpp.threads": 2, "size_asserts": False}

#: the fewest threads a kernel is checked with, so that the probe runs its parallel loops on several
_CHECK_THREADS = 2

#: how many graphs this process has compiled for the kernels (tests check that a scheduler or an
#: edit of param_groups does not add any)
compilations = 0

_PROBE_NUMEL = 37  # an element count no hyperparameter or state value is mistaken for
_INT32_LIMIT = 2**31 - 1
#: a tensor-wise kernel's probe: one distinct size per dimension, the last two wider than a vector
#: register (so that the vectorized loops and their tails both run) and none equal to another, to 1,
#: or to the elementwise probe's count (dynamo would tie equal sizes together, or specialize 1)
_LEADING_PROBE_SIZES = (3, 5, 7, 11, 13, 17, 19, 23)
_TRAILING_PROBE_SIZES = (29, 41)


def probe_shape(ndim: int) -> tuple[int, ...]:
    """The shape a tensor-wise kernel for ``ndim``-dimensional parameters compiles and is checked on."""
    if not 1 <= ndim <= len(_LEADING_PROBE_SIZES) + 2:
        raise ValueError(f"no tensor-wise probe for {ndim} dimensions")
    return (*_LEADING_PROBE_SIZES[: max(ndim - 2, 0)], *_TRAILING_PROBE_SIZES)[-ndim:]


@dataclass(frozen=True)
class KernelKey:
    """Everything that selects a compiled kernel; numeric hyperparameters and sizes do not."""

    rule: Callable[..., Any]
    static: tuple[tuple[str, Any], ...]  # structural flags and ``None`` terms
    state_keys: tuple[str, ...]  # the parameter-shaped state, in this order
    scalar_keys: tuple[str, ...]  # the 0-d state (``step``, ...), in this order
    scalar_dtypes: tuple[torch.dtype, ...]
    hyper_names: tuple[str, ...]  # numeric hyperparameters, 0-d float64 tensors
    dtype: torch.dtype  # of the parameter, its gradient and its state (real)
    device: torch.device
    #: a tensor-wise kernel: the probe shapes of the parameter (and gradient) and of each state tensor,
    #: in ``state_keys`` order (see :func:`probe_shape`); ``None`` for an elementwise kernel
    shapes: tuple[tuple[int, ...], ...] | None = None
    #: a kernel that evaluates the optimizer's declared ``statistics`` itself (additive sums over the
    #: elements, of the same operands): with ``statistics_only`` it writes them, as one-element float64
    #: outputs following the scalar state, and moves nothing (Prodigy's sums over every group, wanted
    #: before any parameter moves); without, the rule takes them in the same kernel (LAMB's per-tensor
    #: norms: the reductions, then the update). ``None``: statistics, if any, arrive as operands.
    statistics: Callable[..., Any] | None = None
    statistics_names: tuple[str, ...] = ()
    statistics_only: bool = False

    @property
    def n_outputs(self) -> int:
        """The one-element outputs a statistics-only kernel writes."""
        return len(self.statistics_names) if self.statistics_only else 0

    @property
    def upcast(self) -> bool:
        """bfloat16/float16 are computed in float32 and rounded once when stored, as torch's fused
        kernels do (torch's for-loop rounds after every operation)."""
        return self.dtype in (torch.float16, torch.bfloat16)


def _update_source(param: Tensor, grad: Tensor, *operands: Tensor, key: KernelKey) -> None:
    """The body every kernel compiles: the rule, and its results copied back into the operands.

    Scalar state and hyperparameters arrive as one-element 1-D tensors and are read as 0-d views:
    torch 2.13's compiled code drops in-place writes to 0-d float64 inputs (a float64 ``step`` or
    NAdam's ``mu_product`` after a checkpoint load would silently stop advancing)."""
    n_state, n_scalar = len(key.state_keys), len(key.scalar_keys)
    n_before_hyper = n_state + n_scalar + key.n_outputs
    states = dict(zip(key.state_keys, operands[:n_state], strict=True))
    scalars = dict(zip(key.scalar_keys, operands[n_state : n_state + n_scalar], strict=True))
    outputs = operands[n_state + n_scalar : n_before_hyper]
    hyper = {k: v.reshape(()) for k, v in zip(key.hyper_names, operands[n_before_hyper:], strict=True)}
    inputs = {k: v.reshape(()) for k, v in scalars.items()}
    static = dict(key.static)
    if key.upcast:
        inputs.update({k: v.float() for k, v in states.items()})
        param_in, grad_in = param.float(), grad.float()
    else:
        inputs.update(states)
        param_in, grad_in = param, grad
    if key.statistics is not None:
        found = key.statistics(param_in, grad_in, inputs, **hyper, **static)
        if key.statistics_only:
            for name, output in zip(key.statistics_names, outputs, strict=True):
                output.copy_(found[name].reshape(1))
            return
        hyper.update({name: found[name] for name in key.statistics_names})
    new_param, new_state = key.rule(param_in, grad_in, inputs, **hyper, **static)
    param.copy_(new_param)
    for name, tensor in states.items():
        tensor.copy_(new_state[name])
    for name, tensor in scalars.items():
        tensor.copy_(new_state[name].reshape(1))


def _hoist_scalars(gm: torch.fx.GraphModule) -> None:
    """Make every 0-d value that feeds a tensor computation a buffer of its own.

    Inductor inlines scalar arithmetic (Adam's ``β₁ᵗ``, ``√(1 − β₂ᵗ)``) into the consumer's loop
    and, on CPU, recomputes it for every vector of elements: ``pow`` per element made a step ten
    times slower than memory. ``as_strided`` forces its input to be realized, so the scalars are
    computed once per call and the main loop only loads them.
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


@dataclass
class _Capture:
    """What the backend saw when the probe compiled: the graph's inputs and inductor's output."""

    #: per graph input, the value dynamo took it from (a tensor the probe passed, or a size); read
    #: while compiling, as dynamo lets go of them afterwards
    inputs: list[Any] | None = None
    compiled: Any = None  # inductor's OutputCode; ``current_callable`` is the generated ``call``


def _backend(capture: _Capture, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner

    global compilations
    compilations += 1
    _hoist_scalars(gm)
    try:
        capture.inputs = [node.meta["grapharg"].example for node in gm.graph.find_nodes(op="placeholder")]
    except (KeyError, AttributeError, AssertionError):
        capture.inputs = None

    def inner(*args: Any, **kwargs: Any) -> Any:
        capture.compiled = compile_fx_inner(*args, **kwargs)
        return capture.compiled

    # AOTAutograd's own cache would skip ``inner`` on a hit; inductor's FX graph cache (inside
    # ``compile_fx_inner``) still makes a known configuration cheap.
    with torch._functorch.config.patch(enable_autograd_cache=False):
        return compile_fx(gm, example_inputs, inner_compile=inner, config_patches=_INDUCTOR_CONFIG)


_counter = itertools.count()


def _compiled_function(key: KernelKey, capture: _Capture) -> Callable[..., None]:
    """``_update_source`` for ``key``, compiled, with a code object of its own: torch.compile caches
    on the code object and gives up after a few recompilations of it."""
    name = f"_optimlab_kernel_{next(_counter)}"
    code = _update_source.__code__.replace(co_name=name, co_qualname=name)
    function = types.FunctionType(code, _update_source.__globals__, name)
    function.__kwdefaults__ = {"key": key}
    return torch.compile(function, backend=functools.partial(_backend, capture), dynamic=True, fullgraph=True)


def _probe_operands(key: KernelKey, generator: torch.Generator) -> list[Tensor]:
    """Inputs for a compilation and its checks, every one different from every other (so that any
    two operands mixed up would show): positive elements (square averages must be), a step count of
    3, other scalar state and the hyperparameters at distinct values in (0, 1)."""

    def element(shape: tuple[int, ...]) -> Tensor:
        values = torch.rand(shape, generator=generator, dtype=torch.float64, device="cpu") + 0.5
        return values.to(device=key.device, dtype=key.dtype)

    def one(value: float, dtype: torch.dtype) -> Tensor:
        return torch.full((1,), value, dtype=dtype, device=key.device)

    n_tensors = 2 + len(key.state_keys)
    if key.shapes is None:
        operands = [element((_PROBE_NUMEL,)) for _ in range(n_tensors)]
    else:  # the parameter, its gradient (the parameter's shape) and the state
        operands = [element(shape) for shape in (key.shapes[0], *key.shapes)]
    operands += [
        one(3.0 if name == "step" else 0.6 + 0.05 * i, dtype)
        for i, (name, dtype) in enumerate(zip(key.scalar_keys, key.scalar_dtypes, strict=True))
    ]
    operands += [one(0.0, torch.float64) for _ in range(key.n_outputs)]
    n = len(key.hyper_names)
    operands += [one(0.05 + 0.9 * (i + 1) / (n + 2), torch.float64) for i in range(n)]
    return operands


def _eager_reference(key: KernelKey, probe: list[Tensor]) -> list[Tensor]:
    """The rule run with ordinary torch ops on ``probe`` (in float32 for half precision, rounded
    once, as the kernel computes): what the kernel's outputs must be, up to rounding."""
    n_state, n_scalar = len(key.state_keys), len(key.scalar_keys)
    n_before_hyper = n_state + n_scalar + key.n_outputs
    param, grad, *rest = (t.float() if key.upcast and i < 2 + n_state else t for i, t in enumerate(probe))
    scalars = rest[n_state : n_state + n_scalar]
    state = {
        **dict(zip(key.state_keys, rest[:n_state], strict=True)),
        **{k: v.reshape(()) for k, v in zip(key.scalar_keys, scalars, strict=True)},
    }
    hyper = {k: v.reshape(()) for k, v in zip(key.hyper_names, rest[n_before_hyper:], strict=True)}
    if key.statistics is not None:
        found = key.statistics(param, grad, state, **hyper, **dict(key.static))
        if key.statistics_only:  # nothing moves; the outputs hold the statistics
            unchanged = [t.clone() for t in probe[: 2 + n_state + n_scalar]]
            return unchanged + [found[name].reshape(1).to(torch.float64) for name in key.statistics_names]
        hyper.update({name: found[name] for name in key.statistics_names})
    new_param, new_state = key.rule(param, grad, state, **hyper, **dict(key.static))
    outputs = [new_param, grad, *(new_state[k] for k in key.state_keys)]
    outputs = [t.to(key.dtype) for t in outputs]
    for name, dtype in zip(key.scalar_keys, key.scalar_dtypes, strict=True):
        outputs.append(new_state[name].reshape(1).to(dtype))
    return outputs


_OMP_REGION = re.compile(r"#pragma\s+omp\s+(parallel\s+for|parallel|for|single)\b")
_OUTPUT_WRITE = re.compile(
    r"\b(?:in_)?out_ptr\d+\s*\[[^;]*?\]\s*(?:[-+*/]?=)(?!=)"  # out_ptr3[0] = ..., += ...
    r"|\.store\(\s*(?:in_)?out_ptr\d+"  # tmp.store(out_ptr3 + x0, ...)
    r"|atomic_add\(\s*&\s*(?:in_)?out_ptr\d+"
)


def _unsynchronized_stores(source: str) -> list[str]:
    """The statements of inductor's C++ ``source`` that write an output from every OpenMP thread:
    inside a ``#pragma omp parallel`` region but in neither an ``omp for`` loop nor an ``omp single``
    block. Such code runs once per thread, so a read-modify-write of the scalar state (``step + 1``)
    races with itself: the increment lands once or several times, and the probe may see either.

    The scan follows the braces of the generated code; a line of the form it does not know (another
    torch's code generation) only ever adds a statement to the answer, so the check errs on refusing.
    """
    found = []
    frames: list[str] = []  # per open brace: "parallel", "shared" (for / single) or "plain"
    pending: str | None = None  # the kind of the block a pragma opens with its next brace
    for raw in source.splitlines():
        line = raw.strip()
        region = _OMP_REGION.match(line)
        if region:
            pending = "parallel" if region.group(1) == "parallel" else "shared"
            continue
        inside = next((f for f in reversed(frames) if f != "plain"), None)
        if inside == "parallel" and pending is None and _OUTPUT_WRITE.search(line):
            found.append(line)
        for char in line:
            if char == "{":
                frames.append(pending or "plain")
                pending = None
            elif char == "}" and frames:
                frames.pop()
    return found


def _close(a: Tensor, b: Tensor, eps: float | None = None) -> bool:
    """Equal up to a few roundings of the tensors' dtype (the kernel fuses, the eager ops round each),
    or of ``eps``."""
    eps = torch.finfo(a.dtype).eps if eps is None else eps
    a, b = a.double(), b.double()
    both_nan = a.isnan() & b.isnan()
    return bool((((a - b).abs() <= 16 * eps * (1 + b.abs())) | both_nan).all())


def _same(a: Tensor, b: Tensor) -> bool:
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


class Kernel:
    """``key``'s rule as one in-place pass; ``kernel(operands, numel)`` steps one parameter.

    ``operands`` are ``[param, grad, *state (key.state_keys), *scalar state (key.scalar_keys),
    *hyperparameters (key.hyper_names)]``: the first ones dense tensors of ``key.dtype`` with one
    and the same layout (the caller checks), the scalar state its 0-d tensors, the hyperparameters
    one-element float64 tensors. The parameter, the state and the scalar state are written in place.

    Before it is used, the compiled kernel's result on its probe is checked against the rule run
    eagerly (to rounding); one that disagrees raises, and the engine steps eagerly instead.
    """

    def __init__(self, key: KernelKey) -> None:
        self.key = key
        self._capture = _Capture()
        self._compiled = _compiled_function(key, self._capture)
        self._n_elementwise = 2 + len(key.state_keys)
        #: the sizes the generated code takes: the element count, or a tensor-wise kernel's dimensions
        self._probe_sizes = (_PROBE_NUMEL,) if key.shapes is None else key.shapes[0]
        #: inductor's ``call`` and the order of its arguments (indices into the operands, those past
        #: them meaning the sizes), or ``None`` while only the compiled function is trusted
        self.direct: Callable[[list[Any]], Any] | None = None
        self._arguments: Callable[[Sequence[Any]], tuple[Any, ...]] | None = None
        #: an elementwise CPU kernel's generated C++ called without inductor's Python wrapper
        #: (:mod:`~optimlab.optim.engine.unwrapped`), once checked; ``None`` otherwise
        self.unwrapped: Unwrapped | None = None
        self._compile()

    def _compile(self) -> None:
        # Checked on several threads (the OpenMP code runs its parallel loops on as many as it is
        # given): what runs once per thread shows on the probe, as it would in a multithreaded run.
        threads = torch.get_num_threads()
        torch.set_num_threads(max(threads, _CHECK_THREADS))
        try:
            self._compile_and_check()
        finally:
            torch.set_num_threads(threads)

    def _compile_and_check(self) -> None:
        probe = _probe_operands(self.key, torch.Generator().manual_seed(0))
        compiling = [t.clone() for t in probe]  # kept alive: the graph's inputs are found by identity
        with torch.no_grad(), warnings.catch_warnings():
            # torch's internals warn (deprecations) while compiling in ways users need not see
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            self._compiled(*compiling)
            expected = _eager_reference(self.key, probe)
        name = self.key.rule.__name__
        # A race gives right numbers on some calls: the code itself must show none (a kernel from a
        # cache filled by other settings or another torch included).
        unsynchronized = _unsynchronized_stores(getattr(self._capture.compiled, "source_code", "") or "")
        if unsynchronized:
            raise RuntimeError(
                f"the compiled {name} writes its outputs from every thread ({unsynchronized[0]}): not used"
            )
        mutable = self._n_elementwise + len(self.key.scalar_keys) + self.key.n_outputs
        # a statistic is a sum over the probe's elements, in the kernel's own order: rounding of the
        # computing dtype (float32 for half precision) for each of them
        computing = torch.float32 if self.key.upcast else self.key.dtype
        sums = _PROBE_NUMEL * torch.finfo(computing).eps
        first_output = mutable - self.key.n_outputs
        wrong = [
            i
            for i in range(mutable)
            if not _close(compiling[i], expected[i], sums if i >= first_output else None)
        ]
        if wrong:
            raise RuntimeError(
                f"the compiled {name} disagrees with the rule run eagerly on its probe "
                f"(operands {wrong}): not used"
            )
        self.direct, self._arguments = self._trusted_direct_call(probe, compiling)
        self.unwrapped = self._trusted_unwrapped_call(probe)

    def _trusted_direct_call(self, probe: list[Tensor], compiling: list[Tensor]) -> tuple[Any, Any]:
        """Inductor's ``call`` and a map from our operands to its arguments, if the captured graph's
        inputs are exactly our tensors and the element count and calling it gives the compiled
        function's results bit for bit; ``(None, None)`` otherwise."""
        inputs, compiled = self._capture.inputs, self._capture.compiled
        self._capture.inputs = None  # no references to the probe kept
        call = getattr(compiled, "current_callable", None)
        if inputs is None or call is None:
            return None, None
        count = len(probe)  # the indices from here on stand for the sizes
        position = {id(t): i for i, t in enumerate(compiling)}
        sizes = self._probe_sizes  # distinct: each one names its dimension
        order = []
        for example in inputs:
            if isinstance(example, Tensor) and id(example) in position:
                order.append(position[id(example)])
            elif isinstance(example, int | torch.SymInt) and int(example) in sizes:
                order.append(count + sizes.index(int(example)))
            else:
                return None, None
        used = sorted(i for i in order if i < count)
        if self.key.statistics_only:  # reads what its statistics need; every output exactly once
            first_output = self._n_elementwise + len(self.key.scalar_keys)
            outputs = range(first_output, first_output + self.key.n_outputs)
            if len(set(used)) != len(used) or not set(outputs) <= set(used):
                return None, None
        elif used != list(range(count)):
            return None, None  # every operand exactly once
        arguments = operator.itemgetter(*order)  # every kernel has at least param, grad, lr and a size
        direct = [t.clone() for t in probe]
        reference = [t.clone() for t in probe]
        try:
            with torch.no_grad():
                self._compiled(*reference)
                result = call(list(arguments([*direct, *sizes])))
        except Exception:
            return None, None
        if result not in ((), [], None):
            return None, None  # outputs the skipped wrappers would have had to apply
        # what the kernel writes: the parameter, or a statistics-only kernel's first output
        written = self._n_elementwise + len(self.key.scalar_keys) if self.key.statistics_only else 0
        if not all(map(_same, direct, reference)) or _same(direct[written], probe[written]):
            return None, None  # different results, or nothing was written at all
        return call, arguments

    def _trusted_unwrapped_call(self, probe: list[Tensor]) -> Unwrapped | None:
        """The direct call's C++ kernels without inductor's Python wrapper, if tracing the wrapper
        accounts for everything it does and the unwrapped calls — with scratch buffers that a call on
        other values used before — give the compiled function's results bit for bit; ``None``
        otherwise. Elementwise CPU kernels that move the parameter only (what the engine's planned
        steps call)."""
        key = self.key
        if self.direct is None or key.shapes is not None or key.statistics_only or key.device.type != "cpu":
            return None
        sizes = list(self._probe_sizes)
        traced = trace(self.direct, self._arguments, [*(t.clone() for t in probe), *sizes], len(sizes))
        if traced is None:
            return None
        launch = traced.launcher(key.device)
        other = _probe_operands(key, torch.Generator().manual_seed(1))
        reference = [t.clone() for t in probe]
        unwrapped = [t.clone() for t in probe]
        try:
            with torch.no_grad():
                self._compiled(*reference)
                launch([*other, *sizes])
                launch([*unwrapped, *sizes])
        except Exception:
            return None
        if not all(map(_same, unwrapped, reference)) or _same(unwrapped[0], probe[0]):
            return None
        return traced

    @property
    def generated_source(self) -> str | None:
        """The Python module inductor generated for this kernel (its C++ included), where known."""
        return getattr(self._capture.compiled, "source_code", None) or None

    def state_shapes(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """A tensor-wise kernel's state shapes for a parameter of ``shape``: each dimension of the probe's
        state that is one of the probe parameter's sizes becomes the caller's size there (Adafactor's
        ``row_var`` of an (m, n) parameter is (m, 1)). The engine steps a parameter whose state has
        other shapes eagerly: the generated code knows the sizes only through the parameter's."""
        assert self.key.shapes is not None
        sizes = self._probe_sizes
        return tuple(
            tuple(shape[sizes.index(d)] if d in sizes else d for d in state) for state in self.key.shapes[1:]
        )

    def __call__(self, operands: list[Tensor], numel: int, shape: tuple[int, ...] | None = None) -> None:
        """Step one parameter: ``numel`` its element count, ``shape`` its shape (a tensor-wise kernel's
        operands keep their shapes, every size at least 2; an elementwise one sees flat runs)."""
        # The generated code reads data pointers only, so any shape will do; but it was generated for
        # the probe's size, and Triton indexes with 32-bit integers below 2³¹ elements (a guard the
        # compiled function checks and recompiles for): larger tensors take that guarded route.
        n = self._n_elementwise
        if self.key.shapes is not None:
            if self.direct is not None and numel < _INT32_LIMIT:
                self.direct(list(self._arguments([*operands, *shape])))  # type: ignore[misc]
            else:
                self._compiled(*operands[:n], *(t.reshape(1) for t in operands[n:]))
            return
        if self.direct is not None and numel < _INT32_LIMIT:
            self.direct(list(self._arguments([*operands, numel])))  # type: ignore[misc]
            return
        flat = [t.as_strided((numel,), (1,), t.storage_offset()) for t in operands[:n]]
        self._compiled(*flat, *(t.reshape(1) for t in operands[n:]))


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
