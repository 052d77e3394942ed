"""Part I's Streamlit pieces: server-wide training slots, the cached split, the live chart, one training run
inside the page script, and the run history views. The pure logic lives in ``fetal_core.manual``.

Session-state contract with the other pages (keys in ``pages.keys``):
``MANUAL_RUNS`` (every run record of the session), ``BEST_MANUAL_RUN`` (the best finished one),
``LOAD_INTO_PART1`` (a TrainConfig dict Part II hands over; Part I pops it).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

from fetal_core.data import CLASS_NAMES, Dataset, Split, split_dataset
from fetal_core.figures import curve_figure, overlay_figure
from fetal_core.manual import best_run, config_changes, make_run_record, read_curve, run_table, runnable_script
from fetal_core.training import TrainConfig, train
from pages import keys
from pages.class_mode import record_in_lesson

RUNS_KEY, BEST_KEY, LIVE_KEY = keys.MANUAL_RUNS, keys.BEST_MANUAL_RUN, keys.PART1_LIVE_RUN
MIN_REDRAW_SECONDS = 0.15  # at most ~7 chart frames a second (each one re-mounts the Plotly chart) ...
MAX_DRAW_SHARE = 0.05  # ... and drawing takes at most ~5 % of the run's time
WAIT_POLL_SECONDS = 0.25


@dataclass
class TrainingSlots:
    """How many Part I trainings may run at once on this server (one per core), shared by all sessions."""

    capacity: int
    semaphore: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.semaphore = threading.BoundedSemaphore(self.capacity)


@st.cache_resource(show_spinner=False)
def training_slots() -> TrainingSlots:
    """The server's one set of training slots (``os.cpu_count()`` of them)."""
    return TrainingSlots(capacity=max(1, os.cpu_count() or 1))


@st.cache_data(show_spinner=False, max_entries=4)
def cached_split(key: tuple, standardize: bool, _data: Dataset) -> Split:
    """The notebook's split of ``_data``, once per data set (``key``: ``pages.common.dataset_key()``) and setting."""
    return split_dataset(_data, standardize=standardize)


def session_runs() -> list[dict]:
    return st.session_state.setdefault(RUNS_KEY, [])


def _store(record: dict) -> None:
    record_in_lesson(record)  # the class's copy, in the storage
    runs = session_runs()
    runs.append(record)
    best = best_run(runs)
    if best is not None:
        st.session_state[BEST_KEY] = best


def recover_interrupted_run() -> dict | None:
    """Keep a run whose script ended mid-training without finishing its record (saved epoch by epoch)."""
    live = st.session_state.pop(LIVE_KEY, None)
    if not live or not live["history"]:
        return None
    history = live["history"]
    record = {
        "config": live["config"], "history": history, "null_accuracy": live["null_accuracy"],
        "final_val_accuracy": history[-1]["val_accuracy"], "best_val_accuracy": max(h["val_accuracy"] for h in history),
        "balanced_accuracy": history[-1]["balanced_accuracy"], "confusion_matrix": None, "per_class_recall": {},
        "stopped_early": True, "seconds": history[-1]["seconds"], "number": live["number"],
        "label": f"Run {live['number']}", "waited_seconds": live["waited_seconds"],
    }  # fmt: skip
    _store(record)
    return record


def _wait_for_slot(slots: TrainingSlots, status) -> float:
    """Take a training slot; while none is free, say so (each message is also where a Stop click lands)."""
    started = time.perf_counter()
    if slots.semaphore.acquire(blocking=False):
        return 0.0
    while not slots.semaphore.acquire(timeout=WAIT_POLL_SECONDS):
        status.warning(
            f"⏳ Waiting for a free slot: this server trains {slots.capacity} model(s) at a time and all slots "
            f"are busy. Your run starts by itself as soon as one is free ({time.perf_counter() - started:.0f} s)."
        )
    return time.perf_counter() - started


def train_live(config: TrainConfig, split: Split, chart, status, stop_slot) -> dict:
    """Train in the page script, redrawing ``chart`` as epochs finish; return the stored run record.

    A click elsewhere (Stop, another widget, leaving the page) raises Streamlit's control exception at the
    next ``st.*`` call inside ``on_epoch``; the run then stops cooperatively, is stored as stopped with
    everything trained so far, and the exception is re-raised so Streamlit reruns as the user asked.
    """
    runs = session_runs()
    number = max((r["number"] for r in runs), default=0) + 1
    stop_slot.button("⏹ Stop", key="part1_stop", help="End this run now and keep what it trained so far.")
    slots = training_slots()
    waited = _wait_for_slot(slots, status)
    interrupt: BaseException | None = None
    try:
        live = {"config": config.to_dict(), "history": [], "number": number,
                "null_accuracy": split.null_accuracy, "waited_seconds": waited}  # fmt: skip
        st.session_state[LIVE_KEY] = live
        last_draw, draw_seconds = -math.inf, 0.0

        def on_epoch(metrics) -> bool:
            nonlocal interrupt, last_draw, draw_seconds
            live["history"].append(metrics.to_dict())
            now = time.perf_counter()
            due = max(MIN_REDRAW_SECONDS, draw_seconds / MAX_DRAW_SHARE)
            if metrics.epoch != 1 and now - last_draw < due:  # the page draws the final curve after the run
                return False
            try:
                status.markdown(
                    f"**Run {number}** · epoch **{metrics.epoch}** / {config.epochs} · "
                    f"validation accuracy {metrics.val_accuracy:.1f}%"
                )
                chart.plotly_chart(
                    curve_figure(live["history"], split.null_accuracy, config.epochs, f"Run {number} (training…)")
                )
            except Exception:
                raise
            except BaseException as control:  # Streamlit's stop/rerun: end the run cooperatively
                interrupt = control
                return True
            last_draw = time.perf_counter()
            draw_seconds = last_draw - now
            return False

        result = train(config, split, on_epoch)
    finally:
        slots.semaphore.release()
    st.session_state.pop(LIVE_KEY, None)
    record = make_run_record(result, number, waited)
    _store(record)
    if interrupt is not None:
        raise interrupt
    return record


