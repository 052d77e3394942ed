"""The compute pool seen from real Chromium sessions against `streamlit run app.py`: its worker processes start
with the server's first visit and end with the server, and a closed tab gives its pool worker to the next
student in the queue.

Part I live through the pool (intermediate epochs on the chart, Stop keeping the partial curve) is covered by
tests/test_browser_part1.py, which trains on the pool too.
"""

from __future__ import annotations

import re

import pytest

from fetal_core.pool import RUN_LEASE_SECONDS
from tests.conftest import (
    BROWSER_WAIT_SECONDS,
    StreamlitServer,
    descendants,
    new_page,
    process_identity,
    wait_until,
)
from tests.test_browser_part1 import final_heading, open_part1, set_number, type_exact_values

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]
# A fresh server's first visit starts the pool (spawned worker processes importing the app) before the page is
# drawn: minutes when the shared machine runs at a load of 30. The wait ends as soon as the sidebar shows it.
POOL_START_SECONDS = 5 * BROWSER_WAIT_SECONDS


def pool_server(tmp_path, data_path, workers: int, interactive: int = 1) -> StreamlitServer:
    """A live app whose embedded compute pool has ``workers`` worker processes for studies and ``interactive``
    more reserved for Part I runs."""
    env = {
        "FETAL_HPO_DATA": str(data_path),
        "FETAL_HPO_STORAGE": f"sqlite:///{tmp_path}/app.sqlite3",
        "FETAL_HPO_POOL_WORKERS": str(workers),
        "FETAL_HPO_INTERACTIVE_WORKERS": str(interactive),
    }
    env.pop("FETAL_HPO_SCHEDULER", None)
    return StreamlitServer(env, tmp_path / "streamlit.log")


@pytest.fixture
def one_worker_server(tmp_path, data_path):
    server = pool_server(tmp_path, data_path, workers=1, interactive=0)  # a queue needs every worker busy
    yield server
    server.stop()


def sidebar_pool(page) -> str:
    """The sidebar's compute pool lines ("N worker(s) on this server / R running, Q queued")."""
    return page.locator("[data-testid=stSidebar]").inner_text()


def wait_for_pool_line(page, pattern: str, timeout: float = BROWSER_WAIT_SECONDS) -> str:
    """Wait until the sidebar (refreshed every 5 s) shows ``pattern``; return the sidebar's text."""
    return wait_until(
        lambda: (text := sidebar_pool(page)) and re.search(pattern, text) and text,
        f"the sidebar to show {pattern!r}",
        timeout=timeout,
    )


def test_pool_workers_start_with_the_first_visit_and_end_with_the_server(tmp_path, data_path, chromium):
    workers = 2 + 1  # and the one reserved for Part I
    server = pool_server(tmp_path, data_path, 2)
    seen: set[tuple[int, int]] = set()
    try:
        page = new_page(chromium)
        page.goto(server.url)
        wait_for_pool_line(page, rf"{workers} worker\(s\) on this server", timeout=POOL_START_SECONDS)

        def below_server() -> set[tuple[int, int]]:
            return {ident for pid in descendants(server.process.pid) if (ident := process_identity(pid))}

        started = wait_until(lambda: len(below_server()) >= workers and below_server(), "the pool's worker processes")
        seen |= started
        page.close()
        seen |= below_server()  # anything started since (a replaced worker, a helper process)
    finally:
        server.stop()
    assert server.process.returncode is not None
    # The server ended on SIGTERM; every process it started must end with it (a zombie waiting to be reaped
    # counts as ended: it runs nothing and holds no memory).
    wait_until(
        lambda: not [ident for ident in seen if process_identity(ident[0]) == ident],
        f"the server's {len(seen)} descendant processes to end after it stopped",
    )


def test_a_closed_tab_gives_its_pool_worker_to_the_next_in_the_queue(one_worker_server, chromium, artifacts):
    server = one_worker_server
    first, second, third = (chromium.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(3))
    try:
        # Student A takes the only pool worker with a run of tens of minutes ([256, 256], batch 8, 10,000 epochs).
        page_a = new_page(first)
        page_a.goto(server.url)
        wait_for_pool_line(page_a, r"1 worker\(s\) on this server", timeout=POOL_START_SECONDS)
        open_part1(page_a, server)
        type_exact_values(page_a)  # number boxes instead of the default sliders
        layers = page_a.locator(".st-key-part1_layers input")
        layers.fill("256, 256")
        layers.press("Tab")
        set_number(page_a, "part1_batch", 8)
        set_number(page_a, "part1_epochs", 10000)
        page_a.locator(".st-key-part1_train button").first.click()
        page_a.locator(".st-key-part1_progress").get_by_text(re.compile(r"epoch \d+ / 10000")).wait_for()

        # Student B's short run waits for it, and is told so.
        page_b = new_page(second)
        open_part1(page_b, server)
        set_number(page_b, "part1_epochs", 20)
        page_b.locator(".st-key-part1_train button").first.click()
        page_b.locator(".st-key-part1_progress").get_by_text("You are number 1 in the queue").wait_for()
        # A third visitor's sidebar shows the pool's load (B's own sidebar waits while B's script waits).
        observer = new_page(third)
        observer.goto(server.url)
        wait_for_pool_line(observer, r"1 worker\(s\) on this server\s+1 running, 1 queued")
        page_b.screenshot(path=str(artifacts / "pool_queued.png"))

        # A closes the tab. Streamlit stops the closed session's script, whose Part I loop stops A's run on the
        # pool; were that to fail, nobody renews A's lease any more and the pool stops the run after 15 s.
        # Either way B's run starts: within the lease plus a generous wait for B's 20 epochs (A's run alone
        # would hold the worker for tens of minutes).
        first.close()
        page_b.locator(".st-key-part1_result h3", has_text="Run 1").wait_for(
            timeout=(RUN_LEASE_SECONDS + BROWSER_WAIT_SECONDS) * 1000
        )
        assert "Run 1: finished" in final_heading(page_b)
        assert "20 epoch(s) trained" in page_b.locator(".st-key-part1_progress").inner_text()
        # Nothing of A's run is left on the pool: it was stopped, not merely overtaken.
        wait_for_pool_line(observer, r"1 worker\(s\) on this server\s+0 running, 0 queued")
        page_b.screenshot(path=str(artifacts / "pool_after_closed_tab.png"))
    finally:
        for context in (first, second, third):
            try:
                context.close()
            except Exception:  # already closed
                pass
