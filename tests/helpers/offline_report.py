"""Open a saved report in Chromium with the network cut off: the browser tests of the take-home report share it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import new_page

PAINTED = """() => { const plots = [...document.querySelectorAll('.js-plotly-plot')];
    return plots.length > 0 && plots.every(p => p.querySelector('.main-svg') && (p.calcdata || []).length > 0); }"""


@contextmanager
def report_offline(chromium, path: Path, viewport: dict) -> Iterator:
    """The report at file://``path`` in a new context whose every other request is refused, once every plot is
    painted (and as many plots as Plotly divs); on leaving, fails if any request but the file itself was made."""
    context = chromium.new_context(viewport=viewport)
    outside: list[str] = []

    def refuse(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        context.route("**/*", refuse)
        page = new_page(context)
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(path.as_uri())
        page.wait_for_function(PAINTED)
        plots = page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length")
        assert plots == page.locator(".plotly-graph-div").count() and plots > 0
        assert page.locator(".js-plotly-plot .main-svg").count() >= plots
        yield page
        assert outside == [] and requests == [path.as_uri()], (outside, requests)
    finally:
        context.close()
