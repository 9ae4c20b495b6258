"""The offline HTML page: Plotly embedded once, everything user-given escaped, nothing fetched."""

import base64
import hashlib
import html
import json
import re

import plotly.graph_objects as go
import plotly.offline
import pytest

from optimlab.reports.html import Page, format_number, format_spread, script_json

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _page() -> Page:
    page = Page(f"report {HOSTILE}", subtitle=f"sub {HOSTILE}")
    page.section(f"problem {HOSTILE}")
    page.text(f"text {HOSTILE}")
    page.table(
        ["optimizer", f"col {HOSTILE}", "loss"],
        [[HOSTILE, "a & b", 0.5], ["Adam", '"quoted"', None]],
        caption=HOSTILE,
        highlight=[0],
    )
    page.key_values({HOSTILE: {"lr": [1e-3, 1e-2], "note": HOSTILE}}, caption="protocol")
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name=f"</script>{HOSTILE}"))
    page.figure(fig, caption=HOSTILE, files={"PNG": "figures/a b.png", HOSTILE: "javascript:alert(1)"})
    page.section("second")
    page.figure(go.Figure(go.Bar(x=["a"], y=[1])))
    return page


@pytest.fixture(scope="module")
def html_text() -> str:
    return _page().render()


def _scripts(html_text: str) -> list[tuple[str, str]]:
    """(attributes, body) of every <script> element."""
    return re.findall(r"<script([^>]*)>(.*?)</script>", html_text, flags=re.S)


def test_plotly_is_embedded_exactly_once(html_text):
    js = plotly.offline.get_plotlyjs()
    assert html_text.count(js) == 1
    assert html_text.count("plotly.js v") == 1
    assert "cdn.plot.ly/plotly" not in html_text.replace(js, "")
    executable = [body for attrs, body in _scripts(html_text) if "application/json" not in attrs]
    assert len(executable) == 2  # plotly.js and the loader, nothing else runs


def test_nothing_user_given_appears_unescaped(html_text):
    js = plotly.offline.get_plotlyjs()
    own = html_text.replace(js, "")
    assert HOSTILE not in own
    assert "<script>alert" not in own
    assert own.count(ESCAPED) >= 7  # title, subtitle, section, nav, text, table, caption, kv...
    assert "a &amp; b" in own and "&quot;quoted&quot;" in own
    assert 'href="javascript:' not in own  # a link can never become a scheme URL
    assert 'href="javascript%3Aalert%281%29"' in own  # ... only a (harmless) relative path
    assert 'href="figures/a%20b.png"' in own


def test_figure_json_cannot_close_its_script_element(html_text):
    blocks = [body for attrs, body in _scripts(html_text) if "data-figure" in attrs]
    assert len(blocks) == 2
    for body in blocks:
        assert "<" not in body and ">" not in body
    spec = json.loads(blocks[0])
    # the data survives the escaping unchanged (figure functions escape labels for Plotly themselves)
    assert spec["data"][0]["name"] == "</script>" + HOSTILE


def test_script_json_round_trips():
    value = {"a": "</script><!-- \u2028 \u2029 & >", "b": [1, 2.5, None]}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_csp_allows_exactly_the_pages_own_scripts_and_no_network(html_text):
    csp = html.unescape(
        re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html_text).group(1)
    )
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    hashes = set(re.findall(r"'(sha256-[^']+)'", csp))
    executable = [body for attrs, body in _scripts(html_text) if "application/json" not in attrs]
    for body in executable:
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        assert f"sha256-{digest}" in hashes
    assert "unsafe-eval" not in csp and "script-src 'unsafe-inline'" not in csp


def test_no_external_reference_outside_plotly(html_text):
    own = html_text.replace(plotly.offline.get_plotlyjs(), "")
    assert not re.search(r"(src|href)\s*=\s*\"(https?:)?//", own)
    assert "http://" not in own and "https://" not in own
    assert "@import" not in own and "url(" not in own


def test_layout_pieces(html_text):
    assert html_text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html_text
    assert html_text.count('<section class="card">') == html_text.count("</section>") == 2
    assert html_text.count('class="plot"') == 2
    assert '<nav class="toc"' in html_text  # two sections -> a table of contents
    assert "Figure 1." in html_text and "Figure 2." not in html_text  # only captioned figures numbered
    assert '<tr class="best">' in html_text
    assert html_text.count("<td class=num>") == 2  # the all-numeric "loss" column


def test_write_creates_the_folder(tmp_path):
    out = _page().write(tmp_path / "deep" / "report.html")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_table_rejects_ragged_rows():
    page = Page("t")
    with pytest.raises(ValueError, match="row 1"):
        page.table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="numeric"):
        page.table(["a"], [[1]], numeric=[True, False])
    with pytest.raises(ValueError, match="level"):
        page.section("x", level=5)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "–"),
        (True, "yes"),
        (1234567, "1\u2009234\u2009567"),
        (0.012345678, "0.01235"),
        (1.5e-7, "1.500e-7"),
        (2.5e9, "2.500e9"),
        (0.0, "0"),
        (float("inf"), "∞"),
        (float("nan"), "—"),
        ("text", "text"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_format_spread():
    assert format_spread(0.5, 0.25, 0.75) == "0.5 [0.25, 0.75]"
