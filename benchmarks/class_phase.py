"""``class_load --phase class``: many sessions at once (default 20 Part I runs, 8 Part II studies of 20 trials, 2
races) against one ``streamlit run serve.py``: all finish, 0 exceptions, 0 RUNNING trials at the end; server and
total (server + pool workers) RSS; ``/_stcore/health`` latency polled every 0.5 s during the phase (p95 target
<= 250 ms); and each session's wait (click -> done) against its fair share: the time it would take if the pool's
worker slots were shared equally among the sessions with work at each moment (processor sharing over the
trainings' own measured seconds). Target: no session above 2x.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.class_students import Student
from fetal_core.training import TrainConfig
from tests.conftest import StreamlitServer, descendants

HEALTH_TARGET_MS, FAIR_TARGET = 250.0, 2.0


def fair_finish(sessions: list[Student], slots: int) -> dict[str, float]:
    """When each session would finish if ``slots`` trainings ran at a time, shared equally among the sessions
    with work left (each using at most ``cap`` slots; what one cannot use goes to the others)."""
    start = min(s.clicked for s in sessions)
    pending = sorted(sessions, key=lambda s: s.clicked)
    left = {s.name: max(s.work, 1e-6) for s in sessions}
    caps = {s.name: s.cap for s in sessions}
    now, active, finish = start, [], {}
    while pending or active:
        while pending and pending[0].clicked <= now + 1e-9:
            active.append(pending.pop(0).name)
        if not active:
            now = pending[0].clicked
            continue
        rates, capacity = {}, float(slots)
        for name in sorted(active, key=lambda n: caps[n]):  # water-filling
            share = capacity / (len(active) - len(rates))
            rates[name] = min(caps[name], share)
            capacity -= rates[name]
        step = min(left[n] / rates[n] for n in active)
        if pending:
            step = min(step, pending[0].clicked - now)
        now += step
        for name in list(active):
            left[name] -= rates[name] * step
            if left[name] <= 1e-9:
                active.remove(name)
                finish[name] = now
    return finish


def trial_seconds(storage, study_names: list[str]) -> tuple[float, int, int]:
    """(summed training seconds, RUNNING trials, finished trials) of the named studies."""
    from optuna.trial import TrialState

    seconds, running, finished = 0.0, 0, 0
    stored = {summary.study_name for summary in storage.get_all_studies()}
    for name in stored.intersection(study_names):
        for trial in storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False):
            running += trial.state == TrialState.RUNNING
            finished += trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
            if trial.datetime_start and trial.datetime_complete:
                seconds += (trial.datetime_complete - trial.datetime_start).total_seconds()
    return seconds, running, finished


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# The health check is timed from a process of its own: in the benchmark's process it would also wait for the
# GIL of the 30 students' client, and count that as the server's latency.
HEALTH_PROBE = """
import sys, time, urllib.request
while True:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
            response.read()
        print(f"{time.time():.3f}", f"{(time.perf_counter() - started) * 1000:.1f}", flush=True)
    except OSError:
        print(f"{time.time():.3f}", "failed", flush=True)
    time.sleep(max(0.0, 0.5 - (time.perf_counter() - started)))
