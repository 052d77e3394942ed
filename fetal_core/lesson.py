"""Class mode without Streamlit: students' nicknames, lessons and their presets, and Part I runs recorded as
trials of the lesson's "by hand" study, so the class's hand-tuned runs live in the storage like any study.

A lesson is a name; its runs are the trials of the study ``hand_study_name(lesson)``. Which lesson is current,
its presets and its class study are user attrs of one control study (``control_study_name()``) in the storage:
the storage stays the one source of truth for every server process and every student.

These names are reserved (``is_reserved_name``): only this module creates them, marked as class mode's
(``records.mark_lesson_record``), and it never writes into a study under them that it did not mark. A lesson
whose by-hand name was taken anyway (by a storage from before the names were reserved, or another Optuna
client) records under the next free ``<lesson> (by hand, 2)`` ... (``claim_hand_study``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import DuplicatedStudyError
from optuna.study import StudyDirection
from optuna.trial import TrialState

from . import limits, records
from .limits import ConfigError
from .manual import format_rate
from .text import clip
from .training import OPTIMIZERS, TrainConfig

NICKNAME_MAX = 24
NICKNAME_PUNCTUATION = " -_"
# Default_Ignorable_Code_Point (Unicode 15, DerivedCoreProperties.txt): drawn as nothing. The letter test refuses
# most of them already (format characters, variation selectors); the Hangul fillers are letters (Lo) that show
# as blanks, so a nickname of three U+3164 looks empty.
_INVISIBLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
              (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
              (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
              (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))  # fmt: skip


def invisible(char: str) -> bool:
    """Whether ``char`` is a default-ignorable code point (shown as nothing: a Hangul filler, a zero-width space)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _INVISIBLE)


def _allowed(char: str) -> bool:
    if char in NICKNAME_PUNCTUATION:
        return True
    category = unicodedata.category(char)
    return (category.startswith("L") or category == "Nd") and not invisible(char)


@functools.cache
def _spoof_checker() -> Any:
    import icu  # ICU's UTS #39 implementation with its Unicode data (pyicu-wheels, requirements.txt)

    return icu.SpoofChecker()


def skeleton(text: str) -> str:
    """UTS #39's skeleton of ``text`` (ICU's): two strings with the same skeleton look alike ('Ada' and 'Аda',
    whose first letter is Cyrillic; 'rn' and 'm'). Runs of spaces count as one (they look alike too)."""
    return re.sub(" +", " ", _spoof_checker().getSkeleton(0, text))  # 0: ICU's default skeleton type


def check_nickname(value: object, taken: Iterable[str] = ()) -> str:
    """``value`` as a nickname (1 to 24 letters, digits, spaces, '-' or '_'; outer spaces dropped), or a
    ``ConfigError`` saying what is wrong. Markdown, HTML, control and invisible characters are all refused
    here, and so is a look-alike of a nickname in ``taken`` (the lesson's: the same nickname is fine)."""
    if not isinstance(value, str):
        raise ConfigError("nickname: type a nickname.")
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ConfigError("nickname: type a nickname (1 to 24 letters, digits, spaces, '-' or '_').")
    if len(name) > NICKNAME_MAX:
        raise ConfigError(f"nickname: {len(name)} characters; use at most {NICKNAME_MAX}.")
    bad = sorted({c for c in name if not _allowed(c)})
    if bad:
        shown = " ".join(
            repr(c) if c.isprintable() and not invisible(c) else f"U+{ord(c):04X}" + (" (invisible)" * invisible(c))
            for c in bad[:5]
        )
        raise ConfigError(f"nickname: {clip(shown, 40)} not allowed; use letters, digits, spaces, '-' or '_'.")
    taken = {t for t in taken if isinstance(t, str)}
    if name not in taken:
        look = skeleton(name)
        alike = sorted(t for t in taken if skeleton(t) == look and _valid_nickname(t))
        if alike:
            raise ConfigError(f"nickname: looks like '{alike[0]}', already in this lesson; choose another.")
    return name


def _valid_nickname(value: str) -> bool:
    try:
        return check_nickname(value) == value
    except ConfigError:
        return False


# ---------------------------------------------------------------- lessons and their state in the storage

CONTROL_STUDY = "Fetal_HPO_Class"  # a study without trials whose user attrs hold the class's lessons
CURRENT_ATTR = "current_lesson"
LESSON_ATTR_PREFIX = "lesson:"
DEFAULT_LESSON = "Lesson 1"
HAND_SUFFIX = " (by hand)"


CLASS_ENV = "FETAL_HPO_CLASS"  # optional class name: several classes (or test runs) can share one database


def class_prefix() -> str:
    """``"<class>: "`` when ``FETAL_HPO_CLASS`` names a class (its studies' names start with it), else empty."""
    name = os.environ.get(CLASS_ENV, "").strip()
    if name and (len(name) > 60 or not name.isprintable()):
        raise ConfigError(f"{CLASS_ENV}: {clip(repr(name), 40)}; use up to 60 printable characters.")
    return f"{name}: " if name else ""


def control_study_name() -> str:
    """The study whose user attrs hold this class's lessons."""
    return class_prefix() + CONTROL_STUDY


