"""One C++ call that steps a whole planned group: every parameter's kernel, small ones in parallel.

A planned step (:mod:`~optimlab.optim.engine.plans`) used to call, from Python and once per
parameter, the C++ function inductor generated for the parameter's kernel (its Python binding,
``cpp_fused_…``): about 1.5 µs a call, 0.3 ms a step for 200 tensors, the kernels one after another.
Here a small C++ extension of our own (:data:`_SOURCE`, Python's C API only, built once per machine and
torch by inductor's own code cache, as its kernels are) makes all those calls in one:

- It calls each kernel's plain ``extern "C"`` entry point (the ``kernel`` symbol of the shared object
  inductor built and loaded), found once per kernel, with the arguments the unwrapped call passes
  (:mod:`~optimlab.optim.engine.unwrapped`): data pointers, element counts and scratch buffers. Those
  arguments are all pointers or 64-bit integers (checked in the generated signature), which a 64-bit
  ABI passes alike, so one caller per argument count serves every kernel.
- A step's arguments are described once per plan in an int64 tensor (the *spec*): per parameter its
  entry point and, per argument, an operand (whose data pointer the extension reads from the step's
  list of tensors), a scratch buffer (each thread has its own) or a constant (the element count).
- Kernels of at most :data:`~optimlab.optim.engine.plans.SERIAL_MAX_NUMEL` elements run on one thread,
  as a planned step runs them anyway; the extension runs them *at the same time*, an OpenMP
  ``parallel for`` over parameters, each thread with its own scratch buffers and one OpenMP thread
  for the kernel it calls. Larger kernels run afterwards, one at a time, each on all the threads. An
  elementwise kernel's result does not depend on which thread runs it or when, so the bits are those
  of the kernels called in order, provided no two parameters' operands share memory: the extension
  checks, at every step, that no tensor a kernel writes (a parameter, its state) overlaps any other
  operand (another parameter's, a gradient, a hyperparameter) — tied or aliased tensors, a state entry
  shared between parameters — and otherwise calls the kernels in order, as before. The check is
  re-done only for what moved since the step before (gradients usually do; parameters and state
  do not).
- Inductor's kernels share one global: a pointer to the calling kernel's flag for integer division
  by zero, set at the kernel's start and cleared at its end, read only where the generated code
  divides integers (``floor_divide_integral``, ``mod``, ``remainder_integral``). A kernel whose source
  contains any of these, or any static or thread-local variable, never runs in parallel.

Each kernel's entry point is checked on its probe before it is used: the extension's call must give
the unwrapped call's bits. If the extension cannot be built or loaded, or a kernel's entry point is
not found or not checked, the planned step calls the kernels from Python as before.
"""

from __future__ import annotations

import ctypes
import functools
import re
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optimlab.optim.engine import kernels as compiled_kernels

#: the most arguments a kernel's entry point may take (Adam's takes 18)
MAX_ARGUMENTS = 64
#: scratch buffers are laid out at multiples of this many bytes (torch's CPU allocator's alignment)
_ALIGNMENT = 64

# spec layout (int64): a header, then the operands' byte extents, the slot table and the slot records,
# then the overlap check's cache (see _SOURCE)
_HEADER = 10
#: the kinds of a slot's arguments: an operand's data pointer, a scratch buffer, a constant
OPERAND, SCRATCH, CONSTANT = 0, 1, 2
_SMALL, _PARALLEL_SAFE = 1, 2

_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <omp.h>
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

