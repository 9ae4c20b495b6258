"""Optimizer step throughput: optimlab's engines next to torch.optim's implementations.

Two measurements per optimizer, each in one run with every mode side by side:

* the **bare step** — ``optimizer.step()`` with the gradients in place, on a transformer-like mix
  of matrices, biases and norm vectors (``--sizes``): what the engines cost per step;
* the **whole iteration** — ``zero_grad()`` (torch's default, ``set_to_none=True``), forward,
  ``backward()`` and ``step()`` of a real model, an MLP of ``--iteration-layers`` square layers
  (``--iteration-sizes``, batch ``--batch``): what users pay, fresh gradients from autograd and
  all.

Modes: torch.optim's for-loop (``foreach=False``), ``foreach=True`` and ``fused=True`` where torch
has a fused kernel (SGD, Adagrad, Adam, AdamW) — for the modern optimizers (Lion, ADOPT, AdEMAMix,
LAMB, Prodigy, Schedule-Free) their reference package's implementation instead (``reference``);
optimlab's default construction (``engine="auto"``), ``engine="fused"`` and ``engine="eager"`` (and,
on request, ``optimlab-unplanned``: the fused engine without its plans, every step the full path).
Every mode is compared with the best torch.optim or reference mode of the same run ("vs torch
best"). Muon steps the model's matrices only (the rest would go to AdamW). The modes' timed
steps are interleaved (one of each in turn, so that a change in the machine's load hits all of them
alike) whenever they fit together in a quarter of the memory.

The bare step also reports the machine's memory bandwidth (in-place ``a += s·b`` over one flat
buffer, 12 bytes per float32 element), each step's effective bandwidth (the bytes an ideal single
pass moves: parameter and each state tensor read and written, gradient read) as a fraction of it,
the peak memory a step adds (torch.profiler's allocation events), the share of the fused engine's
kernel steps its plans took ("planned": one check per group, kernels called directly) and the
start-up time (the first two steps: compilation for the fused engine; inductor caches compiled
kernels on disk, so a second run shows the cached cost, and ``TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)``
a cold one). It prints tables and writes JSON.

    python benchmarks/step_throughput.py                      # 1M, 16M, 64M and the 16M MLP
    python benchmarks/step_throughput.py --sizes 1M --iteration-sizes '' --optimizers adam,nadam
    python benchmarks/step_throughput.py --sizes 1M,16M --optimizers all      # the whole catalog
    python benchmarks/step_throughput.py --device cuda     # GPU (Triton); not measured by us yet
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KINETO_LOG_LEVEL", "99")  # keep the profiler's start/stop lines out of the table

import torch
from torch.profiler import ProfilerActivity, profile
from torch.torch_version import TorchVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import optimlab.optim as ol

#: torch.optim's catalog (SparseAdam, which takes sparse gradients only, is left out)
TORCH_OPTIMIZERS = (
    "sgd",
    "adagrad",
    "rmsprop",
    "adadelta",
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "radam",
    "rprop",
    "asgd",
    "adafactor",
    "muon",
)
TORCH_FUSED = {"sgd", "adagrad", "adam", "adamw"}  # torch.optim optimizers with fused=True
TORCH_NO_FOREACH = {"muon"}  # torch.optim optimizers without a foreach implementation
#: the modern optimizers and their reference implementations (the dev extra's pinned packages)
REFERENCES: dict[str, tuple[str, str]] = {
    "lion": ("lion_pytorch", "Lion"),
    "adopt": ("adopt", "ADOPT"),
    "ademamix": ("pytorch_optimizer", "AdEMAMix"),
    "lamb": ("pytorch_optimizer", "Lamb"),
    "prodigy": ("prodigyopt", "Prodigy"),
    "adamwschedulefree": ("schedulefree", "AdamWScheduleFree"),
    "sgdschedulefree": ("schedulefree", "SGDScheduleFree"),
}
OPTIMIZERS = (*TORCH_OPTIMIZERS, *REFERENCES)
#: the optimizers the benchmark runs without --optimizers (the first ten's figures are in the README)
DEFAULT_OPTIMIZERS = TORCH_OPTIMIZERS[:9]
#: constructor arguments: SGD with momentum (the common use), everything else at its defaults
ARGUMENTS: dict[str, dict[str, Any]] = {"sgd": {"lr": 1e-3, "momentum": 0.9}}
MODES = (
    "torch-loop",
    "torch-foreach",
    "torch-fused",
    "reference",
    "optimlab-default",
    "optimlab-fused",
    "optimlab-eager",
    "optimlab-unplanned",
)
#: on request only: the fused engine with its plans switched off, every step taking the full path (the
#: engine as it was before plans, optimlab/optim/engine/plans.py), next to the rest in the same run
ON_REQUEST = ("optimlab-unplanned",)


def only_matrices(name: str) -> bool:
    """Muon steps 2-D matrices only: its contestants get the model's matrices."""
    return name == "muon"


