"""An elementwise rule traced into a program of torch ops that write into their operands' memory.

The eager engine evaluates a rule op by op: each functional op allocates its result, and the rule's
new parameter and state are then copied into their tensors. :func:`program_for` instead runs the
rule once on one-element tensors under a :class:`~torch.overrides.TorchFunctionMode` that records
the ops touching the parameter, gradient and state — the *program* — and rewrites it:

* every recognised op writes its result with ``out=`` into memory the program owns: the parameter's
  or a state entry's own tensor when the op computes its new value and the old one is not read
  again (no copy afterwards), else a temporary whose value is dead (no allocation per op);
* ``θ − (s·m)/d`` becomes one ``torch.addcdiv(θ, m, d, value=−s)`` (float32 and float64 only).

Only rewrites that give the rule's bits are made: ``out=`` runs an op's own kernel, and
``addcdiv``'s kernel computes ``θ + (−s·m)/d`` with the same roundings (measured; torch's
``addcmul`` and ``add(…, alpha=)`` use fused multiply-adds in their vectorized loops, so they are not
used). An op the program does not know runs as recorded. The rule's host arithmetic (bias
corrections, step sizes) happens during the trace, so a program is for one set of hyperparameters
and 0-d state values: :func:`program_for` keeps the last few, keyed by everything the rule reads
besides the tensors' elements. A rule the trace cannot take — an op it does not know on a
parameter-sized value, a value read on the host, state created by the rule, hyperparameters that
are tensors of more than one element or off the host — gets ``None``: the caller evaluates it as
before.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

#: how many programs are kept (per process): a group's step needs one per rule, dtypes and step count
CACHE_SIZE = 16
#: the fewest elements a step must evaluate with a program for it to be traced: a trace costs
#: 0.15–1 ms, and a rule whose constants change at every step (Adam's bias corrections) is traced at
#: every step — measured on the 4 tensors of ``digits-mlp`` (4,810 elements), Adam's eager step took
#: 2.25× as long traced; at 1M elements the traced step was 5 % faster, at 16M 1.5–1.7× (one thread)
TRACE_MIN_NUMEL = 1 << 19

#: ops that run elementwise with an ``out=`` variant of their own kernel: recorded function → torch
#: function, and whether its first two operands commute (so that a number first can be moved second)
_OUT_OPS: dict[Callable[..., Any], tuple[Callable[..., Any], bool]] = {}
for _names, _function, _commutes in (
    (("__add__", "__radd__", "add"), torch.add, True),
    (("__mul__", "__rmul__", "mul"), torch.mul, True),
    (("__sub__", "sub"), torch.sub, False),
    (("__truediv__", "div"), torch.div, False),
    (("__neg__", "neg"), torch.neg, False),
    (("sqrt",), torch.sqrt, False),
    (("rsqrt",), torch.rsqrt, False),
    (("abs",), torch.abs, False),
    (("sign",), torch.sign, False),
    (("lerp",), torch.lerp, False),
    (("maximum",), torch.maximum, True),
    (("minimum",), torch.minimum, True),
    (("clamp_min",), torch.clamp_min, False),
    (("clamp_max",), torch.clamp_max, False),
):
    for _name in _names:
        _OUT_OPS[getattr(Tensor, _name)] = (_function, _commutes)
        if hasattr(torch, _name):
            _OUT_OPS[getattr(torch, _name)] = (_function, _commutes)

#: further elementwise ops a rule may apply to parameter-sized values, each returning new memory
#: (no views: the program writes over values it no longer reads); they run as recorded
_PLAIN_OPS = {
    Tensor.__rsub__,
    Tensor.__rtruediv__,
    Tensor.__lt__,
    Tensor.__le__,
    Tensor.__gt__,
    Tensor.__ge__,
    Tensor.__eq__,
    Tensor.__ne__,
    Tensor.clone,
    torch.where,
    torch.clamp,
    Tensor.clamp,
    torch.sign,
    Tensor.reciprocal,
    torch.reciprocal,
    Tensor.square,
    torch.square,
}

#: dtypes for which ``addcdiv`` gives ``θ − (s·m)/d`` bit for bit (checked: tests/test_optim_traced.py)
_ADDCDIV_DTYPES = (torch.float32, torch.float64)


class Untraceable(Exception):
    """The rule did something the trace does not take."""


class _Ref:
    """A parameter-sized value in the trace: an input or the result of a recorded op, by its index
    (the inputs first, then the ops' results in order)."""

    __slots__ = ("dtype", "index")

    def __init__(self, index: int, dtype: torch.dtype) -> None:
        self.index, self.dtype = index, dtype


class _Op:
    """One recorded op: ``function(*args, **kwargs)``, its operands' :class:`_Ref` where they are
    parameter-sized values, and its result's dtype."""

    __slots__ = ("args", "dtype", "function", "kwargs")

    def __init__(self, function: Callable[..., Any], args: tuple, kwargs: dict, dtype: torch.dtype) -> None:
        self.function, self.args, self.kwargs, self.dtype = function, args, kwargs, dtype


class _Recorder(TorchFunctionMode):
    """Records the ops on the traced values; runs everything else (the host bookkeeping on 0-d
    tensors) as it is, its results then constants of the program."""

    def __init__(self, inputs: dict[str, Tensor]) -> None:
        super().__init__()
        self.refs: dict[int, _Ref] = {}
        self.keep: list[Tensor] = []  # every traced tensor stays alive: their ids stay theirs
        self.ops: list[_Op] = []
        for index, tensor in enumerate(inputs.values()):
            self._track(tensor, _Ref(index, tensor.dtype))
        self.inputs = len(inputs)

    def _track(self, tensor: Tensor, ref: _Ref) -> None:
        self.refs[id(tensor)] = ref
        self.keep.append(tensor)

    def ref(self, value: Any) -> _Ref | None:
        return self.refs.get(id(value)) if isinstance(value, Tensor) else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = _flat(args, kwargs)
        if not any(id(value) in self.refs for value in flat if isinstance(value, Tensor)):
            return func(*args, **kwargs)
        if func not in _OUT_OPS and func not in _PLAIN_OPS:
            raise Untraceable(getattr(func, "__name__", repr(func)))
        result = func(*args, **kwargs)
        if not isinstance(result, Tensor) or result.shape != (1,) or id(result) in self.refs:
            raise Untraceable(getattr(func, "__name__", repr(func)))  # not elementwise, or an alias
        for value in flat:  # a 0-d tensor operand becomes a constant: it must not change later
            if isinstance(value, Tensor) and self.ref(value) is None:
                self.keep.append(value)
        if any(isinstance(value, list | tuple | dict) for value in flat):
            raise Untraceable(getattr(func, "__name__", repr(func)))  # operands inside containers
        recorded_args = tuple(self.ref(value) or value for value in args)
        recorded_kwargs = {key: self.ref(value) or value for key, value in kwargs.items()}
        ref = _Ref(self.inputs + len(self.ops), result.dtype)
        self.ops.append(_Op(func, recorded_args, recorded_kwargs, result.dtype))
        self._track(result, ref)
        return result


# where a value lives: an input's tensor, a temporary, or a tensor an op allocated
_INPUT, _TEMP, _FOREIGN = 0, 1, 2


def _flat(args: tuple, kwargs: dict) -> list[Any]:
    """An op's operands, those in lists and tuples (``torch.where``'s, ...) included."""
    flat: list[Any] = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, list | tuple):
            flat.extend(value)
        flat.append(value)
    return flat


