"""Compare settings: how fast the default ``optimlab compare`` runs, and why its settings are what they are.

Measures, side by side in one process tree:

1. one ``parabola`` run (Adam, the seed settings) and one short ``digits-cnn`` run with
   ``torch.set_num_threads(1)`` against torch's default thread count — the lab's models are tiny,
   so extra threads only add synchronization (and oversubscribe a shared CPU);
2. the default comparison (``parabola`` × 5 seeds + ``rosenbrock``, 11 optimizers) with one
   training process against one per core, and with the first-order runs batched as replicas
   (``replicas="auto"``, the default) against every run alone (``"off"``), each into a fresh
   database.

Prints the ratios and writes ``benchmarks/results/compare_settings.json``. Run: ``make bench`` or
``PYTHONPATH=src python benchmarks/compare_settings.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from optimlab.lab.presets import SEED_OPTIMIZERS, make_config, parse_optimizers
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.protocol import Comparison, run_comparison
from optimlab.lab.runner import train
from optimlab.lab.storage import Store
from optimlab.lab.workers import cores


def _best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before anything changes it


def threads() -> dict[str, float]:
    parabola, cnn = get_problem("parabola"), get_problem("digits-cnn")
    adam = make_config("adam")
    default_threads = DEFAULT_THREADS
    out: dict[str, float] = {"default_threads": default_threads}
    for n in (1, default_threads):
        torch.set_num_threads(n)
        out[f"parabola_s_{n}_threads"] = _best_of(lambda: train(parabola, adam, 0))
        out[f"digits_cnn_s_{n}_threads"] = _best_of(lambda: train(cnn, adam, 0, Budget(epochs=1)), repeats=1)
    torch.set_num_threads(1)
    return out


def default_compare(jobs: int, replicas: str = "auto") -> float:
    comparison = Comparison(
        problems=[get_problem("parabola"), get_problem("rosenbrock")],
        optimizers=parse_optimizers(",".join(SEED_OPTIMIZERS)),
        seeds=5,
    )
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        start = time.perf_counter()
        run_comparison(comparison, store, jobs=jobs, replicas=replicas)  # type: ignore[arg-type]
        return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    results: dict[str, object] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    results.update(threads())
    n = results["default_threads"]
    for name, what in (("parabola", "parabola run"), ("digits_cnn", "digits-cnn epoch")):
        one, many = results[f"{name}_s_1_threads"], results[f"{name}_s_{n}_threads"]
        print(
            f"{what}: 1 thread {one:.3f} s, {n} threads {many:.3f} s (1 thread is ×{many / one:.2f} faster)"
        )
    jobs = cores()
    counts = [1, jobs] if jobs > 1 else [1]
    timings = {(r, j): default_compare(j, r) for r in ("off", "auto") for j in counts}
    results.update({"compare_workers": jobs})
    for (replicas, j), seconds in timings.items():
        results[f"compare_s_{j}_jobs_replicas_{replicas}"] = seconds
    for j in counts:
        off, auto = timings["off", j], timings["auto", j]
        print(
            f"default compare (66 runs), --jobs {j}: every run alone {off:.1f} s, batched replicas "
            f"{auto:.1f} s (×{off / auto:.2f}); the target is < 60 s on 2 cores"
        )
    if jobs > 1:
        one, many = timings["auto", 1], timings["auto", jobs]
        print(f"batched, --jobs 1 {one:.1f} s vs --jobs {jobs} {many:.1f} s (×{one / many:.2f})")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "compare_settings.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
