"""fetal_core.review: study lists, trial tables and curves, uploads, importances, findings; dashboard compatibility."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from benchmarks.results_render import build_study, synthetic_trials
from fetal_core import insights, records, review
from fetal_core.search import SearchSpace, StudyPlan, run_study
from fetal_core.storage import open_storage
from tests.conftest import NO_POSTGRES, POSTGRES_URL, postgres_answers

optuna.logging.set_verbosity(optuna.logging.WARNING)


def plain_trial(state: TrialState, value: float | None, lr: float, steps: int) -> optuna.trial.FrozenTrial:
    """Like the notebook's study: params, intermediate values from step 0, no user attrs."""
    return create_trial(
        state=state,
        value=value,
        params={"learning_rate": lr, "layer_0": 64},
        distributions={"learning_rate": FloatDistribution(1e-5, 1e-1, log=True), "layer_0": IntDistribution(8, 256)},
        intermediate_values={s: 80.0 + s for s in range(steps)},
    )


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """A SQLite storage with an engine-shaped study (40 trials), a plain one, and an empty one (read only)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('review')}/review.sqlite3"
    build_study(url, "ours", synthetic_trials(40, seed=1), {"sampler": "random", "pruner": "median", "epochs": 50})
    plain = optuna.create_study(storage=url, study_name="plain", direction="maximize")
    plain.add_trials(
        [
            plain_trial(TrialState.COMPLETE, 90.0, 1e-3, 50),
            plain_trial(TrialState.PRUNED, None, 1e-1, 7),
            plain_trial(TrialState.FAIL, None, 1e-4, 0),
        ]
    )
    optuna.create_study(storage=url, study_name="empty", direction="maximize")
    return optuna.storages.RDBStorage(url)


def test_list_studies_counts_states_best_and_attrs(storage):
    rows = {r.name: r for r in review.list_studies(storage)}
    assert set(rows) == {"ours", "plain", "empty"}
    trials = storage.get_all_trials(storage.get_study_id_from_name("ours"))
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
    ours = rows["ours"]
    assert (ours.trials, ours.complete, ours.pruned) == (40, len(complete), 40 - len(complete))
    assert ours.best_value == pytest.approx(max(complete))
    assert (ours.sampler, ours.pruner, ours.epochs) == ("random", "median", 50)
    assert ours.started == min(t.datetime_start for t in trials)
    plain = rows["plain"]
    assert (plain.complete, plain.pruned, plain.failed, plain.best_value, plain.sampler) == (1, 1, 1, 90.0, None)
    assert (rows["empty"].trials, rows["empty"].best_value, rows["empty"].started) == (0, None, None)


def test_sql_counts_equal_optuna_api_counts(storage):
    """The fast grouped query (RDB) and the generic path (journal, in-memory) agree."""
    memory = optuna.storages.InMemoryStorage()
    for frozen in storage.get_all_studies():
        copy = optuna.create_study(storage=memory, study_name=frozen.study_name, direction="maximize")
        copy.add_trials(storage.get_all_trials(frozen._study_id))
        for key, value in frozen.user_attrs.items():
            copy.set_user_attr(key, value)
    assert sorted(review.list_studies(memory), key=lambda r: r.name) == sorted(
        review.list_studies(storage), key=lambda r: r.name
    )


def test_reviewing_never_writes_to_the_storage(storage):
    path = Path(str(storage.engine.url).removeprefix("sqlite:///"))
    storage.engine.dispose()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    state = review.study_state(storage, "ours")
    trials = review.load_trials(storage, state.study_id)
    review.list_studies(storage)
    insights.findings(
        trials, True, storage.get_study_user_attrs(state.study_id), review.importances(review.snapshot(trials))
    )
    storage.engine.dispose()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_study_state_and_active_trials(storage):
    study = optuna.create_study(storage=storage, study_name="live", direction="maximize")
    study.add_trials([plain_trial(TrialState.COMPLETE, 90.0, 1e-3, 5), plain_trial(TrialState.PRUNED, None, 1e-1, 2)])
    running = study.ask()  # a trial still running elsewhere
    state = review.study_state(storage, "live")
    assert (state.trials, state.finished, state.running) == (3, 2, 1)
    assert [t.number for t in review.load_trials(storage, state.study_id, records.LIVE)] == [running.number]
    assert [t.number for t in review.load_trials(storage, state.study_id)] == [0, 1]
    study.tell(running, state=TrialState.FAIL)
    storage.delete_study(state.study_id)
    with pytest.raises(review.ReviewError, match="'gone' is not in this storage"):
        review.study_state(storage, "gone")


@pytest.fixture
def away_from_utc(monkeypatch):
    """A local time zone other than UTC (Optuna stores UTC and hands out local times)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(params=["sqlite", "postgresql"])
