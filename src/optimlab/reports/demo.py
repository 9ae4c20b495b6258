"""A demo report with every figure kind, from small real runs of :mod:`optimlab.optim`.

``python -m optimlab.reports.demo OUTDIR [--no-static]`` writes ``OUTDIR/report.html`` and, unless
``--no-static``, the PNG twins of every figure and the surface animation as a GIF under
``OUTDIR/figures/``. It takes a few seconds on a laptop CPU.

The runs are tiny but real: four optimizers on three problems (the 2-D Rosenbrock function, an
ill-conditioned 20-D quadratic and a minibatch logistic regression on generated data), a grid of learning
rates and three seeds, a cosine schedule. To keep it fast, every learning rate is a parameter group and
every seed a row of that group's tensor, so one optimizer run covers a whole grid; the optimizers used
are element-wise, so rows and groups do not interact. Wall time is therefore that of the whole batched
run.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import plotly
import torch

import optimlab
import optimlab.optim as optim
from optimlab.reports import figures, png
from optimlab.reports.data import Curves, Sensitivity, color_map, grid_surface, quantiles
from optimlab.reports.lr_find import LRFindResult, range_test, summarize
from optimlab.reports.page import Page, format_spread
from optimlab.reports.profile import performance_profile

STEPS = 300
SEEDS = 3
LRS = tuple(float(v) for v in np.geomspace(1e-4, 1.0, 9))
OPTIMIZERS: dict[str, tuple[type, dict]] = {
    "SGD (momentum 0.9)": (optim.SGD, {"momentum": 0.9}),
    "Adam": (optim.Adam, {}),
    "RMSprop": (optim.RMSprop, {}),
    "Adagrad": (optim.Adagrad, {}),
}


@dataclass(frozen=True)
class Problem:
    name: str
    description: str
    init: Callable[[torch.Generator], torch.Tensor]  # [seeds, dim] start points
    loss: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]  # per-row training loss
    report_loss: Callable[[torch.Tensor], torch.Tensor]  # per-row loss that is recorded
    target: float


def _rosenbrock_rows(p: torch.Tensor) -> torch.Tensor:
    return (1 - p[:, 0]) ** 2 + 100 * (p[:, 1] - p[:, 0] ** 2) ** 2


def _rosenbrock() -> Problem:
    def init(g: torch.Generator) -> torch.Tensor:
        return torch.tensor([-1.2, 1.0]) + 0.1 * torch.randn(SEEDS, 2, generator=g, dtype=torch.float64)

    return Problem(
        "rosenbrock",
        "f(x, y) = (1 − x)² + 100 (y − x²)², minimum 0 at (1, 1); starts near (−1.2, 1)",
        init,
        lambda p, _step, _g: _rosenbrock_rows(p),
        _rosenbrock_rows,
        1e-2,
    )


def _quadratic(dim: int = 20) -> Problem:
    eig = torch.logspace(0, 2, dim, dtype=torch.float64)

    def rows(p: torch.Tensor) -> torch.Tensor:
        return 0.5 * (eig * p**2).sum(dim=1)

    return Problem(
        "quadratic-20d",
        f"f(x) = ½ Σ λᵢ xᵢ² in {dim} dimensions, λ log-spaced from 1 to 100 (condition number 100)",
        lambda g: torch.randn(SEEDS, dim, generator=g, dtype=torch.float64),
        lambda p, _step, _g: rows(p),
        rows,
        1e-3,
    )


def _logistic(n: int = 512, dim: int = 10, batch: int = 32) -> Problem:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    w_true = torch.randn(dim, generator=g, dtype=torch.float64)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(2 * x @ w_true)).to(torch.float64)

    def bce(w: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        xs, ys = (x, y) if idx is None else (x[idx], y[idx])  # xs: [rows, b, dim] when idx is [rows, b]
        logits = (xs @ w.unsqueeze(-1)).squeeze(-1) if idx is not None else w @ x.T
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, ys.expand_as(logits), reduction="none"
        ).mean(dim=-1)

    def loss(w: torch.Tensor, _step: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, n, (w.shape[0], batch), generator=gen)
        return bce(w, idx)

    return Problem(
        "logistic-regression",
        f"binary logistic regression, {n} generated examples with {dim} features, minibatches of {batch}",
        lambda gen: (
            torch.zeros(SEEDS, dim, dtype=torch.float64)
            + 0.01 * torch.randn(SEEDS, dim, generator=gen, dtype=torch.float64)
        ),
        loss,
        lambda w: bce(w, None),
        0.29,
    )


@dataclass
class GridRun:
    """One optimizer on one problem over the whole lr grid: curves per lr, trajectories for 2-D."""

    curves: list[Curves]  # one per lr
    paths: np.ndarray | None  # [steps + 1, lrs, seeds, 2] for 2-D problems


def run_grid(
    problem: Problem, cls: type, kwargs: dict, lrs: Sequence[float], *, steps: int = STEPS, seed: int = 0
) -> GridRun:
    """Run ``cls`` on ``problem`` for every lr (a parameter group each) and every seed (a row each)."""
    g = torch.Generator().manual_seed(seed)
    start = problem.init(g)
    params = [start.clone().requires_grad_(True) for _ in lrs]
    opt = cls([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)], **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    n = len(lrs)
    losses = np.empty((steps, n, SEEDS))
    lr_trace = np.empty((n, steps))
    seconds = np.empty(steps)
    two_d = start.shape[1] == 2
    paths = np.empty((steps + 1, n, SEEDS, 2)) if two_d else None
    if paths is not None:
        paths[0] = np.stack([p.detach().numpy() for p in params])
    data_gen = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    for step in range(steps):
        opt.zero_grad()
        problem.loss(torch.cat(params), step, data_gen).sum().backward()
        for k, group in enumerate(opt.param_groups):
            lr_trace[k, step] = group["lr"]
        opt.step()
        sched.step()
        seconds[step] = time.perf_counter() - t0
        with torch.no_grad():
            now = torch.cat(params)
            losses[step] = problem.report_loss(now).reshape(n, SEEDS).numpy()
            if paths is not None:
                paths[step + 1] = now.reshape(n, SEEDS, 2).numpy()
    x = np.arange(1, steps + 1)
    curves = [
        Curves(losses[:, k, :].T, steps=x, grad_evals=x, seconds=seconds, lr=lr_trace[k]) for k in range(n)
    ]
    return GridRun(curves, paths)


def steps_to_target(c: Curves, target: float) -> float:
    """Median over seeds of the first step whose loss is at most ``target`` (``inf`` if not reached)."""
    hit = np.where(np.isfinite(c.loss) & (c.loss <= target), c.steps, np.inf)
    first = hit.min(axis=1)
    return float(quantiles(first[:, None], (0.5,), axis=0)[0][0])


def _schedules(
    steps: int = 40,
) -> tuple[dict[str, np.ndarray], tuple[str, dict[str, np.ndarray], np.ndarray]]:
    """Learning rates of torch's schedulers over ``steps`` epochs, and ReduceLROnPlateau driven by the
    full-data loss of a real logistic-regression run."""
    sched = torch.optim.lr_scheduler

    def trace(make: Callable[[torch.optim.Optimizer], object], base: float = 0.1, metric=None) -> np.ndarray:
        opt = optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
        s = make(opt)
        out = []
        for e in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step(metric[e]) if metric is not None else s.step()
        return np.array(out)

    curves = {
        "step:step_size=4,gamma=0.5": trace(lambda o: sched.StepLR(o, step_size=4, gamma=0.5)),
        "multistep:milestones=8/24/28,gamma=0.5": trace(
            lambda o: sched.MultiStepLR(o, [8, 24, 28], gamma=0.5)
        ),
        "exponential:gamma=0.9": trace(lambda o: sched.ExponentialLR(o, gamma=0.9)),
        "cosine:T_max=32,eta_min=1e-4": trace(lambda o: sched.CosineAnnealingLR(o, T_max=32, eta_min=1e-4)),
        "lambda:0.95**epoch": trace(lambda o: sched.LambdaLR(o, lambda e: 0.95**e)),
        "onecycle": trace(lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=steps)),
        "warmup-cosine": trace(
            lambda o: sched.SequentialLR(
                o,
                [
                    sched.LinearLR(o, start_factor=0.1, total_iters=5),
                    sched.CosineAnnealingLR(o, T_max=steps - 5),
                ],
                milestones=[5],
            )
        ),
    }
    # A metric from a real run: Adam on the logistic problem, full-data loss after each "epoch" of 5 steps.
    problem = _logistic()
    g = torch.Generator().manual_seed(7)
    w = problem.init(g)[:1].clone().requires_grad_(True)
    opt = optim.Adam([w], lr=0.05)
    metric = []
    for e in range(steps):
        for _ in range(5):
            opt.zero_grad()
            problem.loss(w, e, g).sum().backward()
            opt.step()
        with torch.no_grad():
            metric.append(float(problem.report_loss(w)[0]))
    plateau = {
        "plateau:factor=0.1,patience=5": trace(
            lambda o: sched.ReduceLROnPlateau(o, factor=0.1, patience=5), metric=metric
        )
    }
    return curves, ("full-data loss (Adam run)", plateau, np.array(metric))


def _lr_find(seeds: int = 3) -> list[LRFindResult]:
    """The range test of SGD with momentum on the logistic problem, one run per seed."""
    problem = _logistic()
    results = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(100 + seed)
        w = problem.init(g)[:1].clone().requires_grad_(True)
        opt = optim.SGD([w], lr=1e-4, momentum=0.9)

        def step(lr: float, w=w, opt=opt, g=g) -> float:
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad()
            loss = problem.loss(w, 0, g).sum()
            loss.backward()
            opt.step()
            return loss.item()

        results.append(range_test(step, min_lr=1e-4, max_lr=100.0, steps=100))
    return results


def build(
    outdir: str | Path, *, static: bool = True, steps: int = STEPS, lrs: Sequence[float] = LRS
) -> dict[str, Path]:
    """Run the demo experiments and write the report (and, with ``static``, the PNGs and the GIF)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the runs are tiny: threads only add synchronization cost
    try:
        return _build(Path(outdir), static=static, steps=steps, lrs=tuple(float(v) for v in lrs))
    finally:
        torch.set_num_threads(threads)