def _refs(args: tuple, kwargs: dict) -> set[int]:
    return {value.index for value in (*args, *kwargs.values()) if isinstance(value, _Ref)}


def _number(scale: Any) -> float | None:
    """A product's scalar factor as ``addcdiv``'s ``value`` (the kernel reads a 0-d operand as this
    number, in the op's dtype), or ``None`` where it is not one."""
    if isinstance(scale, Tensor):
        if scale.dim() or not scale.is_floating_point() or not scale.is_cpu:
            return None
        scale = scale.item()
    if not isinstance(scale, int | float) or isinstance(scale, bool):
        return None
    return float(scale)


class Program:
    """A rule's recorded tensor ops, rewritten to write into owned memory (see the module's text).

    :meth:`run` evaluates it on tensors of any one size (a slice, a run), writing the new parameter
    and the new state entries into the given tensors of the same names."""

    def __init__(
        self,
        names: tuple[str, ...],
        dtypes: tuple[torch.dtype, ...],
        ops: list[_Op],
        outputs: dict[str, _Ref],
        others: dict[str, Any],
        fuse: bool,
    ) -> None:
        self.names = names
        self.others = others  # the rule's 0-d and host results: the same for every slice and run
        inputs = len(names)
        # (function, args, kwargs) as each op is evaluated: ``out=`` ops, addcdiv, or as recorded
        calls: dict[int, tuple[Callable[..., Any], tuple, dict, bool]] = {}
        for position, op in enumerate(ops):
            calls[position] = self._rewritten(op)
        self._ones = inputs + len(ops)  # where the program's tensor of ones is, if it reads one
        if fuse:
            self._fuse(ops, outputs, calls, _Ref(self._ones, dtypes[0]))
        self._reads_ones = any(self._ones in _refs(args, kwargs) for _, args, kwargs, _ in calls.values())
        ends = [-1] * (inputs + len(ops) + 1)  # the last op reading each value
        for position, (_, args, kwargs, _) in calls.items():
            for value in _refs(args, kwargs):
                ends[value] = max(ends[value], position)
        for ref in outputs.values():
            ends[ref.index] = len(ops)  # read at the end, unless written into its own tensor
        targets = {ref.index: names.index(name) for name, ref in outputs.items() if ref.index >= inputs}
        home: list[tuple[int, int]] = [(_INPUT, index) for index in range(inputs)]
        home += [(_FOREIGN, -1)] * (len(ops) + 1)
        free: dict[torch.dtype, list[int]] = {}
        temps: list[torch.dtype] = []
        written: set[int] = set()  # the inputs holding their new value
        steps: list[tuple[Any, ...]] = []
        for position, (function, args, kwargs, writes_out) in calls.items():
            index = inputs + position
            read = _refs(args, kwargs)
            if writes_out:
                # operands read for the last time give their memory to the result (an elementwise
                # kernel may write over an operand it reads at the same place)
                for value in read:
                    if ends[value] == position and home[value][0] == _TEMP:
                        free.setdefault(self._dtype(value, dtypes, ops), []).append(home[value][1])
                own = targets.get(index)
                if (
                    own is not None
                    and own not in written
                    and ends[own] <= position
                    and ops[position].dtype == dtypes[own]
                ):
                    home[index] = (_INPUT, own)  # the old value is read by no later op
                    written.add(own)
                elif free.get(ops[position].dtype):
                    home[index] = (_TEMP, free[ops[position].dtype].pop())
                else:
                    temps.append(ops[position].dtype)
                    home[index] = (_TEMP, len(temps) - 1)
                steps.append((function, args, kwargs, home[index], index))
            else:
                steps.append((function, args, kwargs, None, index))
                for value in read:
                    if ends[value] == position and home[value][0] == _TEMP:
                        free.setdefault(self._dtype(value, dtypes, ops), []).append(home[value][1])
        self._temps = temps
        self._steps = steps
        self._size = inputs + len(ops) + 1
        # new values not written in place are copied at the end (unless the rule returned the input)
        self._copies = [
            (names.index(name), ref.index)
            for name, ref in outputs.items()
            if ref.index != names.index(name) and home[ref.index] != (_INPUT, names.index(name))
        ]

    @staticmethod
    def _dtype(index: int, dtypes: tuple[torch.dtype, ...], ops: list[_Op]) -> torch.dtype:
        return dtypes[index] if index < len(dtypes) else ops[index - len(dtypes)].dtype

    @staticmethod
    def _rewritten(op: _Op) -> tuple[Callable[..., Any], tuple, dict, bool]:
        """How ``op`` is evaluated: its torch function with ``out=`` where it has one (a number
        first moved second where the operands commute), else as recorded."""
        out_op = _OUT_OPS.get(op.function)
        if out_op is None or op.kwargs or not op.args:
            return (op.function, op.args, op.kwargs, False)
        function, commutes = out_op
        args = op.args
        if not isinstance(args[0], _Ref | Tensor):
            if not (commutes and len(args) == 2):
                return (op.function, op.args, op.kwargs, False)
            args = (args[1], args[0])
        return (function, args, {}, True)

    def _fuse(
        self,
        ops: list[_Op],
        outputs: dict[str, _Ref],
        calls: dict[int, tuple[Callable[..., Any], tuple, dict, bool]],
        ones: _Ref,
    ) -> None:
        """``sub(θ, div(mul(m, s), d))`` → ``addcdiv(θ, m, d, value=−s)``, then ``a ± mul(b, s)``
        → ``addcdiv(a, b, 1, value=±s)`` (``ones``: a tensor of ones of the parameter's dtype;
        ``(s·b)/1`` is ``s·b`` exactly), all of one dtype of :data:`_ADDCDIV_DTYPES`, the products
        and quotients read by nothing else: the mul and div are dropped from ``calls``, the add or
        sub replaced."""
        inputs = len(self.names)
        readers: dict[int, int] = {}
        for op in ops:
            for value in _refs(op.args, op.kwargs):
                readers[value] = readers.get(value, 0) + 1
        kept = {ref.index for ref in outputs.values()}

        def made_by(value: Any, names: tuple[str, ...], dtype: torch.dtype) -> int | None:
            if not isinstance(value, _Ref) or value.index < inputs or value.index in kept:
                return None
            position = value.index - inputs
            op = ops[position]
            if position not in calls or op.kwargs or len(op.args) != 2 or readers.get(value.index) != 1:
                return None
            if op.dtype != dtype or getattr(op.function, "__name__", None) not in names:
                return None
            return position

        for position, op in enumerate(ops):
            dtype = op.dtype
            if op.function not in (Tensor.__sub__, Tensor.sub, torch.sub) or op.kwargs or len(op.args) != 2:
                continue
            theta, quotient = op.args
            if dtype not in _ADDCDIV_DTYPES or not isinstance(theta, _Ref) or theta.dtype != dtype:
                continue
            at_div = made_by(quotient, ("__truediv__", "div"), dtype)
            if at_div is None:
                continue
            product, divisor = ops[at_div].args
            at_mul = made_by(product, ("__mul__", "__rmul__", "mul"), dtype)
            if at_mul is None or not isinstance(divisor, _Ref) or divisor.dtype != dtype:
                continue
            first, second = ops[at_mul].args
            moment, scale = (first, second) if isinstance(first, _Ref) else (second, first)
            if not isinstance(moment, _Ref) or moment.dtype != dtype:
                continue
            scale = _number(scale)
            if scale is None:
                continue
            del calls[at_mul], calls[at_div]
            calls[position] = (torch.addcdiv, (theta, moment, divisor), {"value": -scale}, True)

        for position, op in enumerate(ops):
            dtype = op.dtype
            if position not in calls or calls[position][0] is torch.addcdiv or op.kwargs or len(op.args) != 2:
                continue
            subtracts = op.function in (Tensor.__sub__, Tensor.sub, torch.sub)
            adds = op.function in (Tensor.__add__, Tensor.__radd__, Tensor.add, torch.add)
            if not (subtracts or adds) or dtype not in _ADDCDIV_DTYPES or dtype != ones.dtype:
                continue
            orders = [op.args] if subtracts else [op.args, op.args[::-1]]
            for base, product in orders:  # a + s·b or s·b + a: either operand may be the product
                at_mul = made_by(product, ("__mul__", "__rmul__", "mul"), dtype)
                if at_mul is None or not isinstance(base, _Ref) or base.dtype != dtype:
                    continue
                first, second = ops[at_mul].args
                factor, scale = (first, second) if isinstance(first, _Ref) else (second, first)
                scale = _number(scale)
                if not isinstance(factor, _Ref) or factor.dtype != dtype or scale is None:
                    continue
                del calls[at_mul]
                value = -scale if subtracts else scale
                calls[position] = (torch.addcdiv, (base, factor, ones), {"value": value}, True)
                break

    def run(self, tensors: list[Tensor], temporaries: list[Tensor] | None = None) -> None:
        """Evaluate on ``tensors`` (the parameter, gradient and state entries of :attr:`names`, in
        that order, all of one size), writing the new parameter and state into them (never into
        the gradient). ``temporaries``: memory for the temporaries (:meth:`temporaries`), else
        allocated here."""
        if temporaries is None:
            temporaries = self.temporaries(tensors[0])
        values: list[Any] = [*tensors, *([None] * (self._size - len(tensors)))]
        if self._reads_ones:
            values[self._ones] = _ones(tensors[0])
        for function, args, kwargs, place, index in self._steps:
            call_args = [values[a.index] if type(a) is _Ref else a for a in args]
            if kwargs:
                kwargs = {k: values[v.index] if type(v) is _Ref else v for k, v in kwargs.items()}
            if place is None:
                values[index] = function(*call_args, **kwargs)
            else:
                kind, slot = place
                out = tensors[slot] if kind == _INPUT else temporaries[slot]
                values[index] = function(*call_args, **kwargs, out=out)
        for own, index in self._copies:
            tensors[own].copy_(values[index])

    def temporaries(self, like: Tensor, numel: int | None = None) -> list[Tensor]:
        """Memory for the program's temporaries, for tensors like ``like`` (of ``numel`` elements)."""
        size = like.numel() if numel is None else numel
        return [torch.empty(size, dtype=dtype, device=like.device) for dtype in self._temps]


