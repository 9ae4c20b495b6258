"""Inductor's generated C++ kernels called without the Python wrapper around them.

For a CPU graph inductor generates C++ loops (each a function taking data pointers and sizes) and a
Python ``call`` that allocates the scratch buffers they share (Adam's hoisted scalars: β₁ᵗ, √(1 − β₂ᵗ)
…) and calls them in order. That wrapper costs about 1.5 µs a call — its allocations, its argument
unpacking — which is as much as the kernel itself on a 1000-element tensor: a small model's step is
mostly that. :func:`trace` runs the wrapper once on a probe, with only two names defined — the
scratch allocator and the C++ kernels, both recorded — and gives back what it did as
:class:`Unwrapped`: each kernel with the positions of its arguments among the caller's operands,
the sizes and the scratch buffers. A wrapper that does anything else (a view, an extern kernel, a
computed size, a result) does not trace, and its kernel keeps the wrapper.

The caller (:class:`~optimlab.optim.engine.kernels.Kernel`) then checks the unwrapped calls bit for
bit against the compiled function, with scratch buffers used before (so nothing may be read from
them that a call did not write first), before it uses them.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

#: the dtypes a wrapper may name (``torch.float64`` in ``empty_strided_cpu((), (), torch.float64)``);
#: nothing else of torch is reachable while it is traced
_DTYPES = types.SimpleNamespace(
    **{
        name: getattr(torch, name)
        for name in ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8")
    },
    bool=torch.bool,
)
_ALLOCATOR = "empty_strided_cpu"


@dataclass(frozen=True)
class Unwrapped:
    """What a wrapper does: allocate ``scratch`` (size, stride, dtype each) and make ``calls``, each a C++
    kernel and the positions of its arguments in ``[*operands, *sizes, *scratch buffers]``."""

    calls: tuple[tuple[Callable[..., Any], tuple[int, ...]], ...]
    scratch: tuple[tuple[tuple[int, ...], tuple[int, ...], torch.dtype], ...]

    def scratch_buffers(self, device: torch.device) -> list[Tensor]:
        """Fresh scratch buffers for the calls (one caller at a time may use them: the calls write
        them before they read them, and parallel callers would write each other's)."""
        return [torch.empty_strided(s, t, dtype=d, device=device) for s, t, d in self.scratch]

    def launcher(self, device: torch.device) -> Callable[[list[Any]], None]:
        """A function making the calls on ``[*operands, *sizes]`` (a list it extends) with scratch
        buffers of its own: one launcher belongs to one step of one thread."""
        scratch = self.scratch_buffers(device)
        calls = [(kernel, operator.itemgetter(*order)) for kernel, order in self.calls]

        def launch(values: list[Any]) -> None:
            values += scratch
            for kernel, arguments in calls:
                kernel(*arguments(values))

        return launch


def _is_cpp_kernel(name: str, value: Any) -> bool:
    """A C++ kernel of inductor's Python bindings (``cpp_fused_…``: a built-in function)."""
    return name.startswith("cpp_") and isinstance(value, types.BuiltinFunctionType)


def trace(
    call: Callable[[list[Any]], Any],
    arguments: Callable[[Sequence[Any]], tuple[Any, ...]],
    values: list[Any],
    n_sizes: int,
) -> Unwrapped | None:
    """Run inductor's wrapper ``call`` once on ``arguments(values)`` and return what it did, as calls on
    ``values`` — ``[*operands, *sizes]``, the last ``n_sizes`` of them ints distinct from each other —
    or ``None`` when it did anything but allocate scratch buffers and call C++ kernels with operands,
    sizes and scratch buffers (it then fails inside, or passes something unaccounted for)."""
    function = getattr(call, "__func__", None)
    runner = getattr(call, "__self__", None)
    if not isinstance(function, types.FunctionType) or function.__closure__ or runner is None:
        return None
    scratch: list[Tensor] = []
    specs: list[tuple[tuple[int, ...], tuple[int, ...], torch.dtype]] = []
    made: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def allocate(size: Sequence[int], stride: Sequence[int], dtype: torch.dtype) -> Tensor:
        buffer = torch.empty_strided(tuple(size), tuple(stride), dtype=dtype, device="cpu")
        scratch.append(buffer)
        specs.append((tuple(size), tuple(stride), dtype))
        return buffer

    def recorder(kernel: Callable[..., Any]) -> Callable[..., Any]:
        def record(*passed: Any) -> Any:
            made.append((kernel, passed))
            return kernel(*passed)

        return record

    names: dict[str, Any] = {"__builtins__": __builtins__, "torch": _DTYPES, _ALLOCATOR: allocate}
    names.update(
        {name: recorder(value) for name, value in function.__globals__.items() if _is_cpp_kernel(name, value)}
    )
    traced = types.FunctionType(function.__code__, names, function.__name__, function.__defaults__)
    try:
        with torch.no_grad():
            result = traced(runner, list(arguments(values)))
    except Exception:  # a name it may not use, or anything else it could not do here
        return None
    if result not in ((), [], None) or not made:
        return None
    first_size = len(values) - n_sizes
    sizes = values[first_size:]
    position = {id(t): i for i, t in enumerate(values[:first_size]) if isinstance(t, Tensor)}
    position.update({id(b): len(values) + j for j, b in enumerate(scratch)})
    calls = []
    for kernel, passed in made:
        order = []
        for value in passed:
            if isinstance(value, Tensor) and id(value) in position:
                order.append(position[id(value)])
            elif type(value) is int and sizes.count(value) == 1:
                order.append(first_size + sizes.index(value))
            else:
                return None
        if len(order) < 2:  # (every kernel takes at least a pointer and a size)
            return None
        calls.append((kernel, tuple(order)))
    return Unwrapped(tuple(calls), tuple(specs))
