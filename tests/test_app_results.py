"""The Results page in Streamlit's AppTest on prepared studies: each renders or explains, never a traceback."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from streamlit.testing.v1 import AppTest

from benchmarks.results_render import build_study, synthetic_trials
from tests.conftest import shown

ROOT = Path(__file__).resolve().parent.parent
optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_results(
    monkeypatch, data_path, url: str, study: str | None = None, tab: str | None = None, plots: str | None = None
) -> AppTest:
    """The whole app (navigation, sidebar) on the Results page, with ``url`` as the configured storage; ``tab``
    and ``plots`` open that tab and that sub-tab of the Plots tab."""
    monkeypatch.setenv("FETAL_HPO_STORAGE", url)
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if study is not None:
        at.session_state["results_study"] = study  # how Part II preselects a study
    if tab is not None:
        at.session_state["results_tab"] = tab
    if plots is not None:
        at.session_state["results_plot_group"] = plots
    at.run()
    at.switch_page("pages/results.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def studies_table(at: AppTest):
    """The table of every study in the storage, in its expander (collapsed, and not sent, until opened)."""
    assert not at.dataframe  # on the Plots tab, the only data frame is this table
    at.session_state["results_studies_open"] = True
    at.run()
    assert not at.exception
    [table] = at.dataframe
    return table.value


def texts(elements) -> str:
    return "\n".join(shown(e.value) for e in elements)  # user text in them comes escaped


def plain_study(url: str) -> None:
    """Like the notebook's own Fetal_Health_Study: suggest + report from step 0, no user attrs."""
    study = optuna.create_study(
        storage=url,
        study_name="Fetal_Health_Study",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=42),
        pruner=optuna.pruners.MedianPruner(),
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
        layers = [trial.suggest_int(f"layer_{i}", 8, 256) for i in range(trial.suggest_int("num_layers", 2, 4))]
        optimizer = trial.suggest_categorical("optimizer", ["SGD", "Adam", "RMSprop"])
        accuracy = 0.0
        for step in range(10):
            accuracy = 80 + 10 * (1 - abs(lr - 0.003) ** 0.2) + step * 0.3 + (optimizer == "Adam") + layers[0] / 500
            trial.report(accuracy, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    study.optimize(objective, n_trials=12)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> str:
    """A storage with two engine-shaped studies, a plain-Optuna one, an empty one, one with no completed trial."""
    url = f"sqlite:///{tmp_path_factory.mktemp('results')}/lab.sqlite3"
    build_study(url, "tpe_study", synthetic_trials(24, seed=5), {"sampler": "tpe", "pruner": "median", "epochs": 50})
    build_study(url, "random_study", synthetic_trials(12, seed=6), {"sampler": "random", "pruner": "none"})
    plain_study(url)
    optuna.create_study(storage=url, study_name="empty_study", direction="maximize")
    dist = {
        "learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
        "batch_size": IntDistribution(8, 128),
        "optimizer": CategoricalDistribution(["SGD", "Adam"]),
    }
    params = {"learning_rate": 1e-3, "batch_size": 32, "optimizer": "Adam"}
    failed = optuna.create_study(storage=url, study_name="failed_study", direction="maximize")
    curve = {1: 70.0, 2: 71.0}
    failed.add_trials(
        [
            create_trial(state=TrialState.PRUNED, params=params, distributions=dist, intermediate_values=curve),
            create_trial(state=TrialState.FAIL, params=params, distributions=dist),
        ]
    )
    return url


def plot_titles(at: AppTest) -> list[str]:
    """The title of each Plotly chart on the page, in page order."""
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def test_normal_study_shows_every_plot_explained_in_two_sub_tabs(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="tpe_study")
    assert at.selectbox(key="results_pick").value == "tpe_study"
    progress = ("Optimisation history", "Intermediate values", "Empirical distribution", "Timeline")
    parameters = ("Hyperparameter importances", "Slice plot", "Parallel coordinates", "Contour of one parameter pair")
    # Only the open sub-tab is drawn: the search's progress first, no importances computed yet.
    assert [s.value.split(" (")[0] for s in at.subheader] == list(progress)
    assert len(at.get("plotly_chart")) == 4 and "Slice Plot" not in " ".join(plot_titles(at))
    assert texts(at.caption).count("How to read this") == 4
    assert "were pruned, saving" in texts(at.info) and "matters most" not in texts(at.info)
    assert "results_importances_shown" not in at.session_state

    at.session_state["results_plot_group"] = "Parameters"
    at.run()
    assert not at.exception
    assert [s.value.split(" (")[0] for s in at.subheader] == list(parameters)
    assert len(at.get("plotly_chart")) == 4 and "Slice Plot" in " ".join(plot_titles(at))
    assert texts(at.caption).count("How to read this") == 4
    findings = texts(at.info)
    assert "matters most" in findings and "used learning_rate from" in findings
    assert "Only 17 finished trials" in findings and "unstable" in findings  # 17 of 24 completed: fewer than 30
    # Importance and contour are drawn last: their waiting notes are gone once they are there.
    assert "Drawn once the importances are computed" not in texts(at.caption)
    studies = studies_table(at)
    assert set(studies["study"]) == {"tpe_study", "random_study", "Fetal_Health_Study", "empty_study", "failed_study"}
    assert studies.set_index("study").loc["tpe_study", "sampler"] == "tpe"


def test_contour_pair_switches_and_same_pair_explains(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="tpe_study", plots="Parameters")
    x, y = at.selectbox(key="results_contour_x"), at.selectbox(key="results_contour_y")
    assert x.value != y.value
    y.set_value("batch_size").run()
    assert not at.exception
    assert "and batch_size" in texts(at.info)
    assert len(at.get("plotly_chart")) == 4
    at.selectbox(key="results_contour_x").set_value("batch_size").run()
    assert "Choose two different parameters." in texts(at.info)
    assert len(at.get("plotly_chart")) == 3  # never all pairs; none for an invalid pair


def slice_params(at: AppTest) -> set[str]:
    """The parameters on the slice plot's x axes (one panel per parameter drawn)."""
    [spec] = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if '"Slice Plot' in c.proto.spec]
    return {v["title"]["text"] for k, v in spec["layout"].items() if k.startswith("xaxis") and v.get("title")}