_ONES: dict[tuple[torch.dtype, torch.device], Tensor] = {}


def _ones(like: Tensor) -> Tensor:
    """A tensor of ones like ``like`` (1-D, contiguous), never written: a view of one kept per
    dtype and device."""
    key = (like.dtype, like.device)
    ones = _ONES.get(key)
    numel = like.numel()
    if ones is None or ones.numel() < numel:
        ones = _ONES[key] = torch.ones(max(numel, 1 << 16), dtype=like.dtype, device=like.device)
    return ones[:numel]


def apart(tensors: list[Tensor]) -> bool:
    """Whether no two of ``tensors`` share memory (a program writes into some while reading
    others)."""
    spans = []
    for tensor in tensors:
        start = tensor.data_ptr()
        spans.append((start, start + tensor.numel() * tensor.element_size()))
    spans.sort()
    return all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


def _hashable(value: Any) -> Any:
    """``value`` as part of a cache key: its type and value (the sign of a zero included), or
    :class:`Untraceable` for what the key cannot hold."""
    if value is None or isinstance(value, bool | str | torch.dtype):
        return (type(value), value)
    if isinstance(value, int | float):
        return (type(value), value, math.copysign(1.0, value) if value == 0 else 0)
    if isinstance(value, tuple):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, Tensor) and value.dim() == 0 and value.is_cpu and type(value) is Tensor:
        number = value.item()
        return (Tensor, value.dtype, number, math.copysign(1.0, number) if number == 0 else 0)
    raise Untraceable(type(value).__name__)