def hand_study_name(lesson: str, n: int = 1) -> str:
    """The study that holds a lesson's Part I runs: ``<lesson> (by hand)``, or when that name was taken by a
    study the class code did not make, the ``n``-th choice ``<lesson> (by hand, n)``."""
    return f"{class_prefix()}{lesson}{HAND_SUFFIX if n == 1 else f' (by hand, {n})'}"


# The names only the class code creates: a lesson's by-hand study, whatever the lesson ("... (by hand)",
# "... (by hand, 2)"), and the control study (with or without a class prefix), in any letter case.
_RESERVED = re.compile(r"(\(by hand[^()]*\)|" + re.escape(CONTROL_STUDY) + r")$", re.IGNORECASE)
RESERVED_RULE = f"a name ending in '(by hand)' or '{CONTROL_STUDY}' belongs to class mode"


def is_reserved_name(name: object) -> bool:
    """Whether ``name`` is one of class mode's study names, which only the class code may create."""
    return isinstance(name, str) and _RESERVED.search(name.strip()) is not None


def check_not_reserved(name: str, what: str = "study name") -> str:
    """``name``, or a ``ConfigError`` when it is one of class mode's names (Part II, the race and the CLI ask)."""
    if is_reserved_name(name):
        raise ConfigError(f"{what}: '{clip(name.strip(), 60)}' is reserved ({RESERVED_RULE}); choose another.")
    return name


def check_lesson_name(value: object) -> str:
    """A lesson name: 1 to 60 printable characters (it becomes part of a study name)."""
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > 60 or not name.isprintable():
        raise ConfigError(f"lesson name: {clip(repr(value), 40)}; use 1 to 60 printable characters.")
    return name


@dataclass(frozen=True)
class Lesson:
    """A lesson as the storage holds it: its name, the class study Part II follows, the removed runs
    (trial numbers of its by-hand study) and the instructor's presets for Part I (``Presets.to_dict``)."""

    name: str
    class_study: str | None = None
    removed: tuple[int, ...] = ()
    presets: dict = field(default_factory=dict)
    started: str = ""
    archived: bool = False
    recorded_in: str | None = None  # the by-hand study chosen when its name was taken (stored apart: HAND_ATTR_PREFIX)

    @property
    def hand_study(self) -> str:
        """The study that holds this lesson's runs."""
        return self.recorded_in or hand_study_name(self.name)

    @property
    def name_taken(self) -> bool:
        """Whether the lesson's own by-hand name was taken by a study the class code did not make."""
        return self.hand_study != hand_study_name(self.name)

    def to_dict(self) -> dict:
        return {
            "class_study": self.class_study,
            "removed": list(self.removed),
            "presets": dict(self.presets),
            "started": self.started,
            "archived": self.archived,
        }

    @classmethod
    def from_dict(cls, name: str, d: dict | None, recorded_in: object = None) -> Lesson:
        d = d if isinstance(d, dict) else {}
        removed = tuple(int(n) for n in d.get("removed") or () if isinstance(n, int))
        presets = d.get("presets") if isinstance(d.get("presets"), dict) else {}
        class_study = d.get("class_study") if isinstance(d.get("class_study"), str) else None
        recorded_in = recorded_in if is_reserved_name(recorded_in) else None  # only ever a class-mode name
        return cls(
            name, class_study, removed, presets, str(d.get("started") or ""), bool(d.get("archived")), recorded_in
        )


HAND_ATTR_PREFIX = "hand study:"  # control study attr: where a lesson's runs go when its by-hand name was taken
MARK_WAIT_SECONDS = 1.0  # how long a study without trials may stay unmarked while another process creates it


def _owned(storage: optuna.storages.BaseStorage, name: str, kind: str) -> int | None:
    """The id of the study ``name`` if the class code made it (marked ``kind``), creating and marking it when
    there is none; None when a study that the class code did not make holds the name.

    Creating and marking are two writes: a study with no trials and no mark may be one that another process
    has just created, so it is given ``MARK_WAIT_SECONDS`` to be marked before it counts as taken."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        try:
            study_id = storage.create_new_study([StudyDirection.MAXIMIZE], name)
        except DuplicatedStudyError:  # another process created it just now
            study_id = storage.get_study_id_from_name(name)
        else:
            records.mark_lesson_record(storage, study_id, kind)
            return study_id
    deadline = time.monotonic() + MARK_WAIT_SECONDS
    while records.lesson_record(storage.get_study_user_attrs(study_id)) != kind:
        if time.monotonic() > deadline or storage.get_n_trials(study_id) > 0:
            return None
        time.sleep(0.05)
    return study_id


def _control_study_id(storage: optuna.storages.BaseStorage, create: bool) -> int | None:
    name = control_study_name()
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        if not create:
            return None
        try:
            study_id = storage.create_new_study([StudyDirection.MAXIMIZE], name)
        except DuplicatedStudyError:  # another process created it just now
            study_id = storage.get_study_id_from_name(name)
    if not create or records.lesson_record(storage.get_study_user_attrs(study_id)) == "control":
        return study_id
    # Not marked: just created (here or by another process), or made before studies were marked. Each holds
    # no trial; one that does was made by something else and never holds the lessons.
    if storage.get_n_trials(study_id) > 0:
        raise ConfigError(
            f"study '{name}' holds trials that class mode did not make, so it cannot hold the lessons: start the "
            f"server with {CLASS_ENV}=<a class name> to use another name."
        )
    records.mark_lesson_record(storage, study_id, "control")
    return study_id


def class_state(storage: optuna.storages.BaseStorage) -> dict:
    """Every user attr of the control study (one cheap read; empty before any lesson was started)."""
    study_id = _control_study_id(storage, create=False)
    return {} if study_id is None else storage.get_study_user_attrs(study_id)


def current_lesson(storage: optuna.storages.BaseStorage, state: dict | None = None) -> Lesson:
    """The lesson every student's runs go to (``DEFAULT_LESSON`` until an instructor starts another)."""
    state = class_state(storage) if state is None else state
    name = state.get(CURRENT_ATTR)
    name = name if isinstance(name, str) and name else DEFAULT_LESSON
    return Lesson.from_dict(name, state.get(LESSON_ATTR_PREFIX + name), state.get(HAND_ATTR_PREFIX + name))


