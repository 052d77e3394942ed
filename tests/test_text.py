"""fetal_core.text: user text escaped for Streamlit Markdown and for Plotly labels.

CommonMark makes any backslash-escaped ASCII punctuation character literal text, and every construct
(emphasis, links, images, code spans, HTML, entities, lists, headings, tables, LaTeX, Streamlit's
``:directives[]``) starts with an unescaped punctuation character. So ``plain`` is checked by reading
its output the way a Markdown parser does: every punctuation character must come escaped, nothing may
span lines, and reading the escapes back must give the original text. What Streamlit really draws from
escaped text is checked in Chromium (tests/test_browser_injection.py).
"""

from __future__ import annotations

import html
import re
import string

import plotly.graph_objects as go
import pytest

from fetal_core.text import clip, plain, plotly_figure_text, plotly_text

ATTACKS = [
    "![i](http://127.0.0.1:9/x.png)",
    "**b** __b__ *i* _i_ ~~s~~",
    "[l](javascript:alert(1)) [l2][ref]\n\n[ref]: http://h/",
    "<img src=x onerror=alert(1)> <b>b</b> &lt;b&gt; &amp; &#60;",
    "`tick` ``two `ticks` `` ```fence```",
    "# heading",
    "- item",
    "1. item",
    "> quote",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "line one\nline two\r\n\n    indented code",
    "back\\slash \\*still\\* \\",
    "<http://127.0.0.1:9/auto> <a@b.co>",
    ":red[red] :material/home: :smile: $x^2$ $$y$$",
]
ORDINARY = ["Fetal_Health_Study", "lesson 1 (TPE, 20 trials)", "race:lesson:tpe:pruned:seed0", "lr=0.001, wd=1e-5"]
PUNCTUATION = set(string.punctuation)


def read_escaped(markdown: str) -> str:
    """The literal text of ``markdown`` if it consists only of plain characters and backslash escapes of
    ASCII punctuation (so a CommonMark parser can only make text of it); AssertionError otherwise."""
    out, i = [], 0
    while i < len(markdown):
        char = markdown[i]
        if char == "\\":
            assert i + 1 < len(markdown) and markdown[i + 1] in PUNCTUATION, (markdown, i)
            out.append(markdown[i + 1])
            i += 2
            continue
        assert char not in PUNCTUATION, f"unescaped {char!r} at {i} in {markdown!r}"
        assert char not in "\r\n", markdown
        out.append(char)
        i += 1
    return "".join(out)


@pytest.mark.parametrize("text", ATTACKS + ORDINARY)
def test_plain_is_only_text_and_escapes_and_reads_back(text):
    literal = read_escaped(plain(text)).replace("\u2060", "")
    assert literal == re.sub(r"[\r\n]+", " ", text)


def test_ordinary_names_stay_readable():
    assert plain("Fetal_Health_Study") == r"Fetal\_Health\_Study"
    assert plain("lesson 1") == "lesson 1"
    assert plotly_text("Fetal_Health_Study") == "Fetal_Health_Study"
    assert clip("Fetal_Health_Study") == "Fetal_Health_Study"


def test_plain_defeats_streamlit_extras_in_the_source():
    escaped = plain(":red[red] :material/home: :smile: $x^2$ $$y$$")
    # Streamlit rewrites ":material/" in the source and looks for ":name:" emoji and "$" LaTeX in it.
    assert ":material/" not in escaped
    assert not re.search(r":[\w+-]+:", escaped), escaped
    assert not re.search(r"(?<!\\)\$", escaped), escaped


@pytest.mark.parametrize(
    "text", ["http://127.0.0.1:9/x.png", "see www.example.com now", "mail a@b.com", "HTTPS://h.io"]
)
def test_plain_breaks_autolinks_found_after_parsing(text):
    # GFM also finds http://, www. and e-mail links in the parsed text, where the escapes are gone.
    literal = read_escaped(plain(text))
    assert not re.search(r"(?i)https?://|www\.|\w@\w", literal), literal
    assert literal.replace("\u2060", "") == text


def test_plain_one_line_and_limit():
    assert "\n" not in plain("a\nb\r\nc\u2028d") and plain("a\nb") == "a b"
    assert plain("x" * 100, limit=10) == "x" * 9 + "…"
    assert plain("*" * 100, limit=5) == r"\*" * 4 + "…"  # clipped before escaping: no escape cut in half
    assert plain(None) == "" and plain(3.5) == r"3\.5"


def test_clip():
    assert clip("short") == "short"
    long = "a" * 200
    assert len(clip(long)) == 80 and clip(long).endswith("…")
    assert clip("a\nb", 10) == "a b"
    assert clip("abcdef", 4) == "abc…"


def test_plotly_text_escapes_html():
    assert (
        plotly_text("<b>b</b> & <a href='http://h'>l</a>")
        == "&lt;b&gt;b&lt;/b&gt; &amp; &lt;a href='http://h'&gt;l&lt;/a&gt;"
    )
    assert plotly_text("Fetal_Health_Study") == "Fetal_Health_Study"
    assert html.unescape(plotly_text("<i>x</i> &amp;")) == "<i>x</i> &amp;"  # Plotly shows the literal text


def test_plotly_figure_text_escapes_every_label_but_keeps_optunas_markup():
    name = "<b>b</b><a href='http://h/'>l</a>"
    figure = go.Figure(
        go.Scatter(
            x=[name, "Adam"],
            y=[1, 2],
            name=name,
            text=[f"{name}<br>trial 1", "ok"],
            customdata=[[name, 1], ["Adam", 2]],
            hovertemplate="%{customdata[0]}<extra>x</extra>",
            marker={"color": "#1f77b4"},
            mode="lines+markers",
        )
    )
    figure.update_layout(title=name, xaxis_title=name)
    spec = plotly_figure_text(figure.to_dict())
    trace = spec["data"][0]
    escaped = plotly_text(name)
    assert trace["name"] == escaped and list(trace["x"]) == [escaped, "Adam"]
    assert trace["text"][0] == f"{escaped}<br>trial 1"  # Optuna's line breaks stay line breaks
    assert trace["hovertemplate"] == "%{customdata[0]}<extra>x</extra>"
    assert trace["customdata"][0][0] == escaped and trace["customdata"][0][1] == 1
    assert trace["marker"]["color"] == "#1f77b4" and trace["mode"] == "lines+markers"
    assert spec["layout"]["title"]["text"] == escaped and spec["layout"]["xaxis"]["title"]["text"] == escaped
    go.Figure(spec)  # still a valid figure
    assert not re.search(r"<(?!br>|/?extra>)", str(spec["data"]) + str(spec["layout"]["title"]))


def test_plotly_figure_text_keeps_a_figure_without_markup_as_it_is():
    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="learning_rate", text=["trial 0<br>Adam", "x"]))
    figure.update_layout(title="Slice Plot")
    spec = figure.to_dict()
    assert plotly_figure_text(spec) is spec  # nothing to escape: no rebuilt figure
    spec["data"][0]["name"] = "a & b"
    escaped = plotly_figure_text(spec)
    assert escaped is not spec and escaped["data"][0]["name"] == "a &amp; b"
    assert escaped["layout"] is spec["layout"]  # untouched parts are shared, not copied
