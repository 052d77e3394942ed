"""A whole lesson in real Chromium, on a server started as the README tells a class to start it
(`make run HOST=... PORT=...`, here inside 127.0.0.0/8): an instructor and two students, each in their own browser.

The instructor fixes the optimiser and caps epochs: an idle student's open Part I follows without a click. A value
above the cap is refused next to Train. Two students' default Part II studies are their own. A student's run lands
in the lesson; a reload keeps the instructor signed in; the lesson's report downloads and opens offline with every
plot painted and no request leaving the browser; a new lesson refills the instructor's form. Screenshots of the
Instructor page and of the report go to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import io
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, SERVER_START_SECONDS, new_page, wait_until
from tests.helpers.offline_report import report_offline

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

HOST = "127.0.0.2"  # not the default 127.0.0.1: the test serves on the address it names, as a class does
VIEWPORT = {"width": 1280, "height": 800}
POOL_START_SECONDS = 600  # the server's first page starts the compute pool: minutes on a loaded machine
PRESETS_MOVE_SECONDS = 20  # the target is 2 s (printed); the assertion allows a machine running slow
SCREENSHOTS = ROOT / "docs" / "screenshots"
SCREENSHOT_BYTES = 300_000


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def make_run(tmp_path):
    """`make run HOST=127.0.0.2 PORT=<free>` in the project folder with an instructor key and a fresh SQLite
    storage; yields (base URL, key) once the health check answers; the whole process group is stopped after."""
    key = secrets.token_urlsafe(18)
    port = free_port(HOST)
    env = {
        **os.environ,
        "FETAL_HPO_STORAGE": f"sqlite:///{tmp_path}/lesson.sqlite3",
        "FETAL_HPO_INSTRUCTOR_KEY": key,
    }
    log_path = tmp_path / "make_run.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            ["make", "run", f"HOST={HOST}", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make, streamlit and the pool's workers
        )
        url = f"http://{HOST}:{port}"
        try:
            deadline = time.monotonic() + SERVER_START_SECONDS
            while True:
                if process.poll() is not None:
                    pytest.fail(f"make run exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"no health check at {url} in {SERVER_START_SECONDS} s:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.3)
            yield url, key
        finally:
            stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is still there
    except ProcessLookupError:
        pass
    process.wait()


def wait_idle(page) -> None:
    page.locator("[data-test-script-state=notRunning]").wait_for()


def choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox ``key``, reopening it if a rerun closed the list."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    def chosen() -> bool:
        page.locator(f".st-key-{key}").click()
        try:
            page.get_by_role("option", name=option).click(timeout=10_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            return False
        return page.locator(f".st-key-{key} input").input_value() == option

    wait_until(chosen, f"option {option!r} of {key}", interval=1)


def fill(page, key: str, value) -> None:
    field = page.locator(f".st-key-{key} input")
    field.fill(str(value))
    field.press("Tab")  # commit without submitting the form


def open_part1(page, url: str) -> None:
    page.goto(url)
    page.locator(".st-key-part1_train button").wait_for()
    wait_idle(page)


def type_exact_epochs(page, epochs: int) -> None:
    """Part I's number boxes instead of sliders (the toggle reruns the page), then the epochs."""
    if not page.locator(".st-key-part1_exact input").is_checked():
        page.locator(".st-key-part1_exact label").click()
    page.locator(".st-key-part1_epochs input").wait_for()
    wait_idle(page)
    fill(page, "part1_epochs", epochs)


def fixed_caption(page) -> str:
    return (page.locator(".st-key-part1_fixed").all_inner_texts() or [""])[0]


def small_png(page, path: Path, clip: dict | None = None) -> int:
    """A screenshot of ``page`` (the viewport, or ``clip`` of it) at ``path``, reduced to a 256-colour palette;
    returns its size in bytes."""
    from PIL import Image

    shot = Image.open(io.BytesIO(page.screenshot(type="png", clip=clip)))
    shot.convert("RGB").quantize(colors=256).save(path, format="PNG", optimize=True)
    return path.stat().st_size