def lessons(storage: optuna.storages.BaseStorage) -> list[Lesson]:
    """Every lesson the storage knows, oldest first."""
    state = class_state(storage)
    found = []
    for key, value in state.items():
        if key.startswith(LESSON_ATTR_PREFIX):
            name = key[len(LESSON_ATTR_PREFIX) :]
            found.append(Lesson.from_dict(name, value, state.get(HAND_ATTR_PREFIX + name)))
    return sorted(found, key=lambda lesson: lesson.started)


def save_lesson(storage: optuna.storages.BaseStorage, lesson: Lesson, make_current: bool = False) -> None:
    """Write a lesson's state (and, if asked, make it the current lesson)."""
    study_id = _control_study_id(storage, create=True)
    storage.set_study_user_attr(study_id, LESSON_ATTR_PREFIX + lesson.name, lesson.to_dict())
    if make_current:
        storage.set_study_user_attr(study_id, CURRENT_ATTR, lesson.name)


HAND_STUDY_CHOICES = 20  # "<lesson> (by hand)", then "(by hand, 2)" ... "(by hand, 20)"
_claiming = threading.Lock()  # this process's recorder threads claim a lesson's study one at a time


def claim_hand_study(storage: optuna.storages.BaseStorage, lesson: Lesson) -> tuple[int, Lesson]:
    """The id of the study that holds ``lesson``'s runs, and the lesson as it then is.

    That study is one the class code made and marked: created on first use (by the first run, or when the
    instructor starts the lesson). A by-hand name held by a study the class code did not make (e.g. a Part II
    study made before class mode's names were reserved) is never written to: the first free name of
    ``hand_study_name(lesson, n)`` is used instead and kept in the class's state (``HAND_ATTR_PREFIX``), so that
    every server process and student records there (``Lesson.name_taken`` says so)."""
    choices = (hand_study_name(lesson.name, n) for n in range(1, HAND_STUDY_CHOICES + 1))
    names = dict.fromkeys([lesson.hand_study, *choices])
    with _claiming:
        for name in names:
            study_id = _owned(storage, name, "by hand")
            if study_id is None:
                continue
            if name != lesson.hand_study:
                control = _control_study_id(storage, create=True)
                storage.set_study_user_attr(control, HAND_ATTR_PREFIX + lesson.name, name)
                lesson = dataclasses.replace(lesson, recorded_in=name)
            return study_id, lesson
    raise ConfigError(
        f"lesson '{clip(lesson.name, 60)}': its by-hand study names up to '{name}' are all taken by studies that "
        "class mode did not make; start a lesson with another name."
    )


def start_lesson(storage: optuna.storages.BaseStorage, name: str, previous: Lesson | None = None) -> Lesson:
    """Archive ``previous`` (the current lesson), make lesson ``name`` the current one and claim its by-hand
    study now (``claim_hand_study``); the new lesson as stored."""
    name = check_lesson_name(name)
    if previous is not None:
        if previous.name == name:
            raise ConfigError("lesson name: that is the current lesson.")
        save_lesson(storage, dataclasses.replace(previous, archived=True))
    save_lesson(storage, Lesson(name, started=datetime.now(UTC).isoformat(timespec="seconds")), make_current=True)
    return claim_hand_study(storage, current_lesson(storage))[1]


# ---------------------------------------------------------------- Part I runs as trials

# The search space's parameter names (fetal_core.search.SearchSpace.suggest) over the widest allowed ranges.
RUN_DISTRIBUTIONS = {
    "batch_size": IntDistribution(int(limits.BATCH_SIZE.low), int(limits.BATCH_SIZE.high)),
    "optimizer": CategoricalDistribution(OPTIMIZERS),
    "learning_rate": FloatDistribution(limits.LEARNING_RATE.low, limits.LEARNING_RATE.high, log=True),
    "weight_decay": FloatDistribution(limits.WEIGHT_DECAY.low, limits.WEIGHT_DECAY.high),
    "scheduler": IntDistribution(0, 1),
    "num_layers": IntDistribution(int(limits.LAYERS.low), int(limits.LAYERS.high)),
}
LAYER_DISTRIBUTION = IntDistribution(int(limits.UNITS.low), int(limits.UNITS.high))


