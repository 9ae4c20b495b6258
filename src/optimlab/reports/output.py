"""A page with its static figures: every interactive figure also goes to ``figures/NAME.png`` (and, for
animations, ``figures/NAME.gif`` when asked), linked from the figure's caption by a relative path.

Several commands may write into one folder (``report.html``, ``surface.html``, ``schedule.html``,
``lr_find.html`` share ``figures/``), so each page records the files it wrote in a small manifest,
``figures/.PAGE.json``. A page's next run removes the files its previous run wrote and this one did
not (stale figures do not pile up), and never takes a name another page's manifest lists (commands do
not overwrite each other's figures). Files no manifest lists are never touched. Each figure's rendering is
kept in ``figures/.cache/PAGE/`` and reused while its content and the code are unchanged
(:mod:`optimlab.reports.figure_cache`); a page without figure files (``static=False``, no GIFs)
keeps none.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from optimlab.reports.figure_cache import CACHE, FigureCache, content_key, file_digest
from optimlab.reports.figures.base import Twin
from optimlab.reports.html import Page, figure_json
from optimlab.reports.renderer import Draw, Renderer, finish

__all__ = ["FIGURES", "Output", "slug"]

#: the folder (next to the page) that holds the PNG and GIF files
FIGURES = "figures"
_FIGURE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.(png|gif)")


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``.``, ``_`` and ``-``)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-._")[:limit].strip("-._")
    return out or "figure"


def _listed(manifest: Path) -> set[str]:
    """The figure files a manifest lists (nothing for a missing or unreadable one: then nothing is
    known to be the page's)."""
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {f for f in files if isinstance(f, str) and _FIGURE_FILE.fullmatch(f)}


class Output:
    """Write a :class:`Page` as ``out_dir/filename`` with its figures' static twins under
    ``out_dir/figures``.

    ``static=False`` skips the PNG files; ``gif=True`` writes the animations' GIFs too. ``written``
    lists every file written, the page last. With a ``renderer``
    (:class:`~optimlab.reports.renderer.Renderer`) the files are drawn in its process while this one
    goes on building the page, and :meth:`write` waits for them.
    """

    def __init__(
        self,
        page: Page,
        out_dir: str | Path,
        filename: str,
        *,
        static: bool = True,
        gif: bool = False,
        renderer: Renderer | None = None,
    ) -> None:
        self.page = page
        self.dir = Path(out_dir)
        self.filename = filename
        self.static = static
        self.gif = gif
        self.renderer = renderer
        #: figures whose files the renderer draws: (name, key, Plotly JSON, height, their files)
        self._drawing: list[tuple[str, str | None, str, int, list[tuple[str, Any, Any, Path]]]] = []
        self.written: list[Path] = []
        self._names: set[str] = set()
        self._others = self._claimed_by_other_pages()
        self.cache = FigureCache(self.figures_dir / CACHE / slug(Path(filename).stem))

    @property
    def figures_dir(self) -> Path:
        return self.dir / FIGURES

    @property
    def manifest(self) -> Path:
        """``figures/.PAGE.json``: the figure files this page wrote last."""
        return self.figures_dir / f".{Path(self.filename).stem}.json"

    def _claimed_by_other_pages(self) -> set[str]:
        if not self.figures_dir.is_dir():
            return set()
        claimed: set[str] = set()
        for manifest in self.figures_dir.glob(".*.json"):
            if manifest.name != self.manifest.name:
                claimed |= _listed(manifest)
        return claimed

    def name(self, *parts: str) -> str:
        """A file stem made of ``parts`` (user text is made safe), unique on this page and not one
        another page's figures use."""
        base = "-".join(slug(p) for p in parts if p)
        name, k = base, 2
        while name in self._names or {f"{name}.png", f"{name}.gif"} & self._others:
            name, k = f"{base}-{k}", k + 1
        self._names.add(name)
        return name

    def figure(self, figure: Twin, name: str, *, caption: str | None = None) -> None:
        """Add ``figure`` to the page, its PNG as ``figures/NAME.png`` and, when it animates and the
        output asks for GIFs, its GIF as ``figures/NAME.gif``. What an earlier run rendered of the same
        figure (same content, same code: :mod:`~optimlab.reports.figure_cache`) is reused."""
        key = content_key(figure) if self.static or self.gif else None  # kept with the figure files
        entry = self.cache.get(name, key)
        files: dict[str, str] = {}
        wanted = [("png", "PNG", figure.png)] if self.static else []
        gif = getattr(figure, "gif", None)
        if self.gif and gif is not None:
            wanted.append(("gif", "GIF", gif))
        files_of: list[tuple[str, Future | None, Draw | None, Path]] = []  # (kind, drawn by, draw, path)
        for kind, label, render in wanted:
            path = self.figures_dir / f"{name}.{kind}"
            if self.cache.reusable(entry, kind, path):
                files_of.append((kind, None, None, path))
            elif self.renderer is not None:
                files_of.append((kind, self.renderer.draw(render, path), render, path))
            else:
                render(path)
                files_of.append((kind, None, None, path))
            self.written.append(path)
            files[label] = f"{FIGURES}/{name}.{kind}"
        if entry:
            spec, height = entry["plotly"], int(entry["height"])
        else:
            spec, height = figure_json(figure.plotly())
        if any(draw is not None for _, _, draw, _ in files_of):
            self._drawing.append((name, key, spec, height, files_of))  # recorded when drawn (write)
        else:
            self._record(name, key, spec, height, files_of)
        self.page.figure_spec(spec, height, caption=caption, files=files or None)

    def _record(
        self, name: str, key: str | None, spec: str, height: int, files_of: list[tuple[str, Any, Any, Path]]
    ) -> None:
        """Keep figure ``name``'s rendering in the cache, with the digests of its files as written."""
        digests = {kind: digest for kind, _, _, path in files_of if (digest := file_digest(path)) is not None}
        self.cache.put(name, key, spec, height, digests)

    def write(self) -> Path:
        """Write the page as ``out_dir/filename`` (once the renderer has drawn its files), remove the
        figures its previous run wrote and this one did not, and record this run's; returns the page's
        path."""
        drawing, self._drawing = self._drawing, []
        for name, key, spec, height, files_of in drawing:
            for _, future, draw, path in files_of:
                if draw is not None:
                    finish(future, draw, path)
            self._record(name, key, spec, height, files_of)
        path = self.page.write(self.dir / self.filename)
        mine = {p.name for p in self.written}
        for stale in _listed(self.manifest) - mine - self._others:
            (self.figures_dir / stale).unlink(missing_ok=True)
        if mine:
            tmp = self.manifest.with_name(self.manifest.name + ".tmp")
            tmp.write_text(
                json.dumps({"page": self.filename, "files": sorted(mine)}) + "\n", encoding="utf-8"
            )
            os.replace(tmp, self.manifest)
        else:
            self.manifest.unlink(missing_ok=True)
        self.cache.prune()
        self.written.append(path)
        return path
