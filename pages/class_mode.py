"""Class mode's shared Streamlit pieces: the session's nickname (asked once, kept in the URL as ``?nick=``)
and the lesson in the configured storage. The logic lives in ``fetal_core.lesson``."""

from __future__ import annotations

import io
import ipaddress
import math
import socket
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlsplit

import segno
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from fetal_core.lesson import (
    SIGN_IN_COOKIE,
    SIGN_IN_SECONDS,
    KeyGuard,
    Presets,
    SignIns,
    check_nickname,
    current_lesson,
    lesson_nicknames,
    lesson_presets,
    record_run,
    session_token,
    token_valid,
)
from fetal_core.limits import ConfigError
from fetal_core.text import plain
from pages import keys
from pages.common import app_settings, configured_storage

NICK_QUERY = "nick"  # URL query parameter that keeps it across a reload


def nickname() -> str | None:
    """This session's nickname (always one that passed ``check_nickname``), or None.

    A session that has none yet takes a valid one from the address (``?nick=``) first: the name the page showed
    goes with its run even when the page ran before the sidebar read it (a tab reconnecting to a restarted server).
    """
    nick = st.session_state.get(keys.NICKNAME)
    if nick is None and NICK_QUERY in st.query_params:
        try:
            nick = check_nickname(st.query_params[NICK_QUERY], taken_nicknames())
        except ConfigError:  # nickname_sidebar says why and drops it from the address
            return None
        st.session_state[keys.NICKNAME] = nick
    return nick


def nickname_query() -> dict[str, str]:
    """The URL parameter that keeps the nickname (for pages that rewrite ``st.query_params``)."""
    nick = nickname()
    return {NICK_QUERY: nick} if nick else {}


def _change_nickname() -> None:
    st.session_state.pop(keys.NICKNAME, None)
    if NICK_QUERY in st.query_params:
        del st.query_params[NICK_QUERY]


def _take_typed_nickname() -> None:
    """The nickname form's submit: keep a valid nickname, or the error to show (never the typed text as Markdown)."""
    try:
        st.session_state[keys.NICKNAME] = check_nickname(st.session_state.get(keys.NICK_INPUT, ""), taken_nicknames())
    except ConfigError as err:
        st.session_state[keys.NICK_ERROR] = str(err)


def nickname_sidebar() -> None:
    """Ask for a nickname once per browser session (or take a valid one from the URL) and show it as text."""
    nick = nickname()
    with st.sidebar, st.container(key="nick_box"):
        if nick is None and NICK_QUERY in st.query_params:
            try:
                nick = check_nickname(st.query_params[NICK_QUERY], taken_nicknames())
            except ConfigError as err:
                st.error(f"Ignored the nickname in the link: {plain(err)}")
                del st.query_params[NICK_QUERY]
            else:
                st.session_state[keys.NICKNAME] = nick
        if nick is None:
            with st.form("nick_form", border=False):
                st.text_input(
                    "Your nickname",
                    key=keys.NICK_INPUT,
                    placeholder="e.g. Ada_42",
                    help="Shown beside your runs on the leaderboard: 1 to 24 letters, digits, spaces, '-' or '_'.",
                )
                st.form_submit_button("Use this nickname", key="nick_submit", on_click=_take_typed_nickname)
                error = st.session_state.pop(keys.NICK_ERROR, None)
                if error:
                    st.error(plain(error))
        else:
            st.caption("Your nickname")
            st.markdown(f"**{plain(nick)}**")
            st.button("Change nickname", key="nick_change", on_click=_change_nickname, type="tertiary")
    if nick is not None and st.query_params.get(NICK_QUERY) != nick:
        st.query_params.from_dict({**st.query_params.to_dict(), NICK_QUERY: nick})  # a reload keeps it