_SIMPLE_TYPES = frozenset({int, float, bool, str, type(None)})


def _negative_zero(value: Any) -> bool:
    return type(value) is float and value == 0.0 and math.copysign(1.0, value) < 0


def _items_key(mapping: Mapping[str, Any]) -> Any:
    """A mapping's names and values as part of a cache key: with their types (1, 1.0 and True take
    different paths through a rule) and zeros' signs."""
    values = tuple(mapping.values())
    types = tuple(map(type, values))
    if _SIMPLE_TYPES.issuperset(types):
        return (tuple(mapping), values, types, tuple(map(_negative_zero, values)))
    return tuple((name, _hashable(value)) for name, value in mapping.items())


_cache: OrderedDict[Any, Program | None] = OrderedDict()


def program_for(
    rule: Callable[..., tuple[Tensor, dict[str, Any]]],
    param: Tensor,
    grad: Tensor,
    state: Mapping[str, Tensor],
    scalars: Mapping[str, Any],
    hyper: Mapping[str, Any],
    numel: int | None = None,
) -> Program | None:
    """The traced program of the elementwise ``rule`` for these operands' dtypes and device (the
    parameter-sized ``state`` entries), these 0-d or host ``scalars`` and hyperparameters ``hyper``,
    or ``None`` where the rule cannot be traced (the caller then evaluates it as before) — or where
    ``numel``, the elements the caller's step evaluates with it, is below :data:`TRACE_MIN_NUMEL`
    (``None``: whatever the size); such a step does not even look for a program kept (the lookup
    itself, hashing the hyperparameters, costs a small model's step 10 % of its time)."""
    if numel is not None and numel < TRACE_MIN_NUMEL:
        return None
    try:
        key = (
            rule,
            param.dtype,
            grad.dtype,
            param.device,
            torch.get_default_dtype(),
            tuple((name, value.dtype) for name, value in state.items()),
            _items_key(scalars),
            _items_key(hyper),
        )
    except Untraceable:
        return None
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    program = _trace(rule, param, grad, state, scalars, hyper)
    _cache[key] = program
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return program


