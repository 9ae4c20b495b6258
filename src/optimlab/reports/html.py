"""A self-contained HTML page: Plotly's JavaScript embedded once, figures, headings, tables, text.

The page works offline from a single file: no CDN, no web fonts, no MathJax, no server. Everything a
caller passes as text (titles, labels, table cells, protocol values) is HTML-escaped; figure JSON sits in
``<script type="application/json">`` blocks with ``<``, ``>`` and ``&`` written as ``\\u003c`` etc., so
no string can close the block. A Content-Security-Policy allows only the page's own two scripts (by
hash) and no network access at all, as a second line of defence.

>>> page = Page("Comparison")
>>> page.section("rosenbrock")
'sec-1'
>>> page.table(["optimizer", "final loss"], [["Adam", 0.0123]])
>>> html_text = page.render()
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline

import optimlab

__all__ = ["PLOTLY_CONFIG", "Page", "figure_json", "format_number", "format_spread", "script_json"]

PLOTLY_CONFIG: dict = {
    "displaylogo": False,
    "responsive": True,
    "scrollZoom": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}

_LOADER = """(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("plotly-config").textContent);
  var interrupted = 0;
  // Pausing an animation makes Plotly reject the running animation's promise without a reason;
  // that is the pause working, not an error.
  window.addEventListener("unhandledrejection", function (event) {
    if (event.reason === undefined && Date.now() - interrupted < 2000) { event.preventDefault(); }
  });
  var nodes = document.querySelectorAll("script[data-figure]");
  Array.prototype.forEach.call(nodes, function (node) {
    var target = document.getElementById(node.getAttribute("data-figure"));
    try {
      var spec = JSON.parse(node.textContent);
      Plotly.newPlot(target, spec.data, spec.layout, config).then(function (gd) {
        if (!spec.frames || !spec.frames.length) { return gd; }
        gd.on("plotly_animationinterrupted", function () { interrupted = Date.now(); });
        return Plotly.addFrames(gd, spec.frames);
      }).then(function () {
        target.setAttribute("data-rendered", "true");
      }).catch(function (err) {
        target.textContent = "This figure could not be drawn: " + err;
        console.error(err);
      });
    } catch (err) {
      target.textContent = "This figure could not be drawn: " + err;
      console.error(err);
    }
  });
})();"""

_CSS = """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --card: #ffffff; --bg: #f5f7fa;
        --accent: #0072B2; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { background: #1f2937; color: #f9fafb; padding: 22px 0 18px; }