def is_reference(mode: str) -> bool:
    """A mode of the implementation optimlab is compared with (torch.optim's or the reference package's)."""
    return mode.startswith("torch") or mode == "reference"


#: whole iterations also time the iteration without its step: what no optimizer can make faster
BASELINE = "no-step"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "step_throughput.json"


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory in the process instead of returning it to the system
    (as jemalloc, tcmalloc or torch's caching allocator on a GPU do). With glibc's defaults every
    large tensor a step or a backward allocates — each iteration's fresh gradients, torch's for-loop
    temporaries — is mapped anew and page-faulted in: that is what users pay, but its cost also
    depends on what the other interleaved modes freed just before, so whole iterations vary by up
    to ±30 % between identical runs. Returns whether it applied (Linux with glibc only)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return False
    libc = ctypes.CDLL(name)
    m_trim_threshold, m_mmap_threshold = -1, -3
    # 32 MiB is the largest mmap threshold glibc accepts on 64-bit: only bigger tensors are still
    # mapped anew each time; everything else stays in the heap, which is never trimmed below 1 GiB
    ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024) == 1
    return ok and libc.mallopt(m_trim_threshold, 1 << 30) == 1


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def model_shapes(target: int, layers: int = 16) -> list[tuple[int, ...]]:
    """A transformer-like parameter list of about ``target`` elements (≈ 12·layers + 3 tensors):
    an embedding (4d × d), per layer qkv (3d × d), output (d × d), MLP (4d × d, d × 4d) with
    biases and two norm layers, and a final norm; d is the multiple of 8 that fits ``target``."""
    per_d2 = 12 * layers + 4  # d² coefficient: 12 per layer + the 4d × d embedding
    d = max(8, 8 * round(math.sqrt(target / per_d2) / 8))
    shapes: list[tuple[int, ...]] = [(4 * d, d)]
    for _ in range(layers):
        shapes += [(3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,)]
        shapes += [(4 * d, d), (4 * d,), (d, 4 * d), (d,), (d,), (d,)]
    shapes += [(d,), (d,)]
    return shapes


def torch_fused_valid(name: str, dtype: torch.dtype) -> bool:
    """Whether torch.optim has a fused kernel for ``name`` that computes a real step in ``dtype``.
    Before torch 2.14 the CPU fused SGD kernel skips the parameter update of every full vector
    block of float16/bfloat16 parameters and misreads their momentum buffers (pytorch/pytorch
    issue 191763), so it would be timed doing less than a step: it is left out."""
    if name not in TORCH_FUSED:
        return False
    broken = name == "sgd" and dtype in (torch.float16, torch.bfloat16)
    return not (broken and TorchVersion(torch.__version__) < "2.14")


