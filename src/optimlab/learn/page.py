"""The course's pages: one demonstration (``learn-NAME.html``) or the whole course (``learn.html``),
each section with the claims it checks (quoted from the seed posts, translated), its verdicts, its
numbers and its figures (PNG twins under ``figures/``), in one language."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from optimlab.learn.demo import VERDICT_WORDS, Demo, Outcome, Text
from optimlab.reports.html import Page
from optimlab.reports.output import Output

__all__ = ["COURSE_PAGE", "demo_page", "write_pages"]

#: the page of ``optimlab learn --all``
COURSE_PAGE = "learn.html"

_WORDS = {
    "course": Text(
        "Learn why: the mechanisms of the seed posts, measured", "学其所以然：实测种子文章讲的机制"
    ),
    "course_sub": Text(
        "Each demonstration checks claims of the seed posts with optimlab's own optimizer rules, on "
        "problems it generates; its verdict says confirmed, only partly true or wrong.",
        "每个演示都用 optimlab 自己的优化器规则、在它生成的问题上，检验种子文章里的说法；"
        "结论分为成立、部分成立或错误。",
    ),
    "claim": Text("The claim", "原文说法"),
    "verdict": Text("Verdict", "结论"),
    "correct": Text("What is true", "正确的说法"),
    "reference": Text("Reference", "参考"),
    "numbers": Text("The numbers", "测得的数字"),
    "run": Text("Run it yourself", "自己运行"),
}


def demo_page(page_name: str) -> str:
    """The file name of one demonstration's page."""
    return f"learn-{page_name}.html"


def _section(out: Output, demo: Demo, outcome: Outcome, lang: str) -> None:
    page = out.page
    page.section(f"{demo.order}. {demo.title(lang)}")
    page.text(demo.summary(lang))
    for verdict in outcome.verdicts:
        claim = verdict.claim
        quote = f"“{claim.quote}”" + ("" if lang == "zh" else f" — “{claim.translation}”")
        page.callout(f"{quote} ({claim.post})", title=f"{_WORDS['claim'](lang)}:")
        page.text(f"{_WORDS['verdict'](lang)}: {VERDICT_WORDS[verdict.kind](lang)}. {verdict.evidence(lang)}")
        if verdict.correction is not None:
            page.text(f"{_WORDS['correct'](lang)}: {verdict.correction(lang)}")
        if verdict.reference is not None:
            page.text(f"{_WORDS['reference'](lang)}: {verdict.reference}", note=True)
    if outcome.columns:
        page.table(list(outcome.columns), [list(r) for r in outcome.rows], caption=_WORDS["numbers"](lang))
    for k, figure in enumerate(outcome.figures, start=1):
        out.figure(figure.twin, out.name("learn", demo.name, str(k)), caption=figure.caption(lang))
    for note in outcome.notes:
        page.text(note(lang), note=True)
    page.callout("", title=f"{_WORDS['run'](lang)}:", code=f"optimlab learn {demo.name} --lang {lang}")


def write_pages(
    done: Sequence[tuple[Demo, Outcome]],
    out_dir: str | Path,
    *,
    lang: str = "en",
    course: bool,
    png: bool = True,
) -> list[Path]:
    """Write one page per demonstration of ``done`` (``course=False``: a single one) or the course page
    holding them all; returns the files written, the page last."""
    if course:
        title, subtitle, filename = _WORDS["course"](lang), _WORDS["course_sub"](lang), COURSE_PAGE
    else:
        ((demo, _),) = done
        title, subtitle, filename = demo.title(lang), demo.summary(lang), demo_page(demo.name)
    out = Output(Page(title, subtitle=subtitle, lang=lang), out_dir, filename, static=png)
    for demo, outcome in done:
        _section(out, demo, outcome, lang)
    out.write()
    return out.written
