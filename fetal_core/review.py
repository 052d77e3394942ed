"""Reviewing saved studies (no Streamlit): list studies, load trials, tables, curves, importances, findings.

Everything here only reads a storage. Plots work on an in-memory copy of the trials (``snapshot``) so
Optuna's plotting functions never touch the original storage, and an uploaded study file is opened as
a checked copy made in a limited process (``open_study_file``).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from . import records, uploads


class ReviewError(ValueError):
    """A study or study file that cannot be reviewed, with the reason in one sentence."""


# ---------------------------------------------------------------- studies in a storage


@dataclass(frozen=True)
class StudyRow:
    """One line of the study list."""

    name: str
    maximize: bool
    objectives: int
    trials: int
    complete: int
    pruned: int
    failed: int
    running: int
    best_value: float | None
    started: datetime | None
    sampler: str | None
    pruner: str | None
    epochs: int | None


@dataclass(frozen=True)
class StudyState:
    """What changes while a study runs: the cache key of its finished trials."""

    study_id: int
    trials: int
    finished: int  # ended: complete, pruned or failed
    running: int
    failed: int = 0


def _state_counts_sql(storage: RDBStorage, study_id: int | None = None) -> list[tuple]:
    """Per (study name, state): count, max and min objective-0 value, first start. One grouped query."""
    from sqlalchemy import text

    where = "" if study_id is None else "WHERE t.study_id = :sid"
    query = text(
        "SELECT s.study_name, t.state, COUNT(*), MAX(v.value), MIN(v.value), MIN(t.datetime_start) "
        "FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
        f"{where} GROUP BY s.study_name, t.state"
    )
    with storage.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(query, {} if study_id is None else {"sid": study_id})]


def _state_counts_generic(storage: BaseStorage, study_id: int, name: str) -> list[tuple]:
    rows: dict[str, list] = {}
    for t in storage.get_all_trials(study_id, deepcopy=False):
        row = rows.setdefault(t.state.name, [name, t.state.name, 0, None, None, None])
        row[2] += 1
        if t.values:
            v = t.values[0]
            row[3] = v if row[3] is None else max(row[3], v)
            row[4] = v if row[4] is None else min(row[4], v)
        if t.datetime_start is not None:
            row[5] = t.datetime_start if row[5] is None else min(row[5], t.datetime_start)
    return [tuple(r) for r in rows.values()]


def _counts(storage: BaseStorage, study: tuple[int, str] | None = None) -> dict[str, list[tuple]]:
    """Rows of ``_state_counts_sql`` by study name, for every study or one ``(study id, name)``."""
    by_study: dict[str, list[tuple]] = {}
    if sql_readable(storage):
        try:
            for row in _state_counts_sql(storage, None if study is None else study[0]):
                by_study.setdefault(row[0], []).append(row)
            return by_study
        except Exception:  # an unexpected driver or content: fall back to Optuna's API
            by_study.clear()
    if study is not None:
        return {study[1]: _state_counts_generic(storage, *study)}
    for s in storage.get_all_studies():  # an id per name: a lookup in memory on the storages that get here
        name = s.study_name
        by_study[name] = _state_counts_generic(storage, storage.get_study_id_from_name(name), name)
    return by_study


def list_studies(storage: BaseStorage) -> list[StudyRow]:
    """Every study in ``storage`` with trial counts by state, best value, start, and our recorded attrs; not
    class mode's control study (it holds the lessons, no trials)."""
    studies = [s for s in storage.get_all_studies() if records.lesson_record(s.user_attrs) != "control"]
    counts = _counts(storage)
    rows = []
    for s in studies:
        maximize = s.directions[0] == StudyDirection.MAXIMIZE
        by_state = {r[1]: r for r in counts.get(s.study_name, [])}
        complete = by_state.get("COMPLETE")
        best = None if complete is None else (complete[3] if maximize else complete[4])
        starts = [s for s in (records.timestamp(r[5]) for r in by_state.values()) if s is not None]
        n = {state: r[2] for state, r in by_state.items()}
        described = records.study_description(s.user_attrs)
        rows.append(
            StudyRow(
                s.study_name,
                maximize,
                len(s.directions),
                sum(n.values()),
                n.get("COMPLETE", 0),
                n.get("PRUNED", 0),
                n.get("FAIL", 0),
                n.get("RUNNING", 0) + n.get("WAITING", 0),
                None if best is None else float(best),
                min(starts) if starts else None,
                described.sampler,
                described.pruner,
                described.epochs,
            )
        )
    return rows


