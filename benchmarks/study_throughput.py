"""Study throughput: one Part II session alone vs two sessions at the same time.

Each "session" is what the Part II page starts: ``Pool.run_studies`` with one study plan on the compute
pool (``fetal_core.pool``, 2 worker processes), its lease renewed like the sidebar does. With
``--browser`` the sessions are real: a ``streamlit run app.py`` server and one Chromium context per
student, each filling in the Part II form and pressing Start. Both sessions' studies use the same sampler
seed, so they run the same trials (the same work) as the session alone. The baseline (alone) is measured
in the same run, right before the pair; times run from Start until the storage holds every trial
finished. Prints trials per minute for each and the combined / alone ratio (target: >= 1.6x on 2 cores).

    .venv/bin/python benchmarks/study_throughput.py [--trials 12] [--epochs 20] [--repeats 1] [--browser]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402

from fetal_core.config import settings  # noqa: E402
from fetal_core.data import load_dataset  # noqa: E402
from fetal_core.pool import open_pool  # noqa: E402
from fetal_core.search import StudyPlan, summarize  # noqa: E402
from fetal_core.storage import open_storage  # noqa: E402


def _fixed_work(n: int) -> None:
    total = 0
    for i in range(n):
        total += i * i


def parallel_ceiling(n: int = 10_000_000) -> float:
    """The best combined/alone ratio the machine allows right now: the same fixed CPU work in one
    process, then in two at once (2.0 on an idle 2-core machine; less while others use the cores)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    walls = []
    for count in (1, 2):
        processes = [context.Process(target=_fixed_work, args=(n,)) for _ in range(count)]
        started = time.perf_counter()
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        walls.append(time.perf_counter() - started)
    return 2 * walls[0] / walls[1]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_sessions(pool, storage_url: str, data, names: list[str], args) -> dict[str, float]:
    """Queue one study per name on the pool at the same time; return each one's wall time (s) to finish.
    Also prints the cores the pool's workers actually got (their CPU seconds / wall seconds)."""
    cpu_before = sum(pool.client.run(_cpu_seconds).values())
    started = time.perf_counter()
    jobs = {
        name: pool.run_studies(
            StudyPlan(
                storage_url=storage_url,
                study_name=name,
                trials=args.trials,
                sampler="tpe",
                pruner=args.pruner,
                seed=42,
                epochs=args.epochs,
            ),
            data,
        )
        for name in names
    }
    finished: dict[str, float] = {}
    while len(finished) < len(jobs):
        time.sleep(0.1)
        for name, job in jobs.items():
            job.renew()
            if name not in finished and not job.alive():
                finished[name] = time.perf_counter() - started
                if job.error:
                    raise SystemExit(f"{name}: {job.error}")
    cpu = sum(pool.client.run(_cpu_seconds).values()) - cpu_before
    wall = max(finished.values())
    print(f"  ({len(names)} session(s): {cpu:.1f} CPU s in {wall:.1f} s wall = {cpu / wall:.2f} cores used)")
    return finished


def finished(storage, name: str, trials: int) -> bool:
    """All the study's trials are COMPLETE or PRUNED (none RUNNING)."""
    try:
        s = summarize(optuna.load_study(study_name=name, storage=storage))
    except KeyError:
        return False
    return s.running == 0 and s.complete + s.pruned >= trials


def browser_sessions(server, browser, storage_url: str, names: list[str], args) -> dict[str, float]:
    """One Chromium context (one student) per name fills the Part II form; all press Start together."""
    pages = []
    for name in names:
        page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        page.goto(server.url + "/part2")
        page.wait_for_selector(".st-key-p2_start button", timeout=60_000)
        page.wait_for_selector("[data-test-script-state=notRunning]", timeout=60_000)
        time.sleep(1)
        if page.locator("[role=dialog]").count():  # a fresh server's spurious "Page not found"
            page.keyboard.press("Escape")
        for key, value in (("p2_name", name), ("p2_trials", args.trials), ("p2_epochs", args.epochs)):
            field = page.locator(f".st-key-{key} input")
            field.fill(str(value))
            field.press("Tab")
        page.locator(".st-key-p2_pruner").click()
        page.get_by_role("option", name=args.pruner, exact=True).click()
        pages.append(page)
    storage = open_storage(storage_url)
    started = time.perf_counter()
    for page in pages:
        page.locator(".st-key-p2_start button").first.click()
    done: dict[str, float] = {}
    while len(done) < len(names):
        time.sleep(0.2)
        for name in names:
            if name not in done and finished(storage, name, args.trials):
                done[name] = time.perf_counter() - started
    for page in pages:
        page.context.close()
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials per session's study")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--browser", action="store_true", help="real streamlit server and Chromium sessions")
    args = parser.parse_args()
    data_path = settings().data_path.resolve()
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f} (machine shared: numbers vary)")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        storage_url = f"sqlite:///{tmp}/throughput.sqlite3"
        if args.browser:
            from playwright.sync_api import sync_playwright

            from tests.conftest import CHROMIUM_ARGS, StreamlitServer

            env = {"FETAL_HPO_DATA": str(data_path), "FETAL_HPO_STORAGE": storage_url}
            server = StreamlitServer(env, Path(tmp) / "streamlit.log")
            stack.callback(server.stop)
            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            stack.callback(browser.close)

            def run(names: list[str]) -> dict[str, float]:
                return browser_sessions(server, browser, storage_url, names, args)
        else:
            pool = open_pool(workers=2)
            stack.callback(pool.close)
            data = load_dataset(data_path)
            open_storage(storage_url)  # Optuna's tables exist before the workers open the file

            def run(names: list[str]) -> dict[str, float]:
                return run_sessions(pool, storage_url, data, names, args)

        print(f"sessions: {'Chromium on streamlit run app.py' if args.browser else 'studies on the compute pool'}")
        ratios: list[float] = []
        for repeat in range(args.repeats):
            ceiling = parallel_ceiling()
            print(f"machine's ceiling for combined/alone now (fixed work, 1 vs 2 processes): {ceiling:.2f}x")
            alone = run([f"alone_{repeat}"])
            pair = run([f"pair_a_{repeat}", f"pair_b_{repeat}"])
            storage = open_storage(storage_url)
            for name in [*alone, *pair]:
                s = summarize(optuna.load_study(study_name=name, storage=storage))
                assert s.running == 0 and s.complete + s.pruned == args.trials, s
            alone_rate = 60 * args.trials / alone[f"alone_{repeat}"]
            rates = {name: 60 * args.trials / seconds for name, seconds in pair.items()}
            combined = 60 * args.trials * len(pair) / max(pair.values())
            print(f"repeat {repeat}: {args.trials} trials x {args.epochs} epochs, pruner {args.pruner}")
            print(f"  one session alone:   {alone_rate:6.1f} trials/min ({alone[f'alone_{repeat}']:.1f} s)")
            for name, rate in rates.items():
                print(f"  {name:>8s} (of two):  {rate:6.1f} trials/min ({pair[name]:.1f} s)")
            print(f"  two sessions combined: {combined:6.1f} trials/min")
            print(f"  combined / alone:      {combined / alone_rate:5.2f}x (target >= 1.6x)")
            print(f"  of the machine's ceiling: {combined / alone_rate / ceiling:5.0%}")
            ratios.append(combined / alone_rate)
        if len(ratios) > 1:
            print(f"median combined / alone over {len(ratios)} repeats: {statistics.median(ratios):.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
