"""Batched Newton–Schulz (one bf16 matmul chain per shape) against torch.optim.Muon's loop.

Two workloads: 64 matrices of 128×128, and a small transformer's matrices (4 layers, width 256:
q, k, v, o 256×256 and the MLP's 256×1024 and 1024×256). Modes interleaved, medians of repeats.
Run: python benchmarks/muon_newton_schulz.py
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from optimlab.optim.rules import newton_schulz

REPEATS = 7


def loop(matrices: list[torch.Tensor]) -> None:
    for m in matrices:
        newton_schulz(m)


def batched(matrices: list[torch.Tensor]) -> None:
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for m in matrices:
        by_shape.setdefault(tuple(m.shape), []).append(m)
    for same in by_shape.values():
        newton_schulz(torch.stack(same))


def bench(name: str, matrices: list[torch.Tensor]) -> None:
    modes = {"loop (torch's)": loop, "batched": batched}
    for fn in modes.values():
        fn(matrices)  # warm-up
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(REPEATS):
        for mode, fn in modes.items():  # interleaved
            start = time.perf_counter()
            fn(matrices)
            times[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(t) for mode, t in times.items()}
    base = medians["loop (torch's)"]
    print(f"{name}  (load {os.getloadavg()[0]:.2f})")
    for mode, value in medians.items():
        print(f"  {mode:16s} {value * 1e3:9.2f} ms   ×{base / value:.2f} vs loop")


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    bench("64 × (128×128)", [torch.randn(128, 128) for _ in range(64)])
    layers = []
    for _ in range(4):
        layers += [torch.randn(256, 256) for _ in range(4)] + [torch.randn(1024, 256), torch.randn(256, 1024)]
    bench("transformer 4×(q,k,v,o 256×256, MLP 256×1024 + 1024×256)", layers)


if __name__ == "__main__":
    main()
