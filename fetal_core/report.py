"""One self-contained HTML report of a study or of a lesson (no Streamlit): the file a class takes home.

A lesson's report has its leaderboard (removed runs listed apart), the class's runs by hand against Optuna's
trials, what the runs show, the class study's plots each with "how to read this" and its finding, and the best
settings as a standalone PyTorch script. plotly.js is written into the file once, so it opens offline in any
browser; every text a user chose (nicknames, study and lesson names, parameter values) is HTML-escaped, and the
figures' data is JSON with ``<`` written as ``\\u003c`` (it cannot close its ``<script>``).
"""

from __future__ import annotations

import dataclasses
import html
import re
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.io as pio
from optuna.trial import FrozenTrial, TrialState

from . import figures, insights, lesson, records, review
from .limits import ConfigError
from .manual import runnable_script
from .training import TrainConfig

SLICE_FIRST = "learning_rate"  # as the Results page: the setting the slice finding is about
STUDY_PLOTS = ("history", "intermediate", "edf", "timeline", "importance", "slice", "parallel", "contour")

STYLE = """
body { font-family: system-ui, sans-serif; color: #1f1f1f; background: #ffffff; max-width: 1100px;
       margin: 0 auto; padding: 1.5rem; line-height: 1.45; }
h1, h2, h3 { color: #1f1f1f; }
.how { color: #3d3d3d; }
.finding { background: #eef4fb; border-left: 4px solid #1f5fa8; padding: 0.5rem 0.8rem; }
.removed { color: #3d3d3d; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f0f0f0; }
pre { background: #f6f6f6; border: 1px solid #d0d0d0; padding: 0.8rem; overflow-x: auto; }
.plot { margin: 0.5rem 0 1.5rem; }
.wide { overflow-x: auto; }
"""


def _text(value: object) -> str:
    """User text as literal HTML text."""
    return html.escape("" if value is None else str(value), quote=True)


class _Page:
    """The report's parts, in order; plotly.js goes into the first figure only."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.figures = 0

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def heading(self, level: int, text: str) -> None:
        self.add(f"<h{level}>{_text(text)}</h{level}>")

    def paragraph(self, text: str, css: str | None = None) -> None:
        self.add(f'<p class="{css}">{_text(text)}</p>' if css else f"<p>{_text(text)}</p>")

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
        """A table in a box that scrolls sideways (focusable, so a keyboard can scroll it too)."""
        head = "".join(f"<th>{_text(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{_text(_cell(row.get(c)))}</td>" for c in columns) + "</tr>" for row in rows
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        self.add(f'<div class="wide" tabindex="0">{table}</div>')

    def figure(self, figure: Any) -> None:
        self.figures += 1
        drawn = go.Figure(figure)  # a copy; the app's tight margins leave a page's axis titles over their ticks
        drawn.update_layout(margin={"l": 70, "r": 20, "t": 60, "b": 60})
        markup = pio.to_html(
            drawn,
            include_plotlyjs=self.figures == 1,  # the whole plotly.js, inline, once
            full_html=False,
            config={"displaylogo": False, "responsive": True},
            default_width="100%",
        )
        self.add(f'<div class="plot">{markup}</div>')

    def html(self) -> str:
        made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_text(self.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            f"<h1>{_text(self.title)}</h1>\n<p>Fetal Health HPO Lab report, made {made}.</p>\n"
            + "\n".join(self.parts)
            + "\n</main>\n</body>\n</html>\n"
        )


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _snippet(page: _Page, trial: FrozenTrial | None, label: str, source: str) -> None:
    """The trial's settings as the course's standalone PyTorch script (nothing when it has no stored config)."""
    if trial is None:
        return
    try:
        config = TrainConfig.from_dict(records.trial_config(trial) or {})
        script = runnable_script(
            {"config": config.to_dict(), "history": [], "label": label, "final_val_accuracy": float(trial.value)}
        )
    except (ConfigError, TypeError, ValueError):  # a plain Optuna trial, or a stored config that is not one
        page.paragraph(f"{source} (#{trial.number}) has no stored training settings to write as a script.")
        return
    page.heading(3, f"{source}: #{trial.number}, {trial.value:.2f}% as PyTorch")
    page.paragraph(
        "A standalone script in the course notebook's style: save it as a .py file and run it with the data set's "
        "CSV path (torch, numpy, pandas and scikit-learn needed)."
    )
    page.add(f'<pre tabindex="0"><code>{_text(script)}</code></pre>')  # scrolls sideways: reachable by keyboard


def _load_study(storage: optuna.storages.BaseStorage, name: str) -> tuple[list[FrozenTrial], bool, dict]:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        raise ConfigError(f"study '{name}' is not in this storage.") from None
    directions = storage.get_study_directions(study_id)
    if len(directions) != 1:
        raise ConfigError(f"study '{name}' has {len(directions)} objectives; a report covers one-objective studies.")
    trials = review.load_trials(storage, study_id)
    return trials, directions[0] == optuna.study.StudyDirection.MAXIMIZE, storage.get_study_user_attrs(study_id)


def _study_figure(kind: str, study: optuna.Study, trials: list[FrozenTrial], importances: dict, pair: tuple) -> Any:
    if kind == "contour":
        return figures.contour_figure(study, *pair)
    if kind == "slice":
        params = sorted({p for t in records.completed(trials) for p in t.params})
        return figures.study_figure(kind, study, trials, param=SLICE_FIRST if SLICE_FIRST in params else params[0])
    return figures.study_figure(kind, study, trials, importances)


def _study_sections(
    page: _Page, storage: optuna.storages.BaseStorage, name: str, null_accuracy: float | None, level: int = 2
) -> None:
    """A study's counts, every Results plot with how to read it and its finding, and its best trial as code."""
    trials, maximize, attrs = _load_study(storage, name)
    complete = records.completed(trials)
    states = {s.name.lower(): records.count(trials, (s,)) for s in (TrialState.COMPLETE, TrialState.PRUNED)}
    page.paragraph(
        f"Study {name}: {len(trials)} ended trial(s), {states['complete']} complete, {states['pruned']} pruned "
        f"or stopped early."
    )
    if not trials:
        page.paragraph("This study has no ended trial yet: there is nothing to plot.")
        return
    study = review.snapshot(trials, maximize, name)
    importances: dict[str, float] = {}
    if len(complete) >= 2:
        try:
            importances = review.importances(study)
        except review.ReviewError:
            importances = {}
    facts = insights.findings(trials, maximize, attrs, importances or None, null_accuracy)
    params = list(importances) or sorted({p for t in complete for p in t.params})
    pair = tuple(params[:2])
    for kind in STUDY_PLOTS if complete else ("intermediate", "timeline"):
        if (kind == "importance" and not importances) or (kind == "contour" and len(pair) < 2):
            continue
        if kind in ("slice", "parallel", "contour") and not params:
            continue
        title, how = insights.PLOTS[kind]
        page.heading(level + 1, title)
        page.paragraph(f"How to read this. {how}", "how")
        finding = insights.contour_finding(trials, *pair, maximize) if kind == "contour" else facts.get(kind)
        if finding:
            page.paragraph(finding, "finding")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's experimental-feature warnings
                drawn = _study_figure(kind, study, trials, importances, pair)
        except Exception as err:  # one plot that cannot be drawn does not cost the whole report
            page.paragraph(f"This plot could not be drawn: {err}")
            continue
        page.figure(drawn)
    _snippet(page, records.best_trial(complete, maximize), "Best trial", f"The best trial of {name}")