def run_params(config: TrainConfig) -> tuple[dict[str, Any], dict[str, optuna.distributions.BaseDistribution]]:
    """A Part I config as trial params in the search space's names, with their distributions."""
    params: dict[str, Any] = {
        "batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "scheduler": int(config.scheduler),
        "num_layers": len(config.hidden_layers),
    }
    distributions = dict(RUN_DISTRIBUTIONS)
    for i, units in enumerate(config.hidden_layers):
        params[f"layer_{i}"] = int(units)
        distributions[f"layer_{i}"] = LAYER_DISTRIBUTION
    return params, distributions


def _history_columns(history: Sequence[dict]) -> dict[str, list]:
    keys = ("epoch", "train_loss", "val_loss", "val_accuracy", "balanced_accuracy", "seconds")
    return {k: [h[k] if k == "epoch" else round(float(h[k]), 5) for h in history] for k in keys}


def record_run(storage: optuna.storages.BaseStorage, lesson: Lesson, record: dict, nickname: str | None) -> int:
    """Add a finished (COMPLETE) or stopped (PRUNED) Part I run to the lesson's by-hand study (``claim_hand_study``);
    its trial number.

    ``record`` is Part I's run record (``fetal_core.manual.make_run_record``). The trial holds the config as
    params (search-space names), the curve as intermediate values, and as user attrs the nickname, the time,
    whether it was stopped early, and ``config``/``history``/``metrics`` as a study's trials have them.
    One ``add_trial``: the trial appears finished or not at all.
    """
    config = TrainConfig.from_dict(record["config"])
    params, distributions = run_params(config)
    history = record["history"]
    finished = datetime.now(UTC)
    stopped = bool(record["stopped_early"])
    trial = optuna.trial.create_trial(
        state=TrialState.PRUNED if stopped else TrialState.COMPLETE,
        value=float(record["final_val_accuracy"]) if history else None,
        params=params,
        distributions=distributions,
        intermediate_values={
            int(h["epoch"]): float(h["val_accuracy"]) for h in history if math.isfinite(h["val_accuracy"])
        },
        user_attrs={
            "nickname": nickname or "",
            "recorded": finished.isoformat(timespec="milliseconds"),
            "stopped_early": stopped,
            "source": "by hand",
            "run": str(record.get("label", "")),
            "config": config.to_dict(),
            "history": _history_columns(history),
            "metrics": {
                "balanced_accuracy": record["balanced_accuracy"],
                "confusion_matrix": record["confusion_matrix"],
                "per_class_recall": record["per_class_recall"],
                "seconds": record["seconds"],
            },
        },
    )
    trial.datetime_start = finished - timedelta(seconds=float(record.get("seconds") or 0.0))
    trial.datetime_complete = finished
    # create_trial validated it (as Study.add_trial would); one storage call adds it and gives the id
    study_id, _ = claim_hand_study(storage, lesson)  # a study the class code made: never a squatted one
    trial_id = storage.create_new_trial(study_id, template_trial=trial)
    return storage.get_trial_number_from_id(trial_id)


# ---------------------------------------------------------------- the leaderboard


def board_fingerprint(storage: optuna.storages.BaseStorage) -> tuple:
    """What changes when the leaderboard must change: the class state and the trial counts of the current
    lesson's by-hand and class studies. One attrs read and one grouped count per study (cheap to poll)."""
    from .review import ReviewError, study_state

    state = class_state(storage)
    lesson = current_lesson(storage, state)
    counts = []
    for name in (lesson.hand_study, lesson.class_study):
        try:
            counts.append(None if name is None else tuple(study_state(storage, name).__dict__.values()))
        except ReviewError:
            counts.append(None)
    return repr(sorted(state.items(), key=lambda item: item[0])), *counts


def lesson_trials(storage: optuna.storages.BaseStorage, lesson: Lesson) -> tuple[list, list]:
    """The lesson's recorded runs (finished or stopped, removed ones left out) and its class study's
    finished trials (empty without one), each sorted by number."""
    from .review import load_trials

    found = []
    for name, kind in ((lesson.hand_study, "by hand"), (lesson.class_study, None)):
        try:
            study_id = None if name is None else storage.get_study_id_from_name(name)
        except KeyError:
            study_id = None
        if study_id is not None and kind and records.lesson_record(storage.get_study_user_attrs(study_id)) != kind:
            study_id = None  # a study the class code did not make under the lesson's name: not the class's runs
        found.append([] if study_id is None else load_trials(storage, study_id))
    hand, machine = found
    removed = set(lesson.removed)
    return [t for t in hand if t.number not in removed], machine


