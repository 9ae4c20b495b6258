"""A small model's whole iteration — ``zero_grad()``, forward, ``backward()``, ``step()`` — with
torch.optim's for-loop and ``foreach`` next to optimlab's default (``engine="auto"``, which starts
eager on a model this small) and eager engines.

The model is the lab's ``digits-mlp`` (64 → 64 → 10, ReLU; 4,810 parameters in 4 tensors) on its
training data in batches of 32, cross-entropy. One copy of the model per mode, all starting from the
same weights and fed the same batches; the modes take turns iteration by iteration (the machine is
shared: interleaved, medians, ratios to torch's for-loop). ``--repeat`` timed iterations follow
``--warmup`` untimed ones, so that optimlab's default is measured in its first, eager steps (it
fuses only after 2 s of eager steps). The ``no step`` row is the same iteration without a step.

Run: ``PYTHONPATH=src python benchmarks/small_model_iteration.py [--optimizers adam,sgd] [--repeat 400]``.
Prints a table with the load average and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import optimlab.optim as ol
from optimlab.lab.problems import get_problem

ARGUMENTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.1, "momentum": 0.9},
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3},
    "nadam": {"lr": 2e-3},
    "rmsprop": {"lr": 1e-3},
    "adagrad": {"lr": 1e-2},
}
NAMES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "nadam": "NAdam",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
}
MODES = ("no step", "torch-loop", "torch-foreach", "optimlab-default", "optimlab-eager")


class Contestant:
    """One copy of the model with one optimizer mode."""

    def __init__(self, name: str, mode: str, problem: Any, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = problem.make_model()
        self.loss = problem.loss
        self.mode = mode
        params = list(self.model.parameters())
        kwargs = dict(ARGUMENTS[name])
        if mode == "no step":
            self.optimizer = None
        elif mode.startswith("torch"):
            cls = getattr(torch.optim, NAMES[name])
            self.optimizer = cls(params, foreach=mode == "torch-foreach", **kwargs)
        else:
            engine = {"optimlab-default": None, "optimlab-eager": "eager"}[mode]
            self.optimizer = getattr(ol, NAMES[name])(params, engine=engine, **kwargs)
        self.times: list[float] = []

    def iterate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad()
        else:
            self.model.zero_grad()
        self.loss(self.model(x), y).backward()
        if self.optimizer is not None:
            self.optimizer.step()


def measure(name: str, args: argparse.Namespace) -> dict[str, float]:
    problem = get_problem("digits-mlp")
    x, y = problem.x, problem.y
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, len(x) - 31, 32)]
    contestants = [Contestant(name, mode, problem) for mode in MODES]
    for step in range(args.warmup):
        for contestant in contestants:
            contestant.iterate(*batches[step % len(batches)])
    for step in range(args.repeat):
        batch = batches[step % len(batches)]
        for contestant in contestants:
            begin = time.perf_counter()
            contestant.iterate(*batch)
            contestant.times.append(time.perf_counter() - begin)
    for contestant in contestants:
        engine = getattr(contestant.optimizer, "engine", None)
        fused = getattr(engine, "_fusing", False)
        assert not fused, f"{contestant.mode} fused during the measurement: fewer --repeat"
    return {c.mode: statistics.median(c.times) * 1e6 for c in contestants}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default="sgd,adam,nadam,rmsprop", help=f"of {', '.join(ARGUMENTS)}")
    parser.add_argument("--repeat", type=int, default=400, help="timed iterations per mode (median)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    print(f"digits-mlp (4,810 parameters in 4 tensors), batch 32; µs per iteration, medians of {args.repeat}")
    print(f"{'optimizer':10} " + " ".join(f"{m:>17}" for m in MODES) + "   default ÷ loop   eager ÷ loop")
    for name in args.optimizers.split(","):
        row = measure(name, args)
        results[name] = row
        loop = row["torch-loop"]
        print(
            f"{name:10} "
            + " ".join(f"{row[m]:17.1f}" for m in MODES)
            + f"   {row['optimlab-default'] / loop:14.2f}   {row['optimlab-eager'] / loop:12.2f}"
        )
    load = os.getloadavg()
    print(f"threads {torch.get_num_threads()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.out is not None:
        args.out.write_text(json.dumps({"results_us": results, "load": load}, indent=2))


if __name__ == "__main__":
    main()
