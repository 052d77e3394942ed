"""A small client of Streamlit's browser protocol: what a student's browser sends and receives, without a browser.

One ``Session`` is one browser tab: a websocket to ``/_stcore/stream`` (subprotocol ``streamlit``), protobuf
``BackMsg`` out and ``ForwardMsg`` in (``streamlit.proto``). It does what the frontend does where the lab's
pages need it, and nothing else:

- the first ``rerun_script`` names the page by its URL path (``page_name``) with the query string; later ones
  name it by the ``page_script_hash`` the server sent, with the query string the script last set;
- it keeps the page as the frontend does, a tree of delta paths -> elements and blocks, and drops what a
  finished run did not redraw; widgets are found by key (a widget made with ``key=k`` has an id ending ``-k``);
- every rerun carries the state of every widget on the page; a click adds a ``trigger_value``;
- an ``st.fragment(run_every=...)`` announces itself with ``auto_rerun``: the session reruns that fragment at
  that interval until a full run starts or ``stop_auto_rerun`` ends it;
- ``wait_for(condition)`` returns the time at which the received content first met the condition; an
  ``exception`` element fails every wait at once, and every wait has a timeout.

Many sessions share one asyncio loop; the client parses protobuf and little else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Block_pb2 import Block
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.NumberInput_pb2 import NumberInput
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect


class ServerError(RuntimeError):
    """The server sent an exception to the page, or the session ended."""


@dataclass
class Node:
    proto: object  # an Element or a Block
    kind: str  # the element's or block's type: "metric", "progress", "vertical", ...
    run: str  # the script run that drew it
    fragment: str  # the fragment that drew it ("" for the main script)
    id: str  # a widget's or keyed block's id ("" for anything else)


def widget_state(kind: str, el) -> WidgetState | None:
    """The value the frontend holds for a widget the server just drew, as it sends it (None: nothing to send).

    The server's value when it set one (``set_value``), else the widget's default. The lab's pages use no other
    widget types: for any other, nothing is sent and the server keeps the value it has.
    """
    state, told = WidgetState(id=el.id), getattr(el, "set_value", False)
    if kind == "checkbox":
        state.bool_value = el.value if told else el.default
    elif kind in ("number_input", "text_input", "text_area") and el.HasField("value" if told else "default"):
        value = el.value if told else el.default  # neither: an empty box
        if kind != "number_input":
            state.string_value = value
        elif el.data_type == NumberInput.INT:
            state.int_value = int(value)
        else:
            state.double_value = value
    elif kind in ("selectbox", "radio") and el.HasField("raw_value" if told else "default"):
        state.string_value = el.raw_value if told else el.options[el.default]
    elif kind == "slider" and el.options:  # a select_slider: its options' labels
        state.string_array_value.data[:] = el.raw_value if told else [el.options[int(i)] for i in el.default]
    elif kind == "slider":
        state.double_array_value.data[:] = el.value if told else el.default
    elif kind in ("multiselect", "button_group") and told:
        state.string_array_value.data[:] = el.raw_values
    elif kind == "multiselect":
        state.string_array_value.data[:] = [el.options[i] for i in el.default]
    else:
        return None
    return state


def inside(path: tuple[int, ...], tops: set[tuple[int, ...]]) -> bool:
    """Whether ``path`` is one of ``tops`` or lies inside one of them."""
    return any(path[:i] in tops for i in range(1, len(path) + 1))


class Session:
    """One browser tab on ``page`` (its URL path, e.g. ``part1_manual``) with ``query`` (without the ``?``)."""

    def __init__(self, server_url: str, page: str, query: str = "", name: str = "", timeout: float = 600) -> None:
        self.url = server_url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.page, self.query, self.name, self.timeout = page, query, name or page, timeout
        self.page_hash = ""  # unknown until the server names it
        self.nodes: dict[tuple[int, ...], Node] = {}
        self.widgets: dict[str, WidgetState | None] = {}  # widget id -> the value the session would send
        self.run = ""  # the script run whose messages arrive now
        self.full_runs = 0  # full script runs that finished successfully
        self.exceptions: list[str] = []
        self.watches: list[tuple[Callable[[Session], bool], asyncio.Future]] = []
        self.timers: dict[str, tuple[float, asyncio.Task]] = {}  # fragment id -> (interval, its rerun loop)
        self.ws = self.reader = None
        self.ended = ""  # why the connection ended

    # ------------------------------------------------------------ connection

    async def open(self) -> None:
        """Connect, ask for the page, and wait until its first full run has finished."""
        # no pings: a browser sends none, and a busy server answers late
        self.ws = await connect(
            self.url, subprotocols=["streamlit"], max_size=None, open_timeout=self.timeout, ping_interval=None
        )
        self.reader = asyncio.create_task(self._read(), name=f"read {self.name}")
        await self.rerun()
        await self.wait_for(lambda s: s.full_runs > 0)

    async def close(self) -> None:
        for _, task in self.timers.values():
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a failed read already failed the waits
                await self.reader

    # ------------------------------------------------------------ what a student does

    def widget_id(self, key: str) -> str:
        for widget_id in self.widgets:
            if widget_id.endswith(f"-{key}"):
                return widget_id
        raise KeyError(f"{self.name}: no widget with key {key!r} on {self.page} (keys: {sorted(self.keys())})")

    def keys(self) -> list[str]:
        return [i.rsplit("-", 1)[-1] for i in self.widgets]

    def value(self, key: str):
        state = self.widgets[self.widget_id(key)]
        field = state and state.WhichOneof("value")
        if field is None:
            return None
        value = getattr(state, field)
        return list(value.data) if field.endswith("_array_value") else value

    def set(self, key: str, value) -> None:
        """Type or pick ``value`` in the widget ``key`` (sent with the next rerun, as a form would)."""
        field = {bool: "bool_value", int: "int_value", float: "double_value", str: "string_value"}.get(type(value))
        if field is None:
            raise TypeError(f"{self.name}: cannot set {key!r} to {value!r}")
        state = WidgetState(id=self.widget_id(key))
        setattr(state, field, value)
        self.widgets[state.id] = state

    async def click(self, key: str) -> None:
        """Press the button (or form submit button) ``key``: a rerun with its trigger."""
        await self.rerun(trigger=self.widget_id(key))

    async def rerun(self, trigger: str = "", fragment: str = "") -> None:
        state = ClientState(query_string=self.query, page_script_hash=self.page_hash, fragment_id=fragment)
        if not self.page_hash:
            state.page_name = self.page
        state.is_auto_rerun = bool(fragment)
        state.widget_states.widgets.extend(s for s in self.widgets.values() if s is not None)
        if trigger:
            state.widget_states.widgets.add(id=trigger, trigger_value=True)
        await self.ws.send(BackMsg(rerun_script=state).SerializeToString())

    async def rerun_and_settle(self) -> None:
        """Send the widgets' values and wait until the page is redrawn with them."""
        runs = self.full_runs
        await self.rerun()
        await self.wait_for(lambda s: s.full_runs > runs)

    async def wait_for(self, condition: Callable[[Session], bool], timeout: float | None = None) -> float:
        """Wait until ``condition(self)`` holds; return the wall-clock time of the message that made it hold."""
        self._check()
        if condition(self):
            return time.time()
        future = asyncio.get_running_loop().create_future()
        self.watches.append((condition, future))
        try:
            return await asyncio.wait_for(future, timeout or self.timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.name}: condition not met in {timeout or self.timeout:.0f} s") from None
        finally:
            self.watches = [w for w in self.watches if w[1] is not future]

    # ------------------------------------------------------------ what the page shows

    def under(self, key: str) -> list[Node]:
        """The nodes inside the keyed block ``key``."""
        blocks = {p for p, n in self.nodes.items() if isinstance(n.proto, Block) and n.id.endswith(f"-{key}")}
        return [n for p, n in sorted(self.nodes.items()) if inside(p[:-1], blocks)]

    def has_key(self, key: str) -> bool:
        return any(n.id.endswith(f"-{key}") for n in self.nodes.values())

    def main(self, kind: str) -> list:
        """The elements of type ``kind`` in the page's main area."""
        return [n.proto for p, n in self.nodes.items() if p[0] == 0 and n.kind == kind]

    def texts(self) -> list[str]:
        """Markdown, alert and caption bodies on the page."""
        return [n.proto.body for n in self.nodes.values() if n.kind in ("markdown", "alert")]

    # ------------------------------------------------------------ receiving

    def _check(self) -> None:
        if self.exceptions:
            raise ServerError(f"{self.name}: the server sent {len(self.exceptions)} exception(s): {self.exceptions}")
        if self.ended:
            raise ServerError(f"{self.name}: {self.ended}")

    async def _read(self) -> None:
        ended = "the server closed the connection"
        try:
            async for data in self.ws:
                self._handle(ForwardMsg.FromString(data))
                self._resolve(time.time())
        except Exception as err:  # every wait fails with it
            ended = f"reading failed: {err!r}"
            raise
        finally:
            self.ended = ended
            self._resolve(time.time())

    def _resolve(self, received: float) -> None:
        for condition, future in self.watches:
            if future.done():
                continue
            if self.exceptions or self.ended:
                future.set_exception(ServerError(f"{self.name}: {self.exceptions or self.ended}"))
            elif condition(self):
                future.set_result(received)

    def _handle(self, message: ForwardMsg) -> None:
        kind = message.WhichOneof("type")
        if kind == "new_session":
            self.run = message.metadata.run.script_run_id
            if not message.metadata.run.fragment_ids:  # a full run: its fragments announce their reruns again
                self.page_hash = message.new_session.page_script_hash
                for _, task in self.timers.values():
                    task.cancel()
                self.timers.clear()
        elif kind == "navigation":
            self.page_hash = message.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query = message.page_info_changed.query_string
        elif kind == "delta":
            self._apply(tuple(message.metadata.delta_path), message.delta)
        elif kind == "auto_rerun":
            self._every(message.auto_rerun.fragment_id, message.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for fragment in message.stop_auto_rerun.fragment_ids:
                if fragment in self.timers:
                    self.timers.pop(fragment)[1].cancel()
        elif kind == "script_finished":
            self._finished(message)
        elif kind == "session_event" and message.session_event.HasField("script_compilation_exception"):
            error = message.session_event.script_compilation_exception
            self.exceptions.append(f"{error.type}: {error.message}")
        elif kind == "ref_hash":  # never sent: the session tells the server it caches nothing
            raise ServerError(f"{self.name}: got a cached-message reference")

    def _apply(self, path: tuple[int, ...], delta) -> None:
        which = delta.WhichOneof("type")
        if which == "new_element":
            proto = delta.new_element
            kind = proto.WhichOneof("type")
            proto = getattr(proto, kind)
            for other in [p for p in self.nodes if p[: len(path)] == path and p != path]:
                del self.nodes[other]  # an element replaces a block and everything in it
            if kind == "exception" and not proto.is_warning:
                self.exceptions.append(f"{proto.type}: {proto.message}")
            if getattr(proto, "id", "") and (proto.id not in self.widgets or getattr(proto, "set_value", False)):
                self.widgets[proto.id] = widget_state(kind, proto)  # else the session keeps the value it has
        elif which == "add_block":
            proto = delta.add_block
            kind = proto.WhichOneof("type")
        else:  # a transient (spinner, toast): nothing the benchmark waits for
            return
        self.nodes[path] = Node(proto, kind, self.run, delta.fragment_id, getattr(proto, "id", ""))

    def _finished(self, message: ForwardMsg) -> None:
        status, run = message.script_finished, message.metadata.run
        if status == ForwardMsg.FINISHED_SUCCESSFULLY and run.script_run_id == self.run:
            stale = [p for p, n in self.nodes.items() if n.run != self.run]
            self.full_runs += 1
        elif status == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
            # only inside the blocks this fragment run redrew
            redrawn = {p for p, n in self.nodes.items() if n.run == self.run and n.fragment in run.fragment_ids}
            stale = [p for p, n in self.nodes.items() if n.run != self.run and inside(p, redrawn)]
        else:
            return
        stale = set(stale)
        self.nodes = {p: n for p, n in self.nodes.items() if not inside(p, stale)}  # with what they hold
        alive = {n.id for n in self.nodes.values()}
        self.widgets = {i: s for i, s in self.widgets.items() if i in alive}

    def _every(self, fragment: str, interval: float) -> None:
        if fragment in self.timers and self.timers[fragment][0] == interval:
            return

        async def loop() -> None:
            while not self.ended:
                await asyncio.sleep(interval)
                await self.rerun(fragment=fragment)

        if fragment in self.timers:
            self.timers[fragment][1].cancel()
        self.timers[fragment] = (interval, asyncio.create_task(loop(), name=f"rerun {fragment}"))
