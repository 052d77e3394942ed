"""What Part I's page costs on top of training: one config through the page vs the same config headless.

Measured in one run, interleaved repeat by repeat so machine load hits every variant alike:

- headless: ``fetal_core.training.train`` in this process (the baseline);
- AppTest: the Train click's script run through ``streamlit.testing`` (the page's code, no browser);
- browser: real Chromium against ``streamlit run app.py``: Train click -> final metrics painted, and the
  page's own training time (the run record's seconds, live chart redraws included);
- first point: Train click -> the epoch counter / the chart's first point painted in the browser.

Targets: page vs headless <= 1.25x, first curve point <= 1 s after the click.

    .venv/bin/python -m benchmarks.ui_overhead [--epochs 400] [--repeats 3] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from fetal_core.data import load_dataset, split_dataset
from fetal_core.training import TrainConfig, train
from tests.conftest import CHROMIUM_ARGS, DATA_PATH, ROOT, StreamlitServer
from tests.test_browser_part1 import RECORD_PROGRESS, open_part1, set_number

SETTLE_SECONDS = 2.0
MARK_CLICK = """() => document.querySelector('.st-key-part1_train button').addEventListener(
    'click', () => { window.__clickAt = performance.now(); }, {capture: true, once: true})"""
FIRST_PAINTED = """() => {
  const at = (test) => (window.__progress.find(test) || {t: NaN}).t - window.__clickAt;
  return {counter: at(p => p.epoch >= 1), point: at(p => p.points >= 1)};
}"""


def headless_seconds(config: TrainConfig) -> float:
    split = split_dataset(load_dataset(DATA_PATH), standardize=config.standardize)
    started = time.perf_counter()
    train(config, split)
    return time.perf_counter() - started


def apptest_seconds(config: TrainConfig) -> tuple[float, float]:
    """(script run of the Train click, training time inside the page) through AppTest."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    at.switch_page("pages/part1_manual.py").run()
    at.number_input(key="part1_epochs").set_value(config.epochs)
    at.button(key="part1_train")  # resolve the widget before timing
    started = time.perf_counter()
    at.button(key="part1_train").click().run()
    elapsed = time.perf_counter() - started
    [run] = at.session_state["manual_runs"]
    assert len(run["history"]) == config.epochs, "the AppTest run did not finish"
    return elapsed, run["seconds"]


def browser_run(browser, server: StreamlitServer, config: TrainConfig) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        open_part1(page, server)
        set_number(page, "part1_epochs", config.epochs)
        page.evaluate(RECORD_PROGRESS)
        page.evaluate(MARK_CLICK)
        started = time.perf_counter()
        page.locator(".st-key-part1_train button").click()
        page.locator(".st-key-part1_result [data-testid=stMetricLabel]", has_text="Null accuracy").wait_for(
            timeout=600_000
        )
        painted = time.perf_counter() - started
        caption = page.locator(".st-key-part1_result [data-testid=stCaptionContainer]").first.inner_text()
        in_page = float(caption.rsplit("·", 1)[1].strip().removesuffix(" s"))
        first = page.evaluate(FIRST_PAINTED)
        return {
            "painted": painted,
            "in_page": in_page,
            "counter": first["counter"] / 1000,
            "point": first["point"] / 1000,
        }
    finally:
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400, help="epochs of the notebook's default config")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="only headless vs AppTest")
    args = parser.parse_args()
    config = TrainConfig(epochs=args.epochs)
    storage_dir = Path(tempfile.mkdtemp(prefix="ui_overhead_"))
    os.environ["FETAL_HPO_DATA"] = str(DATA_PATH)
    os.environ["FETAL_HPO_STORAGE"] = f"sqlite:///{storage_dir}/bench.sqlite3"
    os.chdir(ROOT)
    print(
        f"config: the notebook's defaults with {config.epochs} epochs; {args.repeats} interleaved repeats; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    server = playwright = browser = None
    try:
        if not args.no_browser:
            from playwright.sync_api import sync_playwright

            server = StreamlitServer(dict(os.environ), storage_dir / "streamlit.log")
            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            browser_run(browser, server, TrainConfig(epochs=5))  # warm-up: imports, caches, Plotly's JS
        headless_seconds(TrainConfig(epochs=5))
        apptest_seconds(TrainConfig(epochs=5))
        variants = ["headless", "apptest"] + ([] if browser is None else ["browser"])
        for repeat in range(1, args.repeats + 1):
            shift = (repeat - 1) % len(variants)  # rotate the order: whatever follows a variant pays its echo
            for variant in variants[shift:] + variants[:shift]:
                time.sleep(SETTLE_SECONDS)  # let the browser finish painting the previous run
                if variant == "headless":
                    add("headless", headless_seconds(config))
                elif variant == "apptest":
                    script_run, in_script = apptest_seconds(config)
                    add("apptest_click", script_run)
                    add("apptest_in_page", in_script)
                else:
                    for name, value in browser_run(browser, server, config).items():
                        add(f"browser_{name}", value)
            print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in samples.items()))
    finally:
        if browser is not None:
            browser.close()
        if playwright is not None:
            playwright.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(storage_dir, ignore_errors=True)

    # Other work on a shared machine only ever adds time, so the fastest repeat is the fairest estimate of
    # each variant's own cost; the median shows what a student typically waited.
    for title, pick in (("fastest of", min), ("median of", statistics.median)):
        value = {name: pick(values) for name, values in samples.items()}
        base = value["headless"]
        print(f"\n{title} {args.repeats} repeats (seconds), ratio vs headless {base:.3f}s:")
        rows = [
            ("AppTest: Train click -> script done", "apptest_click"),
            ("AppTest: training inside the page", "apptest_in_page"),
            ("browser: Train click -> final metrics painted", "browser_painted"),
            ("browser: training inside the page (server)", "browser_in_page"),
        ]
        for label, name in rows:
            if name in value:
                print(f"  {label:<48} {value[name]:7.3f}s  {value[name] / base:5.2f}x  (target <= 1.25x)")
        for label, name in (("epoch counter", "browser_counter"), ("first chart point", "browser_point")):
            if name in value:
                print(f"  browser: Train click -> {label + ' painted':<24} {value[name]:7.3f}s  (target <= 1 s)")


if __name__ == "__main__":
    main()