def test_slice_plot_shows_the_chosen_parameter_only(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="tpe_study", plots="Parameters")
    chooser = at.selectbox(key="results_slice_param")
    assert chooser.value == "learning_rate" and "batch_size" in chooser.options
    assert slice_params(at) == {"learning_rate"}
    assert "used learning_rate from" in texts(at.info)
    chooser.set_value("batch_size").run()
    assert not at.exception
    assert slice_params(at) == {"batch_size"}
    assert "used batch_size from" in texts(at.info) and "learning_rate from" not in texts(at.info)  # its finding
    assert len(at.get("plotly_chart")) == 4


def test_trials_tab_table_filters_detail_and_csv(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="tpe_study", tab="Trials")
    table = at.dataframe[0].value
    assert len(table) == 24 and {"state", "value", "duration_s", "params_learning_rate", "architecture"} <= set(table)
    assert at.selectbox(key="results_trial").value == table.loc[table["value"].idxmax(), "number"]  # the best
    at.multiselect(key="results_states").set_value(["PRUNED"]).run()
    pruned = at.dataframe[0].value
    assert 0 < len(pruned) < 24 and set(pruned["state"]) == {"PRUNED"}
    assert at.get("download_button")[0].proto.url  # the CSV of the filtered trials is served
    assert any("Architecture: 21 inputs →" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 1  # the per-epoch curve of the chosen trial


def test_compare_tab_overlays_two_studies(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="tpe_study", tab="Compare studies")
    assert at.multiselect(key="results_compare").value == ["tpe_study", "random_study"]
    assert len(at.get("plotly_chart")) == 2
    assert "'tpe_study' reached" in texts(at.info) and "'random_study' reached" in texts(at.info)


def test_plain_optuna_study_without_our_user_attrs(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="Fetal_Health_Study")
    assert len(at.get("plotly_chart")) == 4
    assert "Best value" in texts(at.info)
    at.session_state["results_plot_group"] = "Parameters"
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 4
    at.session_state["results_tab"] = "Trials"
    at.run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 12
    assert len(at.get("plotly_chart")) == 1  # the curve from intermediate values


def test_empty_study_explains(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="empty_study")
    assert "has no trials yet" in texts(at.info)
    assert not at.get("plotly_chart")


def test_study_with_only_failed_and_pruned_trials_explains(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="failed_study")
    assert "No trial of this study has completed" in texts(at.warning)
    assert len(at.get("plotly_chart")) == 2  # intermediate values and timeline still have something to show
    at.session_state["results_tab"] = "Trials"
    at.run()
    assert not at.exception and len(at.dataframe[0].value) == 2


def test_running_study_polls_and_shows_the_running_trial(monkeypatch, data_path, tmp_path):
    url = f"sqlite:///{tmp_path}/live.sqlite3"
    build_study(url, "live", synthetic_trials(5, seed=7))
    study = optuna.load_study(study_name="live", storage=url)
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
    trial.report(75.0, 1)
    at = open_results(monkeypatch, data_path, url)
    assert "1 trial(s) running: this page refreshes every 2 s" in texts(at.caption)
    intermediate = at.get("plotly_chart")[1].proto.spec
    assert "trial 5 (running)" in intermediate  # few trials: one trace (legend entry) per trial
    trial.report(76.0, 2)  # the worker goes on; the next refresh shows it
    at.run()
    traces = json.loads(at.get("plotly_chart")[1].proto.spec)["data"]
    running_y = next(t["y"] for t in traces if t["name"] == "trial 5 (running)")  # a float32 array, sent as base64
    assert np.frombuffer(base64.b64decode(running_y["bdata"]), running_y["dtype"]).tolist()[:2] == [75.0, 76.0]
    study.tell(trial, 80.0)  # finished: the page stops polling and counts it
    at.run()
    assert not at.exception
    assert "this page refreshes" not in texts(at.caption)
    assert studies_table(at).loc[0, "complete"] == 1 + sum(t.state == TrialState.COMPLETE for t in study.trials[:5])


def test_empty_storage_and_corrupt_upload_explain(monkeypatch, data_path, tmp_path):
    at = open_results(monkeypatch, data_path, f"sqlite:///{tmp_path}/none.sqlite3")
    assert "no studies in this storage yet" in texts(at.info)
    at.segmented_control(key="results_source").set_value("Upload a study file").run()
    at.file_uploader(key="results_upload").upload("study.sqlite3", b"SQLite format 3\x00" + b"\x01" * 4096).run()
    assert not at.exception
    assert "Cannot open 'study.sqlite3': the uploaded file is a damaged SQLite database" in texts(at.error)
    at.file_uploader(key="results_upload").clear().upload("notes.db", b"hello, not a database").run()
    assert "not an SQLite database" in texts(at.error)


def test_uploaded_study_file_opens_read_only(monkeypatch, data_path, tmp_path, lab):
    original = Path(lab.removeprefix("sqlite:///"))
    before = original.read_bytes()
    at = open_results(monkeypatch, data_path, f"sqlite:///{tmp_path}/none.sqlite3")
    at.segmented_control(key="results_source").set_value("Upload a study file").run()
    at.file_uploader(key="results_upload").upload("lab.sqlite3", before).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.selectbox(key="results_pick").set_value("random_study").run()
    assert len(at.get("plotly_chart")) == 4
    assert original.read_bytes() == before


def test_a_new_upload_replaces_the_previous_copy_and_a_hostile_file_is_refused(monkeypatch, data_path, tmp_path, lab):
    at = open_results(monkeypatch, data_path, f"sqlite:///{tmp_path}/none.sqlite3")
    at.segmented_control(key="results_source").set_value("Upload a study file").run()
    at.file_uploader(key="results_upload").upload(
        "lab.sqlite3", Path(lab.removeprefix("sqlite:///")).read_bytes()
    ).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    copy = Path(at.session_state["results_upload_copy"][1].removeprefix("sqlite:///"))
    assert copy.exists() and len(at.selectbox(key="results_pick").options) == 5
    hostile = tmp_path / "hostile.sqlite3"
    shutil.copyfile(lab.removeprefix("sqlite:///"), hostile)
    with sqlite3.connect(hostile) as connection:
        connection.execute("CREATE TRIGGER sneaky AFTER UPDATE ON trials BEGIN DELETE FROM studies; END")
    connection.close()
    at.file_uploader(key="results_upload").clear().upload("hostile.sqlite3", hostile.read_bytes()).run()
    assert not at.exception
    assert "Cannot open 'hostile.sqlite3': the uploaded file contains a trigger ('sneaky')" in texts(at.error)
    assert not copy.exists() and list(copy.parent.iterdir()) == []  # the replaced copy is deleted, nothing new kept


def test_fanova_only_on_request(monkeypatch, data_path, lab):
    at = open_results(monkeypatch, data_path, lab, study="random_study", plots="Parameters")
    ped = next(i.value for i in at.info if "matters most" in i.value)
    at.toggle(key="results_fanova").set_value(True).run()
    assert not at.exception
    fanova = next(i.value for i in at.info if "matters most" in i.value)
    assert fanova != ped  # a different evaluator gives different shares
    assert len(at.get("plotly_chart")) == 4
