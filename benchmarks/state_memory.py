"""Half the state memory: bytes of optimizer state per parameter and step time, side by side.

For Adam, AdamW, SGD with momentum and Lion: torch.optim's float32 state, optimlab's default,
and optimlab with ``state_dtype=torch.bfloat16`` (stochastic rounding); plus bfloat16 parameters
with ``stochastic_rounding=True`` against torch.optim on the same bfloat16 parameters. Modes are
interleaved and the medians of repeats printed with their ratio to torch.optim, and the load.
Run: python benchmarks/state_memory.py [--numel 4000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

import optimlab.optim as ol

CASES: dict[str, tuple[type, type, dict]] = {
    "Adam": (torch.optim.Adam, ol.Adam, {"lr": 1e-3}),
    "AdamW": (torch.optim.AdamW, ol.AdamW, {"lr": 1e-3}),
    "SGD momentum": (torch.optim.SGD, ol.SGD, {"lr": 1e-2, "momentum": 0.9}),
    "Lion": (None, ol.Lion, {"lr": 1e-4}),  # type: ignore[dict-item]
}


def _tensors(numel: int, count: int, dtype: torch.dtype) -> list[torch.Tensor]:
    size = numel // count
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(size, generator=gen).to(dtype).requires_grad_() for _ in range(count)]
    for p in params:
        p.grad = torch.randn(size, generator=gen).to(dtype)
    return params


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0
    )


def _measure(modes: dict[str, Callable[[], torch.optim.Optimizer]], numel: int, repeats: int) -> None:
    built = {name: make() for name, make in modes.items()}
    for optimizer in built.values():
        optimizer.step()  # state created, kernels compiled
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(repeats):
        for name, optimizer in built.items():  # interleaved
            start = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - start)
    base_name = next(iter(built))
    base = statistics.median(times[base_name])
    for name, optimizer in built.items():
        median = statistics.median(times[name])
        per_param = _state_bytes(optimizer) / numel
        print(
            f"  {name:34s} {per_param:5.2f} B/param  {median * 1e3:8.2f} ms"
            f"  ×{median / base:5.2f} vs {base_name}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=4_000_000)
    parser.add_argument("--tensors", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    print(f"{args.numel:,} parameters in {args.tensors} tensors; step time medians of {args.repeats}")
    for name, (theirs, ours, kwargs) in CASES.items():
        print(name)
        modes: dict[str, Callable[[], torch.optim.Optimizer]] = {}
        if theirs is not None:
            modes["torch.optim (float32 state)"] = lambda t=theirs, k=kwargs: t(
                _tensors(args.numel, args.tensors, torch.float32), **k
            )
        modes["optimlab default"] = lambda o=ours, k=kwargs: o(
            _tensors(args.numel, args.tensors, torch.float32), **k
        )
        modes["optimlab state_dtype=bfloat16"] = lambda o=ours, k=kwargs: o(
            _tensors(args.numel, args.tensors, torch.float32), **k, state_dtype=torch.bfloat16
        )
        if theirs is not None:
            modes["torch.optim, bf16 params"] = lambda t=theirs, k=kwargs: t(
                _tensors(args.numel, args.tensors, torch.bfloat16), **k
            )
        modes["optimlab bf16 params, stochastic"] = lambda o=ours, k=kwargs: o(
            _tensors(args.numel, args.tensors, torch.bfloat16), **k, stochastic_rounding=True
        )
        _measure(modes, args.numel, args.repeats)


if __name__ == "__main__":
    main()