def study_state(storage: BaseStorage, name: str) -> StudyState:
    """Trial counts of one study, cheaply (one grouped query on RDB storages)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        raise ReviewError(f"study '{name}' is not in this storage (any more).") from None
    rows = _counts(storage, (study_id, name)).get(name, [])
    by_state = {r[1]: r[2] for r in rows}
    finished = sum(by_state.get(s.name, 0) for s in records.ENDED)
    running = sum(by_state.get(s.name, 0) for s in records.LIVE)
    failed = sum(by_state.get(s.name, 0) for s in records.FAILED)
    return StudyState(study_id, sum(by_state.values()), finished, running, failed)


# Optuna's SQL schema (alembic revision) that the plain-SQL readers below were checked against, on SQLite and
# PostgreSQL, by tests/test_review.py (equal to Optuna's own reader, value for value). A storage at any other
# revision is read through Optuna's public API only: slower, never wrong.
KNOWN_SCHEMAS = ("v3.2.0.a",)


def sql_readable(storage: BaseStorage) -> bool:
    """Whether ``storage`` holds Optuna's tables at a schema revision the plain-SQL readers were tested on."""
    if not isinstance(storage, RDBStorage):
        return False
    try:
        return storage.get_current_version() in KNOWN_SCHEMAS
    except Exception:  # no version table, a driver problem: the public API decides
        return False


def load_trials(
    storage: BaseStorage, study_id: int, states: tuple[TrialState, ...] = records.ENDED
) -> list[FrozenTrial]:
    """The study's trials in ``states``, sorted by number: by default the ended ones (finished or failed, they
    no longer change); ``records.LIVE`` for the running ones; ``tuple(TrialState)`` for all (the pages that
    follow a running study read them every second or two).

    Optuna's public reader (``storage.get_all_trials``) builds an ORM object per stored row (~57,000 for
    1,000 trials of 50 epochs): 2-5 s on this 2-core machine, against 0.3-0.6 s for six plain queries on
    Optuna's tables (``_load_trials_sql``), so the plain queries are used where the schema is one they were
    tested on (``sql_readable``); anywhere else, and on any error, the public reader.
    """
    trials = None
    if sql_readable(storage):
        try:
            trials = _load_trials_sql(storage, study_id, states)
        except Exception:  # an unexpected driver or content: Optuna's API reads it, slower
            trials = None
    if trials is None:
        trials = storage.get_all_trials(study_id, deepcopy=False, states=states)
    return sorted(trials, key=lambda t: t.number)


def _local_time(utc: datetime | str | None) -> datetime | None:
    """Optuna's RDB storage keeps naive UTC times (SQLite: as text, PostgreSQL: datetimes) and hands out naive
    local ones; a time that does not read (``records.timestamp``) is None, as a trial that has none."""
    utc = records.timestamp(utc)
    return None if utc is None else utc.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)


_STORED_FLOATS = {"FINITE": None, "INF_POS": float("inf"), "INF_NEG": float("-inf"), "NAN": float("nan")}


def _stored_float(value: float | None, kind: str) -> float:
    """A value column and its type column (Optuna stores infinities and NaN as a type, the value as NULL)."""
    special = _STORED_FLOATS[kind]
    return float(value) if special is None else special


