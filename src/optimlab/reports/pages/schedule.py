"""``schedule.html``: the learning rate of torch's schedulers over steps, several overlaid, and each
ReduceLROnPlateau driven by the loss of a real run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from optimlab.reports.figures.schedule import ScheduleFigure, zero_lr_text
from optimlab.reports.figures.style import color_map
from optimlab.reports.html import Page
from optimlab.reports.output import Output
from optimlab.reports.protocol import versions_line

__all__ = ["write_schedule_page"]


_METRIC = "loss after each epoch"


def _units(specs: Iterable[str]) -> dict[str, str]:
    """What one scheduler step of each schedule spec is in training: an epoch or a step (a batch)."""
    from optimlab.lab.schedules import parse_schedule  # the schedule command has loaded it already

    units = {}
    for text in specs:
        try:
            spec = parse_schedule(text)
        except ValueError:
            spec = None
        units[text] = "epoch" if spec is None or spec.interval == "epoch" else "step"
    return units


def write_schedule_page(
    curves: Mapping[str, Sequence[float]],
    out_dir: str | Path,
    *,
    lr: float,
    steps: int,
    plateau: Mapping[str, tuple[Sequence[float], Sequence[float], str]] | None = None,
    units: Mapping[str, str] | None = None,
) -> list[Path]:
    """``out_dir/schedule.html``: the learning rate over ``steps`` scheduler steps for every schedule
    (``spec -> lr per step``) in one figure — per-epoch schedules against epochs, per-batch ones against
    steps (``units``: ``spec -> "epoch" or "step"``; default: read off each spec) — and for each
    ``plateau`` spec a figure of its lr with the metric that drove it (``spec -> (lr per epoch, metric
    per epoch, where the metric came from)``). A schedule that holds the lr at 0 is drawn, and the page
    warns about it. Returns the files written, the page last."""
    if not curves:
        raise ValueError("no schedules to draw")
    plateau = dict(plateau or {})
    units = dict(units) if units is not None else _units(curves)
    page = Page(
        "learning-rate schedules",
        subtitle=f"{len(curves)} schedule{'s' if len(curves) != 1 else ''} from lr {lr:g} over {steps} "
        "steps, built on torch.optim.lr_scheduler",
    )
    out = Output(page, out_dir, "schedule.html")
    colors = color_map(list(curves))
    page.section("Schedules")
    page.text(
        f"The learning rate in force at each of {steps} scheduler steps, starting from lr {lr:g}: every "
        "schedule is torch's own scheduler (torch.optim.lr_scheduler) stepping an optimizer. Schedules "
        "that step once per epoch in training (step, multistep, exponential, cosine, plateau, lambda) are "
        "drawn against epochs, those that step once per batch (onecycle, warmup, warmup-cosine) against "
        "steps."
        + (
            " ReduceLROnPlateau (plateau) needs a metric: its lr comes from a real training run, whose "
            "loss after each epoch drove the scheduler (figures below)."
            if plateau
            else ""
        )
    )
    for spec, values in curves.items():
        warning = zero_lr_text(spec, values, units.get(spec, "step"))
        if warning:
            page.callout(warning, title="A learning rate of 0.")
    title = "learning rate per scheduler step" + (
        " (plateau: driven by a real run's loss)" if plateau else ""
    )
    out.figure(
        ScheduleFigure(curves, title=title, colors=colors, units=units),
        out.name("schedule"),
        caption="One line per schedule; the lr holds until the next scheduler step. Buttons switch the lr "
        "axis between linear and log (which shows fast decays such as exponential, and leaves out an lr "
        "of 0).",
    )
    for spec, (lrs, metric, source) in plateau.items():
        ptitle = f"{spec}: driven by the loss of a real run"
        out.figure(
            ScheduleFigure(
                {spec: lrs}, title=ptitle, colors=colors, x_title="epoch", metric=(_METRIC, metric)
            ),
            out.name("schedule", spec),
            caption=f"{source}. ReduceLROnPlateau reads the loss after each epoch (dotted, right axis) and "
            "cuts the lr when it has not improved for `patience` epochs.",
        )
    page.section("Settings")
    page.key_values({"initial lr": lr, "steps": steps, "versions": versions_line()})
    out.write()
    return out.written