header.top .wrap, main.wrap, footer .wrap { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
header.top h1 { margin: 0; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }
header.top p { margin: 6px 0 0; color: #d1d5db; }
nav.toc { margin-top: 14px; display: flex; flex-wrap: wrap; gap: 6px 8px; }
nav.toc a { color: #e5e7eb; text-decoration: none; font-size: 13.5px; padding: 3px 10px;
            border: 1px solid #4b5563; border-radius: 999px; }
nav.toc a:hover { background: #374151; }
main.wrap { padding-top: 20px; padding-bottom: 40px; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
               padding: 18px 22px 10px; margin: 0 0 20px; }
h2 { font-size: 21px; margin: 0 0 10px; font-weight: 650; }
h3 { font-size: 16.5px; margin: 22px 0 8px; font-weight: 620; }
h4 { font-size: 15px; margin: 16px 0 6px; }
p { margin: 6px 0 12px; max-width: 82ch; }
p.note { color: var(--muted); font-size: 13.5px; }
figure { margin: 8px 0 22px; }
figure .plot { width: 100%; min-height: 200px; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 4px; max-width: 100ch; }
figcaption b { color: var(--ink); font-weight: 600; }
figcaption a { color: var(--accent); }
.table-wrap { overflow-x: auto; margin: 6px 0 18px; }
table { border-collapse: collapse; font-size: 14px; min-width: 40%; }
p.table-caption { color: var(--muted); font-size: 13.5px; margin: 10px 0 6px; max-width: 110ch; }
p.table-caption + .table-wrap { margin-top: 0; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f3f4f6; text-align: left; font-weight: 600; vertical-align: bottom; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
tbody tr.best td { background: #eef6fc; font-weight: 600; }
table.kv th { background: transparent; width: 1%; color: var(--muted); font-weight: 500; }
table.kv th { white-space: nowrap; vertical-align: top; }
table.kv td { font-variant-numeric: tabular-nums; }
table.kv td .item { display: block; }
table.kv td .item .key { color: var(--muted); margin-right: 0.4em; }
.callout { background: #fff8e6; border: 1px solid #f1d48a; border-left: 4px solid #e0a100;
           border-radius: 8px; padding: 12px 16px; margin: 8px 0 16px; max-width: 100ch; }
pre.cmd { margin: 8px 0 2px; padding: 8px 12px; background: #1f2937; color: #f9fafb; border-radius: 6px;
          overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
              font-size: 13px; }
footer { color: var(--muted); font-size: 13px; padding: 0 0 30px; }
@media print { header.top { background: none; color: black; } nav.toc { display: none; }
               section.card { border: none; padding: 0; } }
"""


@lru_cache(maxsize=1)
def _plotly_js() -> tuple[str, str]:
    """Plotly's bundled JavaScript and the CSP hash of the script element that holds it."""
    js = plotly.offline.get_plotlyjs()
    if "</script" in js.lower() or "<!--" in js:  # cannot happen with plotly's bundle; never emit it raw
        raise RuntimeError("the installed plotly.js bundle cannot be inlined safely")
    return js, _csp_hash(js)


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def script_json(value: object) -> str:
    """JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&``, U+2028 and U+2029 are
    written as ``\\u`` escapes (only ever inside JSON strings, so the data is unchanged)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def figure_json(fig: go.Figure) -> tuple[str, int]:
    """What a page embeds of a Plotly figure: the JSON of its data, layout and frames (when it has
    any), and the height it is drawn at (its layout's, else 450 px)."""
    spec = fig.to_plotly_json()
    payload = {"data": spec.get("data", []), "layout": spec.get("layout", {})}
    if spec.get("frames"):
        payload["frames"] = spec["frames"]
    height = int(payload["layout"].get("height") or 450)
    return pio.to_json(payload, validate=False, pretty=False), height


def format_number(value: object, digits: int = 4) -> str:
    """A table cell: ints as is (with thin grouping), floats to ``digits`` significant digits (scientific
    when very large or small), ``None`` as an en dash, ``inf`` as "∞", ``nan`` as "—"."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u2009")
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e5:
            return f"{value:.{digits}g}"
        mant, exp = f"{value:.{max(digits - 1, 0)}e}".split("e")
        return f"{mant}e{int(exp)}"
    return str(value)


def format_spread(median: float, low: float, high: float, digits: int = 3) -> str:
    """``median [low, high]``, e.g. the median final loss with its IQR across seeds."""
    med, lo, hi = (format_number(float(v), digits) for v in (median, low, high))
    return f"{med} [{lo}, {hi}]"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _href(path: str | Path) -> str:
    """A relative link that cannot become a ``javascript:`` or other scheme URL."""
    return _esc(quote(Path(path).as_posix(), safe="/._-~"))


class Page:
    """Build a report page block by block, then :meth:`render` or :meth:`write` it.

    Level-2 sections become white cards listed in the page's table of contents. Figures are drawn by
    Plotly in the browser from embedded JSON.
    """

    def __init__(
        self, title: str, *, subtitle: str | None = None, footer: str | None = None, lang: str = "en"
    ) -> None:
        self.title = str(title)
        self.lang = lang
        self.subtitle = subtitle
        self.footer = footer
        self._blocks: list[str] = []
        self._toc: list[tuple[str, str]] = []
        self._n_sections = 0
        self._n_figures = 0
        self._open = False

    @property
    def figure_count(self) -> int:
        return self._n_figures

    def section(self, title: str, *, level: int = 2) -> str:
        """Start a section (``level`` 2) or a sub-heading (3, 4); returns the heading's anchor id."""
        if level not in (2, 3, 4):
            raise ValueError(f"section level must be 2, 3 or 4, got {level}")
        self._n_sections += 1
        anchor = f"sec-{self._n_sections}"
        if level == 2:
            self._close()
            self._blocks.append('<section class="card">')
            self._open = True
            self._toc.append((anchor, str(title)))
        self._blocks.append(f'<h{level} id="{anchor}">{_esc(title)}</h{level}>')
        return anchor

    def _close(self) -> None:
        if self._open:
            self._blocks.append("</section>")
            self._open = False

    def text(self, text: str, *, note: bool = False) -> None:
        """A paragraph of plain text (escaped); ``note`` sets it smaller and grey."""
        cls = ' class="note"' if note else ""
        self._blocks.append(f"<p{cls}>{_esc(text)}</p>")

    def callout(self, text: str, *, title: str | None = None, code: str | None = None) -> None:
        """A highlighted box: an optional bold ``title``, the ``text`` and an optional line of ``code``
        (e.g. a command to run); all escaped."""
        parts = ['<div class="callout">']
        if title:
            parts.append(f"<b>{_esc(title)}</b> ")
        parts.append(_esc(text))
        if code:
            parts.append(f'<pre class="cmd"><code>{_esc(code)}</code></pre>')
        parts.append("</div>")
        self._blocks.append("".join(parts))

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        caption: str | None = None,
        numeric: Sequence[bool] | None = None,
        highlight: Iterable[int] = (),
        digits: int = 4,
    ) -> None:
        """A table; numbers are formatted with :func:`format_number` and right-aligned (``numeric``
        overrides which columns are right-aligned); ``highlight`` rows (0-based) are emphasized."""
        cols = [str(c) for c in columns]
        body = [list(r) for r in rows]
        for i, r in enumerate(body):
            if len(r) != len(cols):
                raise ValueError(f"table row {i} has {len(r)} cells but there are {len(cols)} columns")
        if numeric is None:
            numeric = [
                bool(body) and all(_is_number(r[j]) or r[j] is None for r in body) for j in range(len(cols))
            ]
        elif len(numeric) != len(cols):
            raise ValueError(f"numeric has {len(numeric)} entries but there are {len(cols)} columns")
        marked = set(highlight)
        out = [f'<p class="table-caption">{_esc(caption)}</p>' if caption else ""]
        out.append('<div class="table-wrap"><table>')  # the caption stays put when a wide table scrolls
        out.append("<thead><tr>")
        out.extend(
            f'<th{" class=num" if numeric[j] else ""} scope="col">{_esc(c)}</th>' for j, c in enumerate(cols)
        )
        out.append("</tr></thead><tbody>")
        for i, r in enumerate(body):
            out.append('<tr class="best">' if i in marked else "<tr>")
            for j, cell in enumerate(r):
                text = format_number(cell, digits) if _is_number(cell) or cell is None else str(cell)
                out.append(f"<td{' class=num' if numeric[j] else ''}>{_esc(text)}</td>")
            out.append("</tr>")
        out.append("</tbody></table></div>")
        self._blocks.append("".join(out))

    def key_values(self, items: Mapping[str, object], *, caption: str | None = None) -> None:
        """A two-column table of settings (e.g. the protocol): a mapping value is shown one entry per
        line (its key in grey), a list compactly on one line."""
        out = [f'<p class="table-caption">{_esc(caption)}</p>' if caption else ""]
        out.append('<div class="table-wrap"><table class="kv">')
        out.append("<tbody>")
        for key, value in items.items():
            if isinstance(value, Mapping) and value:  # one line per entry
                text = "".join(
                    f'<span class="item"><span class="key">{_esc(k)}</span>{_esc(_compact(v))}</span>'
                    for k, v in value.items()
                )
            else:
                text = _esc(_compact(value))
            out.append(f'<tr><th scope="row">{_esc(key)}</th><td>{text}</td></tr>')
        out.append("</tbody></table></div>")
        self._blocks.append("".join(out))

    def figure(
        self,
        fig: go.Figure,
        *,
        caption: str | None = None,
        files: Mapping[str, str | Path] | None = None,
    ) -> str:
        """Add a Plotly figure (drawn at its layout height, full width); ``files`` links static twins by
        relative path, e.g. ``{"PNG": "figures/loss.png"}``. Returns the figure's element id."""
        spec, height = figure_json(fig)
        return self.figure_spec(spec, height, caption=caption, files=files)

    def figure_spec(
        self,
        spec: str,
        height: int,
        *,
        caption: str | None = None,
        files: Mapping[str, str | Path] | None = None,
    ) -> str:
        """Add a figure given as :func:`figure_json` made it (its JSON and height), as :meth:`figure`."""
        self._n_figures += 1
        fid = f"fig-{self._n_figures}"
        data = script_json(spec)
        parts = [f'<figure><div class="plot" id="{fid}" style="height:{int(height)}px"></div>']
        parts.append(f'<script type="application/json" data-figure="{fid}">{data}</script>')
        caption_bits = []
        if caption:
            caption_bits.append(f"<b>Figure {self._n_figures}.</b> {_esc(caption)}")
        if files:
            links = " · ".join(f'<a href="{_href(p)}">{_esc(k)}</a>' for k, p in files.items())
            caption_bits.append(f"<span class=files>{links}</span>")
        if caption_bits:
            parts.append(f"<figcaption>{' '.join(caption_bits)}</figcaption>")
        parts.append("</figure>")
        self._blocks.append("".join(parts))
        return fid

    def render(self) -> str:
        """The whole page as one HTML string."""
        js, js_hash = _plotly_js()
        self._close()
        csp = (
            "default-src 'none'; "
            f"script-src {js_hash} {_csp_hash(_LOADER)}; "
            "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
            "base-uri 'none'; form-action 'none'"
        )
        toc = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t in self._toc)
        footer = (
            self.footer
            if self.footer is not None
            else (
                f"Generated by optimlab {optimlab.__version__} on {_dt.date.today().isoformat()}. "
                "Self-contained: works offline; every figure is interactive (drag to zoom, "
                "double-click to reset, click legend entries to hide them)."
            )
        )
        head = [
            "<!DOCTYPE html>",
            f'<html lang="{_esc(self.lang)}"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_esc(csp)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(self.title)}</title>",
            f"<style>{_CSS}</style>",
            f"<script>{js}</script>",
            "</head><body>",
            '<header class="top"><div class="wrap">',
            f"<h1>{_esc(self.title)}</h1>",
        ]
        if self.subtitle:
            head.append(f"<p>{_esc(self.subtitle)}</p>")
        if len(self._toc) > 1:
            head.append(f'<nav class="toc" aria-label="contents">{toc}</nav>')
        head.append('</div></header><main class="wrap">')
        tail = [
            "</main>",
            f'<footer><div class="wrap">{_esc(footer)}</div></footer>',
            f'<script type="application/json" id="plotly-config">{script_json(PLOTLY_CONFIG)}</script>',
            f"<script>{_LOADER}</script>",
            "</body></html>",
        ]
        return "\n".join([*head, *self._blocks, *tail]) + "\n"

    def write(self, path: str | Path) -> Path:
        """Render to ``path`` (parent folders are created; written to a temporary file that is then
        renamed, so a reader never sees half a page); returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        os.replace(tmp, out)
        return out


def _compact(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_compact(v) for v in value)
    if isinstance(value, float):
        return format_number(value, 6)
    return str(value)
