"""What a demonstration is: the claim of a seed post it checks, how it runs, and what it found.

A :class:`Demo` runs on problems optimlab generates, with the rules of :mod:`optimlab.optim`, and
returns an :class:`Outcome`: its headline numbers (``optimlab learn NAME --json``), the figures that
show the mechanism, a table, and a :class:`Verdict` on each claim — **confirmed**, **only partly
true** or **wrong**, with the correct statement and a reference where it is not confirmed.

Prose comes in the course's languages (:data:`LANGUAGES`): a :class:`Text` holds one string per
language. Figures keep their labels in English and mathematical notation in every language (the
PNG twins are drawn with fonts that have no Chinese glyphs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from optimlab.reports.figures.base import Twin

__all__ = ["LANGUAGES", "Claim", "Demo", "Outcome", "Text", "Verdict", "text"]

#: the languages of the course: English (the default) and Chinese, for the seed posts' readers
LANGUAGES = ("en", "zh")

VerdictKind = Literal["confirmed", "partly", "wrong"]


@dataclass(frozen=True)
class Text:
    """One piece of prose in every language of :data:`LANGUAGES`."""

    en: str
    zh: str

    def __post_init__(self) -> None:
        if not self.en.strip() or not self.zh.strip():
            raise ValueError(f"a Text needs both an English and a Chinese version, got {self!r}")

    def __call__(self, lang: str) -> str:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}; choose {' or '.join(LANGUAGES)}")
        return getattr(self, lang)


def text(en: str, zh: str) -> Text:
    """``Text(en, zh)``, shorter to write."""
    return Text(en, zh)


@dataclass(frozen=True)
class Claim:
    """A claim of a seed post, quoted: the post's file name, the sentence as written (Chinese) and its
    English translation."""

    post: str
    quote: str
    translation: str


@dataclass(frozen=True)
class Verdict:
    """What a demonstration found about a :class:`Claim`: ``kind``, the measured evidence in words,
    and where the claim is not confirmed the correct statement and a reference (a paper, torch's
    documentation)."""

    claim: Claim
    kind: VerdictKind
    evidence: Text
    correction: Text | None = None
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("confirmed", "partly", "wrong"):
            raise ValueError(f"a verdict is confirmed, partly or wrong, got {self.kind!r}")
        if self.kind != "confirmed" and (self.correction is None or self.reference is None):
            raise ValueError("a claim found wrong or only partly true needs its correction and a reference")


#: how each verdict reads, per language
VERDICT_WORDS: Mapping[str, Text] = {
    "confirmed": Text("confirmed", "成立"),
    "partly": Text("only partly true", "部分成立"),
    "wrong": Text("wrong", "错误"),
}


@dataclass(frozen=True)
class Figure:
    """A figure of an outcome and its caption."""

    twin: Twin
    caption: Text


@dataclass(frozen=True)
class Outcome:
    """What a demonstration measured: ``numbers`` (a JSON object: the ``--json`` output; a value per
    β, optimizer or variant is a nested object keyed by its name), its figures, its verdicts and a
    table (``columns``, ``rows``) of the numbers for the terminal and the page."""

    numbers: Mapping[str, Any]
    verdicts: Sequence[Verdict]
    figures: Sequence[Figure]
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    notes: Sequence[Text] = field(default_factory=tuple)


@dataclass(frozen=True)
class Demo:
    """One demonstration: its CLI ``name``, its place in the course (``order``: the order the seed
    posts teach it), a ``title`` and a one-line ``summary``, the claims it checks, and ``run()``,
    which measures and returns the :class:`Outcome` (the same numbers whatever the language)."""

    name: str
    order: int
    title: Text
    summary: Text
    claims: Sequence[Claim]
    run: Callable[[], Outcome]

    def __post_init__(self) -> None:
        if not self.claims:
            raise ValueError(f"demonstration {self.name!r} checks no claim of the seed posts")