@st.cache_resource(show_spinner=False)
def _recorder() -> ThreadPoolExecutor:
    """The server's threads that write finished runs to the storage (a write is mostly waiting on the database)."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="lesson-record")


def _record(storage, record: dict, nick: str | None) -> None:
    record_run(storage, current_lesson(storage), record, nick)


def record_in_lesson(record: dict) -> None:
    """Start adding a finished or stopped Part I run to the current lesson's by-hand study (the class
    leaderboard); ``finish_recording`` waits for it. The write (~0.5 s: one row per epoch) runs while the page
    draws the run. Draws nothing: this may run while a Stop is unwinding the page."""
    try:
        future = _recorder().submit(_record, configured_storage(), record, nickname())
    except Exception as err:  # the storage cannot be opened: Part I keeps working without the leaderboard
        future = Future()
        future.set_exception(err)
    st.session_state[keys.LESSON_RECORDING] = (record.get("label") or "This run", future)


def finish_recording() -> None:
    """Wait for the run being recorded, if any, and say so when it could not be (it stays in this session)."""
    held = st.session_state.pop(keys.LESSON_RECORDING, None)
    if held is None:
        return
    label, future = held
    try:
        future.result(timeout=120)
    except Exception as err:  # the storage is down or busy
        st.warning(plain(f"{label} is not on the leaderboard: {err}", 300))


PRESETS_TTL_SECONDS = 1.0  # with Part I's check every second, a change of presets reaches an open Part I within 2 s


@st.cache_data(ttl=PRESETS_TTL_SECONDS, show_spinner=False)
def _lesson_presets(url: str) -> dict:
    return lesson_presets(current_lesson(configured_storage())).to_dict()


def lesson_presets_now() -> Presets:
    """The current lesson's presets for Part I (none when the storage cannot be read: Part I keeps working)."""
    try:
        return Presets.from_dict(_lesson_presets(app_settings().storage_url))
    except Exception:
        return Presets()


@st.cache_data(ttl=PRESETS_TTL_SECONDS, show_spinner=False)
def _lesson_nicknames(url: str) -> list[str]:
    storage = configured_storage()
    return sorted(lesson_nicknames(storage, current_lesson(storage)))


def taken_nicknames() -> list[str]:
    """The nicknames recorded in the current lesson, which a new nickname must not look like (none when the
    storage cannot be read: a nickname is still checked for everything else)."""
    try:
        return _lesson_nicknames(app_settings().storage_url)
    except Exception:
        return []


# ---------------------------------------------------------------- the instructor


SIGN_IN_PENDING = "instructor_sign_in_pending"  # what the page still has to write to the browser's cookie


@st.cache_resource(show_spinner=False)
def sign_ins() -> SignIns:
    """The server's sign-ins that outlive a reload (one map per server process: a restart empties it)."""
    return SignIns()


def sign_in_cookie() -> str | None:
    """The browser's sign-in id, as sent when this session connected (None outside a server)."""
    try:
        return st.context.cookies.get(SIGN_IN_COOKIE)
    except Exception:
        return None


def is_instructor() -> bool:
    """Whether this session entered the server's instructor key, or its browser did within ``SIGN_IN_SECONDS``
    on this server with this key (re-checked at every action)."""
    if token_valid(st.session_state.get(keys.INSTRUCTOR_TOKEN)):
        return True
    token = sign_ins().check(sign_in_cookie())
    if token is None:
        return False
    st.session_state[keys.INSTRUCTOR_TOKEN] = token
    return True


def write_sign_in_cookie() -> None:
    """Hand a new sign-in id to the browser's cookie (or expire it after Lock). Set by script, the cookie is
    neither in the address nor on screen; SameSite=Strict keeps other sites' pages from sending it."""
    pending = st.session_state.pop(SIGN_IN_PENDING, None)
    if pending is None:
        return
    value, age = (pending, SIGN_IN_SECONDS) if pending else ("", 0)
    assert all(c.isalnum() or c in "-_" for c in value)  # token_urlsafe: nothing to escape in the script
    st.html(
        f"<script>document.cookie = '{SIGN_IN_COOKIE}={value}; Max-Age={int(age)}; Path=/; SameSite=Strict'"
        " + (location.protocol === 'https:' ? '; Secure' : '');</script>",
        unsafe_allow_javascript=True,
        width="content",
    )


@st.cache_resource(show_spinner=False)
def key_guard() -> KeyGuard:
    """The server's count of wrong instructor keys, per session and in all (one per server process)."""
    return KeyGuard()


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no session"


