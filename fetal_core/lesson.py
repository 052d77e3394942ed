"""Class mode without Streamlit: students' nicknames, lessons and their presets, and Part I runs recorded as
trials of the lesson's "by hand" study, so the class's hand-tuned runs live in the storage like any study.

A lesson is a name; its runs are the trials of the study ``hand_study_name(lesson)``. Which lesson is current,
its presets and its class study are user attrs of one control study (``CONTROL_STUDY``) in the same storage:
the storage stays the one source of truth for every server process and every student.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from . import limits
from .limits import ConfigError
from .text import clip
from .training import OPTIMIZERS, TrainConfig

NICKNAME_MAX = 24
NICKNAME_PUNCTUATION = " -_"


def check_nickname(value: object) -> str:
    """``value`` as a nickname (1 to 24 letters, digits, spaces, '-' or '_'; outer spaces dropped), or a
    ``ConfigError`` saying what is wrong. Markdown, HTML and control characters are all refused here."""
    if not isinstance(value, str):
        raise ConfigError("nickname: type a nickname.")
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ConfigError("nickname: type a nickname (1 to 24 letters, digits, spaces, '-' or '_').")
    if len(name) > NICKNAME_MAX:
        raise ConfigError(f"nickname: {len(name)} characters; use at most {NICKNAME_MAX}.")
    bad = sorted({c for c in name if not (c.isalpha() or c.isdecimal() or c in NICKNAME_PUNCTUATION)})
    if bad:
        shown = " ".join(repr(c) if c.isprintable() else f"U+{ord(c):04X}" for c in bad[:5])
        raise ConfigError(f"nickname: {clip(shown, 40)} not allowed; use letters, digits, spaces, '-' or '_'.")
    return name


# ---------------------------------------------------------------- lessons and their state in the storage

CONTROL_STUDY = "Fetal_HPO_Class"  # a study without trials whose user attrs hold the class's lessons
CURRENT_ATTR = "current_lesson"
LESSON_ATTR_PREFIX = "lesson:"
DEFAULT_LESSON = "Lesson 1"
HAND_SUFFIX = " (by hand)"


def hand_study_name(lesson: str) -> str:
    """The study that holds a lesson's Part I runs."""
    return f"{lesson}{HAND_SUFFIX}"


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

    @property
    def hand_study(self) -> str:
        return hand_study_name(self.name)

    def to_dict(self) -> dict:
        return {"class_study": self.class_study, "removed": list(self.removed), "presets": dict(self.presets),
                "started": self.started, "archived": self.archived}  # fmt: skip

    @classmethod
    def from_dict(cls, name: str, d: dict | None) -> Lesson:
        d = d if isinstance(d, dict) else {}
        removed = tuple(int(n) for n in d.get("removed") or () if isinstance(n, int))
        presets = d.get("presets") if isinstance(d.get("presets"), dict) else {}
        class_study = d.get("class_study") if isinstance(d.get("class_study"), str) else None
        return cls(name, class_study, removed, presets, str(d.get("started") or ""), bool(d.get("archived")))


def _control_study_id(storage: optuna.storages.BaseStorage, create: bool) -> int | None:
    try:
        return storage.get_study_id_from_name(CONTROL_STUDY)
    except KeyError:
        if not create:
            return None
    study = optuna.create_study(storage=storage, study_name=CONTROL_STUDY, direction="maximize", load_if_exists=True)
    return study._study_id


def class_state(storage: optuna.storages.BaseStorage) -> dict:
    """Every user attr of the control study (one cheap read; empty before any lesson was started)."""
    study_id = _control_study_id(storage, create=False)
    return {} if study_id is None else storage.get_study_user_attrs(study_id)


def current_lesson(storage: optuna.storages.BaseStorage, state: dict | None = None) -> Lesson:
    """The lesson every student's runs go to (``DEFAULT_LESSON`` until an instructor starts another)."""
    state = class_state(storage) if state is None else state
    name = state.get(CURRENT_ATTR)
    name = name if isinstance(name, str) and name else DEFAULT_LESSON
    return Lesson.from_dict(name, state.get(LESSON_ATTR_PREFIX + name))


def lessons(storage: optuna.storages.BaseStorage) -> list[Lesson]:
    """Every lesson the storage knows, oldest first."""
    state = class_state(storage)
    found = [Lesson.from_dict(k[len(LESSON_ATTR_PREFIX) :], v) for k, v in state.items()
             if k.startswith(LESSON_ATTR_PREFIX)]  # fmt: skip
    return sorted(found, key=lambda lesson: lesson.started)


def save_lesson(storage: optuna.storages.BaseStorage, lesson: Lesson, make_current: bool = False) -> None:
    """Write a lesson's state (and, if asked, make it the current lesson)."""
    study_id = _control_study_id(storage, create=True)
    storage.set_study_user_attr(study_id, LESSON_ATTR_PREFIX + lesson.name, lesson.to_dict())
    if make_current:
        storage.set_study_user_attr(study_id, CURRENT_ATTR, lesson.name)


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
        "batch_size": config.batch_size, "optimizer": config.optimizer, "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay, "scheduler": int(config.scheduler),
        "num_layers": len(config.hidden_layers),
    }  # fmt: skip
    distributions = dict(RUN_DISTRIBUTIONS)
    for i, units in enumerate(config.hidden_layers):
        params[f"layer_{i}"] = int(units)
        distributions[f"layer_{i}"] = LAYER_DISTRIBUTION
    return params, distributions


def _history_columns(history: Sequence[dict]) -> dict[str, list]:
    keys = ("epoch", "train_loss", "val_loss", "val_accuracy", "balanced_accuracy", "seconds")
    return {k: [h[k] if k == "epoch" else round(float(h[k]), 5) for h in history] for k in keys}


def hand_study(storage: optuna.storages.BaseStorage, lesson: Lesson) -> optuna.Study:
    """The lesson's by-hand study, created on first use (by whichever session records first)."""
    return optuna.create_study(storage=storage, study_name=lesson.hand_study, direction="maximize", load_if_exists=True)


def record_run(storage: optuna.storages.BaseStorage, lesson: Lesson, record: dict, nickname: str | None) -> int:
    """Add a finished (COMPLETE) or stopped (PRUNED) Part I run to the lesson's by-hand study; its trial number.

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
        intermediate_values={int(h["epoch"]): float(h["val_accuracy"]) for h in history
                             if math.isfinite(h["val_accuracy"])},  # fmt: skip
        user_attrs={
            "nickname": nickname or "",
            "recorded": finished.isoformat(timespec="seconds"),
            "stopped_early": stopped,
            "source": "by hand",
            "run": str(record.get("label", "")),
            "config": config.to_dict(),
            "history": _history_columns(history),
            "metrics": {"balanced_accuracy": record["balanced_accuracy"],
                        "confusion_matrix": record["confusion_matrix"],
                        "per_class_recall": record["per_class_recall"], "seconds": record["seconds"]},  # fmt: skip
        },
    )
    trial.datetime_start = finished - timedelta(seconds=float(record.get("seconds") or 0.0))
    trial.datetime_complete = finished
    trial._validate()  # what Study.add_trial checks, then its one storage call (which also gives the id)
    study = hand_study(storage, lesson)
    trial_id = storage.create_new_trial(study._study_id, template_trial=trial)
    return storage.get_trial_number_from_id(trial_id)