def rdb_url_and_prefix(request, tmp_path):
    """A SQLite file, or the real PostgreSQL server's `test` database with unique study names (deleted after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/every_kind.sqlite3", ""
        return
    if not postgres_answers():
        pytest.skip(NO_POSTGRES)
    url, prefix = POSTGRES_URL, f"pytest-{uuid.uuid4().hex[:12]}-"
    yield url, prefix
    storage = open_storage(url)
    for study in storage.get_all_studies():
        if study.study_name.startswith(prefix):
            storage.delete_study(study._study_id)


def test_fast_trial_loader_equals_optunas_get_all_trials(rdb_url_and_prefix, away_from_utc):
    """The plain-SQL reader of an RDB storage returns exactly Optuna's trials: every state, infinite and NaN
    values, categorical params, user and system attrs, missing times, several objectives; SQLite and PostgreSQL."""
    url, prefix = rdb_url_and_prefix
    space = {
        "lr": FloatDistribution(1e-5, 1e-1, log=True),
        "width": IntDistribution(8, 256, step=8),
        "choice": CategoricalDistribution(["SGD", None, True, 2.5]),
    }
    study = optuna.create_study(storage=url, study_name=f"{prefix}every_kind", direction="maximize")
    study.add_trials(synthetic_trials(6, seed=2))
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=float("inf"),
            params={"lr": 1e-3, "width": 64, "choice": None},
            distributions=space,
            user_attrs={"note": "é ✓", "nested": {"a": [1, 2.5, None]}},
            intermediate_values={0: float("nan"), 1: float("inf"), 2: float("-inf"), 5: 81.5},
        )
    )
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=float("-inf"),
            params={"choice": True},
            distributions={"choice": space["choice"]},
        )
    )
    study.add_trial(
        create_trial(state=TrialState.FAIL, params={"choice": 2.5}, distributions={"choice": space["choice"]})
    )
    running = study.ask()
    running.suggest_float("lr", 1e-5, 1e-1, log=True)
    running.report(70.0, 0)
    running.set_user_attr("worker", 3)
    study._storage.set_trial_system_attr(running._trial_id, "heartbeat_note", [1, "x"])
    study.enqueue_trial({"lr": 1e-2})  # WAITING, with Optuna's system attrs
    pareto = optuna.create_study(storage=url, study_name=f"{prefix}two_objectives", directions=["maximize", "minimize"])
    pareto.add_trial(create_trial(values=[90.0, 0.25], params={"lr": 1e-3}, distributions={"lr": space["lr"]}))
    storage = open_storage(url)

    def canonical(trials) -> list[str]:  # repr, so NaN equals NaN; attrs in key order (Optuna's order is the DB's)
        trials = sorted(trials, key=lambda t: t.number)
        return [
            repr(
                {
                    **vars(t),
                    "_user_attrs": sorted(t.user_attrs.items()),
                    "_system_attrs": sorted(t.system_attrs.items()),
                }
            )
            for t in trials
        ]

    for name in ("every_kind", "two_objectives"):
        study_id = storage.get_study_id_from_name(prefix + name)
        for states in (records.ENDED, records.LIVE):
            theirs = canonical(storage.get_all_trials(study_id, states=states))
            assert canonical(review._load_trials_sql(storage, study_id, states)) == theirs  # no silent fallback
            assert canonical(review.load_trials(storage, study_id, states)) == theirs
    every = storage.get_study_id_from_name(f"{prefix}every_kind")
    active = review.load_trials(storage, every, records.LIVE)
    assert {t.state for t in active} == {TrialState.RUNNING, TrialState.WAITING}
    assert time.localtime().tm_gmtoff == 5.5 * 3600  # stored UTC times really had to be converted


def test_plain_sql_is_used_only_on_the_schema_it_was_checked_on(storage, monkeypatch):
    """The plain-SQL readers run only at a schema revision the test above checked (this Optuna's own: an upgrade
    that changes the schema fails here, not silently); at any other revision Optuna's public API reads the
    same trials and counts, and no SQL touches Optuna's tables."""
    assert storage.get_head_version() in review.KNOWN_SCHEMAS
    assert review.sql_readable(storage)
    study_id = storage.get_study_id_from_name("ours")
    fast, counted = review.load_trials(storage, study_id), review.list_studies(storage)
    monkeypatch.setattr(type(storage), "get_current_version", lambda self: "v99.0.0")
    monkeypatch.setattr(review, "_load_trials_sql", lambda *a: pytest.fail("plain SQL on an unknown schema"))
    monkeypatch.setattr(review, "_state_counts_sql", lambda *a: pytest.fail("plain SQL on an unknown schema"))
    assert not review.sql_readable(storage)
    assert [repr(vars(t)) for t in review.load_trials(storage, study_id)] == [repr(vars(t)) for t in fast]
    assert review.list_studies(storage) == counted