def show_run(run: dict) -> None:
    """One run's settings, metrics, confusion matrix, per-class recall, curve reading and script download."""
    config = TrainConfig.from_dict(run["config"])
    status = f"stopped after {len(run['history'])} of {config.epochs} epochs" if run["stopped_early"] else "finished"
    st.subheader(f"{run['label']}: {status}")
    st.caption(
        f"hidden layers {list(config.hidden_layers)} · batch {config.batch_size} · {config.optimizer} · "
        f"lr {config.learning_rate:g} · weight decay {config.weight_decay:g} · cosine scheduler "
        f"{'on' if config.scheduler else 'off'} · standardised {'yes' if config.standardize else 'no'} · "
        f"seed {config.seed} · {run['seconds']:.2f} s"
    )
    null = run["null_accuracy"]
    columns = st.columns(4)
    columns[0].metric("Final accuracy", f"{run['final_val_accuracy']:.2f}%",
                      f"{run['final_val_accuracy'] - null:+.2f} vs null", delta_color="normal")  # fmt: skip
    columns[1].metric("Best accuracy", f"{run['best_val_accuracy']:.2f}%")
    columns[2].metric(
        "Balanced accuracy",
        f"{run['balanced_accuracy']:.2f}%",
        help="The mean of the three per-class recalls: a constant 'normal' guess scores 33.3%.",
    )
    columns[3].metric("Null accuracy", f"{null:.2f}%", help="Always answering 'normal'.")
    for note in read_curve(run):
        st.info(note)
    left, right = st.columns(2)
    if run["confusion_matrix"] is not None:
        left.markdown("**Confusion matrix** (rows: true class, columns: predicted)")
        left.table(  # small static tables: cheaper for the browser than interactive dataframes
            [{"true class": name} | {f"→ {p}": row[j] for j, p in enumerate(CLASS_NAMES)}
             for name, row in zip(CLASS_NAMES, run["confusion_matrix"])],
            hide_index=True,
        )  # fmt: skip
        right.markdown("**Recall per class** (share of each true class found)")
        right.table(
            [{"class": name, "recall %": f"{value:.1f}"} for name, value in run["per_class_recall"].items()],
            hide_index=True,
        )
    else:
        left.caption("This run was interrupted before it could be evaluated in full; its curve is kept.")
    st.download_button(
        "⬇️ Download as a runnable Python script", runnable_script(run),
        file_name=f"{run['label'].lower().replace(' ', '_')}.py", mime="text/x-python",
        key=f"part1_script_{run['number']}", on_click="ignore",
    )  # fmt: skip


def show_history(runs: list[dict]) -> None:
    """The table of this session's runs, their curves overlaid, and what changed between two of them."""
    st.subheader(f"Run history ({len(runs)} run{'s' if len(runs) != 1 else ''} this session)")
    best = st.session_state.get(BEST_KEY)
    if best is not None:
        st.caption(f"Best finished run: {best['label']} ({best['final_val_accuracy']:.2f}%); Part II compares "
                   "Optuna's search against it.")  # fmt: skip
    st.dataframe(run_table(runs), hide_index=True, key="part1_history_table")
    st.plotly_chart(overlay_figure(runs), key="part1_overlay")
    if len(runs) < 2:
        return
    st.markdown("**What changed between two runs**")
    labels = [r["label"] for r in runs]
    left, right = st.columns(2)
    first = left.selectbox("From", labels, index=len(labels) - 2, key="part1_diff_from")
    second = right.selectbox("To", labels, index=len(labels) - 1, key="part1_diff_to")
    before, after = runs[labels.index(first)], runs[labels.index(second)]
    changes = config_changes(before["config"], after["config"])
    if changes:
        st.dataframe(changes, hide_index=True)
    else:
        st.caption("Same settings.")
    delta = after["final_val_accuracy"] - before["final_val_accuracy"]
    st.write(f"Final accuracy {before['final_val_accuracy']:.2f}% → {after['final_val_accuracy']:.2f}% "
             f"({delta:+.2f} points); balanced {before['balanced_accuracy']:.2f}% → "
             f"{after['balanced_accuracy']:.2f}%.")  # fmt: skip
