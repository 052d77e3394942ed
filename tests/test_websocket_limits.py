"""What a browser's websocket may send the server (`streamlit run serve.py`), tried with a protocol client as a
hostile student would: forged widget ids, and widget values far larger than any page needs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState

from tests.conftest import StreamlitServer
from tests.helpers.ws_client import Tab, run

pytestmark = pytest.mark.timeout(900)

# Session keys of the app (pages/keys.py) and ids Streamlit never gives a widget.
FORGED_IDS = ("instructor_token", "nickname", "entered_through_app", "x", "")
BIG_VALUE_BYTES = 19_000_000  # what was accepted before: 24 sessions took the server from 361 MB to 1.32 GB
BIG_SESSIONS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_path):
    folder = tmp_path_factory.mktemp("ws")
    env = {"FETAL_HPO_DATA": str(data_path), "FETAL_HPO_STORAGE": f"sqlite:///{folder}/app.sqlite3"}
    running = StreamlitServer(env, folder / "streamlit.log")
    running.log_path = folder / "streamlit.log"
    yield running
    running.stop()


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


@pytest.mark.parametrize("page", ["", "part1_manual", "results"])
def test_forged_widget_ids_never_raise(server, page):
    """A rerun whose widget states carry ids equal to session keys (or no widget's id at all) draws the page as
    usual: no exception on the page, no traceback in the server's log."""

    async def forge() -> Tab:
        async with Tab(server.url, page) as tab:
            assert await tab.run()
            drawn = len(tab.widget_ids)
            forged = [WidgetState(id=forged_id, string_value="forged") for forged_id in FORGED_IDS]
            assert await tab.run(forged), f"connection closed ({tab.close_code})"
            assert len(tab.widget_ids) == drawn  # the page is drawn again, whole
            return tab

    tab = run(forge())
    assert tab.exceptions == []
    log = server.log_path.read_text()
    assert "Traceback" not in log and "Uncaught app execution" not in log, log[-3000:]


def test_a_too_big_widget_value_is_refused_and_memory_does_not_grow(server):
    """Sessions each sending a 19 MB nickname: every connection is closed as "message too big" (1009) and the
    server's memory grows by less than two such values (it held them all before); the server serves on."""

    async def send_big() -> tuple[bool, int | None]:
        async with Tab(server.url, "") as tab:
            assert await tab.run()
            big = WidgetState(id=tab.widget_id("nick_input"), string_value="x" * BIG_VALUE_BYTES)
            return await tab.run([big]), tab.close_code

    async def quiet_page() -> list[str]:
        async with Tab(server.url, "") as tab:
            assert await tab.run()
            return tab.exceptions

    async def sessions() -> list[tuple[bool, int | None]]:
        return await asyncio.gather(*(send_big() for _ in range(BIG_SESSIONS)))

    assert run(quiet_page()) == []  # the app's imports and caches are in memory before the baseline
    before = rss_mb(server.process.pid)
    results = run(sessions())
    time.sleep(2)  # let the closed sessions' runs end
    grown = rss_mb(server.process.pid) - before
    print(f"server RSS {before:.0f} MB, +{grown:.0f} MB after {BIG_SESSIONS} x {BIG_VALUE_BYTES / 1e6:.0f} MB values")
    assert results == [(False, 1009)] * BIG_SESSIONS
    assert grown < 2 * BIG_VALUE_BYTES / 1e6
    assert run(quiet_page()) == []
