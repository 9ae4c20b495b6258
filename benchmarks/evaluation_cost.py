"""What evaluating within epochs costs: two source trees, the same comparisons, interleaved.

A run is evaluated before its first step, within epochs (the full objective only, about
:data:`optimlab.lab.run.EVALUATIONS` times over its budget) and after every epoch (everything
``problem.evaluate`` gives). This measures what that costs against another source tree (by default the
one before it, exported with ``git archive <commit> src | tar -x -C DIR``): each comparison in a
fresh subprocess with the tree's ``src`` first on the path, into a fresh database, ``--jobs 1``,
the two trees taking turns (the machine is shared: interleaved, medians):

* ``default``: the default ``optimlab compare`` (11 optimizers × ``parabola`` on 5 seeds +
  ``rosenbrock``);
* ``digits-cnn``: the same 11 optimizers on ``digits-cnn`` (10 epochs of 45 steps), 2 seeds.

Run: ``PYTHONPATH=src python benchmarks/evaluation_cost.py --before /tmp/evals-base/src [--repeats 3]``.
Prints the medians and the ratios after / before and writes ``benchmarks/results/evaluation_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "default": {"problems": ["parabola", "rosenbrock"], "seeds": 5},
    "digits-cnn": {"problems": ["digits-cnn"], "seeds": 2},
}

_CHILD = """
import json, sys, time, torch
from pathlib import Path
from optimlab.lab.presets import SEED_OPTIMIZERS, parse_optimizers
from optimlab.lab.problems import get_problem
from optimlab.lab.protocol import Comparison, run_comparison
from optimlab.lab.storage import Store
torch.set_num_threads(1)
case = json.loads(sys.argv[1])
problems = [get_problem(p) for p in case["problems"]]
comparison = Comparison(problems, parse_optimizers(",".join(SEED_OPTIMIZERS)), seeds=case["seeds"])
with Store(Path(sys.argv[2])) as store:
    start = time.perf_counter()
    run_comparison(comparison, store, jobs=1)
    print(time.perf_counter() - start)
"""


def _time(source: str, case: dict[str, object]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": source}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(case), str(Path(tmp) / "bench.db")],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the src folder of the tree to compare against")
    parser.add_argument("--after", default=str(Path(__file__).resolve().parents[1] / "src"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    times: dict[str, dict[str, list[float]]] = {c: {t: [] for t in trees} for c in CASES}
    for repeat in range(args.repeats):
        for name, case in CASES.items():
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))  # alternate who goes first
            for tree in order:
                seconds = _time(trees[tree], case)
                times[name][tree].append(seconds)
                print(f"  {name:10s} {tree:6s} {seconds:6.2f} s", flush=True)
    results: dict[str, object] = {"load_average": os.getloadavg(), "trees": trees, "times": times}
    for name in CASES:
        before = statistics.median(times[name]["before"])
        after = statistics.median(times[name]["after"])
        results[f"{name}_ratio"] = after / before
        median = f"median of {args.repeats}"
        print(f"{name}: before {before:.2f} s, after {after:.2f} s ({median}): ×{after / before:.2f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "evaluation_cost.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
