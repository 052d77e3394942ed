"""Part II in real Chromium: a study runs live, is stopped and continued, survives a page switch, and
trials added by a CLI worker show up on the watching page."""

from __future__ import annotations

import subprocess
import time

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from fetal_core.storage import open_storage
from tests.conftest import new_page, start_cli_study, wait_until

# Each test waits for what it needs, up to minutes on a busy machine: far above pytest's 600 s default.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

# What the page shows, read from the DOM: rows of the trial table, and per Plotly trace of the
# intermediate-value chart its name and number of epochs drawn.
SNAPSHOT_JS = """() => {
  const grid = document.querySelector('.st-key-p2_table [role=grid], .st-key-p2_table [aria-rowcount]');
  const plot = document.querySelector('.st-key-p2_curves .js-plotly-plot');
  const progress = document.querySelector('.stMain [data-testid=stProgress]');
  // Plotly figures send numeric arrays as {dtype, bdata} (base64): count their values too.
  const width = {f8: 8, f4: 4, i4: 4, u4: 4, i2: 2, u2: 2, i1: 1, u1: 1};
  const count = a => a == null ? null : (a.length !== undefined ? a.length
                                         : (a.bdata ? atob(a.bdata).length / (width[a.dtype] || 8) : null));
  return {
    rows: grid ? Number(grid.getAttribute('aria-rowcount')) - 1 : -1,
    traces: plot && plot.data ? plot.data.map(t => [t.name, count(t.x), (t.line || {}).dash || null]) : [],
    progress: progress ? progress.innerText : '',
  };
}"""


_storages: dict = {}


def trials_in(url: str, name: str):
    storage = _storages.get(url) or _storages.setdefault(url, open_storage(url))
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id)


def snapshot(page) -> dict:
    return page.evaluate(SNAPSHOT_JS)


def wait_idle(page) -> None:
    page.wait_for_selector("[data-test-script-state=notRunning]")


def open_part2(page, base_url: str) -> None:
    page.goto(base_url + "/part2_study")
    page.wait_for_selector(".st-key-p2_choice")
    wait_idle(page)
    time.sleep(1)
    assert page.locator("[role=dialog]").count() == 0, "a direct link must not show a dialog"


def set_number(page, key: str, value) -> None:
    field = page.locator(f".st-key-{key} input")
    field.fill(str(value))
    field.press("Tab")


def set_text(page, key: str, value: str) -> None:
    field = page.locator(f".st-key-{key} input")
    field.fill(value)
    field.press("Tab")


def choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox ``key``; the page may rerun (and close the list) while it opens, so
    reopen it until the option is listed and the choice shows."""

    def chosen() -> bool:
        page.locator(f".st-key-{key}").click()
        try:
            page.get_by_role("option", name=option).click(timeout=10_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            return False
        return page.locator(f".st-key-{key} input").input_value() == option

    wait_until(chosen, f"option {option!r} of {key}", interval=1)


def epochs_reported(url: str, name: str) -> int:
    return sum(len(t.intermediate_values) for t in trials_in(url, name))


def test_live_study_stop_continue_and_page_switch(streamlit_server, chromium, artifacts, tmp_path):
    url = streamlit_server.url
    storage_url = f"sqlite:///{tmp_path}/app.sqlite3"  # what the streamlit_server fixture configured
    page = new_page(chromium, viewport={"width": 1400, "height": 2000})
    open_part2(page, url)
    set_text(page, "p2_name", "live_study")
    set_number(page, "p2_trials", 10)
    set_number(page, "p2_epochs", 60)  # a few seconds a trial: time to see one mid-way
    page.locator(".st-key-p2_start button").first.click()
    page.wait_for_selector(".st-key-p2_stop button")

    # Watch, without any click: the table gains rows and the curves gain traces and epochs.
    seen, deadline = [], time.monotonic() + 600
    stop_now = False
    while time.monotonic() < deadline and not stop_now:
        time.sleep(0.5)
        shot = snapshot(page)
        seen.append((shot["rows"], len(shot["traces"]), sum(n for _, n, _ in shot["traces"])))
        trials = trials_in(storage_url, "live_study")
        running = [t for t in trials if t.state == TrialState.RUNNING and len(t.intermediate_values) >= 2]
        finished = sum(t.state in FINISHED for t in trials)
        stop_now = finished >= 3 and running and len({s[2] for s in seen}) >= 4
    page.screenshot(path=str(artifacts / "part2_live.png"), full_page=True)
    assert stop_now, f"the study did not reach a mid-trial point to stop at: {seen[-5:]}"
    rows, traces, points = zip(*seen)
    shown = [r for r in rows if r >= 0]  # -1: the table was not drawn yet
    assert shown and max(shown) > min(shown), f"the trial table did not grow: {rows}"
    assert max(traces) > min(traces), f"no new intermediate curves appeared: {traces}"
    assert len(set(points)) >= 4, f"the curves did not grow epoch by epoch: {points}"

    # Stop mid-trial: the running trial is failed, finished trials stay.
    finished_before = sum(t.state in FINISHED for t in trials_in(storage_url, "live_study"))
    page.locator(".st-key-p2_stop button").first.click()
    page.wait_for_selector(".st-key-p2_start button")
    page.get_by_text("Study stopped").wait_for()
    trials = trials_in(storage_url, "live_study")
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states, states
    finished_after_stop = sum(s in FINISHED for s in states)
    assert 3 <= finished_before <= finished_after_stop < 10, (finished_before, states)
    assert states.count(TrialState.FAIL) <= 1, states
    kept = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    page.screenshot(path=str(artifacts / "part2_stopped.png"), full_page=True)

    # Continue the same study: the form is pre-filled with it and its total; run the missing trials.
    wait_until(lambda: page.locator(".st-key-p2_name input").input_value() == "live_study", "the pre-filled name")
    assert page.locator(".st-key-p2_trials input").input_value() == "10"
    page.locator(".st-key-p2_start button").first.click()
    page.wait_for_selector(".st-key-p2_stop button")

    # Switch to Part I and back while it runs: it keeps running and the page picks it up again.
    page.locator("[data-testid=stSidebarNav] a[href$='part1_manual']").click()
    page.wait_for_selector(".st-key-p2_stop", state="detached")
    on_leave = epochs_reported(storage_url, "live_study")
    wait_until(lambda: epochs_reported(storage_url, "live_study") > on_leave + 2, "the study to go on on Part I")
    page.locator("[data-testid=stSidebarNav] a[href$='part2_study']").click()
    wait_until(
        lambda: page.locator(".st-key-p2_start button").count() and "10 of 10" in snapshot(page)["progress"],
        "the continued study to finish its 10 trials",
        timeout=900,
        interval=1,
    )
    page.screenshot(path=str(artifacts / "part2_continued.png"), full_page=True)
    trials = trials_in(storage_url, "live_study")
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states, states
    assert sum(s in FINISHED for s in states) == 10, states
    assert all(trials[n].value == value for n, value in kept.items())  # the first run's trials are kept
    # The page may be mid-redraw (the fragment reran the app at the end): wait for the table to show them all.
    shot = wait_until(lambda: (s := snapshot(page))["rows"] == len(trials) and s, "every trial in the table")
    assert "10 of 10" in shot["progress"], shot
    drawn = {name.split(" ")[1] for name, _, _ in shot["traces"]}
    assert drawn == {str(t.number) for t in trials if t.intermediate_values}
    # Dashed exactly when pruned (whether this run pruned any depends on the CPU; the CLI test below always
    # has a pruned trial to show).
    by_number = {t.number: t for t in trials}
    for name, epochs, dash in shot["traces"]:
        trial = by_number[int(name.split(" ")[1])]
        assert (dash == "dash") == (trial.state == TrialState.PRUNED), (name, dash, trial.state)
        assert epochs == len(trial.intermediate_values), name
    page.get_by_text("Best trial").first.wait_for()


def test_cli_worker_trials_appear_on_the_watching_page(streamlit_server, chromium, data_path, tmp_path, artifacts):
    storage_url = f"sqlite:///{tmp_path}/app.sqlite3"  # what the streamlit_server fixture configured
    page = new_page(chromium, viewport={"width": 1400, "height": 2000})
    open_part2(page, streamlit_server.url)
    # The instructor shares a study name; the page follows it before this worker has added a trial. Another
    # worker's trial was pruned after 3 epochs: it must be drawn dashed and cut short.
    study = optuna.create_study(storage=open_storage(storage_url), study_name="cli_study", direction="maximize")
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"layer_0": 16},
            distributions={"layer_0": IntDistribution(8, 32)},
            intermediate_values={1: 70.0, 2: 72.5, 3: 71.0},
        )
    )
    page.reload()
    wait_idle(page)
    choose(page, "p2_choice", "cli_study")
    page.wait_for_selector(".st-key-p2_table")
    shot = wait_until(
        lambda: (s := snapshot(page))["progress"].startswith("1 of") and s["traces"] and s,
        "the followed study's progress and curves",
    )
    assert shot["traces"] == [["trial 0 (pruned)", 3, "dash"]], shot
    cli = start_cli_study(
        storage_url,
        "cli_study",
        *("--trials", "6", "--epochs", "100", "--pruner", "none", "--data", str(data_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        rows_seen = []

        def all_rows_shown() -> bool:
            rows_seen.append(snapshot(page)["rows"])
            return cli.poll() is not None and rows_seen[-1] == 7

        wait_until(all_rows_shown, "the worker's 6 trials in the table", timeout=900, interval=1)
        output = cli.communicate(timeout=60)[0]
    finally:
        if cli.poll() is None:
            cli.terminate()
            cli.wait(30)
    page.screenshot(path=str(artifacts / "part2_cli.png"), full_page=True)
    assert cli.returncode == 0, output
    assert len(set(rows_seen)) >= 3 and any(2 <= r < 7 for r in rows_seen), f"not followed live: {rows_seen}"
    expected = {"trial 0 (pruned)": (3, "dash"), **{f"trial {n} (complete)": (100, None) for n in range(1, 7)}}
    drawn: dict = {}

    def every_trial_drawn_final() -> bool:  # the chart may redraw a moment after the table shows the last row
        drawn.clear()
        drawn.update({name: (epochs, dash) for name, epochs, dash in snapshot(page)["traces"]})
        return drawn == expected

    wait_until(every_trial_drawn_final, "every trial drawn in its final state", timeout=120)


def test_closing_the_tab_stops_the_sessions_study(streamlit_server, chromium, tmp_path):
    storage_url = f"sqlite:///{tmp_path}/app.sqlite3"
    page = new_page(chromium, viewport={"width": 1400, "height": 1600})
    open_part2(page, streamlit_server.url)
    set_text(page, "p2_name", "closed_tab")
    set_number(page, "p2_trials", 1000)  # far more than the ~30 s lease can run
    set_number(page, "p2_epochs", 200)
    page.locator(".st-key-p2_start button").first.click()
    page.wait_for_selector(".st-key-p2_stop button")
    wait_until(
        lambda: any(t.state == TrialState.RUNNING for t in trials_in(storage_url, "closed_tab")),
        "the study's first trial",
    )
    page.close()
    closed = time.monotonic()
    # Nobody renews the lease any more: the worker stops ~30 s later, failing its running trial.
    # Stopped = no RUNNING trial and no new trial for 5 s (between two trials there is briefly none).
    quiet_since, last_count, stopped_after = None, -1, None
    while time.monotonic() - closed < 600:
        trials = trials_in(storage_url, "closed_tab")
        running = any(t.state == TrialState.RUNNING for t in trials)
        if running or len(trials) != last_count:
            quiet_since, last_count = None, len(trials)
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 5:
            stopped_after = quiet_since - closed
            break
        time.sleep(0.5)
    assert stopped_after is not None, "the study kept running 10 minutes after the tab closed"
    assert stopped_after >= 20, f"stopped {stopped_after:.0f} s after the tab closed, before its 30 s lease ended"
    assert sum(t.state in FINISHED for t in trials) < 1000