def _trace(
    rule: Callable[..., tuple[Tensor, dict[str, Any]]],
    param: Tensor,
    grad: Tensor,
    state: Mapping[str, Tensor],
    scalars: Mapping[str, Any],
    hyper: Mapping[str, Any],
) -> Program | None:
    def example(tensor: Tensor) -> Tensor:
        return torch.ones(1, dtype=tensor.dtype, device=tensor.device)

    if "param" in state or "grad" in state:
        return None
    inputs = {"param": example(param), "grad": example(grad)}
    inputs.update({name: example(value) for name, value in state.items()})
    # private copies of 0-d tensors: the program's constants must not change with the stored ones
    private = {k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in scalars.items()}
    private_hyper = {k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in hyper.items()}
    recorder = _Recorder(inputs)
    try:
        with recorder:
            new_param, new_state = rule(
                inputs["param"], inputs["grad"], {**private, **{k: inputs[k] for k in state}}, **private_hyper
            )
    except Untraceable:
        return None
    outputs: dict[str, _Ref] = {}
    others: dict[str, Any] = {}
    names = tuple(inputs)
    for name, value in {"param": new_param, **new_state}.items():
        ref = recorder.ref(value)
        if ref is not None:
            if name not in inputs or name == "grad" or ref.dtype != inputs[name].dtype:
                return None  # state the rule creates, or a result of another dtype: copied as before
            if ref.index < len(inputs) and names[ref.index] != name:
                return None  # another entry's old value: the copies at the end would need an order
            outputs[name] = ref
        elif isinstance(value, Tensor) and value.dim() > 0:
            return None
        else:
            others[name] = value
    if set(state) - outputs.keys():
        return None  # a state entry the rule drops: not this program's business
    dtypes = tuple(tensor.dtype for tensor in inputs.values())
    return Program(names, dtypes, recorder.ops, outputs, others, fuse=param.device.type == "cpu")


__all__ = ["CACHE_SIZE", "TRACE_MIN_NUMEL", "Program", "Untraceable", "apart", "program_for"]
