"""A class on one server: real sessions against ``streamlit run serve.py`` (as ``make run``) on 127.0.0.1, all
training on the server's compute pool (issue 10). Every ratio is against a baseline measured in the same run.

- ``one``: one student, Part I Train click -> final metrics received (protocol client) or painted (Chromium),
  vs headless training of the same config (``python -m fetal_core train --json``: [64, 32], batch 16, Adam,
  lr 1e-3, 400 epochs). Target <= 1.3x.
- ``four``: four students press Train at once: combined throughput (runs per second until the last one is
  done) vs one student alone on the same server, interleaved repeat by repeat. Target >= 1.6x on 2 cores.
- ``class``: many sessions at once (default 20 Part I runs, 8 Part II studies of 20 trials, 2 races); see
  ``benchmarks/class_phase.py``.

The students (``--client``, ``benchmarks/class_students.py``) are clients of Streamlit's websocket protocol
(the default: a student's browser runs on the student's machine, and Chromium pages on the server's 2 cores take
the CPU the server and its pool need) or Chromium pages with throttled renderers (``--client chromium``).

    .venv/bin/python -m benchmarks.class_load --phase one [--repeats 3] [--client chromium]
    .venv/bin/python -m benchmarks.class_load --phase four [--repeats 2]
    .venv/bin/python -m benchmarks.class_load --phase class [--part1 20 --studies 8 --races 2]
    .venv/bin/python -m benchmarks.class_load --phase class --part1 3 --studies 2 --races 1 \\
        --study-trials 4 --race-trials 3        # a smoke run (6 sessions)

The last lines printed (``README:``) are table rows for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.class_phase import phase_class
from benchmarks.class_students import SETTLE_SECONDS, Chromium, Protocol
from fetal_core.training import TrainConfig
from tests.conftest import DATA_PATH, ROOT, StreamlitServer

CONFIG = TrainConfig(
    hidden_layers=(64, 32), batch_size=16, optimizer="Adam", learning_rate=1e-3, weight_decay=0.0, epochs=400
)
ONE_TARGET, FOUR_TARGET = 1.3, 1.6


def headless(config: TrainConfig) -> tuple[float, float]:
    """(training seconds reported, process wall seconds) of ``python -m fetal_core train --json``."""
    command = [
        sys.executable,
        "-m",
        "fetal_core",
        "train",
        "--json",
        "--layers",
        *map(str, config.hidden_layers),
        "--batch-size",
        str(config.batch_size),
        "--optimizer",
        config.optimizer,
        "--lr",
        str(config.learning_rate),
        "--weight-decay",
        str(config.weight_decay),
        "--epochs",
        str(config.epochs),
        "--seed",
        str(config.seed),
        "--scheduler" if config.scheduler else "--no-scheduler",
    ]
    env = {**os.environ, "FETAL_HPO_DATA": str(DATA_PATH)}
    started = time.perf_counter()
    output = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    return float(json.loads(output)["seconds"]), wall


def hand_runs(storage_url: str) -> list:
    """The Part I runs recorded in the lesson's by-hand study so far (written by a server thread after the page
    has drawn the run)."""
    import optuna

    from fetal_core.lesson import DEFAULT_LESSON, hand_study_name

    return optuna.load_study(study_name=hand_study_name(DEFAULT_LESSON), storage=storage_url).trials


def recorded_by(storage_url: str, before: int, runs: int, timeout: float = 60) -> float:
    """Wall-clock time (epoch seconds) when the last of ``runs`` new Part I runs (after ``before`` recorded ones)
    was written to the lesson's by-hand study: the server's side of "finished" (trained on the pool and stored).
    Waits for the writes, which end after the page has its final metrics."""
    deadline = time.monotonic() + timeout
    while len(trials := hand_runs(storage_url)) < before + runs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{before + runs - len(trials)} of {runs} runs were not recorded in {timeout:.0f} s")
        time.sleep(0.2)
    return max(t.datetime_complete.timestamp() for t in trials[before:])


def start_server(workdir: Path, workers: int | None) -> StreamlitServer:
    env = {"FETAL_HPO_DATA": str(DATA_PATH), "FETAL_HPO_STORAGE": f"sqlite:///{workdir}/class.sqlite3"}
    if workers:
        env["FETAL_HPO_POOL_WORKERS"] = str(workers)
    return StreamlitServer(env, workdir / "streamlit.log")


# ---------------------------------------------------------------- phase one


def phase_one(client, server: StreamlitServer, args) -> list[str]:
    config = TrainConfig(**{**CONFIG.to_dict(), "epochs": args.epochs})
    samples: dict[str, list[float]] = {"headless": [], "headless_wall": [], "page": [], "in_page": []}
    for repeat in range(1, args.repeats + 1):
        order = ["headless", "page"] if repeat % 2 else ["page", "headless"]
        for variant in order:
            time.sleep(SETTLE_SECONDS)
            if variant == "headless":
                seconds, wall = headless(config)
                samples["headless"].append(seconds)
                samples["headless_wall"].append(wall)
                continue
            _, elapsed, in_page = client.part1_at_once(server, config, 1)
            samples["page"].append(elapsed)
            samples["in_page"].append(in_page[0])
        print(f"one, repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in samples.items()), flush=True)
    median = {k: statistics.median(v) for k, v in samples.items()}
    ratio = median["page"] / median["headless"]
    ratio_best = min(samples["page"]) / min(samples["headless"])
    verdict = "met" if ratio <= ONE_TARGET else "MISSED"
    done = "painted" if isinstance(client, Chromium) else "received"
    print(
        f"one student, median of {args.repeats}: click -> final metrics {done} {median['page']:.2f} s; headless "
        f"training {median['headless']:.2f} s ({median['headless_wall']:.2f} s with the process start); "
        f"training on the pool worker {median['in_page']:.2f} s"
    )
    print(
        f"  ratio {ratio:.2f}x (fastest of each {ratio_best:.2f}x; vs the CLI process's wall time "
        f"{median['page'] / median['headless_wall']:.2f}x); target <= {ONE_TARGET}x: {verdict}"
    )
    return [
        f"| one student, Part I {list(config.hidden_layers)} batch {config.batch_size} {config.optimizer} lr "
        f"{config.learning_rate:g} {config.epochs} epochs: click -> final metrics {done} vs headless "
        f"`train --json` (median of {args.repeats}, {client.label}) | {median['page']:.2f} s vs "
        f"{median['headless']:.2f} s: **{ratio:.2f}x** (fastest {ratio_best:.2f}x) | <= {ONE_TARGET}x |"
    ]


# ---------------------------------------------------------------- phase four


def phase_four(client, server: StreamlitServer, storage_url: str, args) -> list[str]:
    """Four at once vs one alone: done in the client (received or painted), and the server's side (trained on the
    pool and stored, ``recorded_by``)."""
    config = TrainConfig(**{**CONFIG.to_dict(), "epochs": args.epochs})
    alone, four, alone_served, four_served = [], [], [], []
    for repeat in range(1, args.repeats + 1):
        order = [1, 4] if repeat % 2 else [4, 1]
        for count in order:
            time.sleep(SETTLE_SECONDS)
            before = len(hand_runs(storage_url))
            clicked, elapsed, _ = client.part1_at_once(server, config, count)
            served = recorded_by(storage_url, before, count) - clicked
            (alone if count == 1 else four).append(elapsed)
            (alone_served if count == 1 else four_served).append(served)
        print(
            f"four, repeat {repeat}: done: one alone {alone[-1]:.2f} s, four at once {four[-1]:.2f} s "
            f"({4 * alone[-1] / four[-1]:.2f}x); trained and stored by the server: {alone_served[-1]:.2f} s, "
            f"{four_served[-1]:.2f} s ({4 * alone_served[-1] / four_served[-1]:.2f}x)",
            flush=True,
        )
    ratio = statistics.median(4 * a / f for a, f in zip(alone, four))
    served = statistics.median(4 * a / f for a, f in zip(alone_served, four_served))
    verdict = "met" if ratio >= FOUR_TARGET else "MISSED"
    print(
        f"four students at once, median of {args.repeats}: {statistics.median(four):.2f} s for four runs vs "
        f"{statistics.median(alone):.2f} s for one: combined throughput {ratio:.2f}x one student alone; "
        f"target >= {FOUR_TARGET}x: {verdict}. The server's side alone (trained on the pool and stored): {served:.2f}x"
    )
    return [
        f"| four students press Train at once ({os.cpu_count()} cores, same config, {client.label}): combined "
        f"throughput vs one alone (median of {args.repeats}) | done: "
        f"{statistics.median(four):.2f} s for four vs {statistics.median(alone):.2f} s for one: **{ratio:.2f}x**; "
        f"trained and stored: {statistics.median(four_served):.2f} s vs {statistics.median(alone_served):.2f} s: "
        f"**{served:.2f}x** | >= {FOUR_TARGET}x |"
    ]


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=["one", "four", "class", "all"], default="all")
    parser.add_argument("--client", choices=["protocol", "chromium"], default="protocol", help="what the students are")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the one and four phases")
    parser.add_argument("--epochs", type=int, default=CONFIG.epochs, help="epochs of the one and four phases' run")
    parser.add_argument("--throttle", type=float, default=4.0, help="Chromium: renderer CPU throttling rate (1: none)")
    parser.add_argument(
        "--browser-cpus",
        default="0",
        help="Chromium: CPUs it may use, e.g. 0 or 0,1 ('' for all): students' browsers are not on the server",
    )
    parser.add_argument("--workers", type=int, help="embedded pool workers (default: $FETAL_HPO_POOL_WORKERS or cores)")
    parser.add_argument("--part1", type=int, default=20, help="class: Part I sessions")
    parser.add_argument("--part1-epochs", type=int, default=CONFIG.epochs)
    parser.add_argument("--studies", type=int, default=8, help="class: Part II sessions")
    parser.add_argument("--study-trials", type=int, default=20)
    parser.add_argument("--study-epochs", type=int, default=20)
    parser.add_argument("--races", type=int, default=2, help="class: race sessions (TPE, random, grid; median pruning)")
    parser.add_argument("--race-trials", type=int, default=20)
    parser.add_argument("--race-epochs", type=int, default=20)
    parser.add_argument("--race-seeds", type=int, default=1)
    parser.add_argument("--class-timeout", type=float, default=3600)
    args = parser.parse_args()
    if args.workers:
        os.environ["FETAL_HPO_POOL_WORKERS"] = str(args.workers)
    os.chdir(ROOT)

    phases = ["one", "four", "class"] if args.phase == "all" else [args.phase]
    if args.client == "chromium":
        client = Chromium(args.throttle, {int(c) for c in args.browser_cpus.split(",") if c.strip()} or None)
    else:
        client = Protocol()
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before; students: {client.label}; phases "
        f"{', '.join(phases)}",
        flush=True,
    )
    lines: list[str] = []
    try:
        for phase in phases:
            workdir = Path(tempfile.mkdtemp(prefix=f"class_load_{phase}_"))
            server = start_server(workdir, args.workers)
            storage_url = f"sqlite:///{workdir}/class.sqlite3"
            try:
                # one tiny run first: the pool's workers and imports are warm before anything is timed
                client.part1_at_once(server, TrainConfig(hidden_layers=(64, 32), batch_size=16, epochs=5), 1)
                started, cpu = time.time(), client.cpu_seconds
                if phase == "one":
                    lines += phase_one(client, server, args)
                elif phase == "four":
                    lines += phase_four(client, server, storage_url, args)
                else:
                    part1_config = TrainConfig(**{**CONFIG.to_dict(), "epochs": args.part1_epochs})
                    lines += phase_class(client, server, storage_url, part1_config, args)
                if cpu is not None:
                    used, wall = client.cpu_seconds - cpu, time.time() - started
                    print(f"  the protocol client's own CPU: {used:.1f} s in {wall:.0f} s ({100 * used / wall:.1f} %)")
            finally:
                server.stop()
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        client.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}; measured {time.strftime('%Y-%m-%d')}")
    for line in lines:
        print(f"README: {line}")


if __name__ == "__main__":
    main()
