"""The instructor key resists guessing: each wrong key makes the next try wait longer, per session and per
server, a try before the wait is over is refused unchecked, each wrong key is one log line without what was
typed, and the server does not start with a key shorter than 12 characters."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest

from fetal_core.lesson import INSTRUCTOR_KEY_ENV, KeyGuard, instructor_key, key_matches, session_token
from fetal_core.limits import ConfigError
from tests.conftest import ROOT, free_port

KEY = "a long enough secret"


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def waits_after_wrong_keys(guard: KeyGuard, clock: Clock, session: str, tries: int) -> list[float]:
    """The wait after each of ``tries`` wrong keys, each typed as soon as it is allowed."""
    waits = []
    for _ in range(tries):
        clock.now += guard.wait_left(session)
        attempt = guard.attempt(session, "wrong guess", KEY)
        assert attempt == (False, True, attempt.wait)  # checked, refused
        waits.append(attempt.wait)
    return waits


def test_a_sessions_wait_doubles_with_each_wrong_key_up_to_a_cap():
    clock = Clock()
    guard = KeyGuard(clock=clock)
    assert waits_after_wrong_keys(guard, clock, "s1", 8) == [1, 2, 4, 8, 16, 30, 30, 30]
    assert guard.wait_left("another session") == 0  # 8 wrong keys on the server: under its free 10


def test_a_try_before_the_wait_is_refused_unchecked_even_with_the_right_key():
    clock = Clock()
    guard = KeyGuard(clock=clock)
    waits_after_wrong_keys(guard, clock, "s1", 3)  # the next try waits 4 s
    clock.now += 3.5
    assert guard.attempt("s1", KEY, KEY) == (False, False, 0.5)
    assert guard.attempt("s1", "wrong", KEY) == (False, False, 0.5)  # not counted: the wait did not grow
    clock.now += 0.5
    assert guard.attempt("s1", KEY, KEY) == (True, True, 0.0)
    assert guard.wait_left("s1") == 0 and guard.attempt("s1", "wrong", KEY).wait == 1  # a success starts it again


def test_the_servers_wait_grows_with_wrong_keys_from_any_session():
    """A fresh session per guess (a reload) gets no free guesses once the server has seen 10 wrong keys."""
    clock = Clock()
    guard = KeyGuard(clock=clock)
    server_waits = []
    for n in range(16):
        session = f"reload {n}"
        clock.now += guard.wait_left(session)
        guard.attempt(session, "guess", KEY)
        server_waits.append(guard.wait_left(f"a new session after {n + 1}"))
    assert server_waits == [0] * 9 + [1, 2, 4, 8, 16, 30, 30]
    clock.now += 900.5  # 15 minutes without a wrong key: the server's count starts again
    assert guard.wait_left("the instructor") == 0
    assert guard.attempt("the instructor", "guess", KEY).wait == 1  # its own first wrong key


def test_the_guard_is_thread_safe():
    guard = KeyGuard(clock=lambda: 0.0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(guard.attempt("s", "x", KEY))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.checked for r in results) == [False] * 19 + [True]  # one checked; the rest came too early


def test_one_log_line_per_wrong_key_without_what_was_typed(caplog):
    clock = Clock()
    guard = KeyGuard(clock=clock)
    session = "5b6c0a7e-d0c4-4b52-9e0b-3a1c7f0e2d11"
    with caplog.at_level(logging.INFO, logger="fetal_hpo.instructor"):
        guard.attempt(session, "hunter2-typed-guess", KEY)
        guard.attempt(session, "second-typed-guess", KEY)  # too early: refused unchecked, not logged
        clock.now += 1
        guard.attempt(session, "third-typed-guess", KEY)
        clock.now += 2
        guard.attempt(session, KEY, KEY)  # the right key: nothing logged
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all(r.levelno == logging.WARNING for r in caplog.records)
    assert lines[0].startswith("instructor key: a wrong key from session ")
    assert "(1 in a row there, 1 on the server); next try in 1 s" in lines[0]
    assert "(2 in a row there, 2 on the server); next try in 2 s" in lines[1]
    for text in ("typed-guess", "hunter2", KEY, session):
        assert text not in caplog.text


@pytest.mark.parametrize("key", ["12345", "x" * 11, "correct hor"])
def test_a_key_shorter_than_12_characters_is_refused(monkeypatch, key):
    monkeypatch.setenv(INSTRUCTOR_KEY_ENV, key)
    with pytest.raises(ConfigError) as refused:
        instructor_key()
    assert str(refused.value) == (
        f"FETAL_HPO_INSTRUCTOR_KEY: {len(key)} characters; use at least 12 (a short key can be guessed)."
    )
    for use in (lambda: key_matches(key), session_token):  # nothing grants access with it
        with pytest.raises(ConfigError):
            use()


def test_a_key_of_12_characters_or_none_is_accepted(monkeypatch):
    monkeypatch.setenv(INSTRUCTOR_KEY_ENV, "x" * 12)
    assert instructor_key() == "x" * 12
    monkeypatch.setenv(INSTRUCTOR_KEY_ENV, "")
    assert instructor_key() is None


def test_the_server_does_not_start_with_a_short_key(tmp_path, data_path):
    """`streamlit run serve.py` (as `make run`) exits at start, saying why, before any page is served."""
    env = {**os.environ, "FETAL_HPO_DATA": str(data_path), "FETAL_HPO_STORAGE": f"sqlite:///{tmp_path}/app.sqlite3",
           INSTRUCTOR_KEY_ENV: "Zq9!x"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.address", "127.0.0.1",
         "--server.port", str(free_port()), "--server.headless", "true"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "FETAL_HPO_INSTRUCTOR_KEY: 5 characters; use at least 12" in output, output
    assert "Zq9!x" not in output
