"""The 720-run sweep of issue 6 through the lab's batched replicas vs a plain sequential torch.optim script.

The sweep: the lab's seed problem ``parabola`` (1000 points x evenly spaced on [−1, 1],
y = x² + N(0, 0.1²), MLP 1-10-1 ReLU, MSE, mini-batches of 32 in a fresh seeded order each epoch,
12 epochs = 384 steps) trained by 9 optimizers × 8 learning rates × 10 seeds = 720 runs.

The 9 optimizers are the lab's presets of the seed script's first-order optimizers with its
settings (``defaults="seed"``) — sgd, momentum (0.9), adagrad, adadelta, rmsprop (α = 0.9), adam,
adamax and adamw (betas (0.9, 0.99)) — plus nesterov (Nesterov momentum 0.9) in place of the seed's
L-BFGS, a closure-based method the lab runs sequentially (``--lbfgs`` adds its 80 runs to both
sides, one by one on the lab's side too). The 8 learning rates are log-spaced around each
optimizer's torch.optim default d: d × 10^((k − 4)/2), k = 0…7 (d/100 … 31.6·d).

Both sides train exactly the same runs — the lab problem's initialization (torch's default init
with the CPU generator seeded by ``mix_seed("init", seed)``), data order (``torch.randperm`` from
``generator("batches", seed, epoch)``) and data, same hyperparameters — in one process, one after
the other:

* ``plain``: the seed's style — for each run seed torch, build the model and a ``torch.optim``
  optimizer, and loop over epochs and batches with ``zero_grad``/``backward``/``step``; the
  full-data loss at the end; torch's default thread count (its tiny operations run on one thread
  either way);
* ``command``: the sweep end to end as a user runs it, ``optimlab compare -p parabola -o <the 9>
  --lr-grid 8 --seeds 10`` in a fresh process with a fresh database — imports, planning, training
  (batched replicas, with the default workers), storing every step of the 720 runs in SQLite, the
  summary and ``report.html`` with its PNGs; its learning rates are the lab's grid (8 log-spaced
  around each preset's own), so the same number of runs and steps as the others. Then the same
  command again, which trains nothing (every run stored) and reuses the report's figures;
* ``lab``: ``optimlab.lab.replicas.train_replicas`` on the 720 runs at once (``spec_for`` of each
  preset configuration; it batches them with torch.func and the rules of ``optimlab.optim``, and
  evaluates the full-data loss after every epoch as the lab's runner does — more work than the
  plain script's single final evaluation), on the engine's default of one intra-op thread
  (``--threads N`` sets N for both sides).

The modes are interleaved in ``--rounds`` rounds (3): each round runs the command (fresh, then
again), the batched engine on all the runs and a third of the plain script's runs, so that a change
of a shared machine's load touches every mode; the command's and the engine's times are the medians
of the rounds, the plain script's the sum of its slices. The command writes the moment each of its
phases ends (``OPTIMLAB_PHASES``, :mod:`optimlab.cli.phases`), so the benchmark also prints the
median seconds and share of each phase — start and imports, planning, training and storing (and the
part of it spent writing runs to SQLite), reading back, summary, report, exit.

It prints the three times, the speed-ups over the plain script, and how far the per-run results
agree: the diverged runs must be the same ones (the lab's rule: NaN/Inf or a loss above
1e4 × max(initial loss, 1), applied to the plain script's recorded losses after the fact), and for
the others the maximum relative difference of the final full-data loss and of every step's
mini-batch loss. Results go to ``benchmarks/results/lab_throughput.json``.

    python benchmarks/lab_throughput.py                 # float32, the issue's figure
    python benchmarks/lab_throughput.py --dtype float64 # the agreement check at double precision
    python benchmarks/lab_throughput.py --no-command    # the batched engine alone

``--sweep tiny-lm`` runs issue 14's sweep instead: an lr grid × seeds on the ``tiny-lm`` transformer
(``--spec``, default a small one that a loaded 2-core machine finishes in minutes; ``--spec tiny-lm``
is the default workload, width 128, context 64), trained for ``--steps`` steps by AdamW and SGD with
momentum (the lab's presets, torch.optim's classes on the plain side) × 4 learning rates
d × 10^((k − 2)/2), k = 0…3, around each one's default d × 3 seeds — the same comparison of times and
per-run results; the record goes to ``benchmarks/results/lab_throughput_tiny_lm.json``.

    python benchmarks/lab_throughput.py --sweep tiny-lm
    python benchmarks/lab_throughput.py --sweep tiny-lm --spec tiny-lm --steps 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from optimlab.lab.presets import make_config
from optimlab.lab.problems import get_problem
from optimlab.lab.problems.base import generator, mix_seed
from optimlab.lab.problems.parabola import Parabola
from optimlab.lab.replicas import EXPLOSION_FACTOR, spec_for, train_replicas

RESULTS = Path(__file__).resolve().parent / "results"
EPOCHS = 12
PRESETS = ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "adamw")
#: the tiny-lm sweep: its optimizers, learning rates per optimizer, seeds and default problem
LM_PRESETS, LM_LRS, LM_SEEDS = ("adamw", "momentum"), 4, 3
LM_SPEC = "tiny-lm:layers=2,width=64,heads=4,context=32,sequences=256"


class Parabola64(Parabola):
    """The lab's parabola in double precision (data and model), for the agreement check."""

    def __init__(self) -> None:
        super().__init__()
        self.x, self.y = self.x.double(), self.y.double()
        self.x_val, self.y_val = self.x_val.double(), self.y_val.double()  # type: ignore[union-attr]

    def make_model(self) -> nn.Module:
        return super().make_model().double()


