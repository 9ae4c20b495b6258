"""The 720-run sweep of issue 6 through the lab's batched replicas vs a plain sequential torch.optim script.

The sweep: the seed problem ``parabola`` (1000 points x evenly spaced on [−1, 1], y = x² + N(0, 0.1²),
MLP 1-10-1 ReLU, MSE, mini-batches of 32 in a fresh seeded order each epoch, 12 epochs = 384 steps)
trained by 9 optimizers × 8 learning rates × 10 seeds = 720 runs.

The 9 optimizers are the seed script's 8 first-order ones with its settings — SGD, Momentum (SGD,
momentum 0.9), Adagrad, Adadelta, RMSprop (α = 0.9), Adam, Adamax and AdamW (betas (0.9, 0.99)) —
plus Nesterov (SGD, Nesterov momentum 0.9) in place of the seed's L-BFGS, which is a closure-based
method the lab runs sequentially (``--lbfgs`` adds its 80 runs to both sides, run one by one by the
lab too). The 8 learning rates are log-spaced around each optimizer's torch.optim default d:
d × 10^((k − 4)/2), k = 0…7 (d/100 … 31.6·d), so the top ones diverge for some optimizers.

Both sides train exactly the same runs — same initialization (torch's default init after seeding
the CPU generator with the run's seed), same data order (``torch.randperm`` from a generator
seeded by (seed, epoch)), same hyperparameters — in one process, one after the other:

* ``plain``: the seed's style — for each run build the model, a ``torch.optim`` optimizer, and loop
  over epochs and batches with ``zero_grad``/``backward``/``step``; the full-data loss at the end;
  torch's default thread count (its tiny operations run on one thread either way);
* ``lab``: ``optimlab.lab.replicas.train_replicas`` on all 720 specs at once (it batches them with
  torch.func and the rules of ``optimlab.optim``, and evaluates the full-data loss after every
  epoch as the lab does — more work than the plain script's single final evaluation), with the
  engine's default of one intra-op thread (``--threads N`` sets N for both sides).

It prints both times, the speed-up, and how far the per-run results agree: the diverged runs must
be the same ones (the lab's rule: NaN/Inf or a loss above 1e4 × max(initial loss, 1), applied to
the plain script's recorded losses after the fact), and for the others the maximum relative
difference of the final full-data loss and of every step's mini-batch loss. Results go to
``benchmarks/results/lab_throughput.json``.

    python benchmarks/lab_throughput.py                 # float32, the issue's figure
    python benchmarks/lab_throughput.py --dtype float64 # the agreement check at double precision
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from optimlab.lab.replicas import EXPLOSION_FACTOR, ReplicaSpec, train_replicas

RESULTS = Path(__file__).resolve().parent / "results"

#: label → (torch.optim class name, fixed settings, torch.optim's default lr)
PRESETS: dict[str, tuple[str, dict, float]] = {
    "SGD": ("SGD", {}, 1e-3),
    "Momentum": ("SGD", {"momentum": 0.9}, 1e-3),
    "Nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}, 1e-3),
    "Adagrad": ("Adagrad", {}, 1e-2),
    "Adadelta": ("Adadelta", {}, 1.0),
    "RMSprop": ("RMSprop", {"alpha": 0.9}, 1e-2),
    "Adam": ("Adam", {"betas": (0.9, 0.99)}, 1e-3),
    "Adamax": ("Adamax", {"betas": (0.9, 0.99)}, 2e-3),
    "AdamW": ("AdamW", {"betas": (0.9, 0.99)}, 1e-3),
}
LBFGS = ("LBFGS", {"max_iter": 10, "max_eval": 10}, 1.0)


class Parabola:
    """The seed problem, following the lab's problem protocol (with the fast ``epoch_order``)."""

    epochs = 12

    def __init__(self, dtype: torch.dtype = torch.float32, n: int = 1000, batch_size: int = 32) -> None:
        noise = torch.Generator().manual_seed(0)
        self.x = torch.linspace(-1, 1, n, dtype=dtype).unsqueeze(1)
        self.y = self.x.pow(2) + 0.1 * torch.randn(self.x.shape, generator=noise, dtype=dtype)
        self.batch_size = batch_size
        self.dtype = dtype

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def make_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(1, 10), nn.ReLU(), nn.Linear(10, 1)).to(self.dtype)

    def build_model(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # = torch.manual_seed on CPU, without CUDA hooks
            return self.make_model()

    def epoch_order(self, seed: int, epoch: int) -> Tensor:
        return torch.randperm(len(self.x), generator=torch.Generator().manual_seed(data_seed(seed, epoch)))

    def batches(self, seed: int, epoch: int):
        order = self.epoch_order(seed, epoch)
        for start in range(0, len(self.x), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output, target)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"loss": float(self.loss(model(self.x), self.y))}


def data_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def sweep(lbfgs: bool) -> list[tuple[str, str, dict, int]]:
    """(label, class name, constructor kwargs, seed) of every run."""
    runs = []
    presets = dict(PRESETS)
    if lbfgs:
        presets["LBFGS"] = LBFGS
    for label, (cls, fixed, default_lr) in presets.items():
        for k in range(8):
            lr = default_lr * 10 ** ((k - 4) / 2)
            for seed in range(10):
                runs.append((label, cls, {**fixed, "lr": lr}, seed))
    return runs


