"""Class mode without Streamlit: students' nicknames, lessons and their presets, and Part I runs recorded as
trials of the lesson's "by hand" study, so the class's hand-tuned runs live in the storage like any study.

A lesson is a name; its runs are the trials of the study ``hand_study_name(lesson)``. Which lesson is current,
its presets and its class study are user attrs of one control study (``control_study_name()``) in the storage:
the storage stays the one source of truth for every server process and every student.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from . import limits, records
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


def hand_study_name(lesson: str) -> str:
    """The study that holds a lesson's Part I runs."""
    return f"{class_prefix()}{lesson}{HAND_SUFFIX}"


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
        return {
            "class_study": self.class_study,
            "removed": list(self.removed),
            "presets": dict(self.presets),
            "started": self.started,
            "archived": self.archived,
        }

    @classmethod
    def from_dict(cls, name: str, d: dict | None) -> Lesson:
        d = d if isinstance(d, dict) else {}
        removed = tuple(int(n) for n in d.get("removed") or () if isinstance(n, int))
        presets = d.get("presets") if isinstance(d.get("presets"), dict) else {}
        class_study = d.get("class_study") if isinstance(d.get("class_study"), str) else None
        return cls(name, class_study, removed, presets, str(d.get("started") or ""), bool(d.get("archived")))


def _control_study_id(storage: optuna.storages.BaseStorage, create: bool) -> int | None:
    try:
        return storage.get_study_id_from_name(control_study_name())
    except KeyError:
        if not create:
            return None
    optuna.create_study(storage=storage, study_name=control_study_name(), direction="maximize", load_if_exists=True)
    study_id = storage.get_study_id_from_name(control_study_name())
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
    return Lesson.from_dict(name, state.get(LESSON_ATTR_PREFIX + name))


def lessons(storage: optuna.storages.BaseStorage) -> list[Lesson]:
    """Every lesson the storage knows, oldest first."""
    state = class_state(storage)
    found = [
        Lesson.from_dict(k[len(LESSON_ATTR_PREFIX) :], v) for k, v in state.items() if k.startswith(LESSON_ATTR_PREFIX)
    ]
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


def hand_study(storage: optuna.storages.BaseStorage, lesson: Lesson) -> optuna.Study:
    """The lesson's by-hand study, created on first use (by whichever session records first)."""
    study = optuna.create_study(
        storage=storage, study_name=lesson.hand_study, direction="maximize", load_if_exists=True
    )
    records.mark_lesson_record(storage, storage.get_study_id_from_name(study.study_name), "by hand")
    return study


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
    try:  # one read when the study exists (creating first would cost a failed insert on every run)
        study_id = storage.get_study_id_from_name(lesson.hand_study)
    except KeyError:
        study_id = storage.get_study_id_from_name(hand_study(storage, lesson).study_name)
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
    for name in (lesson.hand_study, lesson.class_study):
        try:
            found.append([] if name is None else load_trials(storage, storage.get_study_id_from_name(name)))
        except KeyError:
            found.append([])
    hand, machine = found
    removed = set(lesson.removed)
    return [t for t in hand if t.number not in removed], machine


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
                    "lr": f"{p.get('learning_rate', 0):g}",
                    "weight decay": f"{p.get('weight_decay', 0):g}",
                    "scheduler": bool(p.get("scheduler")),
                    "standardised": bool(config.get("standardize")),
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


def findings(hand: Trials, machine: Trials = ()) -> list[str]:
    """Plain-language findings computed from the class's runs: what the top runs share and what no run tried."""
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

    for name in ("optimiser", "cosine scheduler", "standardised features", "hidden layers (count)"):
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
        f"The top {len(top)} runs used learning rates from {rates[0]:g} to {rates[-1]:g} "
        f"(best run: {ranked[0].value:.2f}%)."
    )

    tried = list(hand)
    never = []
    optimizers = {t.params.get("optimizer") for t in tried}
    never += [f"the {o} optimiser" for o in OPTIMIZERS if o not in optimizers]
    schedulers = {bool(t.params.get("scheduler")) for t in tried}
    never += [f"the cosine scheduler {'on' if s else 'off'}" for s in (True, False) if s not in schedulers]
    if not any((records.trial_config(t) or {}).get("standardize") for t in tried):
        never.append("standardised features")
    decades = {_decade(t.params["learning_rate"]) for t in tried}
    never += [f"a learning rate in [1e{d}, 1e{d + 1})" for d in range(-5, 0) if d not in decades]
    batches = [int(t.params["batch_size"]) for t in tried]
    never += [f"batch sizes {low}-{high}" for low, high in BATCH_BANDS if not any(low <= b <= high for b in batches)]
    depths = {int(t.params.get("num_layers", 0)) for t in tried}
    never += [f"{d} hidden layer{'s' if d > 1 else ''}" for d in range(1, 5) if d not in depths]
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


def instructor_key() -> str | None:
    """The instructor key the server was started with (``FETAL_HPO_INSTRUCTOR_KEY``), None when unset or empty."""
    key = os.environ.get(INSTRUCTOR_KEY_ENV)
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
