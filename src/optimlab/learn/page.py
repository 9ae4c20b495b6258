"""The course's pages: one demonstration (``learn-NAME.html``) or the whole course (``learn.html``),
each section with the claims it checks (quoted from the seed posts, translated), its verdicts, its
numbers and its figures (PNG twins under ``figures/``), in one language."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from optimlab.learn.demo import VERDICT_WORDS, Demo, Outcome, Text
from optimlab.reports.html import Page
from optimlab.reports.output import Output

__all__ = ["COURSE_PAGE", "GUIDE_PAGE", "demo_page", "write_guide", "write_pages"]

#: the page of ``optimlab learn --all``
COURSE_PAGE = "learn.html"
#: the page of ``optimlab learn guide``
GUIDE_PAGE = "learn-guide.html"

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
    "guide": Text("The optimizers: a guide", "优化器指南"),
    "guide_sub": Text(
        "Each optimizer's update, defaults and memory, read off optimlab's code; what it is good and bad "
        "at, and the demonstrations that show it.",
        "每个优化器的更新公式、默认值和内存开销，直接取自 optimlab 的代码；以及它擅长和不擅长什么，"
        "和展示这些的演示。",
    ),
    "good": Text("Good at", "擅长"),
    "bad": Text("Bad at", "不擅长"),
    "state": Text("State per parameter", "每个参数的状态"),
    "none": Text("none", "无"),
    "shown": Text("Shown by", "演示"),
    "posts": Text("Discussed in seed posts", "讨论它的种子文章"),
    "defaults": Text("Defaults", "默认值"),
    "momentum_only": Text("with momentum only", "仅在使用动量时"),
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


def _guide(page: Page, lang: str) -> None:
    from optimlab.learn.guide import entries

    page.section(_WORDS["guide"](lang))
    page.text(_WORDS["guide_sub"](lang))
    for entry in entries():
        notes = entry.notes
        page.section(f"{entry.name} — {entry.summary}", level=3)
        page.callout("", code=entry.formula)
        state = ", ".join(f"{k} ({v} bytes)" for k, v in entry.state.items()) or _WORDS["none"](lang)
        if entry.name == "SGD":
            state += f" — {_WORDS['momentum_only'](lang)}"
        page.key_values(
            {
                _WORDS["defaults"](lang): ", ".join(f"{k}={v!r}" for k, v in entry.defaults.items()),
                _WORDS["state"](lang): state,
                _WORDS["good"](lang): notes.good(lang),
                _WORDS["bad"](lang): notes.bad(lang),
                _WORDS["shown"](lang): ", ".join(f"optimlab learn {d}" for d in notes.demos) or "–",
                _WORDS["posts"](lang): ", ".join(notes.posts) or "–",
                _WORDS["reference"](lang): entry.references or "–",
            }
        )


def write_guide(out_dir: str | Path, *, lang: str = "en") -> list[Path]:
    """Write ``learn-guide.html``, the optimizer guide alone; returns the files written, the page last."""
    out = Output(
        Page(_WORDS["guide"](lang), subtitle=_WORDS["guide_sub"](lang), lang=lang), out_dir, GUIDE_PAGE
    )
    _guide(out.page, lang)
    out.write()
    return out.written


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
    if course:
        _guide(out.page, lang)
    out.write()
    return out.written