def _load_trials_sql(storage: RDBStorage, study_id: int, states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    """The FrozenTrials ``storage.get_all_trials`` returns, read with plain SQL through the driver's cursor
    (SQLAlchemy's ORM costs ~50 us per row). Only numbers and the states' names are put into the queries."""
    import json

    from optuna.distributions import json_to_distribution

    names = ", ".join(f"'{state.name}'" for state in states)
    chosen = f"SELECT trial_id FROM trials WHERE study_id = {int(study_id)} AND state IN ({names})"

    def rows(columns: str, table: str, order: str) -> list[tuple]:
        cursor.execute(f"SELECT trial_id, {columns} FROM {table} WHERE trial_id IN ({chosen}) ORDER BY {order}")
        return cursor.fetchall()

    with storage.engine.connect() as connection:
        cursor = connection.connection.cursor()
        try:
            cursor.execute(
                f"SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
                f"WHERE trial_id IN ({chosen})"
            )
            heads = cursor.fetchall()
            fields: dict[int, dict[str, Any]] = {
                h[0]: {
                    "values": {},
                    "params": {},
                    "distributions": {},
                    "user_attrs": {},
                    "system_attrs": {},
                    "intermediate_values": {},
                }
                for h in heads
            }
            for trial_id, objective, value, kind in rows(
                "objective, value, value_type", "trial_values", "trial_value_id"
            ):
                fields[trial_id]["values"][objective] = _stored_float(value, kind)
            known: dict[str, Any] = {}  # a study has few distinct distributions: parse each JSON once
            for trial_id, name, value, text in rows(
                "param_name, param_value, distribution_json", "trial_params", "param_id"
            ):
                if text not in known:
                    known[text] = json_to_distribution(text)
                distribution = known[text]
                fields[trial_id]["params"][name] = distribution.to_external_repr(value)
                fields[trial_id]["distributions"][name] = distribution
            for trial_id, key, text in rows("key, value_json", "trial_user_attributes", "trial_user_attribute_id"):
                fields[trial_id]["user_attrs"][key] = json.loads(text)
            for trial_id, key, text in rows("key, value_json", "trial_system_attributes", "trial_system_attribute_id"):
                fields[trial_id]["system_attrs"][key] = json.loads(text)
            for trial_id, step, value, kind in rows(
                "step, intermediate_value, intermediate_value_type",
                "trial_intermediate_values",
                "trial_intermediate_value_id",
            ):
                fields[trial_id]["intermediate_values"][step] = _stored_float(value, kind)
        finally:
            cursor.close()
    trials = []
    for trial_id, number, state, start, complete in heads:
        f = fields[trial_id]
        values = [f["values"][k] for k in sorted(f["values"])] or None
        trials.append(
            FrozenTrial(
                number=number,
                state=TrialState[state],
                value=None,
                values=values,
                datetime_start=_local_time(start),
                datetime_complete=_local_time(complete),
                params=f["params"],
                distributions=f["distributions"],
                user_attrs=f["user_attrs"],
                system_attrs=f["system_attrs"],
                intermediate_values=f["intermediate_values"],
                trial_id=trial_id,
            )
        )
    return trials


class _Snapshot(optuna.Study):
    """An in-memory study that hands out its trials without copying them: Optuna's plots only read them, yet
    some ask for deep copies of every trial (the history once, the timeline twice, the importance plot once per
    parameter), seconds at 1,000 trials."""

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        return super().get_trials(deepcopy=False, states=states)


def snapshot(
    trials: list[FrozenTrial], maximize: bool = True, name: str = "snapshot", curves: bool = False
) -> optuna.Study:
    """An in-memory study of ``trials`` for Optuna's plots (never the real storage); read it, never change it.

    The copies leave out user/system attrs and (unless ``curves``) intermediate values: the plots that
    take a study do not read them, and adding a trial to a study deep-copies it (seconds at 1,000 trials
    with per-epoch curves attached).
    """
    memory = optuna.storages.InMemoryStorage()
    memory.create_new_study([StudyDirection.MAXIMIZE if maximize else StudyDirection.MINIMIZE], name)
    study = _Snapshot(study_name=name, storage=memory)
    lean = []
    for index, t in enumerate(trials):
        copy = FrozenTrial(
            number=t.number,
            state=t.state,
            value=None,
            values=t.values,
            datetime_start=t.datetime_start,
            datetime_complete=t.datetime_complete,
            params=t.params,
            distributions=t.distributions,
            user_attrs={},
            system_attrs={},
            intermediate_values=t.intermediate_values if curves else {},
            trial_id=index,
        )  # add_trials gives each copy a new id: the template's trial_id is not read
        lean.append(copy)
    study.add_trials(lean)
    return study


# ---------------------------------------------------------------- an uploaded study file


def open_study_file(data: bytes, folder: str | Path | None = None) -> tuple[str, RDBStorage]:
    """Check an uploaded ``.sqlite3``/``.db`` file in a limited process and open our trusted copy of it.

    Returns ``(sqlite URL of the copy in folder, storage)``. This process never opens the upload itself
    (``fetal_core.uploads``: no views or triggers, bounded rows, memory and time). Raises ``ReviewError``
    saying what is wrong: empty, not SQLite, damaged, not Optuna's, too large, too slow to read.
    """
    folder = Path(folder) if folder else uploads.server_folder()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:24]}.sqlite3"
    try:
        uploads.import_study_file(data, path)
    except uploads.UploadError as err:
        raise ReviewError(str(err)) from None
    url = f"sqlite:///{path}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return url, RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)


