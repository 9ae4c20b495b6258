"""``optimlab learn``: the course — list the demonstrations, run one, or build them all."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

import optimlab.cli.app as cli
from optimlab.cli.output import print_written, table

Lang = StrEnum("Lang", {"en": "en", "zh": "zh"})  # type: ignore[misc]


@cli.app.command()
def learn(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME", help="the demonstration to run (alone: list them)", show_default=False
        ),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="run every demonstration: the course, learn.html")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the headline numbers as one JSON object instead of tables")
    ] = False,
    lang: Annotated[Lang, typer.Option(metavar="en|zh", help="the language of the pages")] = Lang.en,  # type: ignore[valid-type]
    out: Annotated[Path, cli.out_option("learn-NAME.html or learn.html, and figures/")] = Path("runs"),
    png: Annotated[bool, typer.Option("--png/--no-png", help="write each figure as a PNG too")] = True,
) -> None:
    """Demonstrations of the mechanisms the seed posts explain, each with a figure, its numbers and a
    verdict on the posts' claims: optimlab learn (the list), optimlab learn NAME, optimlab learn --all."""
    with cli.errors_as_lines():
        from optimlab.learn.registry import demonstrations, get_demo

        language = getattr(lang, "value", lang)
        if name is not None and all_:
            raise ValueError(f"give a demonstration's name or --all, not both (got {name!r} and --all)")
        if name is None and not all_:
            if as_json:
                listing = {
                    d.name: {"title": d.title(language), "summary": d.summary(language)}
                    for d in demonstrations().values()
                }
                typer.echo(json.dumps(listing, ensure_ascii=False))
                return
            rows = [
                [
                    str(d.order),
                    d.name,
                    d.summary(language),
                    ", ".join(dict.fromkeys(c.post.split("_")[0] for c in d.claims)),
                ]
                for d in demonstrations().values()
            ]
            guide = {
                "en": "the optimizers: update, defaults, memory, strengths",
                "zh": "优化器：更新、默认值、内存、长处",
            }
            rows.append(["", "guide", guide[language], "000–004"])
            cli.console.print(
                table(
                    "demonstrations (optimlab learn NAME)",
                    ["#", "name", "what it shows", "seed posts"],
                    rows,
                    left=("name", "what it shows", "seed posts"),
                )
            )
            return
        if name == "guide":
            from optimlab.learn.guide import entries
            from optimlab.learn.page import write_guide

            cli.check_out_dir(out)
            written = write_guide(out, lang=language)
            rows = [[e.name, e.summary, sum(e.state.values()), e.notes.good(language)] for e in entries()]
            if as_json:
                guide = {e.name: {"defaults": e.defaults, "state_bytes": e.state} for e in entries()}
                typer.echo(json.dumps(jsonable(guide), ensure_ascii=False))
                return
            columns = ["optimizer", "update", "state bytes/param", "good at"]
            cli.console.print(table("the optimizers", columns, rows, left=("optimizer", "update", "good at")))
            print_written(written)
            return
        chosen = list(demonstrations().values()) if all_ else [get_demo(name or "")]
        import torch

        from optimlab.learn.page import write_pages

        torch.set_num_threads(1)
        cli.check_out_dir(out)
        done = []
        for demo in chosen:
            if not as_json:
                with cli.console.status(f"{demo.name}: measuring …"):
                    done.append((demo, demo.run()))
            else:
                done.append((demo, demo.run()))
        written = write_pages(done, out, lang=language, course=all_, png=png)
    if as_json:
        numbers = done[0][1].numbers if not all_ else {d.name: o.numbers for d, o in done}
        typer.echo(json.dumps(jsonable(numbers), ensure_ascii=False, allow_nan=False))
        return
    from optimlab.learn.demo import VERDICT_WORDS

    for demo, outcome in done:
        if outcome.columns:
            cli.console.print(
                table(
                    f"{demo.name} — {demo.title(language)}",
                    list(outcome.columns),
                    [list(r) for r in outcome.rows],
                )
            )
        for verdict in outcome.verdicts:
            said = f"{VERDICT_WORDS[verdict.kind](language)} — {verdict.evidence(language)}"
            cli.console.print(f"{verdict.claim.post}: {said}", markup=False, highlight=False)
    print_written(written)


def jsonable(value: object) -> object:
    """``value`` as JSON: numbers as floats or ints (numpy's and torch's too), a non-finite number as
    ``null`` (as in ``summary.json``: ∞ or diverged), mappings and sequences element by element."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return value
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None
