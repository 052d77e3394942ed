"""Part II's view of a live study: read it from the storage, then progress and table (its figures are
``fetal_core.figures``').

Nothing here calls Streamlit or trains: the functions turn the trials a worker (or any other session,
or a CLI worker) has written into numbers and a table, so the page stays thin and these can be tested
on their own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from . import insights, records, review
from .search import SearchSpace


def study_names(storage: optuna.storages.BaseStorage, optuna_only: bool = False) -> list[str]:
    """Names of the studies in the storage, newest first (a ``FrozenStudy`` sorts in creation order); with
    ``optuna_only``, without class mode's record studies (lessons, runs by hand), which Optuna must not extend."""
    studies = sorted(storage.get_all_studies(), reverse=True)
    return [s.study_name for s in studies if not (optuna_only and records.lesson_record(s.user_attrs))]


def read_trials(storage: optuna.storages.BaseStorage, study_name: str) -> tuple[list[FrozenTrial], dict] | None:
    """All trials of ``study_name`` (RUNNING ones included, with their intermediate values so far) and the
    study's user attrs; None when there is no such study."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    return review.load_trials(storage, study_id, states=tuple(TrialState)), storage.get_study_user_attrs(study_id)


def finished_count(trials: list[FrozenTrial]) -> int:
    """Trials that count towards the total: ``records.FINISHED`` (a FAIL, e.g. a stopped trial, does not)."""
    return records.count(trials, records.FINISHED)


def trials_to_run(target_total: int, trials: list[FrozenTrial]) -> int:
    """How many more trials reach ``target_total`` finished trials ("reach the total")."""
    return max(0, target_total - finished_count(trials))


@dataclass(frozen=True)
class Progress:
    finished: int
    target: int
    running: int
    failed: int
    elapsed: float  # seconds
    eta: float | None  # seconds; None until a trial has finished
    best_value: float | None
    best_number: int | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.finished / self.target) if self.target else 0.0


def _seconds(trial: FrozenTrial, now: datetime) -> float | None:
    if trial.datetime_start is None:
        return None
    end = trial.datetime_complete or now
    return (end - trial.datetime_start).total_seconds()


def progress(trials: list[FrozenTrial], target: int, run_started: float | None, now: float | None = None) -> Progress:
    """n of N; elapsed since ``run_started`` (or the first trial) until now, or until the last trial
    ended when none is running; ETA from this run's mean trial duration divided by the trials running
    side by side; the best value so far."""
    now = time.time() if now is None else now
    now_dt = datetime.fromtimestamp(now)
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start is not None]
    begin = run_started if run_started is not None else (min(starts) if starts else now)
    this_run = [t for t in trials if t.datetime_start is not None and t.datetime_start.timestamp() >= begin - 1]
    durations = [_seconds(t, now_dt) for t in records.in_states(this_run, records.FINISHED)]
    running = sum(t.state == TrialState.RUNNING for t in trials)
    ends = [t.datetime_complete.timestamp() for t in this_run if t.datetime_complete is not None]
    end = now if running or not ends else max(ends)  # the clock stops when the last trial ends
    remaining = max(0, target - finished_count(trials))
    eta = None
    if remaining == 0:
        eta = 0.0
    elif durations:
        eta = remaining * (sum(durations) / len(durations)) / max(1, running)
    best = records.best_trial(trials)
    return Progress(
        finished=finished_count(trials),
        target=target,
        running=running,
        failed=records.count(trials, records.FAILED),
        elapsed=max(0.0, end - begin),
        eta=eta,
        best_value=None if best is None else best.value,
        best_number=None if best is None else best.number,
    )


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _format_param(name: str, value) -> str:
    return insights.format_value(value, name)


def trial_table(trials: list[FrozenTrial]) -> pd.DataFrame:
    """One row per trial: number, state, value, epochs reached, params, duration (newest first)."""
    now = datetime.now()
    rows = []
    for t in sorted(trials, key=lambda t: t.number, reverse=True):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value (%)": None if t.value is None else round(t.value, 2),
                "epochs": len(t.intermediate_values),
                "params": ", ".join(f"{k}={_format_param(k, v)}" for k, v in t.params.items()),
                "duration (s)": None if t.datetime_start is None else round(_seconds(t, now), 1),
            }
        )
    columns = ["trial", "state", "value (%)", "epochs", "params", "duration (s)"]
    return pd.DataFrame(rows, columns=columns)


def saved_space(user_attrs: dict) -> SearchSpace | None:
    """The search space a study was created with (``records.study_description``), if readable."""
    stored = records.study_description(user_attrs).search_space
    if stored is None:
        return None
    try:
        return SearchSpace.from_dict(stored)
    except (TypeError, ValueError):
        return None
