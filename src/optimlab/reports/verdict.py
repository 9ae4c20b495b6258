"""The Verdict section of ``report.html`` — its first, in a comparison against a baseline: every
optimizer's speed-up over the baseline per problem and horizon, with its 95 % CI, the tuning budget
every optimizer had, the baseline's tuned lr, and plain words where a difference is inside the noise.
The numbers are ``summary.json``'s ``verdict`` (:mod:`optimlab.lab.verdict`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optimlab.reports.html import Page, format_number

__all__ = ["VERDICT_TITLE", "speedup_text", "verdict_section"]

VERDICT_TITLE = "Verdict against the baseline"


def speedup_text(row: Mapping[str, Any]) -> str:
    def number(value: float | None) -> str:
        return "∞" if value is None else format_number(float(value), 3)

    low, high = row["ci95"]
    if row["verdict"] == "no target":
        return "–"
    if row["reached"] == 0:
        return "0× (never reached)"
    median = f"{number(row['median'])}×"
    return median if low == high else f"{median} [{number(low)}, {number(high)}]"


def _flips(rows: list[Mapping[str, Any]]) -> list[str]:
    """``problem · optimizer`` whose verdict is faster at one horizon and slower at another."""
    seen: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        seen.setdefault((row["problem"], row["optimizer"]), set()).add(row["verdict"])
    return [f"{p} · {o}" for (p, o), verdicts in seen.items() if {"faster", "slower"} <= verdicts]


def verdict_section(page: Page, summary: Mapping[str, Any]) -> None:
    """Write the Verdict section from ``summary["verdict"]`` (nothing without one)."""
    verdict = summary.get("verdict")
    if not verdict:
        return
    baseline = verdict["baseline"]
    rows = list(verdict["rows"])
    horizons = verdict["horizons"]
    several = len(horizons) > 1
    page.section(VERDICT_TITLE)
    page.text(
        f"Baseline: {baseline}. Every optimizer, the baseline included, was tuned with the same budget — "
        f"{verdict['tuning']} — at each horizon separately, under {verdict.get('schedule', 'its schedule')}. "
        f"Speed-up: on each seed, the steps {baseline} needs to reach its own final loss ÷ the steps the "
        "optimizer needs to reach that loss (first evaluation at or below it, interpolated between "
        "evaluations); above 1 is faster, 0 never reached it within the budget. Median over seeds, with "
        "a bootstrap 95 % confidence interval over seeds in brackets."
    )
    columns = ["problem"] + (["horizon"] if several else [])
    # gradient evaluations differ from steps where an optimizer spends several a step (L-BFGS)
    evals = any(row["grad_evals"] != {"median": row["median"], "ci95": row["ci95"]} for row in rows)
    columns += ["optimizer", "speed-up [95 % CI]"] + (["in grad evals"] if evals else [])
    columns += ["seeds reached", "final loss ÷ target", "verdict", "tuned lr", "runs tuned"]
    table = []
    highlight = []
    for i, row in enumerate(rows):
        cells: list[object] = [row["problem"]]
        if several:
            cells.append(f"{row['horizon']:g} ({row['total_steps']:,} steps)")
        reached = row["reached"]
        cells += [row["optimizer"], speedup_text(row)]
        if evals:
            cells.append(speedup_text({**row, **row["grad_evals"]}))
        cells += [
            "–" if reached is None else f"{reached:.0%}",
            row.get("loss_ratio"),
            row["verdict"],
            row["best_lr"],
            row["tuning_runs"],
        ]
        table.append(cells)
        if row["verdict"] == "baseline":
            highlight.append(i)
    page.table(
        columns,
        table,
        caption=f"Speed-up over {baseline} per problem"
        + (" and horizon (a fraction of the budget)" if several else "")
        + f"; final loss ÷ target: the median over seeds of its final loss ÷ {baseline}'s (– where a "
        f"run diverged or a loss is ≤ 0); tuned lr: each optimizer's, {baseline}'s own on its highlighted "
        "row; runs tuned: the runs each optimizer had (per horizon)",
        numeric=[False] * (2 if several else 1)
        + [False, True]
        + ([True] if evals else [])
        + [True, True, False, True, True],
        highlight=highlight,
    )
    noise = [r for r in rows if r["verdict"] == "inside the noise"]
    if noise:
        names = ", ".join(
            f"{r['optimizer']} on {r['problem']}" + (f" at horizon {r['horizon']:g}" if several else "")
            for r in noise
        )
        page.callout(
            f"{names}: the 95 % interval contains 1, so the difference from {baseline} is inside the "
            "seed-to-seed noise — these runs do not say which is faster.",
            title="Inside the noise.",
        )
    few = sorted(
        {r["problem"] for r in rows if summary.get("problems", {}).get(r["problem"], {}).get("few_seeds")}
    )
    if few:
        page.callout(
            f"{', '.join(few)}: fewer than 3 seeds — intervals from so few seeds say little about the noise; "
            "use --seeds 3 or more before trusting a verdict.",
            title="Few seeds.",
        )
    one_seed = [r for r in rows if r["verdict"] == "one seed: no CI"]
    if one_seed:
        page.callout(
            "With one seed there is no interval: the speed-ups above say nothing about the noise. "
            "Run more --seeds.",
            title="One seed.",
        )
    flips = _flips(rows)
    if flips:
        page.callout(
            f"{', '.join(flips)}: faster than {baseline} at one horizon and slower at another — the "
            "verdict depends on how long one trains.",
            title="The verdict flips between horizons.",
        )
    lrs = {(r["problem"], r["horizon"]): r["baseline_lr"] for r in rows if r["verdict"] == "baseline"}
    page.text(
        f"{baseline}'s own tuned lr: "
        + "; ".join(
            f"{p}" + (f" at {h:g}" if several else "") + f" {format_number(float(lr), 4)}"
            for (p, h), lr in lrs.items()
        )
        + ".",
        note=True,
    )