def study_report(storage: optuna.storages.BaseStorage, name: str, null_accuracy: float | None = None) -> str:
    """The HTML report of one study (any study of the storage). Raises ``ConfigError`` for an unknown study."""
    page = _Page(f"Study report: {name}")
    _study_sections(page, storage, name, null_accuracy)
    return page.html()


def find_lesson(storage: optuna.storages.BaseStorage, name: str | None = None) -> lesson.Lesson:
    """The lesson called ``name`` (the current one when None). Raises ``ConfigError`` when there is none."""
    current = lesson.current_lesson(storage)
    if name is None or name == current.name:
        return current
    for known in lesson.lessons(storage):
        if known.name == name:
            return known
    raise ConfigError(f"lesson '{name}' is not in this storage.")


def lesson_report(
    storage: optuna.storages.BaseStorage, name: str | None = None, null_accuracy: float | None = None
) -> str:
    """The HTML report of a lesson (the current one when ``name`` is None): its leaderboard with removed runs
    listed apart, hand vs machine, the findings, the class study's plots and the best settings as code."""
    chosen = find_lesson(storage, name)
    everything, machine = lesson.lesson_trials(storage, dataclasses.replace(chosen, removed=()))
    removed_numbers = set(chosen.removed)
    hand = [t for t in everything if t.number not in removed_numbers]
    removed = [t for t in everything if t.number in removed_numbers]
    page = _Page(f"Lesson report: {chosen.name}")
    page.paragraph(
        f"{len(hand)} run(s) by hand on the leaderboard, {len(removed)} removed by the instructor; class study: "
        + (f"{chosen.class_study} ({len(machine)} finished trial(s))." if chosen.class_study else "none.")
    )
    page.heading(2, "Leaderboard: each student's best run")
    rows = lesson.leaderboard_rows(hand)
    if rows:
        page.table(rows, lesson.BOARD_COLUMNS)
    else:
        page.paragraph("No run reached the leaderboard.")
    if removed:
        page.heading(3, "Removed runs (not on the leaderboard)")
        page.paragraph("The instructor removed these runs from the leaderboard; they stay in the storage.", "removed")
        page.table(
            [
                {
                    "run": t.number,
                    "student": lesson.student(t),
                    "accuracy %": records.number(t.value),
                    "state": "removed",
                }
                for t in removed
            ],
            ("run", "student", "accuracy %", "state"),
        )
    page.heading(2, "Hand vs machine")
    page.figure(lesson.hand_vs_machine_figure(hand, machine))
    page.heading(3, "What the runs show")
    page.add("<ul>" + "".join(f"<li>{_text(note)}</li>" for note in lesson.findings(hand, machine)) + "</ul>")
    page.heading(2, "The best settings")
    finished = [t for t in hand if t.state == TrialState.COMPLETE and records.number(t.value) is not None]
    best_hand = max(finished, key=lambda t: t.value, default=None)
    if best_hand is None:
        page.paragraph("No run by hand finished.")
    else:
        _snippet(page, best_hand, "Best run", f"The class's best run by hand ({lesson.student(best_hand)})")
    if chosen.class_study:
        page.heading(2, f"The class study: {chosen.class_study}")
        try:
            _study_sections(page, storage, chosen.class_study, null_accuracy)
        except ConfigError as err:
            page.paragraph(str(err))
    return page.html()


def file_name(title: str) -> str:
    """A safe download name for the report of ``title`` (a study or lesson name: user text)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("._")[:60] or "report"
    return f"{stem}_report.html"
