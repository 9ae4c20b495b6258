"""L-BFGS step time: optimlab's (pair by pair, and ``compact=True``) against torch.optim.LBFGS.

Side by side in one run on the lab's problems (``parabola``, ``quadratic-100d``, ``digits-mlp``,
``rosenbrock``) with the lab's L-BFGS preset (lr 0.01, max_iter 10, max_eval 10, history 100), and
on a 1M-parameter model (a 1000-1000-10 MLP on random mini-batches, lr 0.1, max_iter 10,
max_eval 10, history ``--history-1m``), each without line search and with ``strong_wolfe``:

* three copies of the model, one per implementation, take the same steps on the same batches;
  ``--warmup`` steps fill the history, then ``--steps`` steps are timed, the implementations taking
  turns within each step (the machine is shared: interleaved, medians, ratios);
* ``step`` is the whole ``optimizer.step(closure)``, ``own`` is the step less the time spent inside
  the closure (the user's forward and backward): what the optimizer itself costs;
* ``dev`` is how far each implementation's parameters end from torch's: ‖θ − θ_torch‖ / ‖θ_torch‖
  (float32, the lab's dtype; the float64 bounds are tests in ``tests/test_optim_lbfgs.py``).

Run: ``PYTHONPATH=src python benchmarks/lbfgs.py [--steps 10] [--warmup 10] [--threads 1]``.
Prints a table and the load average and writes ``benchmarks/results/lbfgs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import optimlab.optim as ol
from optimlab.lab.problems import get_problem

LAB_PRESET = {"lr": 0.01, "max_iter": 10, "max_eval": 10}
IMPLEMENTATIONS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "torch": (torch.optim.LBFGS, {}),
    "optimlab": (ol.LBFGS, {}),
    "optimlab compact": (ol.LBFGS, {"compact": True}),
}

Batches = list[tuple[Tensor, Tensor]]
Case = tuple[Callable[[], nn.Module], Callable[[nn.Module, Tensor, Tensor], Tensor], Batches, dict[str, Any]]


def lab_case(name: str, steps: int) -> Case:
    problem = get_problem(name)
    batches: Batches = []
    epoch = 0
    while len(batches) < steps:
        batches.extend(problem.batches(0, epoch))
        epoch += 1
    return (
        lambda: problem.build_model(0),
        lambda model, x, y: problem.loss(model(x), y),
        batches,
        LAB_PRESET,
    )


def million_case(steps: int, history: int) -> Case:
    """A 1M-parameter network (1000-1000-10 tanh MLP, 1,011,010 parameters) on mini-batches of
    128 random inputs with random labels, cross-entropy: it keeps iterating step after step."""
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(128, 1000, generator=gen), torch.randint(0, 10, (128,), generator=gen))
        for _ in range(steps)
    ]

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(1000, 1000), nn.Tanh(), nn.Linear(1000, 10))

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(model(x), y)

    return make, loss, batches, {"lr": 0.1, "max_iter": 10, "max_eval": 10, "history_size": history}


def measure(case: Case, line_search_fn: str | None, warmup: int, steps: int) -> dict[str, dict[str, float]]:
    make, loss_of, batches, hyper = case
    runs: dict[str, tuple[nn.Module, torch.optim.Optimizer, list[float]]] = {}
    for name, (cls, extra) in IMPLEMENTATIONS.items():
        model = make()
        params = list(model.parameters())
        runs[name] = (model, cls(params, **hyper, line_search_fn=line_search_fn, **extra), [0.0])

    def one_step(name: str, i: int) -> tuple[float, float]:
        model, opt, inside = runs[name]
        x, y = batches[i]

        def closure() -> Tensor:
            start = time.perf_counter()
            opt.zero_grad()
            loss = loss_of(model, x, y)
            loss.backward()
            inside[0] += time.perf_counter() - start
            return loss.detach()

        before = inside[0]
        start = time.perf_counter()
        opt.step(closure)
        return time.perf_counter() - start, inside[0] - before

    names = list(runs)
    for i in range(warmup):
        for name in names:
            one_step(name, i)
    step_s: dict[str, list[float]] = {name: [] for name in names}
    own_s: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup, warmup + steps):
        turn = names[i % len(names) :] + names[: i % len(names)]
        for name in turn:
            total, inside = one_step(name, i)
            step_s[name].append(total)
            own_s[name].append(total - inside)
    reference = torch.cat([p.detach().reshape(-1) for p in runs["torch"][0].parameters()])
    result = {}
    for name in names:
        theta = torch.cat([p.detach().reshape(-1) for p in runs[name][0].parameters()])
        result[name] = {
            "step_ms": 1e3 * statistics.median(step_s[name]),
            "own_ms": 1e3 * statistics.median(own_s[name]),
            "dev": float((theta - reference).norm() / reference.norm()),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case (default 10)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the lab)")
    parser.add_argument("--history-1m", type=int, default=20, help="history_size at 1M parameters")
    parser.add_argument("--only", default="", help="comma-separated case names to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    lab = ("parabola", "quadratic-100d", "digits-mlp", "rosenbrock")
    cases: dict[str, Callable[[], Case]] = {name: lambda name=name: lab_case(name, total) for name in lab}
    cases["linear-1M"] = lambda: million_case(total, args.history_1m)
    if args.only:
        cases = {k: v for k, v in cases.items() if k in args.only.split(",")}
    load_before = os.getloadavg()
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {load_before[0]:.1f}")
    header = f"{'case':15s} {'line search':12s} {'impl':17s} {'step ms':>9s} {'own ms':>9s}"
    print(header + f" {'× torch step':>13s} {'× torch own':>12s} {'dev':>9s}")
    results = []
    for case_name, build in cases.items():
        case = build()
        for line_search_fn in (None, "strong_wolfe"):
            measured = measure(case, line_search_fn, args.warmup, args.steps)
            base = measured["torch"]
            for impl, m in measured.items():
                speed_step = base["step_ms"] / m["step_ms"]
                speed_own = base["own_ms"] / m["own_ms"]
                timing = f"{m['step_ms']:9.2f} {m['own_ms']:9.2f} {speed_step:13.2f} {speed_own:12.2f}"
                print(
                    f"{case_name:15s} {line_search_fn!s:12s} {impl:17s} {timing} {m['dev']:9.1e}",
                    flush=True,
                )
                results.append({"case": case_name, "line_search_fn": line_search_fn, "impl": impl, **m})
    load_after = os.getloadavg()
    print(f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (on {os.cpu_count()} CPUs)")
    out = Path(__file__).resolve().parent / "results" / "lbfgs.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "load": [load_before[0], load_after[0]]}
    meta |= {"warmup": args.warmup, "steps": args.steps}
    out.write_text(json.dumps({**meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
