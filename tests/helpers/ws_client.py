"""A minimal client of Streamlit's browser protocol for tests: one browser tab without a browser.

It connects to ``/_stcore/stream`` (subprotocol ``streamlit``), sends ``BackMsg.rerun_script`` with any widget
states (forged ones included: that is its use) and reads ``ForwardMsg`` until the run finishes, keeping what a
test asserts on: the exceptions the page shows, the widgets drawn, and how the server closed the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def run(coroutine: Coroutine):
    """``asyncio.run`` in a thread of its own: a test process may already run an event loop (Playwright's)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


FINISHED = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR)


@dataclass
class Tab:
    """One session on ``page`` (a URL path such as ``part1_manual``; "" for Home) with ``query`` (no ``?``)."""

    server_url: str
    page: str = ""
    query: str = ""
    timeout: float = 300
    page_hash: str = ""  # named by the server after the first run
    exceptions: list[str] = field(default_factory=list)  # exception elements the page showed
    widget_ids: list[str] = field(default_factory=list)  # widgets drawn by the last run
    close_code: int | None = None  # set once the server closed the connection
    navigations: list[list[str]] = field(default_factory=list)  # the URL paths of each navigation received
    ws: object = None

    async def __aenter__(self) -> Tab:
        url = self.server_url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.ws = await connect(
            url, subprotocols=["streamlit"], max_size=None, open_timeout=self.timeout, ping_interval=None
        )
        return self

    async def __aexit__(self, *_) -> None:
        await self.ws.close()

    def widget_id(self, key: str) -> str:
        """The id of the widget made with ``key=key`` (Streamlit ends it with ``-<key>``)."""
        return next(i for i in self.widget_ids if i.endswith(f"-{key}"))

    async def send_rerun(self, widgets: list[WidgetState] = ()) -> None:
        state = ClientState(query_string=self.query, page_script_hash=self.page_hash)
        if not self.page_hash:
            state.page_name = self.page
        state.widget_states.widgets.extend(widgets)
        await self.ws.send(BackMsg(rerun_script=state).SerializeToString())

    async def run(self, widgets: list[WidgetState] = ()) -> bool:
        """Send a rerun and read until it has finished; False when the server closed the connection instead."""
        try:
            await self.send_rerun(widgets)
        except ConnectionClosed:  # the server refused the message while it arrived
            self.close_code = self.ws.close_code
            return False
        return await self.finish()

    async def finish(self) -> bool:
        """Read until a full script run has finished (True) or the connection is closed (False)."""
        drawn: list[str] = []
        try:
            async with asyncio.timeout(self.timeout):
                async for data in self.ws:
                    message = ForwardMsg.FromString(data)
                    kind = message.WhichOneof("type")
                    if kind == "new_session" and not message.metadata.run.fragment_ids:
                        self.page_hash = message.new_session.page_script_hash
                        drawn = []
                    elif kind == "navigation":  # the page app.py's st.navigation chose, and its pages
                        self.page_hash = message.navigation.page_script_hash
                        self.navigations.append([page.url_pathname for page in message.navigation.app_pages])
                    elif kind == "page_info_changed":
                        self.query = message.page_info_changed.query_string
                    elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                        element = message.delta.new_element
                        proto = getattr(element, element.WhichOneof("type"))
                        if element.WhichOneof("type") == "exception" and not proto.is_warning:
                            self.exceptions.append(f"{proto.type}: {proto.message}")
                        if getattr(proto, "id", ""):
                            drawn.append(proto.id)
                    elif kind == "script_finished" and message.script_finished in FINISHED:
                        if not message.metadata.run.fragment_ids:
                            self.widget_ids = drawn
                            return True
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        return False
