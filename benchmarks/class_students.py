"""The students of ``class_load``, two ways: clients of Streamlit's websocket protocol (``Protocol``, the default)
or Chromium pages (``Chromium``). Both have the same three methods: ``part1_at_once`` (Part I runs started
together, timed to the final metrics), ``run_class`` (the class phase's sessions) and ``close``.

On a 2-core machine Chromium's pages take the CPU that the server and its pool need (issue 10 measured it);
the protocol client costs little: a student's browser runs on the student's machine, not on the server's.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamlit.proto.Markdown_pb2 import Markdown

from benchmarks.st_client import ServerError, Session
from fetal_core.manual import config_to_query
from fetal_core.training import TrainConfig
from tests.conftest import CHROMIUM_ARGS, StreamlitServer, descendants

SETTLE_SECONDS = 2.0
WAIT_SECONDS = 1800  # a class run on a busy 2-core machine takes minutes: waits end when the page is ready
BUTTONS = {"part1": "part1_train", "part2": "p2_start", "race": "race_start"}
PAGES = {"part1": "part1_manual", "part2": "part2_study", "race": "race"}


@dataclass
class Student:
    """One session of the class phase; the client fills in the times, exceptions and Part I's own seconds."""

    kind: str  # part1, part2, race
    name: str
    form: dict  # widget key -> value, typed before the click (Part I: its link's config instead)
    cap: int = 1  # trainings it can run at once (a race: one per run)
    clicked: float = 0.0  # time.time()
    done: float | None = None
    exceptions: int = 0
    work: float = 0.0  # seconds of its own trainings (measured on the workers)
    studies: list[str] = field(default_factory=list)


def part1_query(config: TrainConfig) -> str:
    """Part I's shareable link for ``config`` (the form opens with it)."""
    return urllib.parse.urlencode(config_to_query(config))


def caption_seconds(caption: str) -> float:
    """The run's own training seconds, as its caption ends ("... · 7.23 s": the pool worker's clock)."""
    return float(caption.rsplit("·", 1)[1].strip().removesuffix(" s"))


# ---------------------------------------------------------------- the protocol client


def part2_done(session: Session) -> bool:
    """Part II: the study's progress shows every trial finished, none running, and no Stop button."""
    if session.has_key("p2_stop"):
        return False
    for bar in session.main("progress"):
        found = re.search(r"(\d+) of (\d+) trials finished · 0 running", bar.text)
        if found and int(found[1]) > 0 and found[1] == found[2]:
            return True
    return False


# When a session's work has been received, by page kind: DONE_WATCH's conditions (below) on the received page.
DONE = {
    "part1": lambda s: any(n.kind == "metric" and "Null accuracy" in n.proto.label for n in s.under("part1_result")),
    "part2": part2_done,
    "race": lambda s: s.has_key("race_table") and s.has_key("race_summary") and not s.has_key("race_stop"),
}


class Protocol:
    """Students as websocket clients, all on one asyncio loop in this process's main thread."""

    label = "protocol client (no browser)"

    def __init__(self) -> None:
        self.cpu_seconds = 0.0  # this thread's CPU while the sessions ran: the client's own cost

    def _run(self, coroutine):
        started = time.thread_time()
        try:
            return asyncio.run(coroutine)
        finally:
            self.cpu_seconds += time.thread_time() - started

    def close(self) -> None:
        pass

    def part1_at_once(self, server: StreamlitServer, config: TrainConfig, count: int) -> tuple[float, float, list]:
        """``count`` sessions press Train at once: (time of the first click, seconds until all received the final
        metrics, each run's own training seconds)."""
        return self._run(self._part1_at_once(server, config, count))

    async def _part1_at_once(self, server, config, count):
        sessions = [Session(server.url, "part1_manual", part1_query(config), f"part1-{i + 1}") for i in range(count)]
        try:
            for session in sessions:
                await open_part1(session, config)
            await asyncio.sleep(SETTLE_SECONDS)
            started = time.time()
            for session in sessions:
                await session.click("part1_train")
            done = await asyncio.gather(*(s.wait_for(DONE["part1"], WAIT_SECONDS) for s in sessions))
            return started, max(done) - started, [part1_seconds(s) for s in sessions]
        finally:
            await asyncio.gather(*(s.close() for s in sessions))

    def run_class(self, server: StreamlitServer, students: list[Student], config: TrainConfig, timeout: float,
                  on_start: Callable[[], None]) -> None:  # fmt: skip
        """Open every student's page, then press every start button; ``on_start`` runs just before."""
        self._run(self._run_class(server, students, config, timeout, on_start))

    async def _run_class(self, server, students, config, timeout, on_start):
        sessions = []
        try:
            for student in students:
                query = part1_query(config) if student.kind == "part1" else ""
                session = Session(server.url, PAGES[student.kind], query, student.name)
                sessions.append(session)
                if student.kind == "part1":
                    await open_part1(session, config)
                    continue
                await session.open()
                for key, value in student.form.items():
                    session.set(key, value)
                if student.kind == "race":  # the Start button's plan is the one drawn: draw it with these values
                    await session.rerun_and_settle()
                    form = student.form
                    cost = f"{student.cap} runs x {form['race_trials']} trials x {form['race_epochs']} epochs"
                    if not any(cost in text for text in session.texts()):
                        raise RuntimeError(f"{student.name}: the race page does not show '{cost}'")
            await asyncio.sleep(SETTLE_SECONDS)
            on_start()
            started = time.time()
            for student, session in zip(students, sessions):
                student.clicked = time.time()
                await session.click(BUTTONS[student.kind])
            print(f"class: {len(sessions)} sessions started in {time.time() - started:.1f} s", flush=True)
            waits = [asyncio.create_task(finish(st, s, timeout)) for st, s in zip(students, sessions)]
            for count, wait in enumerate(asyncio.as_completed(waits), 1):
                await wait
                print(f"class: {count}/{len(waits)} ended after {time.time() - started:.0f} s", flush=True)
            await asyncio.sleep(SETTLE_SECONDS)  # the last pages settle (a study's final rerun)
            for student, session in zip(students, sessions):
                student.exceptions = len(session.exceptions)
        finally:
            await asyncio.gather(*(s.close() for s in sessions))


