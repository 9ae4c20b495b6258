"""The verdict of a comparison against a baseline: every optimizer's speed-up over it, per problem
and horizon, as ``summary.json`` gives it (and the report's first table shows).

:func:`add_verdict` adds to a summary (:func:`optimlab.lab.results.summarize`):

* ``problems.<problem>.optimizers.<label>.speedup`` — the speed-up at the longest horizon
  (:meth:`optimlab.lab.speedup.SpeedUp.as_dict`: ``median``, ``ci95``, ``per_seed`` in steps;
  ``grad_evals`` and ``seconds`` alike; ``reached``, the fraction of seeds on which the optimizer got
  to the baseline's final loss; ``inside_noise``) and its ``verdict``;
* ``problems.<problem>.horizons.<h>`` — the same at every horizon ``h``, with the budget, the
  schedule, and each optimizer's tuned lr (the baseline's among them);
* ``verdict`` — the baseline, the horizons, the tuning budget every optimizer had, the schedule (in
  words), and one row per problem × horizon × optimizer.

Verdicts: ``"baseline"``; ``"faster"`` / ``"slower"`` when the 95 % CI lies above / below 1;
``"inside the noise"`` when it contains 1; with one seed (a problem that depends on the seed) there
is no interval: ``"one seed: no CI"``; a deterministic problem's one run is all there is:
``"faster"``, ``"slower"`` or ``"same"``; ``"no target"`` when the baseline diverged on every seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optimlab.lab.speedup import speedup_of_runs
from optimlab.lab.stats import median

if TYPE_CHECKING:
    from optimlab.lab.results import ComparisonData, ProblemData

__all__ = ["add_verdict", "horizon_key", "tuning_runs", "verdict_of"]


def horizon_key(horizon: float) -> str:
    """A horizon as a JSON key: ``"0.25"``, ``"1"``."""
    return f"{horizon:g}"


def verdict_of(speedup: dict[str, Any], *, baseline: bool, deterministic: bool) -> str:
    """The verdict of one speed-up (:meth:`~optimlab.lab.speedup.SpeedUp.as_dict`); see the module
    docstring."""
    if baseline:
        return "baseline"
    if not speedup["seeds"]:
        return "no target"
    value = speedup["median"]
    faster = value is None or value > 1  # null: +∞ (met at the start where the baseline was not)
    if speedup["inside_noise"] is None:
        if not deterministic:
            return "one seed: no CI"
        return "same" if value == 1 else ("faster" if faster else "slower")
    if speedup["inside_noise"]:
        return "inside the noise"
    return "faster" if faster else "slower"


def tuning_runs(settings: dict[str, Any], seeds: int) -> int:
    """The runs every optimizer had on a problem of ``seeds`` evaluation seeds, at each horizon: the
    lr grid's values × the seeds, the Optuna trials + the seeds, or the seeds (one-shot)."""
    if settings.get("protocol") == "optuna":
        return int(settings.get("trials") or 0) + seeds
    if settings.get("protocol") == "lr-grid":
        return int(settings.get("lr_grid") or 1) * seeds
    return seeds


def _tuning_text(settings: dict[str, Any]) -> str:
    if settings.get("protocol") == "optuna":
        return f"{settings.get('trials')} Optuna trials per optimizer, then its best on every seed"
    if settings.get("protocol") == "lr-grid":
        return f"an lr grid of {settings.get('lr_grid')} values per optimizer, each on every seed"
    return "none (one-shot: every optimizer at its given settings)"


def _schedule_text(settings: dict[str, Any]) -> str:
    given = settings.get("schedule")
    if given == "constant":
        return "a constant learning rate"
    if given:
        return f"the schedule {given}, rescaled to each horizon"
    return "a linear warm-up then a cosine decay to 0 at each horizon's end"


def _horizon_entry(problem: ProblemData, baseline: str) -> dict[str, Any]:
    base = next((o for o in problem.optimizers if o.label == baseline), None)
    if base is None:
        raise ValueError(f"the baseline {baseline!r} has no runs on {problem.spec}")
    optimizers = {}
    for opt in problem.optimizers:
        speedup = speedup_of_runs(base.runs, opt.runs).as_dict()
        speedup["verdict"] = verdict_of(
            speedup, baseline=opt.label == baseline, deterministic=problem.deterministic
        )
        finals = [r.final_loss for r in opt.runs]
        optimizers[opt.label] = {
            "best_lr": opt.best_lr,
            "final_loss": median(finals) if finals and median(finals) < float("inf") else None,
            "speedup": speedup,
        }
    return {
        "horizon": problem.horizon,
        "total_steps": problem.total_steps,
        "schedule": problem.schedule,
        "baseline_lr": base.best_lr,
        "optimizers": optimizers,
    }


def add_verdict(summary: dict[str, Any], data: ComparisonData) -> None:
    """Add the speed-ups over ``data.baseline`` to ``summary`` (see the module docstring)."""
    baseline = data.baseline
    if baseline is None:
        return
    horizons = data.horizons or []
    rows = []
    for horizon in horizons:
        for problem in horizon.problems:
            entry = _horizon_entry(problem, baseline)
            info = summary["problems"][problem.spec]
            info.setdefault("horizons", {})[horizon_key(horizon.horizon)] = entry
            if horizon is horizons[-1]:  # the longest: the headline, beside the ranked table's numbers
                for label, each in entry["optimizers"].items():
                    info["optimizers"][label]["speedup"] = each["speedup"]
            for label, each in entry["optimizers"].items():
                speedup = each["speedup"]
                rows.append(
                    {
                        "problem": problem.spec,
                        "horizon": horizon.horizon,
                        "total_steps": problem.total_steps,
                        "optimizer": label,
                        "median": speedup["median"],
                        "ci95": speedup["ci95"],
                        "grad_evals": {k: speedup["grad_evals"][k] for k in ("median", "ci95")},
                        "reached": speedup["reached"],
                        "loss_ratio": speedup["loss_ratio"],
                        "verdict": speedup["verdict"],
                        "best_lr": each["best_lr"],
                        "baseline_lr": entry["baseline_lr"],
                        "tuning_runs": tuning_runs(data.settings, len(problem.seeds)),
                    }
                )
    summary["verdict"] = {
        "baseline": baseline,
        "horizons": [h.horizon for h in horizons],
        "tuning": _tuning_text(data.settings),
        "schedule": _schedule_text(data.settings),
        "rows": rows,
    }
    summary["notes"]["speedup"] = (
        "per seed: the steps the baseline needs to reach its own final loss ÷ the steps this optimizer "
        "needs (first evaluation at or below it, interpolated linearly between evaluations); 0 = never "
        "reaches it, null = +∞; median over seeds, ci95 a seeded bootstrap interval of the median; "
        "grad_evals and seconds alike (seconds as runs store them: a batched replica's is its batch's "
        "time ÷ its size, so they compare fairly only between runs trained the same way)"
    )