def make_optimizer(name: str, mode: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    kwargs = dict(ARGUMENTS.get(name, {}))
    if mode == "reference":
        import importlib

        module, cls_name = REFERENCES[name]
        return getattr(importlib.import_module(module), cls_name)(params, **kwargs)
    if mode.startswith("torch"):
        cls = {n.lower(): getattr(torch.optim, n) for n in dir(torch.optim)}[name]
        option = {"torch-loop": {"foreach": False}, "torch-foreach": {"foreach": True}}
        if name in TORCH_NO_FOREACH:  # one implementation, no foreach flag (Muon)
            option["torch-loop"] = {}
        return cls(params, **kwargs, **option.get(mode, {"fused": True}))
    cls = {n.lower(): getattr(ol, n) for n in ol.__all__ if isinstance(getattr(ol, n), type)}[name]
    engine = {"optimlab-default": None, "optimlab-eager": "eager"}.get(mode, "fused")
    optimizer = cls(params, **kwargs, engine=engine)
    if mode == "optimlab-unplanned":
        optimizer.engine._plans = _NoPlans()
    return optimizer


class _NoPlans(dict):
    """A fused engine's plan table that keeps nothing: every step takes the full path."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def state_tensors_per_param(optimizer: torch.optim.Optimizer) -> int:
    """How many parameter-sized state tensors the optimizer keeps (2 for Adam)."""
    p = optimizer.param_groups[0]["params"][0]
    state = optimizer.state.get(p, {})
    return sum(1 for v in state.values() if torch.is_tensor(v) and v.numel() == p.numel() and p.numel() > 1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_step_bytes(
    optimizer: torch.optim.Optimizer, before: Callable[[], None], device: torch.device
) -> int:
    """The most memory one step holds beyond what existed before it (torch.profiler's allocation
    events on CPU, the caching allocator's peak on CUDA)."""
    before()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        optimizer.step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - baseline
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        optimizer.step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def median_ms(
    function: Callable[[], Any],
    repeat: int,
    device: torch.device,
    before: Callable[[], None] | None = None,
) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bandwidth(numel: int, repeat: int, device: torch.device) -> dict[str, float]:
    """In-place a += s·b over one flat float32 buffer: 12 bytes moved per element."""
    a = torch.randn(numel, device=device)
    b = torch.randn(numel, device=device)
    for _ in range(3):
        a.add_(b, alpha=1e-3)
    ms = median_ms(lambda: a.add_(b, alpha=1e-3), max(repeat, 5), device)
    return {"ms": ms, "gb_per_s": 12 * numel / ms / 1e6}


class Contestant:
    """One optimizer (torch.optim or optimlab, in one mode) on its own copy of the parameters,
    stepped with the same gradients every time (the bare step)."""

    def __init__(self, name: str, mode: str, shapes: list[tuple[int, ...]], grads: list[torch.Tensor]):
        gen = torch.Generator().manual_seed(0)
        device = grads[0].device
        self.mode = mode
        dtype = grads[0].dtype
        self.params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(device, dtype)) for s in shapes]
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g.clone()
        stepped = [p for p in self.params if p.dim() == 2] if only_matrices(name) else self.params
        self.optimizer = make_optimizer(name, mode, stepped)
        self.train_mode()

    def train_mode(self) -> None:
        """Schedule-Free optimizers step in train mode (their reference raises otherwise)."""
        if callable(getattr(self.optimizer, "train", None)):
            self.optimizer.train()
        self.times: list[float] = []

    def iterate(self) -> None:
        self.optimizer.step()

    def start(self, warmup: int, device: torch.device) -> float:
        """The start-up time: the first two steps (the fused engine compiles; SGD's momentum
        buffer is created on the first step, so its kernel is compiled on the second)."""
        synchronize(device)
        begin = time.perf_counter()
        for _ in range(2):
            self.iterate()
        synchronize(device)
        startup = time.perf_counter() - begin
        for _ in range(warmup):
            self.iterate()
        return startup

    def timed(self, device: torch.device) -> None:
        synchronize(device)
        begin = time.perf_counter()
        self.iterate()
        synchronize(device)
        self.times.append(time.perf_counter() - begin)


