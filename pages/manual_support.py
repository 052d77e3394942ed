"""Part I's Streamlit pieces: the cached split, the live chart, one training run on the compute pool
followed by the page script, and the run history views. The pure logic lives in ``fetal_core.manual``.

Session-state contract with the other pages (keys in ``pages.keys``):
``MANUAL_RUNS`` (every run record of the session), ``BEST_MANUAL_RUN`` (the best finished one),
``LOAD_INTO_PART1`` (a TrainConfig dict Part II hands over; Part I pops it).
"""

from __future__ import annotations

import math
import time

import streamlit as st

from fetal_core.data import CLASS_NAMES, Dataset
from fetal_core.figures import curve_figure, overlay_figure
from fetal_core.manual import best_run, config_changes, make_run_record, read_curve, run_table, runnable_script
from fetal_core.text import plain
from fetal_core.training import TrainConfig
from pages import keys
from pages.class_mode import record_in_lesson
from pages.common import compute_pool, show_pool_problem

RUNS_KEY, BEST_KEY, LIVE_KEY = keys.MANUAL_RUNS, keys.BEST_MANUAL_RUN, keys.PART1_LIVE_RUN
MIN_REDRAW_SECONDS = 0.5  # at most two chart frames a second (each one re-mounts the Plotly chart) ...
MAX_DRAW_SHARE = 0.05  # ... and drawing takes at most ~5 % of the run's time
WAIT_POLL_SECONDS = 0.1  # the page looks for new epochs (and for a Stop click) this often
STOP_WAIT_SECONDS = 1.5  # a stopped run's worker returns what it trained within ~0.2 s plus one epoch


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
        "config": live["config"],
        "history": history,
        "null_accuracy": live["null_accuracy"],
        "final_val_accuracy": history[-1]["val_accuracy"],
        "best_val_accuracy": max(h["val_accuracy"] for h in history),
        "balanced_accuracy": history[-1]["balanced_accuracy"],
        "confusion_matrix": None,
        "per_class_recall": {},
        "stopped_early": True,
        "seconds": history[-1]["seconds"],
        "number": live["number"],
        "label": f"Run {live['number']}",
        "waited_seconds": live["waited_seconds"],
    }
    _store(record)
    return record


def _queued_message(run) -> str:
    position = run.queue_position()
    wait = run.estimated_wait()
    estimate = f"about {wait:.0f} s" if wait >= 1 else "a moment"
    latest = run.longest_wait()
    bound = (
        f" (at the latest in {latest:.0f} s: every training on this server stops at its time budget)"
        if latest is not None and latest >= max(1.0, wait + 1)
        else ""
    )
    return (
        f"⏳ Queued: every worker of the compute pool is training. You are number {position or 1} in the "
        f"queue; your run starts by itself in {estimate}{bound}."
    )


def budget_note(run: dict) -> str | None:
    """Why a run stopped early when the server's time budget stopped it (None otherwise)."""
    budget = run.get("stopped_by_budget")
    if not budget:
        return None
    return (
        f"The server's time budget of {budget:g} s per run stopped this run after {len(run['history'])} of "
        f"{run['config']['epochs']} epochs; what it trained is kept. Fewer epochs, a larger batch or a smaller "
        "network fit the budget."
    )


