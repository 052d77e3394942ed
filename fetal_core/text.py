"""User text shown as text: escaping for Streamlit Markdown and for Plotly labels (no Streamlit here).

Study names, race names, parameter names and values, user attrs, URL query values, uploaded file names
and the error messages that quote them are chosen by users (or by whoever wrote a study file). Streamlit
renders Markdown in almost every element (``st.markdown``/``caption``/``info``/``error``, subheaders,
widget labels, help, metric labels, page links) and Plotly renders a subset of HTML in titles, legends,
tick labels and hover texts; both would turn such text into images that fetch outside URLs, links and
formatting. The pages pass every such value through ``plain`` (Markdown) or ``plotly_text`` (Plotly).
"""

from __future__ import annotations

import re
import string
from typing import Any

# Every ASCII punctuation character may be backslash-escaped in CommonMark, and an escaped one is always
# literal text. Escaping all of them (not a hand-picked list) also defeats LaTeX (``$``), HTML and entities
# (``<``, ``&``) and Streamlit's own directives (``:red[...]``, ``:material/icon:``, ``:emoji:``), which all
# need an unescaped punctuation character. GFM's autolinks (``http://h``, ``www.h``, ``a@b.c``) are also
# found in the text after escapes are resolved: an invisible word joiner breaks each of them up.
_MARKDOWN_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_AUTOLINK = re.compile(r"(?i)(https?:|www(?=\.))|(?=@)")
_WORD_JOINER = "\u2060"
_LINE_BREAKS = re.compile(r"[\r\n\t\v\f\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# Tags Optuna's own plots put into hover texts and templates: line breaks and the secondary hover box.
_PLOTLY_KEPT_TAGS = re.compile(r"&lt;(br|/?extra)&gt;")


def _one_line(value: object) -> str:
    text = "" if value is None else str(value)
    return _CONTROL.sub("", _LINE_BREAKS.sub(" ", text))


def clip(value: object, limit: int = 80) -> str:
    """``value`` on one line, at most ``limit`` characters (cut with an ellipsis): for quoting in messages."""
    text = _one_line(value)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def plain(value: object, limit: int | None = None) -> str:
    """``value`` as literal text inside Streamlit Markdown: one line, every Markdown/HTML character escaped.

    ``plain("Fetal_Health_Study")`` renders as ``Fetal_Health_Study``; ``plain("**b**")`` as ``**b**``,
    not bold. With ``limit``, the text is clipped first (so an escape is never cut in half).
    """
    text = clip(value, limit) if limit is not None else _one_line(value)
    text = _AUTOLINK.sub(lambda m: (m.group(1) or "") + _WORD_JOINER, text)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _html_escape(text: str) -> str:
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def plotly_text(value: object, limit: int | None = None) -> str:
    """``value`` as literal text in a Plotly title, axis title, legend name, tick or hover label."""
    return _html_escape(clip(value, limit) if limit is not None else _one_line(value))


def plotly_figure_text(spec: Any) -> Any:
    """A Plotly figure dict (``figure.to_dict()``) with every string escaped as by ``plotly_text``.

    For figures drawn by others (Optuna's plots put parameter names and categorical values into axis
    titles, tick labels, legends and hover texts unescaped). The ``<br>`` and ``<extra>`` tags Optuna
    writes into hover texts stay markup; colours, modes and other enumerated strings contain none of
    ``&<>``, so they are unchanged. A part with nothing to escape is returned as the same object, so
    ``plotly_figure_text(spec) is spec`` tells that the figure can be used as it is. Apply once:
    escaping is not idempotent (``&`` becomes ``&amp;``).
    """
    kind = type(spec)
    if kind is str:
        escaped = _PLOTLY_KEPT_TAGS.sub(r"<\1>", _html_escape(spec))
        return spec if escaped == spec else escaped
    if kind is float or kind is int or spec is None:
        return spec
    if kind is dict:
        out = {k: v if k == "template" else plotly_figure_text(v) for k, v in spec.items()}
        return spec if all(out[k] is v for k, v in spec.items()) else out
    if kind is list or kind is tuple:
        items = spec
    elif getattr(spec, "dtype", None) is not None and spec.dtype.kind in "OUS":  # numpy arrays of text
        items = spec.tolist()
    else:
        return spec
    escaped_items = [plotly_figure_text(v) for v in items]
    return spec if all(a is b for a, b in zip(escaped_items, items)) else escaped_items