def test_trials_frame_flattens_our_attrs_and_handles_plain_trials(storage):
    ours = review.load_trials(storage, storage.get_study_id_from_name("ours"))
    frame = review.trials_frame(ours)
    assert len(frame) == 40
    assert {"number", "state", "value", "duration_s", "architecture", "epochs_run", "params_learning_rate"} <= set(
        frame.columns
    )
    assert not any(c in frame.columns for c in ("config", "history", "user_config", "user_history"))
    first = ours[0]
    row = frame.iloc[0]
    assert row["architecture"] == "-".join(map(str, first.user_attrs["config"]["hidden_layers"]))
    assert row["epochs_run"] == len(first.intermediate_values)
    pruned = frame[frame["state"] == "PRUNED"]
    assert pruned["value"].isna().all() and (pruned["epochs_run"] < 50).all()
    plain = review.trials_frame(review.load_trials(storage, storage.get_study_id_from_name("plain")))
    assert plain["architecture"].tolist() == ["64", "64", "64"]
    assert plain["epochs_run"].tolist() == [50, 7, 0]
    assert review.trials_frame([]).empty


def test_trial_curve_from_history_or_intermediate_values(storage):
    ours = review.load_trials(storage, storage.get_study_id_from_name("ours"))[0]
    curve = review.trial_curve(ours)
    assert list(curve.columns) == ["epoch", "train_loss", "val_loss", "val_accuracy", "balanced_accuracy", "seconds"]
    assert curve["val_accuracy"].tolist() == [ours.intermediate_values[e] for e in curve["epoch"]]
    plain = plain_trial(TrialState.PRUNED, None, 1e-2, 5)
    assert review.trial_curve(plain).to_dict("list") == {
        "epoch": [0, 1, 2, 3, 4],
        "intermediate_value": [80.0, 81.0, 82.0, 83.0, 84.0],
    }