"""


class Monitor(threading.Thread):
    """Polls /_stcore/health every 0.5 s (from its own process) and the server's and its descendants' RSS
    every second."""

    def __init__(self, server: StreamlitServer) -> None:
        super().__init__(daemon=True)
        self.server, self.latencies_ms, self.failures = server, [], 0
        self.polls: list[tuple[float, float]] = []  # (time.time() when answered, latency ms)
        self.server_rss = self.total_rss = 0.0
        self.halt = threading.Event()

    def run(self) -> None:
        probe = subprocess.Popen(
            [sys.executable, "-c", HEALTH_PROBE, f"{self.server.url}/_stcore/health"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            while not self.halt.wait(1.0):
                pid = self.server.process.pid
                server = rss_mb(pid)
                total = server + sum(rss_mb(child) for child in descendants(pid))
                self.server_rss, self.total_rss = max(self.server_rss, server), max(self.total_rss, total)
        finally:
            probe.terminate()
            output, _ = probe.communicate()
        for line in output.splitlines():
            at, latency = line.split()
            if latency == "failed":
                self.failures += 1
            else:
                self.latencies_ms.append(float(latency))
                self.polls.append((float(at), float(latency)))

    def p95_by_minute(self) -> str:
        """The health check's p95 in each minute of the phase (where the slow answers were)."""
        if not self.polls:
            return ""
        start, minutes = self.polls[0][0], {}
        for at, latency in self.polls:
            minutes.setdefault(int((at - start) // 60), []).append(latency)
        return ", ".join(
            f"{m}-{m + 1} min {sorted(v)[min(len(v) - 1, int(0.95 * len(v)))]:.0f} ms" for m, v in minutes.items()
        )


def class_students(args) -> list[Student]:
    """The class: Part I runs (by their link), Part II studies and races (by their forms)."""
    students = [Student("part1", f"part1-{i + 1}", {}) for i in range(args.part1)]
    for i in range(args.studies):
        name = f"class_study_{i + 1}"
        form = {"p2_name": name, "p2_trials": args.study_trials, "p2_epochs": args.study_epochs, "p2_seed": 100 + i}
        students.append(Student("part2", name, form, studies=[name]))
    for i in range(args.races):
        name = f"class_race_{i + 1}"
        form = {"race_name": name, "race_trials": args.race_trials, "race_epochs": args.race_epochs}
        form["race_seeds"] = args.race_seeds
        runs = 3 * args.race_seeds  # the page's default strategies (TPE, random, grid) with median pruning
        students.append(Student("race", name, form, cap=runs))
    return students


def phase_class(client, server: StreamlitServer, storage_url: str, part1_config: TrainConfig, args) -> list[str]:
    from fetal_core.storage import open_storage

    sessions = class_students(args)
    print(f"class: opening {args.part1} Part I, {args.studies} Part II and {args.races} race sessions", flush=True)
    monitor = Monitor(server)  # started once every session is open: the polls cover the class at work
    started = time.time()
    try:
        client.run_class(server, sessions, part1_config, args.class_timeout, on_start=monitor.start)
    finally:
        monitor.halt.set()
        if monitor.ident is not None:
            monitor.join()
    started = min((s.clicked for s in sessions if s.clicked), default=started)

    storage = open_storage(storage_url)
    all_studies = [study.study_name for study in storage.get_all_studies()]
    for session in sessions:
        if session.kind == "race":
            session.studies = [n for n in all_studies if n.startswith(f"race:{session.name}:")]
        if session.kind != "part1":
            session.work = trial_seconds(storage, session.studies)[0]
    _, running, finished_trials = trial_seconds(storage, all_studies)
    exceptions = sum(s.exceptions for s in sessions)

    unfinished = [s.name for s in sessions if s.done is None]
    slots = max(1, int(os.environ.get("FETAL_HPO_POOL_WORKERS") or 0) or os.cpu_count() or 1)
    fair = fair_finish([s for s in sessions if s.done is not None], slots) if len(unfinished) < len(sessions) else {}
    ratios = {s.name: (s.done - s.clicked) / max(1e-3, fair[s.name] - s.clicked) for s in sessions if s.name in fair}
    worst = max(ratios, key=ratios.get) if ratios else None
    latencies = sorted(monitor.latencies_ms)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    makespan = max((s.done for s in sessions if s.done), default=time.time()) - started
    work = sum(s.work for s in sessions)
    print(
        f"class: {len(sessions) - len(unfinished)}/{len(sessions)} sessions finished in {makespan:.0f} s "
        f"({work:.0f} s of training on {slots} slots, {work / slots:.0f} s if perfectly packed); unfinished: "
        f"{unfinished or 'none'}"
    )
    print(
        f"  exceptions on pages: {exceptions}; RUNNING trials at the end: {running}; finished trials: {finished_trials}"
    )
    print(f"  RSS peak: server {monitor.server_rss:.0f} MB, server + pool workers {monitor.total_rss:.0f} MB")
    print(
        f"  /_stcore/health: {len(latencies)} polls, p50 {statistics.median(latencies) if latencies else 0:.0f} ms, "
        f"p95 {p95:.0f} ms, max {max(latencies, default=0):.0f} ms, {monitor.failures} failed "
        f"(target p95 <= {HEALTH_TARGET_MS:.0f} ms)"
    )
    print(f"    p95 by minute: {monitor.p95_by_minute()}")
    if worst is not None:
        middle = statistics.median(ratios.values())
        print(
            f"  wait vs fair share: max {ratios[worst]:.2f}x ({worst}), median {middle:.2f}x (target <= {FAIR_TARGET}x)"
        )
        for kind in ("part1", "part2", "race"):
            of_kind = [ratios[s.name] for s in sessions if s.kind == kind and s.name in ratios]
            if of_kind:
                print(f"    {kind}: {len(of_kind)} sessions, wait / fair share {min(of_kind):.2f}-{max(of_kind):.2f}x")
    size = f"{args.part1} Part I + {args.studies} Part II x {args.study_trials} trials + {args.races} races"
    return [
        f"| {len(sessions)} sessions at once ({size}; {slots} pool workers; {client.label}) | "
        f"{len(sessions) - len(unfinished)}/{len(sessions)} finished in {makespan:.0f} s, {exceptions} exceptions, "
        f"{running} RUNNING trials; RSS server {monitor.server_rss:.0f} MB, total {monitor.total_rss:.0f} MB; "
        f"health p95 **{p95:.0f} ms**; max wait / fair share **{ratios.get(worst, float('nan')):.2f}x** | all "
        f"finish, 0, 0; p95 <= {HEALTH_TARGET_MS:.0f} ms; <= {FAIR_TARGET}x |"
    ]
