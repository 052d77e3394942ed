"""Hostile names in real Chromium: user-controlled text is shown as text on every page, never as Markdown or HTML.

Study names, parameter names and values, user attrs, URL query values, race names and uploaded file names
are chosen by users (or by whoever wrote a study file). Here they carry a Markdown image pointing at a
local listener, a ``javascript:`` link, bold, backticks and raw HTML. The test fails when the listener
gets any request, when an <img>, link, <strong> or <code> built from a payload exists in the app's DOM
(Streamlit's Markdown, or Plotly's SVG), when a JS dialog opens, or when the literal text is missing.
"""

from __future__ import annotations

import http.server
import math
import threading
import time
import urllib.parse

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.browser
WORD_JOINER = "\u2060"  # fetal_core.text.plain breaks autolinks with it; invisible, so ignored when reading

# Everything in the app (main area, sidebar, Plotly's SVG) that a payload could have turned into markup.
LEAKS_JS = """(port) => {
  const root = document.querySelector('[data-testid=stApp]') || document.body;
  const all = s => Array.from(root.querySelectorAll(s));
  const href = a => a.getAttribute('href') || a.getAttribute('xlink:href') || '';
  return {
    images: all('img').map(i => i.getAttribute('src') || '').filter(s => s === 'x' || s.includes(port)),
    links: all('a').map(href).filter(h => !h.startsWith('#'))  // '#slug': a heading's own anchor
      .filter(h => /^\\s*javascript:/i.test(h) || h.includes(port) || /^mailto:/i.test(h)),
    strong: all('strong, b').filter(e => e.textContent.trim() === 'b').length,
    code: all('code').filter(e => /tick|tock/.test(e.textContent)).length,
    plotly_bold: all('.js-plotly-plot tspan').filter(  // Plotly draws <b>b</b> as a bold tspan 'b'
      t => /bold/.test(t.getAttribute('style') || '') && t.textContent.trim() === 'b').length,
    plotly_links: all('.js-plotly-plot svg a').length,
  };
}"""


# Whether selectbox ``key`` shows an option containing ``typed`` (as text, or as its input's value).
SELECTED_JS = """([key, typed]) => { const box = document.querySelector('.st-key-' + key);
  return !!box && (box.innerText + [...box.querySelectorAll('input')].map(i => i.value).join(' ')).includes(typed); }"""


class Listener:
    """An HTTP server on 127.0.0.1:<free port> that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Record(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                requests.append(self.path)
                self.send_response(404)
                self.end_headers()

            do_POST = do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.stop()


def payloads(port: int) -> dict[str, str]:
    """One hostile string per place; each carries an image aimed at the listener, bold, backticks, HTML."""
    host = f"http://127.0.0.1:{port}"
    return {
        "study": f"![s]({host}/study.png) **b** <b>b</b> `tick` <img src=x onerror=alert(1)> [l](javascript:alert(1))",
        "param": f"<b>b</b><a href='{host}/param'>p</a>![p]({host}/param.png)",
        "choice": f"<b>b</b>![o]({host}/choice.png) **b**",
        "part2": f"![p2]({host}/part2.png) **b** `tock` <img src=x onerror=alert(1)> [l](javascript:alert(1))",
        "race": f"![r]({host}/race.png) **b** `tick` <i>",  # at most 60 characters (the input's limit)
        "upload": f"![u]({host}/upload.png) **b** `tick`.sqlite3",
        "lr": f"`![i]({host}/q.png)`",
        "opt": "`[click me](javascript:alert(1))`",
        "hl": "**b** <img src=x onerror=alert(1)>",
    }


def build_hostile_study(url: str, name: str, param: str, choice: str) -> None:
    """12 trials whose third parameter is called ``param`` and whose best optimiser is called ``choice``."""
    distributions = {
        "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
        "optimizer": CategoricalDistribution(["Adam", choice]),
        param: FloatDistribution(0.0, 1.0),
    }
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    study.set_user_attr("sampler", name)
    for i in range(12):
        value = 90.0 - i / 10 if i in (6, 9) else 80.0 + 3 * math.sin(i)
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                value=value,
                distributions=distributions,
                params={
                    "learning_rate": 10 ** (-4 + 3 * i / 11),
                    "optimizer": choice if i % 3 == 0 else "Adam",
                    param: i / 11,
                },
                intermediate_values={e: value - 5 + e for e in range(1, 6)},
                user_attrs={"note": name},
            )
        )
    plain = optuna.create_study(storage=url, study_name="Fetal_Health_Study", direction="maximize")
    for i in range(4):
        plain.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                value=70.0 + i,
                distributions=distributions,
                params={"learning_rate": 1e-3, "optimizer": "Adam", param: i / 4},
            )
        )


@pytest.fixture
def hostile_server(tmp_path, listener, request):
    """The server's storage holds the hostile study (and an ordinary one) before the server starts."""
    p = payloads(listener.port)
    build_hostile_study(f"sqlite:///{tmp_path}/app.sqlite3", p["study"], p["param"], p["choice"])
    return request.getfixturevalue("streamlit_server")


def wait_idle(page) -> None:
    page.wait_for_selector("[data-test-script-state=notRunning]", timeout=120_000)
    page.wait_for_timeout(1500)  # images a payload may have made would be requested by now


def app_text(page) -> str:
    return page.locator("[data-testid=stApp]").inner_text().replace(WORD_JOINER, "")


