"""Findings that hold: each names the parameter of its plot, importances on few trials say they are unstable
(and when the two estimators disagree), a by-hand study's Stop clicks are not pruning, and "never tried" leaves
out what the lesson fixes."""

from __future__ import annotations

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from fetal_core import insights
from fetal_core.lesson import Presets, current_lesson, findings, lesson_trials, record_run
from fetal_core.storage import open_storage
from tests.test_class_mode import constructed_record

DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
    "batch_size": IntDistribution(8, 256),
    "optimizer": CategoricalDistribution(["Adam", "SGD"]),
}


def trial(value: float | None, lr: float, batch: int, optimizer: str, state=TrialState.COMPLETE, steps: int = 10):
    return create_trial(
        state=state,
        value=value,
        params={"learning_rate": lr, "batch_size": batch, "optimizer": optimizer},
        distributions=DISTRIBUTIONS,
        intermediate_values={s: 50.0 + s for s in range(steps)},
    )


TRIALS = [trial(80.0 + i, 10 ** (-4 + i / 10), 16 * (1 + i % 4), ("Adam", "SGD")[i % 2]) for i in range(20)]


def test_the_slice_finding_is_about_the_plotted_parameter():
    facts = insights.findings(TRIALS, slice_param="batch_size")
    assert "batch_size" in facts["slice"] and "learning rate" not in facts["slice"], facts["slice"]
    assert insights.slice_finding(TRIALS, "batch_size") == "The top 2 trials (best 10%) used batch_size from 48 to 64."
    assert "optimizer SGD (1), Adam (1)" in insights.slice_finding(TRIALS, "optimizer")
    assert "learning_rate" in insights.findings(TRIALS)["slice"]  # the plot's first parameter by default
    assert "optimizer" in insights.findings(TRIALS)["parallel"]


def test_importances_on_few_trials_are_called_unstable_and_a_disagreement_is_shown():
    ped = {"batch_size": 0.6, "learning_rate": 0.3, "optimizer": 0.1}
    fanova = {"learning_rate": 0.5, "batch_size": 0.4, "optimizer": 0.1}
    text = insights.importance_finding(ped, 20, fanova, "ped-anova")
    assert "Only 20 finished trials" in text and "unstable" in text
    assert "PED-ANOVA names 'batch_size'" in text and "fANOVA names 'learning_rate'" in text
    stable = insights.importance_finding(ped, 40, {"batch_size": 0.9, "optimizer": 0.1})
    assert "unstable" not in stable and "disagree" not in stable
    assert "unstable" in insights.findings(TRIALS, param_importances=ped)["importance"]


def test_a_by_hand_study_says_stopped_by_the_student_not_pruned():
    trials = [*TRIALS[:5], *(trial(None, 1e-3, 32, "Adam", TrialState.PRUNED, 3) for _ in range(4))]
    facts = insights.findings(trials, True, {"lesson_record": "by hand", "epochs": 100})
    assert "4 runs were stopped by the student" in facts["intermediate"], facts["intermediate"]
    assert "pruned" not in facts["intermediate"] and "saving" not in facts["intermediate"]
    assert "4 trials were pruned" in insights.findings(trials, True, {"epochs": 100})["intermediate"]


def test_never_tried_leaves_out_what_the_lesson_fixes(sqlite_url):
    storage = open_storage(sqlite_url)
    lesson = current_lesson(storage)
    for accuracy in ((80.0, 85.0), (80.0, 87.0), (80.0, 89.0)):
        record_run(storage, lesson, constructed_record(accuracy=accuracy), "Ada")
    hand, machine = lesson_trials(storage, lesson)
    free = " ".join(findings(hand, machine))
    assert "the Adam optimiser" in free and "a learning rate in [1e-5, 1e-4)" in free
    presets = Presets(
        visibility={"optimizer": "fixed", "scheduler": "hidden"},
        fixed={"optimizer": "RMSprop", "scheduler": False},
        ranges={"learning_rate": (1e-4, 1e-2), "batch_size": (16, 128)},
    )
    notes = findings(hand, machine, presets)
    assert not any("share optimiser" in n or "share cosine" in n for n in notes)  # fixed: shared by all
    fixed = next(n for n in notes if n.startswith("Never tried"))
    assert "optimiser;" not in fixed and "the Adam optimiser" not in fixed and "cosine scheduler" not in fixed
    assert "[1e-5, 1e-4)" not in fixed and "[1e-1" not in fixed and "batch sizes 1-15" not in fixed
    assert "standardised features" in fixed  # still free to choose, still never tried