# ---------------------------------------------------------------- trials as a table and as curves


def architecture(trial: FrozenTrial) -> list[int]:
    """Hidden layer widths: from the stored config, else from ``layer_i`` params; empty when neither reads as
    whole numbers of units (``records.layer_widths``)."""
    stored = records.hidden_layers(trial)
    if stored is not None:
        return stored
    layers = sorted((int(k[6:]), v) for k, v in trial.params.items() if k.startswith("layer_") and k[6:].isdigit())
    return records.layer_widths([v for _, v in layers]) or []


def epochs_run(trial: FrozenTrial) -> int:
    """How many epochs the trial reported (history, else intermediate values)."""
    history = records.trial_history(trial)
    if history is not None:
        return len(history["epoch"])
    return len(trial.intermediate_values)


def duration_seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def trials_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    """One row per trial: number, state, value, duration, params, and user attrs flattened.

    Our attrs become readable columns (architecture, epochs run, best/last epoch accuracy, balanced
    accuracy); other scalar user attrs appear as ``user_<name>``; the bulky config/history are summarised.
    """
    rows = []
    for t in trials:
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": records.number(t.value) if t.values and len(t.values) == 1 else None,
            "duration_s": duration_seconds(t),
            "started": t.datetime_start,
            "epochs_run": epochs_run(t),
            "last_reported": records.number(t.intermediate_values[t.last_step]) if t.last_step is not None else None,
        }
        layers = architecture(t)
        row["architecture"] = "-".join(map(str, layers)) if layers else None
        for name, value in t.params.items():
            row[f"params_{name}"] = records.cell(value)
        for key in ("balanced_accuracy", "seconds"):
            metric = records.trial_metric(t, key)
            if metric is not None:
                row[f"metrics_{key}"] = metric
        for key, value in records.other_trial_attrs(t).items():
            row[f"user_{key}"] = records.cell(value)
        rows.append(row)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["number", "state", "value", "duration_s"])


def trial_curve(trial: FrozenTrial) -> pd.DataFrame:
    """Per-epoch curve: our ``history`` columns, else the intermediate values (plain Optuna studies); a value
    that is not a finite number is None (``records.number``)."""
    history = records.trial_history(trial)
    if history is not None and history["epoch"]:
        return pd.DataFrame(history)
    steps = sorted(trial.intermediate_values)
    values = [records.number(trial.intermediate_values[s]) for s in steps]
    return pd.DataFrame({"epoch": steps, "intermediate_value": values})


def best_so_far(trials: list[FrozenTrial], maximize: bool = True) -> pd.DataFrame:
    """Completed trials in order with the best value found so far (a study's progress curve)."""
    done = records.completed(trials)
    values = np.array([t.value for t in done], dtype=float)
    best = np.array(records.best_so_far(done, maximize), dtype=float)
    return pd.DataFrame(
        {"trial": [t.number for t in done], "completed": np.arange(1, len(done) + 1), "value": values, "best": best}
    )


def edf(trials: list[FrozenTrial]) -> pd.DataFrame:
    """Empirical distribution of completed values: share of trials with a value at most ``value``."""
    values = np.sort([t.value for t in records.completed(trials)])
    return pd.DataFrame({"value": values, "share": np.arange(1, len(values) + 1) / max(len(values), 1)})


# ---------------------------------------------------------------- importances


def importances(study: optuna.Study, method: str = "ped-anova") -> dict[str, float]:
    """Normalised parameter importances, largest first: PED-ANOVA (Optuna 5's default) or fANOVA (slow).

    Raises ``ReviewError`` when the study cannot support it (fewer than two completed trials, ...).
    ``optuna.importance`` is imported here, not with this module: it loads scikit-learn (1-2 s on a cold server).
    """
    import optuna.importance

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(complete) < 2:
        raise ReviewError("parameter importances need at least two completed trials.")
    if method == "fanova":
        evaluator: optuna.importance.BaseImportanceEvaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    elif method == "ped-anova":
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    else:
        raise ReviewError(f"importance method '{method}' is not 'ped-anova' or 'fanova'.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as err:  # too few distinct values, conditional params for fANOVA, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ReviewError(f"importances could not be computed: {first}") from None
    return dict(sorted(((k, float(v)) for k, v in result.items()), key=lambda kv: -kv[1]))
