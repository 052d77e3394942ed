"""A server restart (``kill -9``, then the same command on the same port) in real Chromium: the open tabs reconnect
to app.py's own navigation, keep their address (the nickname) and record the next run under that nickname."""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest

from tests.conftest import StreamlitServer, descendants, free_port, new_page, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]

# Pages of the legacy navigation Streamlit makes from the pages/ folder (module files that are not pages): their
# URL paths are in the navigation message a page receives when it runs outside app.py.
FOLDER_PAGES = (b"manual_support", b"class_mode")


def record_frames(page) -> list[bytes]:
    """Every websocket frame the page receives, from now on (a reconnection's socket too)."""
    frames: list[bytes] = []

    def on_socket(socket) -> None:
        socket.on("framereceived", lambda p: frames.append(p if isinstance(p, bytes) else p.encode()))

    page.on("websocket", on_socket)
    return frames


def kill_server(server: StreamlitServer) -> None:
    """``kill -9`` the server, and then its compute pool's processes (a killed server leaves them running)."""
    below = descendants(server.process.pid)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.log.close()


def stored_nicknames(path) -> list[str | None]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT t.number, (SELECT a.value_json FROM trial_user_attributes a "
            "WHERE a.trial_id = t.trial_id AND a.key = 'nickname') FROM trials t ORDER BY t.number"
        ).fetchall()
    return [value.strip('"') if value else None for _, value in rows]


def train_3_epochs(page, storage) -> list[str | None]:
    """Type 3 epochs (number boxes), press Train, wait until the run is stored and the page run has ended; the
    stored runs' nicknames."""
    stored = len(stored_nicknames(storage))
    if not page.locator(".st-key-part1_exact input").is_checked():
        page.locator(".st-key-part1_exact label").click()
    epochs = page.locator(".st-key-part1_epochs input")
    epochs.fill("3")
    epochs.press("Tab")
    page.locator(".st-key-part1_train button").click()
    wait_until(lambda: page.wait_for_timeout(200) or len(stored_nicknames(storage)) > stored, "the run stored")
    page.locator("[data-test-script-state=notRunning]").wait_for()
    return stored_nicknames(storage)


def test_open_pages_come_back_inside_the_app_after_a_kill_9_restart(tmp_path, data_path, chromium, monkeypatch):
    monkeypatch.delenv("FETAL_HPO_INSTRUCTOR_KEY", raising=False)
    storage = tmp_path / "app.sqlite3"
    env = {"FETAL_HPO_DATA": str(data_path), "FETAL_HPO_STORAGE": f"sqlite:///{storage}"}
    port = free_port()
    server = StreamlitServer(env, tmp_path / "before.log", port=port)
    context = chromium.new_context(viewport={"width": 1300, "height": 900})
    try:
        results = new_page(context)  # an idle tab of another page reconnects at the same time
        results.goto(f"{server.url}/results?nick=Ada")
        part1 = new_page(context)
        part1.goto(f"{server.url}/part1_manual?nick=Ada")
        part1.locator(".st-key-part1_train button").wait_for()
        assert train_3_epochs(part1, storage) == ["Ada"]
        frames = record_frames(part1)

        with part1.expect_websocket():  # Part I reconnects to the restarted server
            kill_server(server)
            server = StreamlitServer(env, tmp_path / "after.log", port=port)
        # Playwright's sync API delivers frames while it is called: poll through it.
        wait_until(lambda: part1.wait_for_timeout(200) or any(b"Leaderboard" in f for f in frames), "the navigation")
        part1.locator("[data-test-script-state=notRunning]").wait_for()

        assert not any(name in f for f in frames for name in FOLDER_PAGES), "a run outside app.py (folder pages)"
        nav = part1.locator("[data-testid=stSidebarNav]").inner_text()
        assert "Part II: Optuna study" in nav and "keys" not in nav and "common" not in nav, nav
        assert "Ada" in part1.locator(".st-key-nick_box").inner_text()
        assert "nick=Ada" in part1.url, part1.url

        assert train_3_epochs(part1, storage) == ["Ada", "Ada"]
        assert "nick=Ada" in part1.url, part1.url
    finally:
        context.close()
        server.stop()
