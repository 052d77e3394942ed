"""The study record: what this lab stores on Optuna studies and trials, and how to read it back.

Everything that reads or writes a study's or a trial's user attrs goes through here, so their keys, types and
meaning are written down once. Readers take the attrs mapping (``study.user_attrs``,
``storage.get_study_user_attrs(study_id)``, ``FrozenStudy.user_attrs``) or a trial, and are forgiving: a study
made elsewhere (an uploaded file, another tool) may hold anything under our keys, so a value of the wrong type
reads as ``None``. The keys themselves are the stored format and never change (old studies must still read).

Every stored value a page shows goes through a typed reader here (``number``, ``timestamp``, ``cell``,
``hidden_layers``, ``trial_history``, ``trial_metric``): a non-finite number (JSON ``Infinity``, ``NaN``), a
string where a number belongs, a nested list where a cell belongs, a time in another ISO format reads as None or
as text, never as an exception on a page.

Also here: the trial-state groups every page and module counts with, and "best" and "best so far".

Trial-state groups (each name means one thing everywhere):

- ``FINISHED``: COMPLETE and PRUNED, the trials the search counts (towards a study's target, a race's runs);
- ``FAILED``: FAIL (an error, a Stop, a dead worker's trial): never counted;
- ``LIVE``: RUNNING and WAITING, still changing;
- ``ENDED``: ``FINISHED`` + ``FAILED``, every trial that can no longer change (what a cache may keep).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

FINISHED: tuple[TrialState, ...] = (TrialState.COMPLETE, TrialState.PRUNED)
FAILED: tuple[TrialState, ...] = (TrialState.FAIL,)
LIVE: tuple[TrialState, ...] = (TrialState.RUNNING, TrialState.WAITING)
ENDED: tuple[TrialState, ...] = FINISHED + FAILED

# Study user attrs (the stored keys).
_SAMPLER, _PRUNER, _SEED, _EPOCHS = "sampler", "pruner", "seed", "epochs"
_STANDARDIZE, _SEARCH_SPACE, _CREATED_BY, _CREATED = "standardize", "search_space", "created_by", "created"
_TARGET_TRIALS = "target_trials"  # the total of finished trials the study's page workers aim at together
_RUN_STARTED = "run_started"  # when the latest Part II run began (epoch seconds)
_MADE_BY = "made_by"  # the nickname (or session tag) of the student who made a Part II study
_RACE, _RACE_RUN = "race", "race_run"  # a race study: the race's plan, and which (strategy, pruning, seed) run
# Trial user attrs.
_CONFIG, _HISTORY, _METRICS = "config", "history", "metrics"
_WORKER = "worker"  # host:pid of the process that trained the trial
FAIL_REASON = "fail_reason"  # why a trial failed, in a sentence (the server's time budget)
_LESSON_RECORD = "lesson_record"  # on a class-mode study: "control" (the lessons) or "by hand" (Part I runs)
LESSON_RECORD_KINDS = ("control", "by hand")


# ---------------------------------------------------------------- trial states


def in_states(trials: Iterable[FrozenTrial], states: Sequence[TrialState]) -> list[FrozenTrial]:
    """The trials whose state is one of ``states`` (e.g. ``FINISHED``), in the given order."""
    return [t for t in trials if t.state in states]


def count(trials: Iterable[FrozenTrial], states: Sequence[TrialState]) -> int:
    """How many of ``trials`` are in one of ``states``."""
    return sum(t.state in states for t in trials)


# ---------------------------------------------------------------- best and best so far


def completed(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The COMPLETE trials that have a value (the only ones a best can come from), in the given order."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]


def best_trial(trials: Iterable[FrozenTrial], maximize: bool = True) -> FrozenTrial | None:
    """The completed trial with the best value (the lowest-numbered one on a tie); None when none completed."""
    done = sorted(completed(trials), key=lambda t: t.number)
    if not done:
        return None
    return max(done, key=lambda t: t.value) if maximize else min(done, key=lambda t: t.value)


def best_so_far(trials: Sequence[FrozenTrial], maximize: bool = True) -> list[float]:
    """For each trial in the given order, the best completed value among it and those before it (NaN until
    the first completed one): a study's progress curve, aligned with ``trials``."""
    best, curve = math.nan, []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.value is not None and not math.isnan(t.value):
            better = math.isnan(best) or (t.value > best if maximize else t.value < best)
            best = t.value if better else best
        curve.append(best)
    return curve