def lesson_nicknames(storage: optuna.storages.BaseStorage, lesson: Lesson) -> set[str]:
    """The nicknames recorded in ``lesson``'s by-hand study (a new nickname must not look like one of them).
    Reads only that attr (one query on an RDB storage), not the runs."""
    from .review import sql_readable

    try:
        study_id = storage.get_study_id_from_name(lesson.hand_study)
    except KeyError:
        return set()
    if records.lesson_record(storage.get_study_user_attrs(study_id)) != "by hand":
        return set()
    if sql_readable(storage):
        import sqlalchemy

        query = sqlalchemy.text(
            "SELECT DISTINCT a.value_json FROM trial_user_attributes a JOIN trials t ON a.trial_id = t.trial_id "
            "WHERE t.study_id = :study AND a.key = 'nickname'"
        )
        with storage.engine.connect() as connection:
            values = [json.loads(row[0]) for row in connection.execute(query, {"study": study_id})]
    else:
        values = [records.trial_nickname(t) for t in storage.get_all_trials(study_id, deepcopy=False)]
    return {v for v in values if isinstance(v, str) and v}


NO_NICKNAME = "(no nickname)"
# The leaderboard's columns (the keys of leaderboard_rows' rows, in order)
BOARD_COLUMNS = ("rank", "student", "best accuracy %", "runs", "finished", "hidden layers", "batch", "optimiser",
                 "lr", "weight decay", "scheduler", "standardised", "epochs", "run")  # fmt: skip
Trials = Sequence[optuna.trial.FrozenTrial]


def student(trial: optuna.trial.FrozenTrial) -> str:
    """Who made a recorded run (the nickname it was recorded with; checked again, never trusted)."""
    try:
        return check_nickname(records.trial_nickname(trial))
    except ConfigError:
        return NO_NICKNAME


def _finished(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]


def _layers(trial: optuna.trial.FrozenTrial) -> list[int]:
    return [
        int(trial.params[f"layer_{i}"])
        for i in range(int(trial.params.get("num_layers", 0)))
        if f"layer_{i}" in trial.params
    ]