def unlock_with_typed_key() -> None:
    """The key form's submit: keep the session token on a match; forget what was typed either way. A wrong key
    makes the next try wait (``KeyGuard``); a try before then is refused unchecked."""
    typed = st.session_state.pop(keys.INSTRUCTOR_KEY_INPUT, "")
    attempt = key_guard().attempt(_session_id(), typed)
    if attempt.granted:
        st.session_state[keys.INSTRUCTOR_TOKEN] = session_token()
        st.session_state[SIGN_IN_PENDING] = sign_ins().issue() or ""
        return
    st.session_state.pop(keys.INSTRUCTOR_TOKEN, None)
    wait = math.ceil(attempt.wait)
    if not attempt.checked:
        refused = f"Too many wrong keys: wait {wait} s, then try again (this try was not checked)."
    else:
        refused = "That is not the instructor key." + (f" Wait {wait} s before the next try." if wait else "")
    st.session_state[keys.INSTRUCTOR_REFUSED] = refused


def lock() -> None:
    """Sign this session and its browser out (the cookie's sign-in is forgotten by the server, then expired)."""
    st.session_state.pop(keys.INSTRUCTOR_TOKEN, None)
    sign_ins().revoke(sign_in_cookie())
    sign_ins().revoke(st.session_state.get(SIGN_IN_PENDING))
    st.session_state[SIGN_IN_PENDING] = ""


def preselect_class_study(names: list[str]) -> str | None:
    """Part II: select the current lesson's class study once per session and class study (the student may
    then pick another). Returns the class study's name when there is one in ``names``."""
    try:
        class_study = current_lesson(configured_storage()).class_study
    except Exception:
        return None
    if class_study not in names:
        return None
    if st.session_state.get(keys.P2_CLASS_STUDY_OFFERED) != class_study:
        st.session_state[keys.P2_CLASS_STUDY_OFFERED] = class_study
        st.session_state[keys.P2_PENDING_CHOICE] = class_study
        st.session_state.pop(keys.P2_SAMPLER, None)  # Part II fills its form from the chosen study
    return class_study


# ---------------------------------------------------------------- the address students type

ALL_INTERFACES = ("", "0.0.0.0", "::")


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def lan_ipv4() -> str | None:
    """This machine's IPv4 address on its network (the route a datagram socket would take; nothing is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.254.254.254", 1))
            found = probe.getsockname()[0]
    except OSError:
        return None
    return None if _loopback(found) or found == "0.0.0.0" else found


def class_address(
    bound: str | None, port: int, base_path: str = "", https: bool = False, lan: str | None = None,
    browser_url: str | None = None,
) -> tuple[str, str | None]:  # fmt: skip
    """The address students type, and why they cannot reach it when they cannot (else None).

    ``bound`` is the server's ``server.address`` (empty: every interface), ``lan`` the machine's network address,
    ``browser_url`` the address the instructor's own browser uses (right behind a reverse proxy)."""
    scheme = "https" if https else "http"
    path = "/" + base_path.strip("/") + ("/" if base_path.strip("/") else "")
    if browser_url:
        seen = urlsplit(browser_url)
        if seen.hostname and not _loopback(seen.hostname):  # what the instructor typed works from the room
            return f"{seen.scheme}://{seen.netloc}{path}", None
    host = (bound or "").strip()
    if host in ALL_INTERFACES:
        if lan is None:
            unreachable = "This machine has no network address: students cannot reach it."
            return f"{scheme}://localhost:{port}{path}", unreachable
        host = lan
    url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}{path}"
    if _loopback(host):
        return url, (
            f"This server listens on {host} only: students' laptops cannot reach it. Start it with "
            "make run HOST=0.0.0.0 (every network interface) or the machine's network address."
        )
    return url, None


def student_address() -> tuple[str, str | None]:
    """``class_address`` for this server's options and the instructor's browser."""
    try:
        browser_url = st.context.url
    except Exception:
        browser_url = None
    return class_address(
        st.get_option("server.address"),
        int(st.get_option("server.port")),
        st.get_option("server.baseUrlPath") or "",
        bool(st.get_option("server.sslCertFile")),
        lan_ipv4(),
        browser_url,
    )


def qr_png(text: str) -> bytes:
    """A QR code of ``text`` as a PNG, dark on white, large enough to scan from the back of a room."""
    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="png", scale=10, border=2, dark="#000000", light="#ffffff")
    return buffer.getvalue()