# ---------------------------------------------------------------- stored values, typed for display


def number(value: Any) -> int | float | None:
    """A stored number as it may be shown: a finite int or float (ints stay ints); None for anything else
    (NaN, an infinity, text, a bool, a list, an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return None
    return value if finite else None


def timestamp(value: Any) -> datetime | None:
    """A stored time, naive as Optuna keeps them: a datetime (PostgreSQL's driver hands them out) or ISO 8601
    text with or without a fraction of a second (SQLite stores text; another tool may write either); a time
    with an offset is converted to UTC, Optuna's stored time. None for anything else."""
    if isinstance(value, str) and len(value) <= 64:
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


CELL_CHARS = 200  # a stored text shown in a table cell (another tool's attr) is cut to this length


def cell(value: Any) -> bool | int | float | str | None:
    """A stored value as one table cell: text and bools as they are (text cut to ``CELL_CHARS``), numbers
    through ``number``, anything else (a list, a mapping) as its text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return number(value)
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def layer_widths(values: Any) -> list[int] | None:
    """Hidden layer widths: a non-empty list of whole numbers of at least 1 (64.0 reads as 64), else None."""
    if not isinstance(values, list | tuple) or not values:
        return None
    widths = []
    for value in values:
        width = number(value)
        if width is None or width < 1 or width != int(width):
            return None
        widths.append(int(width))
    return widths


# ---------------------------------------------------------------- study attrs


def _typed(attrs: Mapping[str, Any] | None, key: str, kind: type | tuple[type, ...]) -> Any:
    value = (attrs or {}).get(key)
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        return None  # JSON true is not a number of trials or epochs
    return value if isinstance(value, kind) else None


@dataclass(frozen=True)
class StudyDescription:
    """How a study was made (written once, when it is created): sampler, pruner, seed, epochs per trial,
    feature standardisation and the search space (``SearchSpace.to_dict()``)."""

    sampler: str | None
    pruner: str | None
    seed: int | None
    epochs: int | None
    standardize: bool | None
    search_space: dict | None
    created_by: str | None = "fetal_core"
    created: str | None = None


def describe_study(study: optuna.Study, description: StudyDescription) -> None:
    """Record how ``study`` was made, unless it already says so (a resumed or shared study keeps its own)."""
    if _SAMPLER in study.user_attrs:
        return
    for key, value in asdict(description).items():
        study.set_user_attr(key, value)


def study_description(attrs: Mapping[str, Any] | None) -> StudyDescription:
    """What the study's attrs say about how it was made; each field None when missing or unreadable."""
    epochs = _typed(attrs, _EPOCHS, (int, float))
    return StudyDescription(
        sampler=_typed(attrs, _SAMPLER, str),
        pruner=_typed(attrs, _PRUNER, str),
        seed=_typed(attrs, _SEED, int),
        epochs=int(epochs) if epochs is not None and math.isfinite(epochs) and epochs > 0 else None,
        standardize=_typed(attrs, _STANDARDIZE, bool),
        search_space=_typed(attrs, _SEARCH_SPACE, dict),
        created_by=_typed(attrs, _CREATED_BY, str),
        created=_typed(attrs, _CREATED, str),
    )


def target_trials(attrs: Mapping[str, Any] | None) -> int | None:
    """The total of finished trials the study aims at (shared by every session running it); None if unset."""
    target = _typed(attrs, _TARGET_TRIALS, (int, float))
    return int(target) if target is not None and math.isfinite(target) and target > 0 else None


def set_target_trials(study: optuna.Study, total: int) -> None:
    """Set the total of finished trials that the study's workers (all sessions, CLI workers) aim at together."""
    study.set_user_attr(_TARGET_TRIALS, int(total))


def run_started(attrs: Mapping[str, Any] | None) -> float | None:
    """When the latest Part II run of the study began (epoch seconds), if recorded."""
    started = _typed(attrs, _RUN_STARTED, (int, float))
    return float(started) if started is not None and math.isfinite(started) else None


def set_run_started(study: optuna.Study, when: float | None = None) -> None:
    """Record that a Part II run of the study begins now (or at ``when``, epoch seconds)."""
    study.set_user_attr(_RUN_STARTED, time.time() if when is None else float(when))


def made_by(attrs: Mapping[str, Any] | None) -> str | None:
    """Who made the study in Part II (their nickname or session tag, as recorded), or None when unrecorded."""
    who = _typed(attrs, _MADE_BY, str)
    return (who.strip()[:CELL_CHARS] or None) if who is not None else None


def set_made_by(study: optuna.Study, who: str) -> None:
    """Record who made the study, once: a student joining it never changes its owner."""
    if made_by(study.user_attrs) is None:
        study.set_user_attr(_MADE_BY, str(who)[:CELL_CHARS])


class RaceRunRecord(NamedTuple):
    """Which run of a race a study is: its strategy (sampler name), pruning on/off and seed index."""

    strategy: str
    pruned: bool
    seed: int


def is_race_study(attrs: Mapping[str, Any] | None) -> bool:
    """Whether the study belongs to a strategy race (it carries the race's plan)."""
    return race_plan(attrs) is not None


def race_plan(attrs: Mapping[str, Any] | None) -> dict | None:
    """The race's settings stored on each of its studies (``RacePlan.to_dict()``), or None."""
    plan = _typed(attrs, _RACE, dict)
    return plan if plan is not None and isinstance(plan.get("name"), str) else None


def race_run(attrs: Mapping[str, Any] | None) -> RaceRunRecord | None:
    """Which (strategy, pruning, seed) run of its race the study is, or None."""
    run = _typed(attrs, _RACE_RUN, dict)
    if run is None:
        return None
    strategy, pruned, seed = run.get("strategy"), run.get("pruned"), run.get("seed")
    if not isinstance(strategy, str) or not isinstance(pruned, bool) or type(seed) is not int:
        return None
    return RaceRunRecord(strategy, pruned, seed)


def mark_race_study(study: optuna.Study, plan: Mapping[str, Any], run: RaceRunRecord, target: int) -> None:
    """Record (once) that ``study`` is ``run`` of the race ``plan`` and needs ``target`` finished trials."""
    if race_plan(study.user_attrs) is not None:
        return
    study.set_user_attr(_RACE, dict(plan))
    study.set_user_attr(_RACE_RUN, run._asdict())
    set_target_trials(study, target)  # the sidebar's progress line


def lesson_record(attrs: Mapping[str, Any] | None) -> str | None:
    """``"control"`` or ``"by hand"`` when the study holds class-mode records (not Optuna's trials), else None."""
    kind = _typed(attrs, _LESSON_RECORD, str)
    return kind if kind in LESSON_RECORD_KINDS else None


def mark_lesson_record(storage: BaseStorage, study_id: int, kind: str) -> None:
    """Mark a class-mode study as holding ``kind`` records, so Optuna studies never add trials to it."""
    if kind not in LESSON_RECORD_KINDS:
        raise ValueError(f"lesson record kind {kind!r}; one of {LESSON_RECORD_KINDS}")
    storage.set_study_user_attr(study_id, _LESSON_RECORD, kind)


# ---------------------------------------------------------------- trial attrs


def store_config(trial: optuna.Trial, config: Mapping[str, Any]) -> None:
    """Keep the trial's full training config (``TrainConfig.to_dict()``): Part I can rerun it by hand."""
    trial.set_user_attr(_CONFIG, dict(config))


def trial_config(trial: FrozenTrial) -> dict | None:
    """The trial's training config (``TrainConfig.to_dict()``), or None (a plain Optuna trial)."""
    return _typed(trial.user_attrs, _CONFIG, dict)


def hidden_layers(trial: FrozenTrial) -> list[int] | None:
    """The widths of the hidden layers from the trial's stored config, or None when it has none or they are
    not whole numbers of at least 1 (``layer_widths``)."""
    return layer_widths((trial_config(trial) or {}).get("hidden_layers"))


def store_history(trial: optuna.Trial, columns: Mapping[str, list]) -> None:
    """Keep the trial's per-epoch curve as columns (``search.history_columns``): Results never retrains."""
    trial.set_user_attr(_HISTORY, dict(columns))


def trial_history(trial: FrozenTrial) -> dict[str, list[int | float | None]] | None:
    """The trial's per-epoch curve as columns ("epoch", "val_accuracy", ...), or None when it has none.

    Only the columns that are lists as long as "epoch" are kept, and every value is read by ``number``
    (NaN, an infinity or text becomes None)."""
    history = _typed(trial.user_attrs, _HISTORY, dict)
    epochs = None if history is None else history.get("epoch")
    if not isinstance(epochs, list):
        return None
    return {
        str(name): [number(v) for v in values]
        for name, values in history.items()
        if isinstance(values, list) and len(values) == len(epochs)
    }


def store_metrics(trial: optuna.Trial, metrics: Mapping[str, Any]) -> None:
    """Keep a completed trial's final metrics (balanced accuracy, confusion matrix, recall, seconds)."""
    trial.set_user_attr(_METRICS, dict(metrics))


def trial_metrics(trial: FrozenTrial) -> dict | None:
    """A completed trial's final metrics, or None (pruned, failed, or a plain Optuna trial)."""
    return _typed(trial.user_attrs, _METRICS, dict)


def trial_metric(trial: FrozenTrial, name: str) -> int | float | None:
    """One number of the trial's final metrics ("balanced_accuracy", "seconds"), read by ``number``."""
    return number((trial_metrics(trial) or {}).get(name))


def trial_nickname(trial: FrozenTrial) -> str | None:
    """The nickname of the student whose Part I run the trial records (class mode), or None."""
    return _typed(trial.user_attrs, "nickname", str)


def this_process() -> str:
    """``host:pid`` of this process: how a trial's ``worker`` attr names the process that trained it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def store_fail_reason(trial: optuna.Trial, reason: str) -> None:
    """Say why the trial is about to fail (one sentence a student can read)."""
    trial.set_user_attr(FAIL_REASON, str(reason))


def trial_fail_reason(trial: FrozenTrial) -> str | None:
    """Why the trial failed, when this lab said so (``store_fail_reason``), else None."""
    return _typed(trial.user_attrs, FAIL_REASON, str)


def store_worker(trial: optuna.Trial) -> None:
    """Record that this process trains the trial (``this_process()``)."""
    trial.set_user_attr(_WORKER, this_process())


def trial_worker(trial: FrozenTrial) -> str | None:
    """``host:pid`` of the process that trained the trial, or None (trained before workers were recorded)."""
    return _typed(trial.user_attrs, _WORKER, str)


def trial_worker_pid(trial: FrozenTrial) -> int | None:
    """The pid part of ``trial_worker``, or None."""
    worker = trial_worker(trial) or ""
    pid = worker.rsplit(":", 1)[-1]
    return int(pid) if pid.isdigit() else None


def other_trial_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's user attrs other than the config, curve and metrics read above (another tool's, a worker's)."""
    return {k: v for k, v in trial.user_attrs.items() if k not in (_CONFIG, _HISTORY, _METRICS, _WORKER)}