def test_best_so_far_edf_and_epochs_saved():
    trials = [
        plain_trial(TrialState.COMPLETE, 85.0, 1e-3, 10),
        plain_trial(TrialState.PRUNED, None, 1e-3, 3),
        plain_trial(TrialState.COMPLETE, 80.0, 1e-3, 10),
        plain_trial(TrialState.COMPLETE, 91.0, 1e-3, 10),
        plain_trial(TrialState.PRUNED, None, 1e-3, 6),
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    progress = review.best_so_far(trials)
    assert progress.to_dict("list") == {
        "trial": [0, 2, 3],
        "completed": [1, 2, 3],
        "value": [85.0, 80.0, 91.0],
        "best": [85.0, 85.0, 91.0],
    }
    assert review.best_so_far(trials, maximize=False)["best"].tolist() == [85.0, 80.0, 80.0]
    assert review.edf(trials).to_dict("list") == {"value": [80.0, 85.0, 91.0], "share": [1 / 3, 2 / 3, 1.0]}
    assert insights.epochs_saved(trials) == ((10 - 3) + (10 - 6), 10 * 3 + 3 + 6)
    assert insights.epochs_saved(trials, {"epochs": 50}) == ((50 - 3) + (50 - 6), 39)


def test_importances_and_findings_are_computed_from_the_trials():
    trials = synthetic_trials(80, seed=3)  # accuracy depends mostly on the learning rate
    study = review.snapshot(trials)
    ped = review.importances(study)
    assert next(iter(ped)) == "learning_rate"
    assert sum(ped.values()) == pytest.approx(1.0)
    facts = insights.findings(trials, True, {"epochs": 50}, ped, null_accuracy=77.8)
    assert "'learning_rate' matters most" in facts["importance"]
    top = insights.top_trials(trials, 0.1)
    assert len(top) == -(-sum(t.state == TrialState.COMPLETE for t in trials) // 10)
    lrs = [t.params["learning_rate"] for t in top]
    assert f"from {insights.format_value(min(lrs))} to {insights.format_value(max(lrs))}" in facts["slice"]
    saved, _ = insights.epochs_saved(trials, {"epochs": 50})
    assert f"saving {saved:,} epochs" in facts["intermediate"]
    best = max(t.value for t in trials if t.value is not None)
    assert f"Best value {best:.2f}" in facts["history"]
    with pytest.raises(review.ReviewError, match="at least two completed trials"):
        review.importances(review.snapshot(trials[:0]))


def test_findings_for_a_study_without_completed_trials():
    trials = [plain_trial(TrialState.PRUNED, None, 1e-3, 4), plain_trial(TrialState.FAIL, None, 1e-3, 0)]
    facts = insights.findings(trials)
    assert "No trial has completed yet (1 pruned, 1 failed)" in facts["history"]
    assert "slice" not in facts and "importance" not in facts


def test_open_study_file_accepts_an_optuna_file_and_copies_it(tmp_path, storage):
    original = Path(str(storage.engine.url).removeprefix("sqlite:///"))
    storage.engine.dispose()
    data = original.read_bytes()
    url, opened = review.open_study_file(data, tmp_path / "uploads")
    assert Path(url.removeprefix("sqlite:///")).parent == tmp_path / "uploads"
    assert {r.name for r in review.list_studies(opened)} == {"ours", "plain", "empty"}
    assert original.read_bytes() == data


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: b"", "empty"),
        (lambda p: b"number,state\n1,COMPLETE\n", "not an SQLite database"),
        (lambda p: b"SQLite format 3\x00" + b"\x07" * 5000, "damaged"),
        ("other_sqlite", "not an Optuna study storage"),
    ],
)
def test_open_study_file_rejects_bad_files_with_a_clear_message(tmp_path, make, message):
    if make == "other_sqlite":
        with sqlite3.connect(tmp_path / "notes.db") as connection:
            connection.execute("CREATE TABLE notes (text TEXT)")
        data = (tmp_path / "notes.db").read_bytes()
    else:
        data = make(tmp_path)
    with pytest.raises(review.ReviewError, match=message):
        review.open_study_file(data, tmp_path / "uploads")


def test_a_study_written_by_our_engine_opens_in_optuna_dashboard(tmp_path, dataset):
    """Real (tiny) engine run, then optuna-dashboard's own WSGI app lists it and serves its trials."""
    import optuna_dashboard

    url = f"sqlite:///{tmp_path}/engine.sqlite3"
    plan = StudyPlan(url, "engine_study", trials=3, epochs=3, space=SearchSpace(depth=2, max_units=16))
    summary = run_study(plan, dataset)
    assert summary.trials == 3

    app = optuna_dashboard.wsgi(url)

    def get(path: str) -> dict:
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.errors": sys.stderr}
        setup_testing_defaults(environ)
        environ["wsgi.input"] = io.BytesIO(b"")
        status: list[str] = []
        body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (path, status, body[:300])
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    study = next(s for s in studies if s["study_name"] == "engine_study")
    detail = get(f"/api/studies/{study['study_id']}")
    assert len(detail["trials"]) == 3
    first = detail["trials"][0]
    assert {p["name"] for p in first["params"]} >= {"batch_size", "learning_rate", "layer_0", "layer_1"}
    attrs = {a["key"] for a in first["user_attrs"]}
    assert {"config", "history"} <= attrs
    assert len(first["intermediate_values"]) == len(
        review.trial_curve(review.load_trials(optuna.storages.RDBStorage(url), study["study_id"])[0])
    )