def mlp_width(target: int, layers: int) -> int:
    """The width (a multiple of 128) of an MLP of ``layers`` square layers with about ``target``
    parameters (16.8M and 4 layers: 2048)."""
    return max(128, 128 * round(math.sqrt(target / layers) / 128))


class IterationContestant(Contestant):
    """The whole iteration of a real model: ``zero_grad()`` with its default (the gradients are
    freed and autograd allocates new ones), forward, ``backward()``, ``step()``."""

    def __init__(self, name: str, mode: str, width: int, layers: int, batch: int, args: argparse.Namespace):
        torch.manual_seed(0)
        self.mode = mode
        self.model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
        self.model.to(args.device, args.dtype)
        self.x = torch.randn(batch, width, generator=torch.Generator().manual_seed(1)).to(
            args.device, args.dtype
        )
        # the baseline: the same iteration without an optimizer step (zero_grad as torch.optim's)
        baseline = mode == BASELINE
        plain = "reference" if name in REFERENCES else "torch-loop"
        params = [p for p in self.model.parameters() if p.dim() == 2 or not only_matrices(name)]
        self.optimizer = make_optimizer(name, plain if baseline else mode, params)
        self.train_mode()
        self.step = (lambda: None) if baseline else self.optimizer.step
        self.times = []

    def iterate(self) -> None:
        self.optimizer.zero_grad()
        self.model(self.x).float().square().mean().backward()
        self.step()


def footprint(numel: int, modes: list[str]) -> int:
    """Rough bytes for every mode alive at once: parameters, gradients and up to 3 state tensors."""
    return 4 * numel * (1 + len(modes) * 5)


def usable_modes(name: str, args: argparse.Namespace) -> list[str]:
    """The modes that exist for ``name``: torch.optim's for its catalog, the reference package's for the
    modern optimizers, optimlab's for all."""

    def exists(mode: str) -> bool:
        if mode == "reference":
            return name in REFERENCES
        if mode.startswith("torch"):
            if name in REFERENCES:
                return False
            if mode == "torch-fused":
                return torch_fused_valid(name, args.dtype)
            return mode != "torch-foreach" or name not in TORCH_NO_FOREACH
        return True

    return [m for m in args.modes if exists(m)]


def race(contestants: list[Contestant], args: argparse.Namespace) -> dict[str, float]:
    """Start every contestant, then time them in turn; returns each one's start-up time."""
    startup = {c.mode: c.start(args.warmup, args.device) for c in contestants}
    for _ in range(args.repeat):
        for contestant in contestants:
            contestant.timed(args.device)
    return startup


