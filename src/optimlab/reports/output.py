"""A page with its static figures: every interactive figure also goes to ``figures/NAME.png`` (and, for
animations, ``figures/NAME.gif`` when asked), linked from the figure's caption by a relative path."""

from __future__ import annotations

import re
from pathlib import Path

from optimlab.reports.figures.base import Twin
from optimlab.reports.html import Page

__all__ = ["FIGURES", "Output", "slug"]

#: the folder (next to the page) that holds the PNG and GIF files
FIGURES = "figures"


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``.``, ``_`` and ``-``)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-._")[:limit].strip("-._")
    return out or "figure"


class Output:
    """Write a :class:`Page` into ``out_dir`` with its figures' static twins under ``out_dir/figures``.

    ``static=False`` skips the PNG files; ``gif=True`` writes the animations' GIFs too.
    ``written`` lists every file written, the page last.
    """

    def __init__(self, page: Page, out_dir: str | Path, *, static: bool = True, gif: bool = False) -> None:
        self.page = page
        self.dir = Path(out_dir)
        self.static = static
        self.gif = gif
        self.written: list[Path] = []
        self._names: set[str] = set()

    @property
    def figures_dir(self) -> Path:
        return self.dir / FIGURES

    def name(self, *parts: str) -> str:
        """A unique file stem made of ``parts`` (user text is made safe)."""
        base = "-".join(slug(p) for p in parts if p)
        name, k = base, 2
        while name in self._names:
            name, k = f"{base}-{k}", k + 1
        self._names.add(name)
        return name

    def figure(self, figure: Twin, name: str, *, caption: str | None = None) -> None:
        """Add ``figure`` to the page, its PNG as ``figures/NAME.png`` and, when it animates and the
        output asks for GIFs, its GIF as ``figures/NAME.gif``."""
        files: dict[str, str] = {}
        if self.static:
            self.written.append(figure.png(self.figures_dir / f"{name}.png"))
            files["PNG"] = f"{FIGURES}/{name}.png"
        gif = getattr(figure, "gif", None)
        if self.gif and gif is not None:
            self.written.append(gif(self.figures_dir / f"{name}.gif"))
            files["GIF"] = f"{FIGURES}/{name}.gif"
        self.page.figure(figure.plotly(), caption=caption, files=files or None)

    def write(self, filename: str) -> Path:
        """Write the page as ``out_dir/filename``; returns its path."""
        path = self.page.write(self.dir / filename)
        self.written.append(path)
        return path