def leaderboard_rows(hand: Sequence[optuna.trial.FrozenTrial]) -> list[dict]:
    """One row per student: their best finished run (rank, accuracy, settings) and how many runs they made
    (the keys are ``BOARD_COLUMNS``; a student without a finished run has the first five)."""
    by_student: dict[str, list] = {}
    for trial in hand:
        by_student.setdefault(student(trial), []).append(trial)
    rows = []
    for name, trials in by_student.items():
        finished = _finished(trials)
        best = max(finished, key=lambda t: t.value, default=None)
        row: dict[str, Any] = {
            "student": name,
            "best accuracy %": None if best is None else round(best.value, 2),
            "runs": len(trials),
            "finished": len(finished),
        }
        if best is not None:
            p, config = best.params, records.trial_config(best) or {}
            row.update(
                {
                    "hidden layers": "-".join(str(u) for u in _layers(best)),
                    "batch": p.get("batch_size"),
                    "optimiser": p.get("optimizer"),
                    "lr": format_rate(float(p.get("learning_rate", 0))),
                    "weight decay": format_rate(float(p.get("weight_decay", 0))),
                    "scheduler": "on" if p.get("scheduler") else "off",
                    "standardised": "on" if config.get("standardize") else "off",
                    "epochs": config.get("epochs"),
                    "run": best.number,
                }
            )
        rows.append(row)
    rows.sort(key=lambda r: (r["best accuracy %"] is None, -(r["best accuracy %"] or 0.0), r["student"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank if row["best accuracy %"] is not None else None
    return [{"rank": r.pop("rank"), **r} for r in rows]


def hand_vs_machine_figure(hand: Trials, machine: Trials) -> dict:
    """The class's finished runs (named by student) and Optuna's finished trials on one history plot."""
    from .figures import hand_vs_machine_figure as figure

    return figure(_finished(hand), _finished(machine), student)


def _decade(value: float) -> int:
    return math.floor(math.log10(value) + 1e-9)


BATCH_BANDS = ((1, 15), (16, 63), (64, 255), (256, 2048))


def findings(hand: Trials, machine: Trials = (), presets: Presets | None = None) -> list[str]:
    """Plain-language findings computed from the class's runs: what the top runs share and what no run tried
    (only what the lesson's ``presets`` let a student try: a fixed control or a value out of range is no gap)."""
    finished = _finished(hand)
    if len(finished) < 3:
        return [f"Findings appear once the class has finished 3 runs ({len(finished)} so far)."]
    ranked = sorted(finished, key=lambda t: t.value, reverse=True)
    top = ranked[: max(3, len(ranked) // 4)]
    notes = []

    def setting(t: optuna.trial.FrozenTrial) -> dict[str, str]:
        config = records.trial_config(t) or {}
        return {
            "optimiser": str(t.params.get("optimizer")),
            "cosine scheduler": "on" if t.params.get("scheduler") else "off",
            "standardised features": "yes" if config.get("standardize") else "no",
            "hidden layers (count)": str(t.params.get("num_layers")),
        }

    shared = {"optimiser": "optimizer", "cosine scheduler": "scheduler", "standardised features": "standardize"}
    shared["hidden layers (count)"] = "hidden_layers"
    for name, control in shared.items():
        if presets is not None and presets.seen(control) != "choose":
            continue  # the lesson fixed it: every run shares it
        values = [setting(t)[name] for t in top]
        common = max(set(values), key=values.count)
        share = values.count(common)
        if share >= max(2, math.ceil(2 * len(top) / 3)):
            overall = sum(1 for t in finished if setting(t)[name] == common)
            notes.append(
                f"{share} of the top {len(top)} runs share {name} = {common} "
                f"({overall} of all {len(finished)} finished runs)."
            )
    rates = sorted(t.params["learning_rate"] for t in top)
    notes.append(
        f"The top {len(top)} runs used learning rates from {format_rate(rates[0])} to {format_rate(rates[-1])} "
        f"(best run: {ranked[0].value:.2f}%)."
    )

    tried = list(hand)
    presets = presets or Presets()

    def free(control: str) -> bool:
        return presets.seen(control) == "choose"

    def reachable(name: str, low: float, high: float) -> bool:  # [low, high] meets the lesson's range of ``name``
        allowed = presets.range(name)
        return low <= allowed[1] and high >= allowed[0]

    never = []
    if free("optimizer"):
        optimizers = {t.params.get("optimizer") for t in tried}
        never += [f"the {o} optimiser" for o in OPTIMIZERS if o not in optimizers]
    if free("scheduler"):
        schedulers = {bool(t.params.get("scheduler")) for t in tried}
        never += [f"the cosine scheduler {'on' if s else 'off'}" for s in (True, False) if s not in schedulers]
    if free("standardize") and not any((records.trial_config(t) or {}).get("standardize") for t in tried):
        never.append("standardised features")
    if free("learning_rate"):
        decades = {_decade(t.params["learning_rate"]) for t in tried}
        never += [
            f"a learning rate in [1e{d}, 1e{d + 1})"
            for d in range(-5, 0)
            if d not in decades and reachable("learning_rate", 10.0**d, 10.0 ** (d + 1) * (1 - 1e-9))
        ]
    if free("batch_size"):
        batches = [int(t.params["batch_size"]) for t in tried]
        never += [
            f"batch sizes {low}-{high}"
            for low, high in BATCH_BANDS
            if not any(low <= b <= high for b in batches) and reachable("batch_size", low, high)
        ]
    if free("hidden_layers"):
        depths = {int(t.params.get("num_layers", 0)) for t in tried}
        never += [
            f"{d} hidden layer{'s' if d > 1 else ''}"
            for d in range(1, 5)
            if d not in depths and reachable("layers", d, d)
        ]
    if never:
        notes.append("Never tried by the class: " + "; ".join(never) + ".")
    machine_best = max((t.value for t in _finished(machine)), default=None)
    if machine_best is not None:
        gap = machine_best - ranked[0].value
        notes.append(
            f"Optuna's best trial: {machine_best:.2f}% against the class's best by hand "
            f"{ranked[0].value:.2f}% ({gap:+.2f} points)."
        )
    return notes


# ---------------------------------------------------------------- the instructor's presets for Part I

CONTROLS = (
    "hidden_layers",
    "batch_size",
    "optimizer",
    "learning_rate",
    "weight_decay",
    "scheduler",
    "standardize",
    "epochs",
    "seed",
)  # fmt: skip  (Part I's controls, TrainConfig's fields)
RANGED = {"batch_size": limits.BATCH_SIZE, "learning_rate": limits.LEARNING_RATE,
          "weight_decay": limits.WEIGHT_DECAY, "units": limits.UNITS, "layers": limits.LAYERS}  # fmt: skip
VISIBILITY = ("choose", "fixed", "hidden")  # the student sets it / sees it fixed / does not see it (fixed)


@dataclass(frozen=True)
class Presets:
    """How a lesson shapes Part I for every student: per control ``visibility`` (``VISIBILITY``; a fixed or
    hidden control takes ``fixed[control]``, else the notebook's default), allowed ``ranges`` for the numbers
    (``RANGED`` keys -> (low, high)) and an ``max_epochs`` cap. Validated on creation (``ConfigError``)."""

    visibility: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_epochs: int | None = None

    def __post_init__(self) -> None:
        for control, seen in self.visibility.items():
            if control not in CONTROLS or seen not in VISIBILITY:
                raise ConfigError(
                    f"presets: {clip(repr(control), 30)} = {clip(repr(seen), 20)} is not a control "
                    f"and one of {', '.join(VISIBILITY)}."
                )
        unknown = [c for c in self.fixed if c not in CONTROLS]
        if unknown:
            raise ConfigError(f"presets: {clip(repr(unknown[0]), 30)} is not a Part I control.")
        TrainConfig.from_dict({**TrainConfig().to_dict(), **self.fixed})  # the fixed values are valid settings
        ranges = {}
        for name, pair in self.ranges.items():
            if name not in RANGED:
                raise ConfigError(f"presets: {clip(repr(name), 30)} has no range.")
            whole = name in ("batch_size", "units", "layers")
            low, high = (limits.check(f"{name}: the low end", v, RANGED[name], whole=whole) for v in pair)
            if low > high:
                raise ConfigError(f"{name}: the low end {low:g} is above the high end {high:g}.")
            ranges[name] = (low, high)
        object.__setattr__(self, "ranges", ranges)
        # Ranges in which no network fits the lab's size caps would leave every student's Part I without a choice.
        layers_low = int(self.range("layers")[0])
        limits.check_network(
            [int(self.range("units")[0])] * layers_low,
            int(self.range("batch_size")[1]),
            "lesson ranges: their smallest network,",
        )
        if self.max_epochs is not None:
            object.__setattr__(
                self, "max_epochs", int(limits.check("epochs cap", self.max_epochs, limits.EPOCHS, whole=True))
            )

    def seen(self, control: str) -> str:
        return self.visibility.get(control, "choose")

    def range(self, name: str) -> tuple[float, float]:
        """The allowed range of a number (``RANGED`` key or ``epochs``), the lab's limits where the lesson sets none."""
        if name == "epochs":
            return 1, self.max_epochs or int(limits.EPOCHS.high)
        allowed = RANGED[name]
        return self.ranges.get(name, (allowed.low, allowed.high))

    def fixed_value(self, control: str) -> Any:
        return self.fixed.get(control, getattr(TrainConfig(), control))

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the fixed controls set and every number moved into its range (for the widgets)."""
        values = config.to_dict()
        for control in CONTROLS:
            if self.seen(control) != "choose":
                values[control] = self.fixed_value(control)

        def into(name: str, value: float) -> float:
            low, high = self.range(name)
            return min(max(value, low), high)

        for name in ("batch_size", "learning_rate", "weight_decay", "epochs"):
            values[name] = type(values[name])(into(name, values[name]))
        layers = list(values["hidden_layers"])[: int(self.range("layers")[1])]
        layers += layers[-1:] * (int(self.range("layers")[0]) - len(layers))
        values["hidden_layers"] = [int(into("units", u)) for u in layers]
        return TrainConfig.from_dict(values)

    def enforce(self, config: TrainConfig) -> TrainConfig:
        """The config a student may train: fixed controls set; a number outside the lesson's range is a
        ``ConfigError`` naming it (the widgets keep numbers in range; this guards what reaches the server)."""
        values = config.to_dict()
        for control in CONTROLS:
            if self.seen(control) != "choose":
                values[control] = self.fixed_value(control)
        checks = [
            ("batch_size", "batch size", values["batch_size"]),
            ("learning_rate", "learning rate", values["learning_rate"]),
            ("weight_decay", "weight decay", values["weight_decay"]),
            ("epochs", "epochs", values["epochs"]),
            ("layers", "hidden layers", len(values["hidden_layers"])),
        ]
        checks += [("units", f"hidden layer {i + 1}", u) for i, u in enumerate(values["hidden_layers"])]
        for name, label, value in checks:
            low, high = self.range(name)
            if not low <= value <= high:
                raise ConfigError(f"{label}: {value:g} is outside this lesson's range {low:g} to {high:g}.")
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict:
        return {
            "visibility": dict(self.visibility),
            "fixed": dict(self.fixed),
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "max_epochs": self.max_epochs,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> Presets:
        """Presets as stored; anything unusable (a storage edited by hand) gives no presets at all."""
        if not isinstance(d, dict):
            return cls()
        try:
            fixed = dict(d.get("fixed") or {})
            if "hidden_layers" in fixed:
                fixed["hidden_layers"] = tuple(fixed["hidden_layers"])
            return cls(
                dict(d.get("visibility") or {}),
                fixed,
                {k: tuple(v) for k, v in (d.get("ranges") or {}).items()},
                d.get("max_epochs"),
            )
        except (ConfigError, TypeError, ValueError, AttributeError):
            return cls()


def lesson_presets(lesson: Lesson) -> Presets:
    return Presets.from_dict(lesson.presets)


# ---------------------------------------------------------------- the instructor's key

INSTRUCTOR_KEY_ENV = "FETAL_HPO_INSTRUCTOR_KEY"
KEY_MIN_LENGTH = 12  # with at most 2 guesses a minute (KeyGuard), a random 12-character key outlasts any class


def instructor_key() -> str | None:
    """The instructor key the server was started with (``FETAL_HPO_INSTRUCTOR_KEY``), None when unset or empty;
    a ``ConfigError`` for a key shorter than ``KEY_MIN_LENGTH`` (the server refuses to start with it)."""
    key = os.environ.get(INSTRUCTOR_KEY_ENV)
    if key and len(key) < KEY_MIN_LENGTH:
        raise ConfigError(
            f"{INSTRUCTOR_KEY_ENV}: {len(key)} characters; use at least {KEY_MIN_LENGTH} (a short key can be guessed)."
        )
    return key if key else None


def key_matches(typed: object, key: str | None = None) -> bool:
    """Whether ``typed`` is the instructor key (compared in constant time; False when there is no key)."""
    key = instructor_key() if key is None else key
    if not key or not isinstance(typed, str):
        return False
    return hmac.compare_digest(typed.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))


def session_token(key: str | None = None) -> str | None:
    """What a session that entered the key keeps instead of the key itself (a keyed hash of it): the key is
    never stored in a session, and a session's token stops working when the server's key changes."""
    key = instructor_key() if key is None else key
    if not key:
        return None
    return hmac.new(key.encode("utf-8", "surrogatepass"), b"fetal-hpo-instructor-session", hashlib.sha256).hexdigest()


def token_valid(token: object) -> bool:
    """Whether a session's stored token grants the instructor's actions (constant-time; False without a key)."""
    expected = session_token()
    return expected is not None and isinstance(token, str) and hmac.compare_digest(token, expected)


SIGN_IN_SECONDS = 8 * 3600  # a signed-in browser stays signed in for a school day
SIGN_IN_COOKIE = "fetal_hpo_instructor"


class SignIns:
    """The server's instructor sign-ins that outlive a page reload: a random id, kept in the browser's cookie,
    maps to an expiry and the key's ``session_token`` at sign-in. Held in this process's memory only, so a server
    restart signs every browser out, and so does a changed key (the token no longer matches); the map holds a hash
    of each id, never the id. The id grants nothing on another server or after ``seconds``. Thread-safe."""

    def __init__(self, seconds: float = SIGN_IN_SECONDS, clock: Callable[[], float] = time.time, most: int = 1000):
        self.seconds, self.clock, self.most = seconds, clock, most
        self._held: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _hash(sign_in: str) -> str:
        return hashlib.sha256(sign_in.encode("utf-8", "surrogatepass")).hexdigest()

    def issue(self, key: str | None = None) -> str | None:
        """A new sign-in id for a browser that just entered the key (None without a key)."""
        token = session_token(key)
        if token is None:
            return None
        sign_in = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._held = {h: held for h, held in self._held.items() if held[0] > now}
            while len(self._held) >= self.most:  # the oldest sign-in goes first
                del self._held[min(self._held, key=lambda h: self._held[h][0])]
            self._held[self._hash(sign_in)] = (now + self.seconds, token)
        return sign_in

    def check(self, sign_in: object, key: str | None = None) -> str | None:
        """The session token a browser's sign-in id grants now, or None (unknown, expired, or the key changed)."""
        if not isinstance(sign_in, str) or not 0 < len(sign_in) <= 100:
            return None
        with self._lock:
            held = self._held.get(self._hash(sign_in))
        if held is None or held[0] <= self.clock():
            return None
        expected = session_token(key)
        return expected if expected is not None and hmac.compare_digest(held[1], expected) else None

    def revoke(self, sign_in: object) -> None:
        """Forget a sign-in (the page's Lock)."""
        if isinstance(sign_in, str):
            with self._lock:
                self._held.pop(self._hash(sign_in), None)


LOG = logging.getLogger("fetal_hpo.instructor")


class KeyAttempt(NamedTuple):
    """What became of a typed key: ``granted``; else whether it was ``checked`` (a wrong key) or refused
    unchecked because it came before its wait was over, and ``wait``: seconds before the next try."""

    granted: bool
    checked: bool
    wait: float


class KeyGuard:
    """Slows down guessing the instructor key, per session and per server.

    After a session's n-th wrong key in a row its next try must wait ``first`` x 2^(n-1) s; once the server has
    seen ``free`` wrong keys (from any sessions) every session waits ``first`` x 2^(m-free) s after the server's
    m-th; each wait is at most ``cap``. A try made before its wait is over is refused without being checked: no
    thread sleeps. The server's count starts again after ``forget`` s without a wrong key. One log line per wrong
    key names the session by a hash of its id and the counts, never what was typed. Thread-safe.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        first: float = 1.0,
        cap: float = 30.0,
        free: int = 10,
        forget: float = 900.0,
    ) -> None:
        self._clock, self._first, self._cap, self._free, self._forget = clock, first, cap, free, forget
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[int, float]] = {}  # session -> (wrong keys in a row, when the last one came)
        self._server = (0, -math.inf)

    def _delay(self, wrong: int) -> float:
        return 0.0 if wrong <= 0 else min(self._cap, self._first * 2.0 ** min(wrong - 1, 64))

    def _wait(self, session: str, now: float) -> float:
        wrong, last = self._sessions.get(session, (0, -math.inf))
        server_wrong, server_last = self._server
        if now - server_last > self._forget:
            server_wrong = 0
        ready = max(last + self._delay(wrong), server_last + self._delay(server_wrong - self._free + 1))
        return max(0.0, ready - now)

    def wait_left(self, session: str) -> float:
        """Seconds before ``session`` may try a key (0: now)."""
        with self._lock:
            return self._wait(session, self._clock())

    def attempt(self, session: str, typed: object, key: str | None = None) -> KeyAttempt:
        """Check ``typed`` against the key (``key_matches``) unless ``session`` must wait first."""
        with self._lock:
            now = self._clock()
            wait = self._wait(session, now)
            if wait > 0:
                return KeyAttempt(False, False, wait)
            if key_matches(typed, key):
                self._sessions.pop(session, None)
                return KeyAttempt(True, True, 0.0)
            wrong = self._sessions.get(session, (0, 0.0))[0] + 1
            server_wrong = (0 if now - self._server[1] > self._forget else self._server[0]) + 1
            self._sessions[session] = (wrong, now)
            self._server = (server_wrong, now)
            if len(self._sessions) > 1000:  # forget sessions idle for long (each reload is a new session)
                self._sessions = {s: v for s, v in self._sessions.items() if now - v[1] <= self._forget}
            wait = self._wait(session, now)
        tag = hashlib.sha256(session.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        LOG.warning(
            "instructor key: a wrong key from session %s (%d in a row there, %d on the server); next try in %.0f s",
            tag,
            wrong,
            server_wrong,
            wait,
        )
        return KeyAttempt(False, True, wait)