def measure(name: str, shapes: list[tuple[int, ...]], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The bare step in every mode of one optimizer. Interleaved (one timed step of each mode in
    turn) when they fit in memory together, else one mode after the other."""
    device = args.device
    modes = usable_modes(name, args)
    gen = torch.Generator().manual_seed(1)
    grads = [(torch.randn(s, generator=gen) * 1e-2).to(device, args.dtype) for s in shapes]
    numel = sum(math.prod(s) for s in shapes)
    together = args.interleave and footprint(numel, modes) <= args.memory_budget
    groups = [modes] if together else [[m] for m in modes]
    rows: dict[str, dict[str, Any]] = {}
    for group in groups:
        contestants = [Contestant(name, mode, shapes, grads) for mode in group]
        startup = race(contestants, args)
        for c in contestants:
            engine = getattr(c.optimizer, "engine", None)
            row = {
                "ms": 1e3 * statistics.median(c.times),
                "startup_s": startup[c.mode],
                "state_tensors": state_tensors_per_param(c.optimizer),
                "engine": None if engine is None else _engine_used(c.optimizer),
                "planned_share": _planned_share(c.optimizer),
                "interleaved": together,
            }
            if args.memory:
                row["peak_step_bytes"] = peak_step_bytes(c.optimizer, lambda: None, device)
            rows[c.mode] = row
        del contestants
        gc.collect()
    return {mode: rows[mode] for mode in modes}


def measure_iterations(name: str, size: int, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Whole iterations of the MLP in every mode of one optimizer, interleaved when they fit."""
    width = mlp_width(size, args.iteration_layers)
    numel = args.iteration_layers * (width * width + width)
    modes = [BASELINE, *usable_modes(name, args)]
    together = args.interleave and footprint(numel, modes) <= args.memory_budget
    groups = [modes] if together else [[m] for m in modes]
    rows: dict[str, dict[str, Any]] = {}
    for group in groups:
        contestants = [
            IterationContestant(name, mode, width, args.iteration_layers, args.batch, args) for mode in group
        ]
        race(contestants, args)
        for c in contestants:
            engine = getattr(c.optimizer, "engine", None)
            rows[c.mode] = {
                "ms": 1e3 * statistics.median(c.times),
                "engine": None if engine is None else _engine_used(c.optimizer),
                "planned_share": _planned_share(c.optimizer),
                "interleaved": together,
            }
        del contestants
        gc.collect()
    best = min(r["ms"] for m, r in rows.items() if is_reference(m))
    baseline = rows[BASELINE]["ms"]
    best_step = best - baseline
    for mode, row in rows.items():
        row["vs_torch_best"] = row["ms"] / best
        # the step's share: the iteration minus the same iteration without a step
        row["step_ms"] = row["ms"] - baseline
        row["step_vs_torch_best"] = row["step_ms"] / best_step if mode != BASELINE and best_step > 0 else None
    return {mode: rows[mode] for mode in modes}


def _engine_used(optimizer: Any) -> str:
    """What the optimlab optimizer actually ran: "fused" when any parameter went through a kernel."""
    counts = getattr(optimizer.engine, "counts", None)
    return "fused" if counts and counts["fused"] else "eager"


def _planned_share(optimizer: Any) -> float | None:
    """The share of the fused engine's kernel steps that a group's plan took (one check for the
    whole group, kernels called directly: ``optimlab/optim/engine/plans.py``); ``None`` elsewhere."""
    engine = getattr(optimizer, "engine", None)
    counts = getattr(engine, "counts", None)
    if not counts or not counts["fused"]:
        return None
    return getattr(engine, "planned_steps", 0) / counts["fused"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "allocator_keeps_freed_memory": args.kept_freed_memory,
            "device": str(args.device),
            "gpu": torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "arguments": {
            k: str(v) if k in ("device", "dtype") else v for k, v in vars(args).items() if k != "out"
        },
        "sizes": [],
    }
    for size in args.sizes:
        shapes = model_shapes(size)
        numel = sum(math.prod(s) for s in shapes)
        bw = bandwidth(numel, args.repeat, args.device)
        entry: dict[str, Any] = {
            "target": size,
            "numel": numel,
            "tensors": len(shapes),
            "bandwidth": bw,
            "optimizers": {},
        }
        dtype_name = str(args.dtype).removeprefix("torch.")
        print(
            f"\n== {numel / 1e6:.1f}M {dtype_name} parameters in {len(shapes)} tensors; "
            f"in-place add: {bw['ms']:.2f} ms = {bw['gb_per_s']:.1f} GB/s",
            flush=True,
        )
        for name in args.optimizers:
            rows = measure(name, shapes, args)
            state_tensors = max(r["state_tensors"] for r in rows.values())
            # bytes of one ideal pass (state in the parameters' dtype, as torch.optim keeps it)
            stepped = sum(math.prod(s) for s in shapes if len(s) == 2) if only_matrices(name) else numel
            nominal = args.dtype.itemsize * stepped * (3 + 2 * state_tensors)
            torch_best = min(r["ms"] for m, r in rows.items() if is_reference(m))
            for row in rows.values():
                row["gb_per_s"] = nominal / row["ms"] / 1e6
                row["fraction_of_add_bandwidth"] = row["gb_per_s"] / bw["gb_per_s"]
                row["vs_torch_best"] = row["ms"] / torch_best
            entry["optimizers"][name] = {
                "bytes_per_step": nominal,
                "torch_best_ms": torch_best,
                "modes": rows,
            }
            print_rows(name, rows, args.memory)
        results["sizes"].append(entry)
    results["iterations"] = []
    for size in args.iteration_sizes:
        width = mlp_width(size, args.iteration_layers)
        numel = args.iteration_layers * (width * width + width)
        print(
            f"\n== whole iterations (glibc {'keeps' if args.kept_freed_memory else 'returns'} freed memory): "
            f"MLP of {args.iteration_layers} layers {width} wide "
            f"({numel / 1e6:.1f}M parameters), batch {args.batch}: zero_grad(), forward, backward(), step()",
            flush=True,
        )
        entry = {
            "target": size,
            "numel": numel,
            "width": width,
            "layers": args.iteration_layers,
            "optimizers": {},
        }
        for name in args.optimizers:
            rows = measure_iterations(name, size, args)
            entry["optimizers"][name] = {"modes": rows}
            print_iteration_rows(name, rows)
        results["iterations"].append(entry)
    return results


def print_rows(name: str, rows: dict[str, dict[str, Any]], memory: bool) -> None:
    header = f"{name:<9} {'mode':<27} {'ms/step':>9} {'GB/s':>7} {'of add':>7} {'vs torch best':>14}"
    header += f" {'startup s':>9}" + (f" {'peak MB':>8}" if memory else "")
    print(header)
    for mode, row in rows.items():
        versus = "-" if row["vs_torch_best"] is None else f"{row['vs_torch_best']:.2f}x"
        line = (
            f"{'':<9} {mode:<27} {row['ms']:>9.2f} {row['gb_per_s']:>7.1f} "
            f"{100 * row['fraction_of_add_bandwidth']:>6.0f}% {versus:>14} "
            f"{row['startup_s']:>9.2f}"
        )
        if memory:
            line += f" {row['peak_step_bytes'] / 1e6:>8.1f}"
        if row.get("engine") and mode == "optimlab-default":
            line += f"  (auto ran: {row['engine']})"
        if row.get("planned_share") is not None:
            line += f"  [{100 * row['planned_share']:.0f}% planned]"
        print(line, flush=True)


def print_iteration_rows(name: str, rows: dict[str, dict[str, Any]]) -> None:
    columns = f"{'ms/iteration':>12} {'vs torch best':>14} {'its step ms':>12} {'vs torch':>9}"
    print(f"{name:<9} {'mode':<18} {columns}")
    for mode, row in rows.items():
        versus = "" if row["step_vs_torch_best"] is None else f"{row['step_vs_torch_best']:.2f}x"
        line = (
            f"{'':<9} {mode:<18} {row['ms']:>12.2f} {row['vs_torch_best']:>13.2f}x "
            f"{row['step_ms']:>12.2f} {versus:>9}"
        )
        if row.get("engine") and mode == "optimlab-default":
            line += f"  (auto ran: {row['engine']})"
        if row.get("planned_share") is not None:
            line += f"  [{100 * row['planned_share']:.0f}% planned]"
        print(line, flush=True)


#: issue 15's targets this benchmark measures: (number, what, mode, against, limit, which results)
TARGETS = (
    (1, "whole iterations, default engine ÷ torch's best", "optimlab-default", None, 1.0, "iterations"),
    (2, "bare step at ≈1M parameters, default engine ÷ torch's best", "optimlab-default", None, 0.5, "small"),
    (3, "bare step, eager engine ÷ torch's for-loop", "optimlab-eager", "torch-loop", 1.0, "sizes"),
)
#: the largest bare-step size target 2 speaks of ("1M parameters in ~200 tensors")
SMALL_MAX_NUMEL = 2_000_000


def target_rows(results: dict[str, Any]) -> list[tuple[int, str, str, str, float, float]]:
    """Every measured ratio a target of issue 15 bounds: (target, what, size, optimizer, ratio,
    limit); a ratio is the mode's median over the reference's (torch's best mode, or ``against``)."""
    rows = []
    for number, what, mode, against, limit, where in TARGETS:
        entries = results["iterations"] if where == "iterations" else results["sizes"]
        if where == "small":
            entries = [e for e in entries if e["numel"] <= SMALL_MAX_NUMEL]
        for entry in entries:
            size = f"{entry['numel'] / 1e6:.1f}M"
            for name, measured in entry["optimizers"].items():
                modes = measured["modes"]
                if mode not in modes or (against is not None and against not in modes):
                    continue
                if against is None:
                    ratio = modes[mode]["vs_torch_best"]
                else:
                    ratio = modes[mode]["ms"] / modes[against]["ms"]
                if ratio is not None:
                    rows.append((number, what, size, name, ratio, limit))
    return rows


def print_targets(results: dict[str, Any]) -> None:
    """The targets' ratios, each marked met (≤ its limit) or not."""
    rows = target_rows(results)
    if not rows:
        return
    print("\nissue 15's targets (ratio ≤ limit: met)")
    shown = None
    for number, what, size, name, ratio, limit in rows:
        if (number, size) != shown:
            print(f"  {number}. {what} ≤ {limit:.2f}, {size}:")
            shown = (number, size)
        print(f"       {name:<9} {ratio:>6.3f}  {'met' if ratio <= limit else 'NOT met'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,16M,64M", help="bare step: comma-separated sizes, e.g. 1M,16M")
    parser.add_argument(
        "--iteration-sizes",
        default="16.8M",
        help="whole iterations: MLP sizes, comma-separated ('' for none)",
    )
    parser.add_argument("--iteration-layers", type=int, default=4, help="square layers of the MLP")
    parser.add_argument("--batch", type=int, default=2, help="the MLP's batch size")
    parser.add_argument(
        "--optimizers",
        default=",".join(DEFAULT_OPTIMIZERS),
        help=f"comma-separated names of {', '.join(OPTIMIZERS)}, or 'all' (default: the first nine)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(m for m in MODES if m not in ON_REQUEST),
        help=f"comma-separated, of {', '.join(MODES)} (default: all but {', '.join(ON_REQUEST)})",
    )
    parser.add_argument("--repeat", type=int, default=10, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="the parameters' dtype (the bandwidth reference stays float32)",
    )
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip peak-memory profiling")
    parser.add_argument(
        "--sequential",
        dest="interleave",
        action="store_false",
        help="time one mode after the other (default: interleave the modes' steps when they fit in "
        "a quarter of the machine's memory)",
    )
    parser.add_argument(
        "--allocator",
        default="system",
        choices=["system", "keep"],
        help="system: glibc's defaults, what users get (default); keep: glibc keeps freed memory in the "
        "process, like jemalloc, tcmalloc or torch's caching allocator on a GPU (steadier timings)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    args = parser.parse_args(argv)
    args.sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    args.iteration_sizes = [parse_size(s) for s in args.iteration_sizes.split(",") if s]
    if args.optimizers == "all":
        args.optimizers = ",".join(OPTIMIZERS)
    args.optimizers = [o.strip().lower() for o in args.optimizers.split(",") if o.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for name in args.optimizers:
        if name not in OPTIMIZERS:
            parser.error(f"unknown optimizer {name!r}; expected some of {', '.join(OPTIMIZERS)}")
    for mode in args.modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; expected some of {', '.join(MODES)}")
    args.device = torch.device(args.device)
    args.dtype = getattr(torch, args.dtype)
    if args.device.type == "cuda":
        args.memory_budget = torch.cuda.get_device_properties(args.device).total_memory // 4
    elif hasattr(os, "sysconf"):
        args.memory_budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    else:
        args.memory_budget = 2 * 1024**3
    if args.threads:
        torch.set_num_threads(args.threads)
    args.kept_freed_memory = args.allocator == "keep" and keep_freed_memory()
    results = run(args)
    print_targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