def test_a_whole_lesson_on_a_make_run_server(make_run, chromium, tmp_path):
    url, key = make_run
    contexts = {who: chromium.new_context(viewport=VIEWPORT) for who in ("teacher", "Ada", "Grace")}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        # ---- The instructor unlocks the Instructor page (the server's first visit starts the compute pool).
        teacher = new_page(contexts["teacher"])
        teacher.goto(f"{url}/instructor")
        teacher.locator(".st-key-instructor_key_input input").wait_for(timeout=POOL_START_SECONDS * 1000)
        wait_idle(teacher)
        teacher.locator(".st-key-instructor_key_input input").fill(key)
        teacher.locator(".st-key-instructor_unlock_button button").click()
        teacher.locator(".st-key-instr_presets_save button").wait_for()
        wait_idle(teacher)

        # ---- Ada opens Part I before any preset: the optimiser is hers to choose. She then does nothing.
        ada = new_page(contexts["Ada"])
        open_part1(ada, f"{url}/part1_manual?nick=Ada")
        ada.locator(".st-key-part1_optimizer").wait_for()
        assert ada.locator(".st-key-part1_fixed").count() == 0

        # ---- The instructor fixes the optimiser to SGD and caps epochs at 20: Ada's open page follows.
        choose(teacher, "instr_seen_optimizer", "fixed")
        choose(teacher, "instr_fixed_optimizer", "SGD")
        fill(teacher, "instr_epochs_cap", 20)
        clicked_at = time.monotonic()
        teacher.locator(".st-key-instr_presets_save button").click()
        teacher.get_by_text("Presets saved").wait_for()
        saved_at = time.monotonic()
        wait_until(
            lambda: ada.locator(".st-key-part1_optimizer").count() == 0 and "optimiser SGD" in fixed_caption(ada),
            "Ada's idle Part I to show the optimiser fixed at SGD",
            timeout=PRESETS_MOVE_SECONDS,
            interval=0.05,
        )
        moved_at = time.monotonic()
        print(
            f"\npresets -> Ada's idle Part I shows them: {moved_at - saved_at:.2f} s after 'Presets saved' showed, "
            f"{moved_at - clicked_at:.2f} s after the click (target 2 s)"
        )
        assert "epochs at most 20" in fixed_caption(ada), fixed_caption(ada)
        wait_idle(ada)

        # ---- Ada types 3000 epochs in exact mode and presses Train: refused, next to Train, saying why.
        type_exact_epochs(ada, 3000)
        ada.locator(".st-key-part1_train button").click()
        refused = ada.locator(".st-key-part1_refused")
        refused.wait_for()
        assert "Not trained: epochs: 3000 is outside this lesson's range 1 to 20." in refused.inner_text()
        assert ada.locator(".st-key-part1_result h3").count() == 0  # nothing was trained
        wait_idle(ada)

        # ---- Ada and Grace open Part II: each one's default study is their own.
        defaults = {}
        for nick in ("Ada", "Grace"):
            page = ada if nick == "Ada" else new_page(contexts["Grace"])
            page.goto(f"{url}/part2_study?nick={nick}")
            page.locator(".st-key-p2_name input").wait_for()
            wait_idle(page)
            defaults[nick] = page.locator(".st-key-p2_name input").input_value()
        assert defaults == {"Ada": "Fetal_Health_Study (Ada)", "Grace": "Fetal_Health_Study (Grace)"}, defaults

        # ---- Ada trains a short run: the lesson has a run (trained with the fixed optimiser).
        open_part1(ada, f"{url}/part1_manual?nick=Ada")
        type_exact_epochs(ada, 3)
        wait_idle(ada)
        ada.locator(".st-key-part1_train button").click()
        ada.locator(".st-key-part1_result h3", has_text=re.compile(r"Run 1: finished")).wait_for()
        assert "· SGD ·" in ada.locator(".st-key-part1_result").inner_text()

        # ---- The instructor's tab is reloaded: still signed in, the form as saved, Ada's run counted.
        teacher.reload()
        teacher.locator(".st-key-instructor_lock").wait_for()
        teacher.get_by_text("1 run(s) by hand").wait_for()
        wait_idle(teacher)
        assert teacher.locator(".st-key-instr_presets_save").count() == 1
        assert teacher.locator(".st-key-instr_seen_optimizer input").input_value() == "fixed"
        assert teacher.locator(".st-key-instructor_key_input").count() == 0
        assert "?" not in teacher.url and key not in teacher.locator("body").inner_text()
        teacher.locator(".st-key-instructor_address img").wait_for()  # the QR code of the address students type
        assert HOST in teacher.locator(".st-key-instructor_address").inner_text()
        # The main column only: the sidebar holds this run's temporary storage path (and emoji icons that a machine
        # without an emoji font draws as boxes).
        sidebar = teacher.locator("[data-testid=stSidebar]").bounding_box()
        left = sidebar["x"] + sidebar["width"] if sidebar else 0
        clip = {"x": left, "y": 0, "width": VIEWPORT["width"] - left, "height": VIEWPORT["height"]}
        instructor_bytes = small_png(teacher, SCREENSHOTS / "instructor.png", clip)

        # ---- The lesson's report: downloaded from the Instructor page, opened offline from the file.
        teacher.locator(".st-key-instr_report_build").get_by_role("button").click()  # built when asked
        button = teacher.locator(".st-key-instr_report").get_by_role("button", name="Download the report")
        button.wait_for(timeout=120_000)
        media: list[str] = []  # the file's own request, for a failed download's message
        teacher.on("response", lambda r: media.append(f"{r.status} {r.url}") if "/media/" in r.url else None)
        with teacher.expect_download() as info:
            button.click()
        failure = info.value.failure()
        assert failure is None, f"the report's download failed: {failure}; /media responses: {media}"
        report = tmp_path / info.value.suggested_filename
        info.value.save_as(report)
        assert report.suffix == ".html" and "Ada" in report.read_text(encoding="utf-8")
        plots, report_bytes = open_offline(chromium, report)

        # ---- A new lesson: the form is refilled from it (no presets), the class-study name follows it, and Ada's
        # open Part I lets her choose the optimiser again.
        teacher.get_by_text("Start a new lesson").click()
        fill(teacher, "instr_new_lesson", "Lesson 2")
        teacher.locator(".st-key-instr_new_lesson_start button").click()
        teacher.get_by_text("Lesson Lesson 2 started").wait_for()
        wait_idle(teacher)
        assert "Current lesson: Lesson 2" in teacher.locator("[data-testid=stMain]").inner_text()
        assert teacher.locator(".st-key-instr_seen_optimizer input").input_value() == "choose"
        assert teacher.locator(".st-key-instr_epochs_cap input").input_value() == "0"
        assert teacher.locator(".st-key-instr_class_study_name input").input_value() == "Lesson 2 class study"
        assert teacher.get_by_text("0 run(s) by hand").count() == 1
        wait_until(
            lambda: (
                ada.locator(".st-key-part1_optimizer").count() == 1 and ada.locator(".st-key-part1_fixed").count() == 0
            ),
            "Ada's Part I to drop the old lesson's presets",
            timeout=PRESETS_MOVE_SECONDS,
            interval=0.1,
        )
        print(
            f"report: {plots} plot(s) painted offline; screenshots: instructor.png {instructor_bytes / 1000:.0f} kB, "
            f"report.png {report_bytes / 1000:.0f} kB"
        )
        assert instructor_bytes < SCREENSHOT_BYTES and report_bytes < SCREENSHOT_BYTES
    finally:
        for context in contexts.values():
            context.close()


def open_offline(chromium, path: Path) -> tuple[int, int]:
    """Open the report offline (``report_offline``) and save docs/screenshots/report.png; (plots, PNG bytes)."""
    with report_offline(chromium, path, VIEWPORT) as page:
        return page.locator(".plotly-graph-div").count(), small_png(page, SCREENSHOTS / "report.png")