async def open_part1(session: Session, config: TrainConfig) -> None:
    """Part I by its shareable link; fails if the form does not hold ``config``'s epochs."""
    await session.open()
    shown = session.value("part1_epochs_slider")
    if shown != [config.epochs]:
        raise RuntimeError(f"{session.name}: the link did not set the form (epochs {shown})")


def part1_seconds(session: Session) -> float:
    """The run's own training seconds, from its caption in the received page."""
    result = session.under("part1_result")
    captions = [n.proto.body for n in result if n.kind == "markdown" and n.proto.element_type == Markdown.CAPTION]
    return caption_seconds(next(c for c in captions if c.endswith(" s")))


async def finish(student: Student, session: Session, timeout: float) -> None:
    """Wait until the session's work is received; an exception or a timeout leaves it unfinished."""
    try:
        student.done = await session.wait_for(DONE[student.kind], timeout)
    except (ServerError, TimeoutError) as err:
        print(f"class: {student.name} did not finish: {err}", flush=True)
    if student.kind == "part1" and student.done is not None:
        student.work = part1_seconds(session)


# ---------------------------------------------------------------- Chromium

# In every page: window.__doneAt (Date.now(), ms) once the session's work is on screen, checked every 250 ms.
DONE_WATCH = """(kind) => {
  const done = {
    part1: () => [...document.querySelectorAll('.st-key-part1_result [data-testid=stMetricLabel]')]
                   .some(e => e.innerText.includes('Null accuracy')),
    part2: () => {
      if (document.querySelector('.st-key-p2_stop')) return false;
      const bar = document.querySelector('.stMain [data-testid=stProgress]');
      const m = bar && bar.innerText.match(/(\\d+) of (\\d+) trials finished · 0 running/);
      return !!m && Number(m[1]) > 0 && m[1] === m[2];
    },
    race: () => !!document.querySelector('.st-key-race_table') && !document.querySelector('.st-key-race_stop')
                 && !!document.querySelector('.st-key-race_summary'),
  }[kind];
  window.__doneAt = null;
  const check = () => { if (!window.__doneAt && done()) window.__doneAt = Date.now(); };
  setInterval(check, 250);
}"""


def pin_browser(cpus: set[int] | None) -> None:
    """Keep Chromium's processes (browser, zygotes, renderers) on ``cpus``: students' browsers run on their own
    machines; on one machine, the nearest is to keep them off the cores the server and its pool may use."""
    if not cpus:
        return
    for pid in descendants(os.getpid()):
        try:
            if "chrom" not in Path(f"/proc/{pid}/comm").read_text():
                continue
            for thread in Path(f"/proc/{pid}/task").iterdir():  # affinity is per thread; new ones inherit it
                os.sched_setaffinity(int(thread.name), cpus)
        except OSError:  # ended meanwhile
            pass