def sweep(lbfgs: bool) -> list[tuple[str, object, int]]:
    """(preset, lab configuration, seed) of every run."""
    runs = []
    for preset in PRESETS + (("lbfgs",) if lbfgs else ()):
        default_lr = make_config(preset, defaults="torch").lr
        for k in range(8):
            config = make_config(preset, {"lr": default_lr * 10 ** ((k - 4) / 2)})
            runs.extend((preset, config, seed) for seed in range(10))
    return runs


def lm_sweep() -> list[tuple[str, object, int]]:
    """(preset, lab configuration, seed) of every run of the tiny-lm sweep."""
    runs = []
    for preset in LM_PRESETS:
        default_lr = make_config(preset, defaults="torch").lr
        for k in range(LM_LRS):
            config = make_config(preset, {"lr": default_lr * 10 ** ((k - 2) / 2)})
            runs.extend((preset, config, seed) for seed in range(LM_SEEDS))
    return runs


def plain_script(
    problem: Parabola,
    runs: list[tuple[str, object, int]],
    loss_fn: nn.Module,
    total_steps: int,
) -> list[dict]:
    """The seed's way: one run after another with torch.optim, on the lab problem's conventions
    (torch seeded by ``mix_seed("init", seed)``, then the model; its data order)."""
    results = []
    x_all, y_all = problem.x, problem.y
    for _preset, config, seed in runs:
        torch.manual_seed(mix_seed("init", seed))
        model = problem.make_model().to(x_all.dtype if x_all.is_floating_point() else torch.float32)
        optimizer = getattr(torch.optim, config.cls.__name__)(model.parameters(), **config.hyper)
        with torch.no_grad():
            initial = loss_fn(model(x_all), y_all).item()
        losses = []
        for epoch in range(math.ceil(total_steps / problem.steps_per_epoch)):
            order = torch.randperm(len(x_all), generator=generator("batches", seed, epoch))
            for start in range(0, len(x_all), problem.batch_size):
                if len(losses) == total_steps:
                    break
                idx = order[start : start + problem.batch_size]
                x, y = x_all[idx], y_all[idx]
                if config.is_lbfgs:

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


#: the command's phases (``OPTIMLAB_PHASES`` marks, :mod:`optimlab.cli.phases`) and what each covers
PHASES = {
    "settings": "start, imports (torch) and settings",
    "planned": "planning (run keys, the store checked)",
    "trained": "training and storing",
    "loaded": "reading the runs back",
    "summary": "summary and statistics",
    "report": "report (HTML, Plotly, PNGs)",
    "exit": "exit",
}


