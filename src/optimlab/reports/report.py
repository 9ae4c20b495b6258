"""``report.html``: a simple, self-contained report of one comparison (tables + inline SVG charts).

Entry point: :func:`write_report`. It reads a :class:`~optimlab.lab.results.ComparisonData` (loaded
from storage) and its summary; it trains nothing and needs no network (no external scripts, fonts
or images).
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optimlab.lab.results import ComparisonData, summarize

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem;line-height:1.45}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}.muted{color:#666}.note{background:#fff8e1;border:1px solid #f0d98c;
padding:.7rem 1rem;border-radius:4px}code{background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.swatch{display:inline-block;width:.8rem;height:.8rem;
margin-right:.3rem;vertical-align:middle}svg text{font-size:11px;fill:#333}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return "∞"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e9):
        return f"{int(value)}"
    return f"{value:.{digits}g}"


def _metric(value: float | None) -> str:
    """A metric cell: ``–`` when no run has the value (e.g. every run diverged)."""
    return "–" if value is None else _num(value, 3)


def _color(index: int, name: str | None = None, colors: Mapping[str, str] | None = None) -> str:
    """The color of series ``name`` (from ``colors`` when given, so one optimizer keeps its color
    across charts), else of position ``index``."""
    if colors is not None and name is not None and name in colors:
        return colors[name]
    return PALETTE[index % len(PALETTE)]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_y: bool | None = None,
    y_max: float | None = None,
    colors: Mapping[str, str] | None = None,
    width: int = 520,
    height: int = 320,
) -> str:
    """An inline SVG line chart of ``(name, xs, ys)`` series (``None``/non-finite points are gaps).

    ``log_y=None`` picks a log axis when every value is positive and they span > 2 decades;
    values above ``y_max`` (e.g. a diverging run) are left out so that they do not squash the rest."""

    def shown(y: float | None) -> bool:
        return y is not None and math.isfinite(y) and (y_max is None or y <= y_max)

    points = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=False) if shown(y)]
    if not points:
        return f'<p class="muted">{_e(title)}: no finite values to plot.</p>'
    ys_all = [y for _, y in points]
    if log_y is None:
        log_y = min(ys_all) > 0 and max(ys_all) / min(ys_all) > 100
    if log_y and min(ys_all) <= 0:
        log_y = False

    def ty(y: float) -> float:
        return math.log10(y) if log_y else y

    x_lo, x_hi = min(x for x, _ in points), max(x for x, _ in points)
    y_lo, y_hi = min(ty(y) for y in ys_all), max(ty(y) for y in ys_all)
    if x_hi == x_lo:
        x_hi = x_lo + 1
    if y_hi == y_lo:
        y_hi, y_lo = y_hi + 0.5, y_lo - 0.5
    left, right, top, bottom = 62, 10, 24, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y: float) -> float:
        return top + ph - (ty(y) - y_lo) / (y_hi - y_lo) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(title)}">',
        f'<text x="{left}" y="14" style="font-weight:600">{_e(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>',
    ]
    for t in _ticks(y_lo, y_hi):
        y = top + ph - (t - y_lo) / (y_hi - y_lo) * ph
        label = _num(10**t, 2) if log_y else _num(t, 3)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_e(label)}</text>'
        )
    for t in _ticks(x_lo, x_hi):
        x = sx(t)
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle">{_e(_num(t, 3))}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{_e(x_label)}</text>')
    out.append(
        f'<text transform="translate(12,{top + ph / 2}) rotate(-90)" text-anchor="middle">'
        f"{_e(y_label)}{' (log)' if log_y else ''}</text>"
    )
    for index, (name, xs, ys) in enumerate(series):
        segments: list[list[str]] = [[]]
        for x, y in zip(xs, ys, strict=False):
            if not shown(y) or (log_y and y <= 0):
                segments.append([])
                continue
            segments[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
        for segment in segments:
            if len(segment) == 1:
                cx, cy = segment[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{_color(index, name, colors)}"/>')
            elif segment:
                out.append(
                    f'<polyline fill="none" stroke="{_color(index, name, colors)}" stroke-width="1.6" '
                    f'points="{" ".join(segment)}"><title>{_e(name)}</title></polyline>'
                )
    out.append("</svg>")
    return "".join(out)


def trajectory_chart(
    problem_window: Any,
    runs: Sequence[tuple[str, list[list[float]] | None]],
    minima: Sequence[Sequence[float]],
    title: str,
    colors: Mapping[str, str] | None = None,
    size: int = 360,
) -> str:
    """An inline SVG of 2-D trajectories (seed 0 of each optimizer) with the known minima (×)."""
    (x_lo, x_hi), (y_lo, y_hi) = problem_window
    pad = 30

    def sx(x: float) -> float:
        return pad + (x - x_lo) / (x_hi - x_lo) * (size - 2 * pad)

    def sy(y: float) -> float:
        return size - pad - (y - y_lo) / (y_hi - y_lo) * (size - 2 * pad)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
        f'aria-label="{_e(title)}"><text x="{pad}" y="16" style="font-weight:600">{_e(title)}</text>',
        f'<rect x="{pad}" y="{pad}" width="{size - 2 * pad}" height="{size - 2 * pad}" fill="#fafafa" '
        f'stroke="#bbb"/>',
        f'<text x="{pad}" y="{size - 10}">x ∈ [{x_lo:g}, {x_hi:g}], y ∈ [{y_lo:g}, {y_hi:g}]</text>',
    ]
    for index, (name, trajectory) in enumerate(runs):
        if not trajectory:
            continue
        segments: list[list[str]] = [[]]  # a trajectory leaving the window is cut, not joined across
        for x, y in trajectory:
            if math.isfinite(x) and math.isfinite(y) and x_lo <= x <= x_hi and y_lo <= y <= y_hi:
                segments[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
            elif segments[-1]:
                segments.append([])
        for segment in segments:
            if len(segment) > 1:
                out.append(
                    f'<polyline fill="none" stroke="{_color(index, name, colors)}" stroke-width="1.3" '
                    f'stroke-opacity=".85" points="{" ".join(segment)}"><title>{_e(name)}</title></polyline>'
                )
    for mx, my in minima:
        out.append(
            f'<text x="{sx(mx):.1f}" y="{sy(my) + 4:.1f}" text-anchor="middle" '
            f'style="font-size:14px;fill:#000">×</text>'
        )
    first = next((t for _, t in runs if t), None)
    if first:
        out.append(f'<circle cx="{sx(first[0][0]):.1f}" cy="{sy(first[0][1]):.1f}" r="4" fill="#000"/>')
    out.append("</svg>")
    return "".join(out)


def _legend(labels: Sequence[str], colors: Mapping[str, str] | None = None) -> str:
    return (
        "<p>"
        + " ".join(
            f'<span style="white-space:nowrap;margin-right:.8rem"><span class="swatch" '
            f'style="background:{_color(i, label, colors)}"></span>{_e(label)}</span>'
            for i, label in enumerate(labels)
        )
        + "</p>"
    )


def _settings_html(data: ComparisonData) -> str:
    s = data.settings
    rows = [
        ("protocol", s.get("protocol")),
        ("seeds", s.get("seeds")),
        ("lr grid", s.get("lr_grid") or "–"),
        ("Optuna trials per optimizer", s.get("trials") or "–"),
        ("budget", s.get("budget") or "each problem's default"),
        ("schedule", s.get("schedule") or "constant lr"),
        ("regularization", s.get("regularization") or "none"),
        ("defaults", s.get("defaults")),
        ("database", data.db_path),
        ("comparison id", data.id),
    ]
    return (
        "<table>"
        + "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>' for k, v in rows)
        + "</table>"
    )


def _problem_html(
    problem: Any, summary: dict[str, Any], surfaces: dict[str, Any], colors: Mapping[str, str]
) -> str:
    from optimlab.lab.problems import get_problem

    info = summary["problems"][problem.spec]
    ranking = info["ranking"]
    opts = info["optimizers"]
    metric_names = sorted({m for label in ranking for m in opts[label]["metrics"]})
    parts = [
        f'<h2 id="{_e(problem.spec)}">{_e(problem.spec)}</h2>',
        f"<p>{_e(problem.description)}. Target loss {_e(_num(problem.target_loss))}; budget "
        f"{_e(problem.total_steps)} steps ({_e(problem.steps_per_epoch)} per epoch); "
        + (
            "deterministic: one run per configuration (every seed gives the same numbers)."
            if problem.deterministic
            else f"seeds {_e(', '.join(map(str, problem.seeds)))}."
        )
        + "</p>",
    ]
    head = (
        "<tr><th>rank</th><th class='l'>optimizer</th><th>lr</th><th>final loss (median)</th>"
        "<th>IQR</th><th>95% CI</th><th>diverged</th><th>steps to target</th><th>grad evals to target</th>"
        "<th>reached</th><th>wall s / run</th>" + "".join(f"<th>{_e(m)}</th>" for m in metric_names) + "</tr>"
    )
    rows = []
    for label in ranking:
        o = opts[label]
        fl = o["final_loss"]
        rows.append(
            f"<tr><td>{o['rank']}</td><td class='l'>{_e(label)}</td><td>{_e(_num(o['best_lr'], 3))}</td>"
            f"<td>{_e(_num(fl['median']))}</td><td>[{_e(_num(fl['q25']))}, {_e(_num(fl['q75']))}]</td>"
            f"<td>[{_e(_num(fl['ci95'][0]))}, {_e(_num(fl['ci95'][1]))}]</td>"
            f"<td>{o['diverged_runs']}/{o['runs']}</td><td>{_e(_num(o['steps_to_target']))}</td>"
            f"<td>{_e(_num(o['evals_to_target']))}</td><td>{o['target_reached']}/{o['runs']}</td>"
            f"<td>{_e(_num(o['wall_s'], 3))}</td>"
            + "".join(f"<td>{_e(_metric(o['metrics'].get(m)))}</td>" for m in metric_names)
            + "</tr>"
        )
    parts.append("<table>" + head + "".join(rows) + "</table>")
    by_label = {o.label: o for o in problem.optimizers}
    series = [(label, opts[label]["curve"]["steps"], opts[label]["curve"]["median"]) for label in by_label]
    starts = [ys[0] for _, _, ys in series if ys and ys[0] is not None]
    # diverging runs climb to huge losses before they are stopped: keep them from squashing the axis
    y_max = 10 * max(abs(v) for v in starts) if starts else None
    charts = [
        line_chart(
            series,
            title=f"{problem.spec}: median loss over seeds",
            x_label="step",
            y_label="loss",
            y_max=y_max,
            colors=colors,
        )
    ]
    step_series = []
    for label, o in by_label.items():
        if o.runs:
            losses = [r.losses for r in o.runs]
            length = max(len(v) for v in losses)
            med = []
            for i in range(length):
                column = sorted(v[i] if i < len(v) and math.isfinite(v[i]) else math.inf for v in losses)
                med.append(column[len(column) // 2])
            stride = max(1, length // 400)
            step_series.append((label, list(range(0, length, stride)), med[::stride]))
    charts.append(
        line_chart(
            step_series,
            title="training loss per step (median)",
            x_label="step",
            y_label="mini-batch loss",
            y_max=y_max,
            colors=colors,
        )
    )
    if problem.name in surfaces:
        try:
            surface = get_problem(problem.spec)
            runs = [(label, o.runs[0].trajectory if o.runs else None) for label, o in by_label.items()]
            charts.append(
                trajectory_chart(
                    surface.window,
                    runs,
                    surface.minima,
                    f"{problem.spec}: trajectories (seed {problem.seeds[0]})",
                    colors=colors,
                )
            )
        except (ValueError, AttributeError):
            pass
    parts.append('<div class="charts">' + "".join(charts) + "</div>" + _legend(list(by_label), colors))
    grid_rows = [(label, o) for label, o in opts.items() if o.get("lr_sensitivity")]
    if grid_rows:
        lrs = sorted({g["lr"] for _, o in grid_rows for g in o["lr_sensitivity"]})
        parts.append(
            "<h3>sensitivity to the learning rate (median final loss over seeds)</h3><table><tr>"
            "<th class='l'>optimizer</th>" + "".join(f"<th>{_e(_num(lr, 3))}</th>" for lr in lrs) + "</tr>"
        )
        for label, o in grid_rows:
            cells = {g["lr"]: g for g in o["lr_sensitivity"]}
            parts.append(
                f"<tr><td class='l'>{_e(label)}</td>"
                + "".join(f"<td>{_e(_num(cells[lr]['median'], 3)) if lr in cells else ''}</td>" for lr in lrs)
                + "</tr>"
            )
        parts.append("</table>")
    trial_rows = [(label, o) for label, o in opts.items() if o.get("trials")]
    if trial_rows:
        parts.append(
            "<h3>Optuna: best configuration per optimizer</h3><table><tr><th class='l'>optimizer</th>"
            "<th>trials</th><th class='l'>chosen hyperparameters</th></tr>"
        )
        for label, o in trial_rows:
            parts.append(
                f"<tr><td class='l'>{_e(label)}</td><td>{len(o['trials'])}</td>"
                f"<td class='l'>{_e(o['hyper'])}</td></tr>"
            )
        parts.append("</table>")
    return "".join(parts)


def write_report(data: ComparisonData, out_dir: str | Path, summary: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/report.html`` for ``data`` (``summary`` defaults to
    :func:`optimlab.lab.results.summarize` of it); returns the path. The page is self-contained."""
    from optimlab.lab.problems.surfaces import SURFACES

    summary = summary or summarize(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_optimizers = len(data.settings.get("optimizers", []))
    labels_in_order = [o["label"] for o in data.settings.get("optimizers", [])]
    colors = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels_in_order)}
    written = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>optimlab comparison</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>optimlab comparison</h1>",
        f"<p class='muted'>{_e(len(data.problems))} problem(s) × {_e(n_optimizers)} optimizer(s), protocol "
        f"<b>{_e(data.settings.get('protocol'))}</b>; written {_e(written)} by optimlab "
        f"{_e(summary['optimlab_version'])}.</p>",
    ]
    if data.one_shot:
        parts.append(
            "<div class='note'><b>This is a one-shot comparison.</b> Every optimizer ran once per seed at "
            "fixed default settings"
            + (
                " (the seed experiment's: lr 0.01 for all, RMSprop α 0.9, Adam-family "
                "betas (0.9, 0.99), L-BFGS max_iter 10)"
                if data.settings.get("defaults") == "seed"
                else ""
            )
            + ". It shows how these particular settings do, not which optimizer is better: an optimizer "
            "with a poorly suited default learning rate loses here whatever its merits. For a fair "
            "comparison give every optimizer the same tuning budget, e.g.:<br><code>"
            f"{_e(summary.get('tuned_command') or '')}</code><br>or "
            "<code>--tune optuna --budget 20</code>.</div>"
        )
    parts.append("<h2>settings</h2>" + _settings_html(data))
    for problem in data.problems:
        parts.append(_problem_html(problem, summary, SURFACES, colors))
    profile = summary["performance_profile"]
    if len(data.problems) >= 1 and profile["steps"]["score"]:
        parts.append(
            "<h2>across problems: performance profile</h2><p>For each problem, an optimizer's cost "
            "(median steps, or gradient evaluations, to the target) divided by the best cost on that "
            "problem; ρ(τ) is the fraction of problems solved within τ × the best. The score is the "
            "area under ρ from 1 to 4, normalized to [0, 1] (AlgoPerf).</p>"
        )
        labels = [label for label in labels_in_order if label in profile["steps"]["score"]]
        parts.append(
            "<table><tr><th class='l'>optimizer</th><th>score (steps)</th><th>score (grad evals)</th>"
            "</tr>"
            + "".join(
                f"<tr><td class='l'>{_e(label)}</td><td>{profile['steps']['score'][label]:.3f}</td>"
                f"<td>{profile['grad_evals']['score'].get(label, 0.0):.3f}</td></tr>"
                for label in sorted(labels, key=lambda s: -profile["steps"]["score"][s])
            )
            + "</table>"
        )
        charts = []
        for cost in ("steps", "grad_evals"):
            p = profile[cost]
            charts.append(
                line_chart(
                    [(label, p["taus"], p["rho"][label]) for label in labels],
                    title=f"performance profile ({cost})",
                    x_label="τ",
                    y_label="ρ(τ)",
                    log_y=False,
                    colors=colors,
                )
            )
        parts.append('<div class="charts">' + "".join(charts) + "</div>" + _legend(labels, colors))
    parts.append(
        "<p class='muted'>Final loss: the full training objective after the last step (a diverged run "
        "counts as ∞). IQR: interquartile range over seeds; CI: 95% bootstrap interval of the median. "
        "Steps to target: first evaluation (once per epoch) at or below the target; ∞ if never.</p>"
    )
    parts.append("</body></html>")
    path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text("".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