namespace {

using word = int64_t;
using entry_caller = void (*)(void*, const word*);

template <size_t... I>
void call_with(void* entry, const word* a, std::index_sequence<I...>) {
  using Entry = void (*)(decltype((void)I, word{})...);
  reinterpret_cast<Entry>(entry)(a[I]...);
}
template <size_t N>
void call_n(void* entry, const word* a) {
  call_with(entry, a, std::make_index_sequence<N>{});
}
template <size_t... N>
constexpr std::array<entry_caller, sizeof...(N)> callers_for(std::index_sequence<N...>) {
  return {&call_n<N>...};
}
constexpr size_t MAX_ARGUMENTS = @MAX_ARGUMENTS@;
const auto callers = callers_for(std::make_index_sequence<MAX_ARGUMENTS + 1>{});

// header fields
enum { DATA_PTR, N_OPERANDS, N_WRITTEN, N_SLOTS, SCRATCH_BYTES, EXTENTS_AT, SLOTS_AT, CACHE_AT,
       PARALLEL_AT, N_PARALLEL };
enum { OPERAND = 0, SCRATCH = 1, CONSTANT = 2 };
enum { SMALL = 1, PARALLEL_SAFE = 2 };
// cache: [state (0 unchecked, 1 no overlap, 2 overlap), written pointers, sorted (start, end) pairs]
enum { UNCHECKED = 0, DISJOINT = 1, OVERLAPPING = 2 };

char* thread_scratch(word bytes) {
  static thread_local std::vector<char> buffer;
  size_t wanted = static_cast<size_t>(bytes) + 64;
  if (buffer.size() < wanted) buffer.resize(wanted);
  auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return reinterpret_cast<char*>((address + 63) & ~uintptr_t(63));
}

void call_slot(const word* spec, word slot, const word* pointers, char* scratch) {
  const word* record = spec + spec[spec[SLOTS_AT] + slot];
  void* entry = reinterpret_cast<void*>(record[0]);
  word n = record[2];
  word arguments[MAX_ARGUMENTS];
  for (word i = 0; i < n; ++i) {
    word kind = record[3 + 2 * i], value = record[4 + 2 * i];
    arguments[i] = kind == OPERAND ? pointers[value]
                   : kind == SCRATCH ? reinterpret_cast<word>(scratch + value)
                                     : value;
  }
  callers[n](entry, arguments);
}

// Whether no written operand overlaps any other operand (the written ones among themselves, then the
// read ones); the written ones' sorted intervals are kept and re-made only when one of them moved.
bool disjoint(word* spec, const word* pointers) {
  const word n_written = spec[N_WRITTEN], n_operands = spec[N_OPERANDS];
  const word* extents = spec + spec[EXTENTS_AT];
  word* cache = spec + spec[CACHE_AT];
  word* last = cache + 1;
  word* intervals = cache + 1 + n_written;  // (start, end) pairs, sorted, nonempty only
  word& n_intervals = cache[1 + 3 * n_written];
  if (cache[0] == UNCHECKED || std::memcmp(last, pointers, n_written * sizeof(word)) != 0) {
    std::memcpy(last, pointers, n_written * sizeof(word));
    std::vector<std::pair<word, word>> found;
    found.reserve(n_written);
    for (word i = 0; i < n_written; ++i)
      if (extents[i] > 0) found.emplace_back(pointers[i], pointers[i] + extents[i]);
    std::sort(found.begin(), found.end());
    bool apart = true;
    for (size_t i = 1; i < found.size(); ++i)
      if (found[i].first < found[i - 1].second) apart = false;
    n_intervals = static_cast<word>(found.size());
    for (size_t i = 0; i < found.size(); ++i) {
      intervals[2 * i] = found[i].first;
      intervals[2 * i + 1] = found[i].second;
    }
    cache[0] = apart ? DISJOINT : OVERLAPPING;
  }
  if (cache[0] != DISJOINT) return false;
  for (word i = n_written; i < n_operands; ++i) {
    if (extents[i] <= 0) continue;
    word start = pointers[i], end = start + extents[i];
    // the last interval starting before `end`: the only one that can overlap (they are disjoint)
    word lo = 0, hi = n_intervals;
    while (lo < hi) {
      word mid = (lo + hi) / 2;
      if (intervals[2 * mid] < end) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && intervals[2 * (lo - 1) + 1] > start) return false;
  }
  return true;
}

PyObject* step(PyObject*, PyObject* const* args, Py_ssize_t n_args) {
  if (n_args != 2 || !PyList_CheckExact(args[1])) {
    PyErr_SetString(PyExc_TypeError, "step(spec address, list of operands)");
    return nullptr;
  }
  word* spec = reinterpret_cast<word*>(PyLong_AsLongLong(args[0]));
  if (PyErr_Occurred()) return nullptr;
  PyObject* operands = args[1];
  auto data_ptr = reinterpret_cast<void* (*)(PyObject*)>(spec[DATA_PTR]);
  const word n_operands = spec[N_OPERANDS];
  if (PyList_GET_SIZE(operands) != n_operands) {
    PyErr_SetString(PyExc_ValueError, "operand count differs from the plan's");
    return nullptr;
  }
  std::vector<word> pointers(n_operands);
  try {
    for (word i = 0; i < n_operands; ++i)
      pointers[i] = reinterpret_cast<word>(data_ptr(PyList_GET_ITEM(operands, i)));
  } catch (std::exception const& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  const word n_slots = spec[N_SLOTS], scratch_bytes = spec[SCRATCH_BYTES];
  const int threads = omp_get_max_threads();
  const word n_parallel = spec[N_PARALLEL];
  const word* parallel = spec + spec[PARALLEL_AT];  // the slots that may run side by side
  bool side_by_side = threads > 1 && n_parallel > 1 && disjoint(spec, pointers.data());
  std::vector<char> done(n_slots, 0);
  bool failed = false;
  if (side_by_side) {
#pragma omp parallel num_threads(threads)
    {
      omp_set_num_threads(1);  // any region a kernel opens runs on this thread alone
      char* scratch = thread_scratch(scratch_bytes);
#pragma omp for schedule(dynamic, 1)
      for (word i = 0; i < n_parallel; ++i) {
        try {
          call_slot(spec, parallel[i], pointers.data(), scratch);
        } catch (...) {
#pragma omp atomic write
          failed = true;
        }
      }
    }
    for (word i = 0; i < n_parallel; ++i) done[parallel[i]] = 1;
  }
  char* scratch = thread_scratch(scratch_bytes);
  int current = threads;
  try {
    for (word slot = 0; slot < n_slots && !failed; ++slot) {
      if (done[slot]) continue;
      const word* record = spec + spec[spec[SLOTS_AT] + slot];
      int wanted = (record[1] & SMALL) ? 1 : threads;
      if (wanted != current) {
        omp_set_num_threads(wanted);
        current = wanted;
      }
      call_slot(spec, slot, pointers.data(), scratch);
    }
  } catch (std::exception const& e) {
    if (current != threads) omp_set_num_threads(threads);
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  } catch (...) {
    if (current != threads) omp_set_num_threads(threads);
    PyErr_SetString(PyExc_RuntimeError, "a kernel failed");
    return nullptr;
  }
  if (current != threads) omp_set_num_threads(threads);
  if (failed) {
    PyErr_SetString(PyExc_RuntimeError, "a kernel failed");
    return nullptr;
  }
  return PyBool_FromLong(side_by_side);
}

PyMethodDef methods[] = {
    {"step", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(step)), METH_FASTCALL,
     "step(spec address, operands): a plan's kernel calls; whether side by side"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "kernel", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit_kernel(void) { return PyModule_Create(&module); }
"""


@functools.cache
def _extension() -> tuple[Any, int] | None:
    """The extension's ``step`` and the address of torch's reader of a tensor's data pointer (what
    inductor's own bindings call), or ``None`` where it cannot be built or loaded here."""
    if sys.maxsize != 2**63 - 1 or not sys.platform.startswith("linux"):
        return None  # (the entry points' arguments are passed as 64-bit words: checked ABIs only)
    if not compiled_kernels.compiler_available("cpu"):
        return None
    try:
        from torch._inductor.codecache import CppPythonBindingsCodeCache

        reader = int(torch._C._dynamo.guards._torchinductor_pyobject_tensor_data_ptr)
        module = CppPythonBindingsCodeCache.load(_SOURCE.replace("@MAX_ARGUMENTS@", str(MAX_ARGUMENTS)))
        return module.step, reader
    except Exception:  # no compiler, another torch's internals, a failed build or load
        return None


@dataclass(frozen=True)
class Entry:
    """A kernel's plain C entry point: its address, its argument count, and whether it may run while
    another kernel runs on another thread (see the module's docstring)."""

    address: int
    n_arguments: int
    parallel_safe: bool


_BINDING = r"^{name} = async_compile\.cpp_pybinding\(\[([^\]]*)\], r'''(.*?)'''\)"
_WORD_TYPES = re.compile(r"(const\s+)?(u?int64_t|[A-Za-z_][\w:<>]*\s*\*)")
_SHARED_STATE = re.compile(
    r"\b(floor_divide_integral|remainder_integral|mod|inductor_cpu_note_integer_div_by_zero)\s*\("
    r"|\bthread_local\b|\bstatic\b"
)


def _find_entry(kernel: compiled_kernels.Kernel) -> Entry | None:
    """``kernel``'s unwrapped call as a plain C entry point: the ``kernel`` symbol of the shared object
    its Python binding came from, every argument a pointer or a 64-bit integer (its generated
    signature's), as many as the unwrapped call passes; ``None`` otherwise."""
    unwrapped, direct, source = kernel.unwrapped, kernel.direct, kernel.generated_source
    if unwrapped is None or len(unwrapped.calls) != 1 or direct is None or not source:
        return None
    function, order = unwrapped.calls[0]
    names = getattr(getattr(direct, "__func__", None), "__globals__", {})
    name = next((n for n, v in names.items() if v is function), None)
    path = getattr(getattr(function, "__self__", None), "__file__", None)
    if name is None or path is None:
        return None
    binding = re.search(_BINDING.format(name=re.escape(name)), source, re.MULTILINE | re.DOTALL)
    if binding is None:
        return None
    types = [t.strip().strip("'\"") for t in binding.group(1).split(",")]
    code = binding.group(2)
    if (
        len(types) != len(order)
        or len(types) > MAX_ARGUMENTS
        or not all(_WORD_TYPES.fullmatch(t) for t in types)
        or len(re.findall(r'extern "C"\s+void\s+kernel\s*\(', code)) != 1
    ):
        return None
    try:
        address = ctypes.cast(ctypes.CDLL(path).kernel, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None
    if not address:
        return None
    return Entry(address, len(types), _SHARED_STATE.search(code) is None)


def _span(tensor: Tensor) -> int:
    """The bytes ``tensor``'s elements span from its data pointer (0 when it has none)."""
    if tensor.numel() == 0:
        return 0
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    return (last + 1) * tensor.element_size()


def scratch_layout(
    scratch: Sequence[tuple[tuple[int, ...], tuple[int, ...], torch.dtype]],
) -> tuple[list[int], int]:
    """Byte offsets of scratch buffers of these (size, stride, dtype) in one block, and its size."""
    offsets, at = [], 0
    for size, stride, dtype in scratch:
        offsets.append(at)
        last = sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else -1
        at += -(-max(last + 1, 1) * dtype.itemsize // _ALIGNMENT) * _ALIGNMENT
    return offsets, at


@dataclass(frozen=True)
class Slot:
    """One kernel call of a step: its entry point, whether it runs on one thread (``small``), and its
    arguments, each ``(kind, value)``: an operand's index, a scratch buffer's byte offset, a constant."""

    entry: Entry
    small: bool
    arguments: tuple[tuple[int, int], ...]


class Launch:
    """A planned step's kernel calls as one C++ call: ``launch(operands)`` with the step's operands
    ``[*written (n_written of them), *read]`` as the spec was made for; returns whether the small
    kernels ran side by side."""

    def __init__(self, operands: Sequence[Tensor], n_written: int, slots: Sequence[Slot], scratch_bytes: int):
        found = _extension()
        assert found is not None
        self._step, reader = found
        header = [0] * _HEADER
        extents = [_span(t) for t in operands]
        table_at = _HEADER + len(extents)
        records: list[int] = []
        table = []
        for slot in slots:
            if len(slot.arguments) != slot.entry.n_arguments:
                raise ValueError(
                    f"{len(slot.arguments)} arguments for an entry point taking {slot.entry.n_arguments}"
                )
            table.append(table_at + len(slots) + len(records))
            flags = (_SMALL if slot.small else 0) | (_PARALLEL_SAFE if slot.entry.parallel_safe else 0)
            records += [slot.entry.address, flags, len(slot.arguments)]
            for kind, value in slot.arguments:
                records += [kind, value]
        parallel = [i for i, slot in enumerate(slots) if slot.small and slot.entry.parallel_safe]
        parallel_at = table_at + len(slots) + len(records)
        cache_at = parallel_at + len(parallel)
        header[:] = [reader, len(operands), n_written, len(slots), scratch_bytes, _HEADER, table_at]
        header += [cache_at, parallel_at, len(parallel)]
        cache = [0] * (2 + 3 * n_written)
        self.spec = torch.tensor([*header, *extents, *table, *records, *parallel, *cache], dtype=torch.int64)
        self._address = self.spec.data_ptr()

    def __call__(self, operands: list[Tensor]) -> bool:
        return self._step(self._address, operands)


def available() -> bool:
    """Whether the extension is built and loaded here."""
    return _extension() is not None


def entry(kernel: compiled_kernels.Kernel) -> Entry | None:
    """``kernel``'s entry point, found and checked once (per unwrapped call it has), or ``None``."""
    unwrapped = kernel.unwrapped
    known = _ENTRIES.get(kernel)
    if known is not None and known[0] is unwrapped:
        return known[1]
    found = _find_entry(kernel) if available() else None
    if found is not None and not _gives_the_unwrapped_bits(kernel, found):
        found = None
    _ENTRIES[kernel] = (unwrapped, found)
    return found


_ENTRIES: weakref.WeakKeyDictionary[Any, tuple[Any, Entry | None]] = weakref.WeakKeyDictionary()


def _gives_the_unwrapped_bits(kernel: compiled_kernels.Kernel, found: Entry) -> bool:
    """Whether the extension's call of ``found`` on the kernel's probe gives the unwrapped call's bits
    (scratch buffers used before by another call, as in a step)."""
    unwrapped = kernel.unwrapped
    assert unwrapped is not None
    ((_, order),) = unwrapped.calls
    generator = torch.Generator().manual_seed(2)
    probe = compiled_kernels._probe_operands(kernel.key, generator)
    numel = compiled_kernels._PROBE_NUMEL
    offsets, scratch_bytes = scratch_layout(unwrapped.scratch)
    arguments = []
    for position in order:
        if position < len(probe):
            arguments.append((OPERAND, position))
        elif position == len(probe):
            arguments.append((CONSTANT, numel))
        else:
            arguments.append((SCRATCH, offsets[position - len(probe) - 1]))
    expected = [t.clone() for t in probe]
    mine = [t.clone() for t in probe]
    other = compiled_kernels._probe_operands(kernel.key, torch.Generator().manual_seed(3))
    try:
        with torch.no_grad():
            unwrapped.launcher(torch.device("cpu"))([*expected, numel])
            slots = [Slot(found, True, tuple(arguments))]
            Launch(other, len(probe), slots, scratch_bytes)(other)
            Launch(mine, len(probe), slots, scratch_bytes)(mine)
    except Exception:
        return False
    same = all(bool(((a == b) | (a.isnan() & b.isnan())).all()) for a, b in zip(mine, expected, strict=True))
    return same and not torch.equal(mine[0], probe[0])