def run_command(folder: Path, name: str) -> dict[str, Any]:
    """The sweep through ``optimlab compare`` in a fresh process and a fresh database under
    ``folder``, then the same command again (every run stored: it trains nothing): the wall seconds
    of each and the seconds of each phase of each (:data:`PHASES`), the write time of the runs."""
    db, out = folder / f"{name}.db", folder / f"{name}-out"
    args = [sys.executable, "-m", "optimlab", "compare", "-p", "parabola", "-o", ",".join(PRESETS)]
    args += ["--lr-grid", "8", "--seeds", "10", "--db", str(db), "--out", str(out)]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    record: dict[str, Any] = {}
    for kind in ("fresh", "rerun"):
        marks_file = folder / f"{name}-{kind}-phases.json"
        start = time.time()
        done = subprocess.run(
            args, env=env | {"OPTIMLAB_PHASES": str(marks_file)}, capture_output=True, text=True
        )
        end = time.time()
        if done.returncode != 0:
            raise SystemExit(f"optimlab compare failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        if "720 runs" not in done.stdout:
            raise SystemExit(f"optimlab compare did not plan the 720 runs:\n{done.stdout}")
        marked = json.loads(marks_file.read_text())
        phases, last = {}, start
        for phase, moment in [*marked["marks"], ("exit", end)]:
            phases[phase] = moment - last
            last = moment
        record[kind] = {"wall_s": end - start, "phases_s": phases, **marked["extra"]}
    return record


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def phase_table(commands: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """The median seconds of each phase of ``kind`` runs of the command."""
    return {phase: median([c[kind]["phases_s"].get(phase, 0.0) for c in commands]) for phase in PHASES}


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
    parser.add_argument("--sweep", choices=("parabola", "tiny-lm"), default="parabola")
    parser.add_argument("--spec", default=LM_SPEC, help="the tiny-lm sweep's problem spec")
    parser.add_argument("--steps", type=int, default=60, help="steps per run of the tiny-lm sweep")
    parser.add_argument(
        "--no-command",
        dest="command",
        action="store_false",
        help="skip the end-to-end `optimlab compare` timing (float32 only)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds (the plain script's runs are split among them)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be ≥ 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sweep == "tiny-lm":
        if args.dtype != "float32" or args.lbfgs:
            parser.error("the tiny-lm sweep runs in float32, without L-BFGS")
        problem = get_problem(args.spec)
        if problem.name != "tiny-lm":
            parser.error(f"--spec must be a tiny-lm spec, got {args.spec!r}")
        runs, total_steps, loss_fn = lm_sweep(), args.steps, nn.CrossEntropyLoss()
        budget = {"steps": total_steps}
        what = f"{problem.spec} ({total_steps} steps of batch {problem.batch_size})"
        out = args.out or RESULTS / "lab_throughput_tiny_lm.json"
    else:
        problem = get_problem("parabola") if args.dtype == "float32" else Parabola64()
        assert problem.steps_per_epoch == 32 and len(problem.x) == 1000
        runs, total_steps, loss_fn = sweep(args.lbfgs), EPOCHS * problem.steps_per_epoch, nn.MSELoss()
        budget = {"epochs": EPOCHS}
        what = f"parabola ({EPOCHS} epochs × {problem.steps_per_epoch} steps)"
        out = args.out or RESULTS / "lab_throughput.json"
    specs = [spec_for(config, seed) for _preset, config, seed in runs]

    # Warm-up outside the timings: torch.optim's first optimizer imports torch._dynamo (seconds).
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])
    print(
        f"{len(runs)} runs of {what}, "
        f"{args.dtype}, torch {torch.__version__}, threads: lab {args.threads or 1}, "
        f"plain {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    command = args.command and args.sweep == "parabola" and args.dtype == "float32" and not args.lbfgs
    rounds = args.rounds
    commands: list[dict[str, Any]] = []
    lab_times: list[float] = []
    plain_times: list[float] = []
    plain: list[dict] = []
    # interleaved: each round runs the command (fresh, then again), the batched engine on all runs
    # and a slice of the plain script, so that a change of the machine's load touches every mode
    slices = [runs[k * len(runs) // rounds : (k + 1) * len(runs) // rounds] for k in range(rounds)]
    with tempfile.TemporaryDirectory(prefix="optimlab-sweep-") as folder:
        for k in range(rounds):
            load = os.getloadavg()[0]
            if command:
                commands.append(run_command(Path(folder), f"round{k}"))
                fresh, rerun = commands[-1]["fresh"]["wall_s"], commands[-1]["rerun"]["wall_s"]
                print(f"round {k + 1}: optimlab compare {fresh:6.2f} s, again {rerun:5.2f} s", end="; ")
            start = time.perf_counter()
            lab = train_replicas(problem, specs, **budget, evaluation="loss", threads=args.threads or 1)
            lab_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            plain += plain_script(problem, slices[k], loss_fn, total_steps)
            plain_times.append(time.perf_counter() - start)
            print(
                f"lab {lab_times[-1]:5.2f} s; plain script, {len(slices[k])} runs: {plain_times[-1]:6.2f} s"
                f" (load average {load:.2f} → {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    lab_s, plain_s = median(lab_times), sum(plain_times)
    print(f"lab (batched replicas), median of {rounds}: {lab_s:8.2f} s")
    print(f"plain torch.optim script, {len(runs)} runs in {rounds} slices: {plain_s:8.2f} s")
    command_s = rerun_s = None
    if commands:
        command_s = median([c["fresh"]["wall_s"] for c in commands])
        rerun_s = median([c["rerun"]["wall_s"] for c in commands])
        print(f"optimlab compare, end to end (report included), median: {command_s:8.2f} s")
        print(f"the same command again (trains nothing), median: {rerun_s:8.2f} s")
        for kind, total in (("fresh", command_s), ("rerun", rerun_s)):
            table = phase_table(commands, kind)
            shares = ", ".join(f"{PHASES[p]} {t:.2f} s ({t / total:.0%})" for p, t in table.items())
            print(f"  {kind}, median seconds of each phase: {shares}")
        stored = median([c["fresh"].get("store_put_s", 0.0) for c in commands])
        print(f"  of the training and storing: writing the 720 runs to SQLite {stored:.2f} s")

    mismatched_divergence = []
    final_diffs: list[float] = []
    step_diffs: list[float] = []
    worst = None
    for (label, config, seed), run, ref in zip(runs, lab, plain, strict=True):
        ref_diverged = first_divergence(ref["initial"], ref["losses"])
        lab_diverged = run.steps - 1 if run.diverged else None
        if ref_diverged != lab_diverged:
            mismatched_divergence.append((label, config.lr, seed, lab_diverged, ref_diverged))
            continue
        if run.diverged:
            continue
        diff = relative(run.final_loss, ref["final"])
        final_diffs.append(diff)
        if worst is None or diff > worst[0]:
            worst = (diff, label, config.lr, seed)
        step_diffs.append(max(relative(a, b) for a, b in zip(run.losses, ref["losses"], strict=True)))

    diverged = sum(run.diverged for run in lab)
    speedup = plain_s / lab_s
    print(f"speed-up of the batched training: {speedup:.1f}×")
    if command_s is not None:
        print(f"speed-up end to end (optimlab compare, report included): {plain_s / command_s:.1f}×")
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

    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "lab_throughput",
        "sweep": args.sweep,
        "problem": problem.spec,
        "runs": len(runs),
        "optimizers": (list(PRESETS) + (["lbfgs (sequential)"] if args.lbfgs else []))
        if args.sweep == "parabola"
        else list(LM_PRESETS),
        "batched_runs": sum(run.batched for run in lab),
        "dtype": args.dtype,
        **budget,
        "steps_per_run": total_steps,
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
        "rounds": rounds,
        "lab_s_each": lab_times,
        "plain_s_each_slice": plain_times,
        "command_s": command_s,
        "command_rerun_s": rerun_s,
        "speedup_end_to_end": plain_s / command_s if command_s else None,
        "command_phases_s": phase_table(commands, "fresh") if commands else None,
        "command_rerun_phases_s": phase_table(commands, "rerun") if commands else None,
        "commands": commands,
        "diverged": diverged,
        "divergence_mismatches": len(mismatched_divergence),
        "final_loss_max_rel_diff": max(final_diffs) if final_diffs else None,
        "final_loss_rel_diff_over": {str(t): sum(d > t for d in final_diffs) for t in (1e-6, 1e-4, 1e-2)},
        "worst_run": {"optimizer": worst[1], "lr": worst[2], "seed": worst[3]} if worst else None,
        "step_loss_max_rel_diff": max(step_diffs) if step_diffs else None,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