class Chromium:
    """Students as Chromium pages: one browser, one context per student, renderers throttled (CDP
    ``Emulation.setCPUThrottlingRate``) and the browser pinned to ``cpus``."""

    def __init__(self, throttle: float, cpus: set[int] | None) -> None:
        from playwright.sync_api import sync_playwright

        self.throttle, self.cpus = throttle, cpus
        self.cpu_seconds = None  # not counted: Chromium's CPU is in its own processes
        self.label = f"renderer throttle {throttle:g}x, Chromium on CPUs {sorted(cpus) if cpus else 'all'}"
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        pin_browser(cpus)

    def close(self) -> None:
        self.browser.close()
        self.playwright.stop()

    def new_page(self):
        """A page in its own browser context (its own Streamlit session), renderer throttled."""
        context = self.browser.new_context(viewport={"width": 1300, "height": 900})
        page = context.new_page()
        pin_browser(self.cpus)
        page.set_default_timeout(WAIT_SECONDS * 1000)
        if self.throttle > 1:
            context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": self.throttle})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        return context, page, errors

    def open_part1(self, page, server: StreamlitServer, config: TrainConfig) -> None:
        """Part I by its shareable link, so the form holds ``config``."""
        from tests.test_browser_part1 import type_exact_values

        page.goto(f"{server.url}/part1_manual?{part1_query(config)}")
        page.locator(".st-key-part1_train button").wait_for()
        page.locator("[data-testid=stSidebarNav]").wait_for()
        type_exact_values(page)  # the epochs number box (the form shows sliders by default)
        shown = page.locator(".st-key-part1_epochs input").input_value()
        if int(shown) != config.epochs:
            raise RuntimeError(f"the link did not set the form (epochs {shown})")

    def part1_at_once(self, server: StreamlitServer, config: TrainConfig, count: int) -> tuple[float, float, list]:
        """``count`` pages press Train at once: (time of the first click, seconds until all painted the final
        metrics, each run's own training seconds)."""
        students = [self.new_page() for _ in range(count)]
        try:
            for _, page, _ in students:
                self.open_part1(page, server, config)
            time.sleep(SETTLE_SECONDS)
            started = time.time()
            for _, page, _ in students:
                page.locator(".st-key-part1_train button").click()
            for _, page, _ in students:
                page.locator(".st-key-part1_result [data-testid=stMetricLabel]", has_text="Null accuracy").wait_for()
            elapsed = time.time() - started
            for _, page, errors in students:
                if page.locator(".stException").count() or errors:
                    raise RuntimeError(f"a page shows an error: {errors}")
            return started, elapsed, [self.in_page_seconds(page) for _, page, _ in students]
        finally:
            for context, _, _ in students:
                context.close()

    @staticmethod
    def in_page_seconds(page) -> float:
        return caption_seconds(page.locator(".st-key-part1_result [data-testid=stCaptionContainer]").first.inner_text())

    def run_class(self, server: StreamlitServer, students: list[Student], config: TrainConfig, timeout: float,
                  on_start: Callable[[], None]) -> None:  # fmt: skip
        """Open every student's page, then press every start button; ``on_start`` runs just before."""
        pages = []
        for student in students:
            context, page, errors = self.new_page()
            pages.append((context, page, errors))
            if student.kind == "part1":
                self.open_part1(page, server, config)
                continue
            page.goto(f"{server.url}/{PAGES[student.kind]}")
            page.locator(f".st-key-{BUTTONS[student.kind]} button").wait_for()
            for key, value in student.form.items():
                field_ = page.locator(f".st-key-{key} input")
                field_.fill(str(value))
                field_.press("Enter" if student.kind == "race" else "Tab")
            if student.kind == "race":
                form = student.form
                cost = f"{student.cap} runs x {form['race_trials']} trials x {form['race_epochs']} epochs"
                page.get_by_text(cost, exact=False).wait_for()
        for student, (_, page, _) in zip(students, pages):
            page.evaluate(DONE_WATCH, student.kind)
        time.sleep(SETTLE_SECONDS)
        on_start()
        started = time.time()
        for student, (_, page, _) in zip(students, pages):
            student.clicked = time.time()
            page.locator(f".st-key-{BUTTONS[student.kind]} button").first.click()
        print(f"class: {len(students)} sessions started in {time.time() - started:.1f} s", flush=True)
        deadline, reported = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            for student, (_, page, _) in zip(students, pages):
                if student.done is None:
                    at = page.evaluate("window.__doneAt")
                    student.done = at / 1000 if at else None
            finished = sum(s.done is not None for s in students)
            if finished != reported:
                reported = finished
                print(f"class: {finished}/{len(students)} done after {time.time() - started:.0f} s", flush=True)
            if finished == len(students):
                break
            time.sleep(2.0)
        time.sleep(SETTLE_SECONDS)  # the last pages settle (a study's final rerun)
        for student, (context, page, errors) in zip(students, pages):
            student.exceptions = page.locator(".stException").count() + len(errors)
            if student.kind == "part1" and student.done is not None:
                student.work = self.in_page_seconds(page)
            context.close()