def plain_script(problem: Parabola, runs: list[tuple[str, str, dict, int]]) -> list[dict]:
    """The seed's way: one run after another with torch.optim."""
    results = []
    loss_fn = nn.MSELoss()
    x_all, y_all = problem.x, problem.y
    for _label, cls_name, kwargs, seed in runs:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(1, 10), nn.ReLU(), nn.Linear(10, 1)).to(problem.dtype)
        optimizer = getattr(torch.optim, cls_name)(model.parameters(), **kwargs)
        with torch.no_grad():
            initial = loss_fn(model(x_all), y_all).item()
        losses = []
        for epoch in range(problem.epochs):
            order = torch.randperm(
                len(x_all), generator=torch.Generator().manual_seed(data_seed(seed, epoch))
            )
            for start in range(0, len(x_all), problem.batch_size):
                idx = order[start : start + problem.batch_size]
                x, y = x_all[idx], y_all[idx]
                if cls_name == "LBFGS":

                    def closure(
                        x: Tensor = x,
                        y: Tensor = y,
                        model: nn.Module = model,
                        optimizer: Optimizer = optimizer,
                    ) -> Tensor:
                        optimizer.zero_grad()
                        loss = loss_fn(model(x), y)
                        loss.backward()
                        return loss

                    loss = optimizer.step(closure)
                else:
                    loss = loss_fn(model(x), y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                losses.append(loss.detach())
        with torch.no_grad():
            final = loss_fn(model(x_all), y_all).item()
        results.append({"initial": initial, "losses": torch.stack(losses).tolist(), "final": final})
    return results


def first_divergence(initial: float, losses: list[float]) -> int | None:
    """The lab's divergence rule applied to a recorded loss sequence: the first bad step."""
    threshold = EXPLOSION_FACTOR * max(abs(initial), 1.0) if math.isfinite(initial) else math.inf
    for step, value in enumerate(losses):
        if not math.isfinite(value) or value > threshold:
            return step
    return None


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both sides")
    parser.add_argument(
        "--lbfgs", action="store_true", help="add the seed's L-BFGS (80 runs, sequential in both)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "lab_throughput.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    problem = Parabola(dtype)
    runs = sweep(args.lbfgs)
    specs = [ReplicaSpec(seed, cls, kwargs) for _label, cls, kwargs, seed in runs]

    # Warm-up outside the timings: torch.optim's first optimizer imports torch._dynamo (seconds).
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])
    print(
        f"{len(runs)} runs of parabola ({problem.epochs} epochs × {problem.steps_per_epoch} steps), "
        f"{args.dtype}, torch {torch.__version__}, threads: lab {args.threads or 1}, "
        f"plain {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    start = time.perf_counter()
    lab = train_replicas(problem, specs, epochs=problem.epochs, evaluation="loss", threads=args.threads or 1)
    lab_s = time.perf_counter() - start
    print(f"lab (batched replicas): {lab_s:8.2f} s", flush=True)

    start = time.perf_counter()
    plain = plain_script(problem, runs)
    plain_s = time.perf_counter() - start
    print(f"plain torch.optim script: {plain_s:8.2f} s", flush=True)

    mismatched_divergence = []
    final_diffs: list[float] = []
    step_diffs: list[float] = []
    worst = None
    for (label, _cls, kwargs, seed), run, ref in zip(runs, lab, plain, strict=True):
        ref_diverged = first_divergence(ref["initial"], ref["losses"])
        lab_diverged = run.steps - 1 if run.diverged else None
        if ref_diverged != lab_diverged:
            mismatched_divergence.append((label, kwargs["lr"], seed, lab_diverged, ref_diverged))
            continue
        if run.diverged:
            continue
        diff = relative(run.final_loss, ref["final"])
        final_diffs.append(diff)
        if worst is None or diff > worst[0]:
            worst = (diff, label, kwargs["lr"], seed)
        step_diffs.append(max(relative(a, b) for a, b in zip(run.losses, ref["losses"], strict=True)))

    diverged = sum(run.diverged for run in lab)
    speedup = plain_s / lab_s
    print(f"speed-up: {speedup:.1f}×")
    print(f"diverged runs: {diverged} (lab) — {len(mismatched_divergence)} disagree with the plain script")
    if final_diffs:
        print(
            f"final full-data loss, max relative difference over {len(final_diffs)} runs: "
            f"{max(final_diffs):.2e}"
            f" (median {sorted(final_diffs)[len(final_diffs) // 2]:.1e}; worst: {worst[1]} lr={worst[2]:.3g}"
            f" seed={worst[3]})"
        )
        print(f"every step's mini-batch loss, max relative difference: {max(step_diffs):.2e}")
        counts = ", ".join(f"> {t:g}: {sum(d > t for d in final_diffs)}" for t in (1e-6, 1e-4, 1e-2))
        print(f"runs whose final loss differs by (relative) {counts}")
    for item in mismatched_divergence[:10]:
        print("  divergence differs (optimizer, lr, seed, lab step, plain step):", item)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "lab_throughput",
        "runs": len(runs),
        "optimizers": list(PRESETS) + (["LBFGS (sequential)"] if args.lbfgs else []),
        "dtype": args.dtype,
        "epochs": problem.epochs,
        "steps_per_run": problem.epochs * problem.steps_per_epoch,
        "torch": torch.__version__,
        "threads_lab": args.threads or 1,
        "threads_plain": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_1m": os.getloadavg()[0],
        "lab_s": lab_s,
        "plain_s": plain_s,
        "plain_s_per_run": plain_s / len(runs),
        "speedup": speedup,
        "diverged": diverged,
        "divergence_mismatches": len(mismatched_divergence),
        "final_loss_max_rel_diff": max(final_diffs) if final_diffs else None,
        "final_loss_rel_diff_over": {str(t): sum(d > t for d in final_diffs) for t in (1e-6, 1e-4, 1e-2)},
        "worst_run": {"optimizer": worst[1], "lr": worst[2], "seed": worst[3]} if worst else None,
        "step_loss_max_rel_diff": max(step_diffs) if step_diffs else None,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