def train_live(config: TrainConfig, data: Dataset, chart, status, stop_slot) -> dict | None:
    """Train on the compute pool, redrawing ``chart`` as epochs stream back; return the stored run record.

    The page only waits and draws. A click elsewhere (Stop, another widget, leaving the page, a closed tab)
    raises Streamlit's control exception at the next ``st.*`` call; the run is then stopped on its worker,
    stored as stopped with everything trained so far, and the exception re-raised so Streamlit reruns as
    the user asked.
    """
    pool = compute_pool()
    if pool is None:
        show_pool_problem()
        return None
    runs = session_runs()
    number = max((r["number"] for r in runs), default=0) + 1
    stop_slot.button("⏹ Stop", key="part1_stop", help="End this run now and keep what it trained so far.")
    run = pool.train(config, data)
    live = {
        "config": config.to_dict(),
        "history": [],
        "number": number,
        "null_accuracy": data.null_accuracy,
        "waited_seconds": 0.0,
    }
    st.session_state[LIVE_KEY] = live
    interrupt: BaseException | None = None
    try:
        drawn, last_draw, draw_seconds, notices = 0, -math.inf, 0.0, 0
        while run.alive():
            run.renew()
            pool.wait(run, WAIT_POLL_SECONDS)
            if run.state == "queued":
                status.warning(_queued_message(run))
                continue
            for notice in run.notices[notices:]:
                st.toast(plain(notice), icon="⚠️")
            notices = len(run.notices)
            live["history"] = history = list(run.history)
            live["waited_seconds"] = run.queued_seconds
            now = time.perf_counter()
            due = max(MIN_REDRAW_SECONDS, draw_seconds / MAX_DRAW_SHARE)
            if not history or len(history) == drawn or (drawn and now - last_draw < due):
                continue  # the page draws the final curve after the run
            status.markdown(
                f"**Run {number}** · epoch **{history[-1]['epoch']}** / {config.epochs} · "
                f"validation accuracy {history[-1]['val_accuracy']:.1f}%"
            )
            chart.plotly_chart(curve_figure(history, data.null_accuracy, config.epochs, f"Run {number} (training…)"))
            drawn, last_draw = len(history), time.perf_counter()
            draw_seconds = last_draw - now
    except Exception:
        run.stop(timeout=0)
        raise
    except BaseException as control:  # Streamlit's stop/rerun: stop the run on its worker, keep what it trained
        interrupt = control
        run.stop(timeout=STOP_WAIT_SECONDS)
    if run.result is None:
        if run.error:
            st.session_state.pop(LIVE_KEY, None)
            status.error(f"The run failed on its worker: {plain(run.error)}")
        if interrupt is not None:
            raise interrupt
        return None  # a stopped run without a result is kept from LIVE_KEY by recover_interrupted_run
    st.session_state.pop(LIVE_KEY, None)
    if run.result.stopped_by_budget and not run.result.history:
        st.error(  # not in ``status``: the page writes its latest run's line there next
            f"The server's time budget of {run.result.stopped_by_budget:g} s per run ended this run before its "
            "first epoch: choose a smaller network, a larger batch or fewer epochs."
        )
        if interrupt is not None:
            raise interrupt
        return None
    record = make_run_record(run.result, number, run.queued_seconds)
    _store(record)
    if interrupt is not None:
        raise interrupt
    return record


def show_run(run: dict) -> None:
    """One run's settings, metrics, confusion matrix, per-class recall, curve reading and script download."""
    config = TrainConfig.from_dict(run["config"])
    status = f"stopped after {len(run['history'])} of {config.epochs} epochs" if run["stopped_early"] else "finished"
    st.subheader(f"{run['label']}: {status}")
    if note := budget_note(run):
        st.warning(note)
    st.caption(
        f"hidden layers {list(config.hidden_layers)} · batch {config.batch_size} · {config.optimizer} · "
        f"lr {config.learning_rate:g} · weight decay {config.weight_decay:g} · cosine scheduler "
        f"{'on' if config.scheduler else 'off'} · standardised {'yes' if config.standardize else 'no'} · "
        f"seed {config.seed} · {run['seconds']:.2f} s"
    )
    null = run["null_accuracy"]
    columns = st.columns(4)
    columns[0].metric(
        "Final accuracy",
        f"{run['final_val_accuracy']:.2f}%",
        f"{run['final_val_accuracy'] - null:+.2f} vs null",
        delta_color="normal",
    )
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
            [
                {"true class": name} | {f"→ {p}": row[j] for j, p in enumerate(CLASS_NAMES)}
                for name, row in zip(CLASS_NAMES, run["confusion_matrix"])
            ],
            hide_index=True,
        )
        right.markdown("**Recall per class** (share of each true class found)")
        right.table(
            [{"class": name, "recall %": f"{value:.1f}"} for name, value in run["per_class_recall"].items()],
            hide_index=True,
        )
    else:
        left.caption("This run was interrupted before it could be evaluated in full; its curve is kept.")
    st.download_button(
        "⬇️ Download as a runnable Python script",
        runnable_script(run),
        file_name=f"{run['label'].lower().replace(' ', '_')}.py",
        mime="text/x-python",
        key=f"part1_script_{run['number']}",
        on_click="ignore",
    )


def show_history(runs: list[dict]) -> None:
    """The table of this session's runs, their curves overlaid, and what changed between two of them."""
    st.subheader(f"Run history ({len(runs)} run{'s' if len(runs) != 1 else ''} this session)")
    best = st.session_state.get(BEST_KEY)
    if best is not None:
        st.caption(
            f"Best finished run: {best['label']} ({best['final_val_accuracy']:.2f}%); Part II compares "
            "Optuna's search against it."
        )
    st.table(run_table(runs), hide_index=True)  # static: no data-grid script for the browser to load and run
    if len(runs) < 2:  # one run's curve is the chart above
        return
    st.plotly_chart(overlay_figure(runs), key="part1_overlay")
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
    st.write(
        f"Final accuracy {before['final_val_accuracy']:.2f}% → {after['final_val_accuracy']:.2f}% "
        f"({delta:+.2f} points); balanced {before['balanced_accuracy']:.2f}% → "
        f"{after['balanced_accuracy']:.2f}%."
    )
