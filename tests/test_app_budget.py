"""The pages say what the server's limits did: a Part I run stopped by the time budget, the defect's network refused
at Train, a study's trials failed by the budget (through Streamlit's AppTest, on the compute pool)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, wait_until
from tests.test_app_home_part1 import app_env, part1  # noqa: F401 (app_env is a fixture)
from tests.test_app_part2 import fill

PART2 = "pages/part2_study.py"


def test_part1_says_when_the_servers_time_budget_stopped_a_run(app_env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FETAL_HPO_RUN_SECONDS", "1")
    at = part1()
    at.slider(key="part1_epochs_slider").set_value(10_000)  # ~20 s of training at the default settings
    at.button(key="part1_train").click().run()
    assert not at.exception, at.exception
    [run] = at.session_state["manual_runs"]
    assert run["stopped_early"] and run["stopped_by_budget"] == 1.0 and 0 < len(run["history"]) < 10_000
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("The server's time budget of 1 s per run stopped this run after ") for w in warnings)


def test_part1_refuses_the_defects_network_at_train_naming_its_size(app_env):  # noqa: F811
    at = part1()
    at.slider(key="part1_layer_count").set_value(8).run()
    for layer in range(8):
        at.slider(key=f"part1_width_{layer}").set_value(1024)
    at.slider(key="part1_batch_slider").set_value(1)
    at.button(key="part1_train").click().run()
    assert not at.exception, at.exception
    shown = [e.value.replace("\\", "") for e in at.error]  # the page escapes Markdown in what was typed
    assert any("hidden layers 1,024×8 have 7.37 M weights; the lab allows at most 1.2 M" in e for e in shown), shown
    assert not at.session_state["manual_runs"]  # nothing was trained


def test_part2_says_which_trials_the_time_budget_failed(app_env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FETAL_HPO_TRIAL_SECONDS", "1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(PART2).run()
    fill(at, p2_name="over budget", p2_trials=2, p2_epochs=3000, p2_pruner="none")
    at.button(key="p2_start").click().run()
    assert not at.exception, at.exception
    worker = at.session_state["workers"]["Part II"]
    try:
        wait_until(lambda: (worker.renew(), not worker.alive())[1], "the study's two trials to end", timeout=300)
        at.run()
    finally:
        worker.stop()
    assert not at.exception, at.exception
    assert worker.error is None and [number for _, number in worker.budget_failures] == [0, 1]
    expected = "2 trial(s) reached the server's time budget of 1 s per trial and were marked FAIL (#0, #1)"
    assert any(w.value.startswith(expected) for w in at.warning), [w.value for w in at.warning]