def choose(page, key: str, typed: str) -> None:
    """Pick the option of selectbox ``key`` whose label contains ``typed`` (again if a rerun swallowed it)."""
    for _ in range(3):
        wait_idle(page)
        field = page.locator(f".st-key-{key} input")
        field.click()
        field.fill(typed)
        page.keyboard.press("Enter")
        try:
            page.wait_for_function(SELECTED_JS, arg=[key, typed], timeout=20_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"could not choose '{typed}' in {key}")


def test_hostile_names_render_as_text(hostile_server, chromium, listener, artifacts) -> None:
    url, port = hostile_server.url, listener.port
    p = payloads(port)
    problems: dict[str, list] = {}
    dialogs: list[str] = []

    def check(page, where: str, literals: list[str]) -> None:
        """Collect (not assert yet) what leaked on this page, so one run reports every page."""
        wait_idle(page)
        leaks = page.evaluate(LEAKS_JS, str(port))
        found = [f"{k}: {v}" for k, v in leaks.items() if v]
        found += [f"request {r}" for r in listener.requests]
        listener.requests.clear()
        text = app_text(page)
        found += [f"literal text missing: {s!r}" for s in literals if s not in text]
        if found:
            problems[where] = found
        page.screenshot(path=str(artifacts / f"injection_{where.replace(' ', '_')}.png"), full_page=True)

    def new_page():
        page = chromium.new_page(viewport={"width": 1400, "height": 2400})
        page.set_default_timeout(120_000)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        return page

    # Part I from a shared link whose values try to close the note's backticks from inside.
    page = new_page()
    try:
        query = urllib.parse.urlencode({"lr": p["lr"], "opt": p["opt"], "hl": p["hl"]})
        page.goto(f"{url}/part1_manual?{query}")
        page.get_by_text("from the link", exact=False).first.wait_for()
        check(page, "part I link", [p["lr"], p["opt"], "**b**"])
    finally:
        page.close()

    # Part II: watch the hostile study another session (here: the test) made, then start one named with
    # a payload: this session's sidebar shows it; then another session watches that one.
    def follow(page, typed: str) -> None:
        page.goto(f"{url}/part2_study")
        page.locator(".st-key-p2_choice").wait_for()
        choose(page, "p2_choice", typed)
        page.wait_for_function(  # the link to Results names the chosen study (a wait that holds either way)
            "(t) => [...document.querySelectorAll('[data-testid=stPageLink]')].some(e => e.innerText.includes(t))",
            arg=typed,
        )

    page = new_page()
    try:
        follow(page, "tick")
        check(page, "part II other study", [f"Study '{p['study']}'", f"Review '{p['study']}' on the Results page"])
        name = page.locator(".st-key-p2_name input")
        name.fill(p["part2"])
        name.press("Tab")
        page.locator(".st-key-p2_sampler input").click()
        page.get_by_role("option", name="random", exact=True).click()
        for key, value in (("p2_trials", 1), ("p2_epochs", 1)):
            field = page.locator(f".st-key-{key} input")
            field.fill(str(value))
            field.press("Tab")
        page.locator(".st-key-p2_start button").first.click()
        page.locator("[data-testid=stSidebar]").get_by_text("Background studies").wait_for()
        page.locator("[data-testid=stSidebar]").get_by_text("(done)", exact=False).wait_for()
        check(page, "part II sidebar", [f"study {p['part2']}: 1/1 trials (done)"])
    finally:
        page.close()
    page = new_page()
    try:
        follow(page, "tock")
        check(page, "part II", [f"Study '{p['part2']}'", f"Review '{p['part2']}' on the Results page"])
    finally:
        page.close()

    # Results: the hostile study's plots (parameter names in Optuna's figures), findings, compare, upload.
    page = new_page()
    try:
        page.goto(f"{url}/results")
        page.locator(".st-key-results_pick").wait_for()
        choose(page, "results_pick", "tick")
        page.get_by_text("Optimisation history").first.wait_for()
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4")
        check(page, "results progress", [])
        page.get_by_role("tab", name="Parameters").click()
        page.get_by_text("Hyperparameter importances").first.wait_for()
        page.locator(".st-key-plot_contour .js-plotly-plot").wait_for()
        check(page, "results parameters", [f"used the optimizer {p['choice']}", p["param"]])
        page.get_by_role("tab", name="Compare studies").click()
        page.locator(".st-key-plot_compare_best .js-plotly-plot").wait_for()
        check(page, "results compare", [f"'{p['study']}' reached"])
        page.locator(".st-key-results_source").get_by_text("Upload a study file").click()
        page.locator(".st-key-results_upload input[type=file]").set_input_files(
            files=[{"name": p["upload"], "mimeType": "application/octet-stream", "buffer": b"not a database"}]
        )
        page.get_by_text("Cannot open", exact=False).wait_for()
        check(page, "results upload", [f"Cannot open '{p['upload']}'"])
    finally:
        page.close()

    # Strategy race: a race name that is refused is quoted in the error.
    page = new_page()
    try:
        page.goto(f"{url}/race")
        name = page.locator(".st-key-race_name input")
        name.wait_for()
        name.fill(p["race"])
        name.press("Enter")
        page.get_by_text("race name:", exact=False).wait_for()
        check(page, "race", [f"'{p['race']}'"])
    finally:
        page.close()

    time.sleep(1)
    assert not listener.requests, listener.requests
    assert not dialogs, dialogs
    assert not problems, "\n".join(f"{where}: {found}" for where, found in problems.items())
