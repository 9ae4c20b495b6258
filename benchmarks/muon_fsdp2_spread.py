"""Muon under FSDP2 on 2 CPU ranks (gloo, one thread each): the matrices spread over the ranks (each
orthogonalized whole by its owner, the default) against the whole of every matrix on every rank
(what optimlab did before, still its path for layouts it cannot spread).

The workload is a small transformer's matrices (4 layers, width 256: q, k, v, o 256×256 and the MLP's
256×1024 and 1024×256), as row-sharded DTensors. Modes interleaved, medians of repeats; a step's time
is the slower rank's (the ranks meet in collectives): its wall time, and its CPU time (the process's
own, which other processes on a loaded machine do not inflate; gloo's threads count in it too).
Run: python benchmarks/muon_fsdp2_spread.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import optimlab.optim as ol

REPEATS = 7
WIDTH, LAYERS = 256, 4


def shapes() -> list[tuple[int, int]]:
    layer = [(WIDTH, WIDTH)] * 4 + [(4 * WIDTH, WIDTH), (WIDTH, 4 * WIDTH)]
    return layer * LAYERS


def rank_main(rank: int, world: int, folder: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, init_method=f"file://{folder}/rendezvous", timeout=timedelta(60)
    )
    mesh = init_device_mesh("cpu", (world,))
    generator = torch.Generator().manual_seed(0)
    optimizers: dict[str, Any] = {}
    for mode in ("spread", "whole on every rank"):
        params = []
        for shape in shapes():
            param = distribute_tensor(torch.randn(shape, generator=generator), mesh, [Shard(0)])
            param.grad = distribute_tensor(torch.randn(shape, generator=generator), mesh, [Shard(0)])
            params.append(param)
        optimizer = ol.Muon(params, lr=0.02)
        if mode != "spread":
            optimizer.steps_matrices = lambda group: False  # the rule's own DTensor path: full_tensor()
        optimizer.step()  # warm-up (and the state)
        optimizers[mode] = optimizer
    times: dict[str, list[list[float]]] = {mode: [] for mode in optimizers}
    for _ in range(REPEATS):
        for mode, optimizer in optimizers.items():  # interleaved
            dist.barrier()
            start, cpu_start = time.perf_counter(), time.process_time()
            optimizer.step()
            elapsed = torch.tensor([time.perf_counter() - start, time.process_time() - cpu_start])
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the slower rank's
            times[mode].append(elapsed.tolist())
    if rank == 0:
        medians = {
            mode: [statistics.median(v[i] for v in values) for i in (0, 1)] for mode, values in times.items()
        }
        for mode, (wall, cpu) in medians.items():
            print(
                f"{mode:>20}: {1e3 * wall:7.1f} ms wall, {1e3 * cpu:7.1f} ms CPU a step (medians, {REPEATS})"
            )
        whole, spread = medians["whole on every rank"], medians["spread"]
        print(f"{'spread faster':>20}: ×{whole[0] / spread[0]:.2f} wall, ×{whole[1] / spread[1]:.2f} CPU")
        print(f"load (1 min): {os.getloadavg()[0]:.1f}")
    sys.stdout.flush()
    dist.destroy_process_group()


def main() -> None:
    print(f"{len(shapes())} matrices ({LAYERS} layers, width {WIDTH}), 2 gloo ranks, one thread each")
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(rank_main, args=(2, folder), nprocs=2, join=True, start_method="spawn")


if __name__ == "__main__":
    main()