def _build(out: Path, *, static: bool, steps: int, lrs: tuple[float, ...]) -> dict[str, Path]:
    figdir = out / "figures"
    written: dict[str, Path] = {}
    problems = [_rosenbrock(), _quadratic(), _logistic()]
    colors = color_map(OPTIMIZERS)
    page = Page(
        "optimlab demo report",
        subtitle="Four optimizers on three small problems — every figure kind of the optimlab report, "
        "from real (tiny) runs of optimlab.optim.",
    )

    def add(
        fig, name: str, caption: str, draw_png: Callable[[Path], Path] | None, gif: Callable | None = None
    ):
        files = {}
        if static and draw_png is not None:
            written[name] = draw_png(figdir / f"{name}.png")
            files["PNG"] = f"figures/{name}.png"
        if static and gif is not None:
            written[f"{name}-gif"] = gif(figdir / f"{name}.gif")
            files["GIF"] = f"figures/{name}.gif"
        page.figure(fig, caption=caption, files=files or None)

    page.section("Protocol")
    page.key_values(
        {
            "budget": f"{steps} steps per run, one gradient evaluation per step",
            "search space": "learning rate ∈ {" + ", ".join(f"{v:.3g}" for v in lrs) + "} (log grid), other "
            "hyperparameters at torch's defaults",
            "selection": "best lr = lowest median final loss across seeds",
            "seeds": f"{SEEDS} per configuration (start point; for logistic regression also the minibatches)",
            "schedule": "cosine decay from the lr to 0 over the run (LambdaLR)",
            "optimizers": [
                f"optimlab.optim.{cls.__name__}({', '.join(f'{k}={v}' for k, v in kw.items())})"
                for cls, kw in OPTIMIZERS.values()
            ],
            "wall time": "elapsed time of the batched run (all lrs and seeds step together)",
            "versions": {
                "optimlab": optimlab.__version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "plotly": plotly.__version__,
                "matplotlib": matplotlib.__version__,
                "python": platform.python_version(),
            },
        },
        caption="How the numbers below were produced",
    )

    costs: dict[str, dict[str, float]] = {}
    for problem in problems:
        runs = {
            label: run_grid(problem, cls, kw, lrs, steps=steps) for label, (cls, kw) in OPTIMIZERS.items()
        }
        sens = {
            label: Sensitivity(lrs, np.stack([c.loss[:, -1] for c in run.curves]))
            for label, run in runs.items()
        }
        best = {label: int(np.argmin(s.band()[1])) for label, s in sens.items()}
        at_best = {label: runs[label].curves[best[label]] for label in runs}
        costs[problem.name] = {label: steps_to_target(c, problem.target) for label, c in at_best.items()}
        page.section(problem.name)
        page.text(problem.description)
        rows = []
        for label, c in at_best.items():
            q25, med, q75 = c.band()
            diverged = int(np.sum(sens[label].diverged))
            rows.append(
                (
                    float(med[-1]),
                    [
                        label,
                        format_spread(med[-1], q25[-1], q75[-1]),
                        lrs[best[label]],
                        costs[problem.name][label],
                        f"{diverged}/{sens[label].diverged.size}",
                        float(np.median(c.seconds[:, -1])),
                    ],
                )
            )
        rows.sort(key=lambda r: r[0])
        page.table(
            [
                "#",
                "optimizer",
                "final loss: median [IQR]",
                "best lr",
                f"steps to {problem.target:g}",
                "diverged runs (all lrs)",
                "wall time (s)",
            ],
            [[i + 1, *r] for i, (_, r) in enumerate(rows)],
            caption=f"Ranked by median final loss at each optimizer's best lr ({SEEDS} seeds).",
            numeric=[True, False, True, True, True, True, True],
            highlight=[0],
        )
        name = problem.name
        add(
            figures.loss_figure(
                at_best, title=f"{name}: loss at the best lr", colors=colors, target=problem.target
            ),
            f"{name}-loss",
            "Median loss across seeds with the inter-quartile band; the lower panel shows the "
            "learning rate in force. Buttons switch the x axis and the loss scale.",
            lambda p, a=at_best, t=problem.target, n=name: png.loss_png(
                a, p, title=f"{n}: loss at the best lr", colors=colors, target=t
            ),
        )
        add(
            figures.lr_sensitivity_figure(
                sens, title=f"{name}: final loss against learning rate", colors=colors
            ),
            f"{name}-lr-sensitivity",
            "Each dot is one seed; the line is the median, the band the IQR; ★ marks "
            "the best lr and ✕ an lr where seeds diverged.",
            lambda p, s=sens, n=name: png.lr_sensitivity_png(
                s, p, title=f"{n}: final loss against learning rate", colors=colors
            ),
        )
        if runs[next(iter(runs))].paths is not None:
            surf = grid_surface(
                lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
                (-2.0, 2.0),
                (-1.0, 3.0),
                minima=[(1.0, 1.0)],
                fmin=0.0,
            )
            traj = {label: runs[label].paths[:, best[label], 0, :] for label in runs}
            add(
                figures.surface_figure(
                    surf, traj, title=f"{name}: trajectories at the best lr (seed 0)", colors=colors
                ),
                f"{name}-surface",
                "Filled contours of f (log-spaced levels); ▶ plays the optimization step by "
                "step, the slider scrubs through it.",
                lambda p, s=surf, t=traj, n=name: png.surface_png(
                    s, t, p, title=f"{n}: trajectories", colors=colors
                ),
                gif=lambda p, s=surf, t=traj, n=name: png.surface_gif(s, t, p, title=n, colors=colors),
            )

    profile = performance_profile(costs)
    page.section("Across problems")
    page.text(
        "Performance profile (Dolan & Moré 2002): for each optimizer, the fraction of problems it "
        "solves (reaches the target loss) within a factor τ of the fastest optimizer's steps. The score "
        "in brackets is the normalized area under the profile for τ from 1 to 4 (as in AlgoPerf)."
    )
    add(
        figures.performance_profile_figure(
            profile, title="performance profile: steps to target", colors=colors
        ),
        "performance-profile",
        "Higher and further left is better.",
        lambda p: png.performance_profile_png(
            profile, p, title="performance profile: steps to target", colors=colors
        ),
    )

    curves, (metric_name, plateau, metric) = _schedules()
    page.section("Learning-rate schedules")
    page.text("torch.optim.lr_scheduler over 40 epochs from lr 0.1, one scheduler step per epoch.")
    add(
        figures.schedule_figure(curves, title="schedulers", x_title="epoch"),
        "schedules",
        "The learning rate in force during each epoch.",
        lambda p: png.schedule_png(curves, p, title="schedulers", x_title="epoch"),
    )
    add(
        figures.schedule_figure(
            plateau,
            title="ReduceLROnPlateau driven by a real loss curve",
            x_title="epoch",
            metric=(metric_name, metric),
            log_y=True,
        ),
        "schedule-plateau",
        "The lr drops by 10× after the loss has not improved for 5 epochs.",
        lambda p: png.schedule_png(
            plateau,
            p,
            title="ReduceLROnPlateau driven by a real loss curve",
            x_title="epoch",
            metric=(metric_name, metric),
            log_y=True,
        ),
    )

    summary = summarize(_lr_find())
    finder = {"SGD (momentum 0.9)": summary}
    page.section("LR range test")
    page.text(
        "SGD with momentum on the logistic-regression problem: the learning rate grows exponentially "
        "from 1e-4 to 100 over 100 steps; the curve is the bias-corrected moving average (β = 0.9) of the "
        "minibatch loss, median over 3 seeds with the IQR band. Suggestions: steepest descent, valley "
        "(two thirds down the longest descent) and the minimum divided by 10; the bar on each marker "
        "spans the seeds' own suggestions."
    )
    page.table(
        ["rule", "suggested lr", "seeds' range"],
        [
            [
                rule,
                lr,
                _seed_range(summary.seed_suggestions[rule]),
            ]
            for rule, lr in summary.suggestions.items()
        ],
        numeric=[False, True, True],
    )
    add(
        figures.lr_find_figure(finder, title="LR range test", colors=colors),
        "lr-find",
        "Smoothed loss against learning rate with the suggestions.",
        lambda p: png.lr_find_png(finder, p, title="LR range test", colors=colors),
    )

    written["report"] = page.write(out / "report.html")
    return written


def _seed_range(values: np.ndarray) -> str:
    v = values[np.isfinite(values)]
    return f"{v.min():.3g} – {v.max():.3g}" if v.size else "–"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optimlab.reports.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("outdir", type=Path, help="folder to write report.html (and figures/) into")
    parser.add_argument("--no-static", action="store_true", help="skip the PNG and GIF files")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    written = build(args.outdir, static=not args.no_static)
    print(f"wrote {written['report']} ({time.perf_counter() - t0:.1f} s)")
    statics = [p for k, p in written.items() if k != "report"]
    if statics:
        print(f"wrote {len(statics)} static figures to {statics[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
