"""Part II: let Optuna search. Set up a study, run it on the compute pool, follow it live.

The page never trains: the server's compute pool (``fetal_core.pool``) runs the study trial by trial on its
worker processes, sharing them fairly with every other session, and the page reads the study back from the
configured storage once a second, so trials added by other sessions or by CLI workers on the same study show
up too. The sidebar (pages.common) renews the study's lease.
"""

from __future__ import annotations

import secrets

import streamlit as st
from optuna.trial import TrialState

from fetal_core import figures, insights, limits, live, records, review
from fetal_core.pruning import PRUNERS
from fetal_core.search import SAMPLERS, SearchSpace, StudyPlan, check_study_name, name_seed, open_study, own_study
from fetal_core.storage import StorageError
from fetal_core.text import plain
from fetal_core.training import OPTIMIZERS, ConfigError
from pages import keys
from pages.class_mode import nickname, preselect_class_study
from pages.common import (
    app_settings,
    compute_pool,
    configured_storage,
    current_dataset,
    enter_through_app,
    reap_dead_workers,
    session_workers,
    show_pool_problem,
)

enter_through_app()

WORKER = "Part II"  # this page's entry in session_workers()
NEW_STUDY = "➕ New study"
FOLLOWED = keys.P2_FOLLOWED
DEPTHS = {"define-by-run": None, "fixed 2": 2, "fixed 3": 3, "fixed 4": 4}
SCHEDULER = {"search it": None, "always on": True, "always off": False}


def own_worker():
    return session_workers().get(WORKER)


def own_worker_running() -> bool:
    worker = own_worker()
    return worker is not None and worker.alive()


def owner() -> str:
    """Who this session is in Part II: the nickname, else a random tag kept for the browser session."""
    nick = nickname()
    if nick:
        return nick
    return "guest " + st.session_state.setdefault(keys.P2_GUEST, secrets.token_hex(3))


def within(allowed: limits.Range, value: int) -> int:
    """A stored value clamped into its widget's range (a study made elsewhere may hold any number)."""
    return min(max(int(value), int(allowed.low)), int(allowed.high))


def form_values(user_attrs: dict | None, finished: int) -> dict:
    """Form defaults: the notebook's search space, or the settings an existing study was made with."""
    attrs = user_attrs or {}
    space = live.saved_space(attrs) or SearchSpace()
    depth_label = next((k for k, v in DEPTHS.items() if v == space.depth), "define-by-run")
    target = records.target_trials(attrs) or 0
    made = records.study_description(attrs)
    return {
        keys.P2_SAMPLER: made.sampler if made.sampler in SAMPLERS else "tpe",
        "p2_seed": within(limits.SEED, 42 if made.seed is None else made.seed),
        "p2_pruner": made.pruner if made.pruner in PRUNERS else "median",
        "p2_trials": within(limits.TRIALS, (target if target > finished else finished + 10) if attrs else 30),
        "p2_epochs": within(limits.EPOCHS, made.epochs or 50),
        "p2_depth": depth_label,
        "p2_min_layers": space.min_layers,
        "p2_max_layers": space.max_layers,
        "p2_min_units": space.min_units,
        "p2_max_units": space.max_units,
        "p2_min_batch": space.min_batch,
        "p2_max_batch": space.max_batch,
        "p2_optimizers": list(space.optimizers),
        "p2_min_lr": space.min_lr,
        "p2_max_lr": space.max_lr,
        "p2_min_wd": space.min_weight_decay,
        "p2_max_wd": space.max_weight_decay,
        "p2_scheduler": next(k for k, v in SCHEDULER.items() if v == space.scheduler),
    }


def prefill(choice: str, names: list[str]) -> None:
    """Put the chosen study's settings (or the notebook's for a new one) into the form, and follow it."""
    state = st.session_state
    if choice == NEW_STUDY:
        values = form_values(None, 0)
        base, _ = own_study(owner())  # the student's own study: never someone else's by default
        name, suffix = base, 2
        while name in names:
            name, suffix = f"{base} {suffix}", suffix + 1
        values["p2_name"] = name
        values["p2_seed"] = name_seed(name)
    else:
        read = live.read_trials(configured_storage(), choice)
        trials, attrs = read if read is not None else ([], {})
        values = form_values(attrs, live.finished_count(trials))
        values["p2_name"] = choice
        state[FOLLOWED] = choice
        state[keys.RESULTS_STUDY] = choice
    state.update(values)


def whose_study(name: str, read: tuple | None) -> str:
    """Whose study ``name`` is and how many trials it already holds (said before a student adds trials to it)."""
    trials, attrs = read if read is not None else ([], {})
    who = records.made_by(attrs)
    whose = "was made by you" if who == owner() else (f"was made by '{plain(who)}'" if who else "(maker not recorded)")
    return (
        f"Study '{plain(name)}' {whose} and already has {len(trials)} trials ({live.finished_count(trials)} finished)"
    )


def on_choice_change(names: list[str]) -> None:
    prefill(st.session_state[keys.P2_CHOICE], names)


def start_study(names: list[str]) -> None:
    """Validate the form; on success open the study, start the worker and follow the study."""
    state = st.session_state
    data = current_dataset()
    if data is None:
        st.error("No data set: upload it on the Home page first.")
        return
    pool = compute_pool()
    if pool is None:
        show_pool_problem()
        return
    try:
        space = SearchSpace(
            depth=DEPTHS[state["p2_depth"]],
            min_layers=state["p2_min_layers"],
            max_layers=state["p2_max_layers"],
            min_units=state["p2_min_units"],
            max_units=state["p2_max_units"],
            min_batch=state["p2_min_batch"],
            max_batch=state["p2_max_batch"],
            optimizers=tuple(state["p2_optimizers"]),
            min_lr=state["p2_min_lr"],
            max_lr=state["p2_max_lr"],
            min_weight_decay=state["p2_min_wd"],
            max_weight_decay=state["p2_max_wd"],
            scheduler=SCHEDULER[state["p2_scheduler"]],
        )
        name = check_study_name(state["p2_name"] or "")  # a reserved name is refused as such, before any merge
        storage = configured_storage()
        read = live.read_trials(storage, name) if name else None
        if read is not None and name != state.get(keys.P2_CHOICE):  # studies merge only when a student chooses to
            st.error(
                f"Not started. {whose_study(name, read)}: choose it under Study to join it, or give yours another name."
            )
            return
        total = int(state["p2_trials"])
        remaining = live.trials_to_run(total, read[0] if read else [])
        plan = StudyPlan(
            storage_url=app_settings().storage_url,
            study_name=name,
            trials=max(1, remaining),
            sampler=state[keys.P2_SAMPLER],
            pruner=state["p2_pruner"],
            seed=int(state["p2_seed"]),
            epochs=int(state["p2_epochs"]),
            space=space,
            shared_target=True,
        )
        if remaining == 0:
            st.info(f"Study '{plain(name)}' already has {total} finished trials: raise the total to continue it.")
            state[FOLLOWED] = name
            return
        study = open_study(plan, storage)
    except (ConfigError, StorageError) as err:
        st.error(f"Not started. {plain(err)}")
        return
    except Exception as err:  # never Streamlit's crash page for a value we did not foresee
        st.error(f"Not started. {type(err).__name__}: {plain(err, 200)}")
        return
    if read is None:
        records.set_made_by(study, owner())
    records.set_target_trials(study, total)
    records.set_run_started(study)
    session_workers()[WORKER] = pool.run_studies(plan, data)
    state[FOLLOWED] = name
    state[keys.RESULTS_STUDY] = name
    state[keys.P2_PENDING_CHOICE] = name
    st.rerun()


def stop_study() -> None:
    """Stop button: the running trial is failed at its next epoch; finished trials stay."""
    worker = own_worker()
    if worker is not None:
        worker.stop()


def setup_form(names: list[str]) -> None:
    state = st.session_state
    if keys.P2_PENDING_CHOICE in state:  # a study just started: select it (before the widget exists)
        state[keys.P2_CHOICE] = state.pop(keys.P2_PENDING_CHOICE)
    options = [NEW_STUDY, *names]
    if state.get(keys.P2_CHOICE) not in options:
        state[keys.P2_CHOICE] = state.get(FOLLOWED) if state.get(FOLLOWED) in names else NEW_STUDY
        prefill(state[keys.P2_CHOICE], names)
    elif keys.P2_SAMPLER not in state:  # widgets were reset (the student was on another page)
        prefill(state[keys.P2_CHOICE], names)
    st.selectbox(
        "Study",
        options,
        key=keys.P2_CHOICE,
        on_change=on_choice_change,
        args=(names,),
        help="Pick an existing study to watch it live and continue it, or start a new one.",
    )
    if state[keys.P2_CHOICE] != NEW_STUDY:
        with st.container(key="p2_whose"):
            note = whose_study(state[keys.P2_CHOICE], live.read_trials(configured_storage(), state[keys.P2_CHOICE]))
            st.caption(note + ": Start adds your trials to it.")
    with st.form("p2_setup", border=True):
        st.text_input("Study name", key="p2_name", help="An existing name continues that study (load_if_exists).")
        left, right = st.columns(2)
        with left:
            st.selectbox("Sampler", list(SAMPLERS), key=keys.P2_SAMPLER)
            st.caption(" · ".join(f"**{k}**: {v}" for k, v in SAMPLERS.items()))
            st.number_input(
                "Seed",
                int(limits.SEED.low),
                int(limits.SEED.high),
                step=1,
                key="p2_seed",
                help="Same seed, same suggestions.",
            )
            st.selectbox("Pruner", list(PRUNERS), key="p2_pruner")
            st.caption(" · ".join(f"**{k}**: {v}" for k, v in PRUNERS.items()))
            st.number_input("Trials (total to reach)", 1, int(limits.TRIALS.high), step=1, key="p2_trials")
            st.caption("For an existing study, only the missing trials run: total minus finished ones.")
            st.number_input("Epochs per trial", 1, int(limits.EPOCHS.high), step=1, key="p2_epochs")
            st.caption("Each trial reports its accuracy every epoch; the pruner decides after each one.")
        with right:
            st.selectbox("Depth (hidden layers)", list(DEPTHS), key="p2_depth")
            st.caption("Define-by-run: Optuna also picks the number of layers (a small architecture search).")
            a, b = st.columns(2)
            a.number_input("min layers", step=1, key="p2_min_layers")
            b.number_input("max layers", step=1, key="p2_max_layers")
            a.number_input("min units per layer", step=1, key="p2_min_units")
            b.number_input("max units per layer", step=1, key="p2_max_units")
            a.number_input("min batch size", step=1, key="p2_min_batch")
            b.number_input("max batch size", step=1, key="p2_max_batch")
            a.number_input("min learning rate", format="%.1e", step=None, key="p2_min_lr")
            b.number_input("max learning rate", format="%.1e", step=None, key="p2_max_lr")
            a.number_input("min weight decay", format="%.1e", step=None, key="p2_min_wd")
            b.number_input("max weight decay", format="%.1e", step=None, key="p2_max_wd")
            st.multiselect("Optimisers", OPTIMIZERS, key="p2_optimizers")
            st.radio("Cosine scheduler", list(SCHEDULER), key="p2_scheduler", horizontal=True)
            st.caption("Learning rate and weight decay are searched on a log scale, like the notebook.")
        submitted = st.form_submit_button("Start study", type="primary", key="p2_start")
    if submitted:
        start_study(names)


@st.cache_resource(show_spinner=False, max_entries=32)
def _history_chart(name: str, finished: tuple, manual_best: float | None, _trials: list):
    return figures.history_figure(
        review.snapshot(_trials), [t for t in _trials if t.state == TrialState.PRUNED], manual_best
    )


def history_chart(name: str, trials: list, manual_best: float | None):
    """Optuna's optimisation history of the finished trials (with the pruned ones and Part I's best run),
    built once per set of finished trials: it changes when a trial ends, not at every refresh."""
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    key = tuple((t.number, t.state.name, t.value, len(t.intermediate_values)) for t in done)
    return _history_chart(name, key, manual_best, done)


# Each look reads the study, builds its curves and sends them: with a class of students watching studies on one
# server, once a second was the server's largest cost (py-spy), and its health check's p95 went over 250 ms.
LIVE_SECONDS = 2


@st.fragment(run_every=LIVE_SECONDS)
def live_study() -> None:
    """Follow the study from the storage: progress, best so far, trial table, history and curves."""
    name = st.session_state.get(FOLLOWED)
    worker = own_worker()
    if worker is not None:
        worker.renew()
        worker.poll()
    if own_worker_running() != st.session_state.get(keys.P2_RUNNING_AT_RENDER):
        st.rerun()  # the worker started or ended: redraw the page (Stop button, results)
    if not name:
        return
    read = live.read_trials(configured_storage(), name)
    if read is None:
        st.info(f"No study '{plain(name)}' in the storage yet.")
        return
    trials, attrs = read
    if any(t.state == TrialState.RUNNING for t in trials):
        reap_dead_workers(app_settings().storage_url, name)  # a killed CLI worker's trial must not stay RUNNING
    target = records.target_trials(attrs) or live.finished_count(trials) or 1
    p = live.progress(trials, target, records.run_started(attrs))
    st.subheader(f"Study '{plain(name)}'")  # study names are user text (any session's)
    st.progress(p.fraction, text=f"{p.finished} of {p.target} trials finished · {p.running} running")
    cols = st.columns(4)
    cols[0].metric("Best so far", "–" if p.best_value is None else f"{p.best_value:.2f}%")
    cols[1].metric("Elapsed", live.format_seconds(p.elapsed))
    cols[2].metric("ETA", live.format_seconds(p.eta) if p.running or p.eta == 0 else "–")
    cols[3].metric("Failed / stopped", p.failed)
    if worker is not None and (hit := [number for study, number in worker.budget_failures if study == name]):
        st.warning(  # the server's time budget, not a bug: say which trials and what fits
            f"{len(hit)} trial(s) reached the server's time budget of {worker.budget_seconds:g} s per trial and "
            f"were marked FAIL ({', '.join(f'#{n}' for n in hit[-5:])}); the study goes on. Fewer epochs, larger "
            "batches or smaller networks fit the budget."
        )
    with st.container(key="p2_table"):
        st.caption(f"{len(trials)} trials")
        st.dataframe(live.trial_table(trials), hide_index=True, height=260)
    manual = st.session_state.get(keys.BEST_MANUAL_RUN) or {}
    left, right = st.columns(2)
    with left, st.container(key="p2_curves"):
        title = "Accuracy per epoch (pruned: dashed, cut short)"
        curves = figures.intermediate_figure(trials, records.study_description(attrs).epochs, title)
        st.plotly_chart(curves, key="p2_curves_chart")
    with right, st.container(key="p2_history"):
        st.plotly_chart(history_chart(name, trials, manual.get("final_val_accuracy")), key="p2_history_chart")


def after_study(name: str) -> None:
    """The best trial, its architecture, and where to go next (Part I, Results)."""
    read = live.read_trials(configured_storage(), name)
    best = records.best_trial(read[0]) if read else None
    if best is None:
        return
    st.subheader(f"Best trial: #{best.number}, {best.value:.2f}% validation accuracy")
    config = records.trial_config(best)
    layers = records.hidden_layers(best)
    left, right = st.columns(2)
    shown = [insights.format_value(v, k) for k, v in best.params.items()]  # 7.01e-3, on/off: as people write them
    left.dataframe({"parameter": list(best.params), "value": shown}, hide_index=True)
    if layers:
        right.plotly_chart(figures.architecture_figure(layers), key="p2_architecture")
    cols = st.columns(2)
    if config and cols[0].button("Use these settings in Part I", key="p2_use_best", type="primary"):
        st.session_state[keys.LOAD_INTO_PART1] = dict(config)  # Part I checks it (a stored value may be odd)
        st.switch_page("pages/part1_manual.py")
    st.session_state[keys.RESULTS_STUDY] = name
    with cols[1]:
        st.page_link("pages/results.py", label=f"Review '{plain(name)}' on the Results page", icon="📊")


st.title("Part II: Optuna study")
st.caption(
    "Optuna proposes settings (the sampler), trains each one for a few epochs, and stops the hopeless "
    "ones early (the pruner). The study is saved in the lab's storage, so you can stop it and continue later."
)
try:
    storage_names = live.study_names(configured_storage(), optuna_only=True)
except StorageError as err:  # the instructor's FETAL_HPO_STORAGE cannot be opened
    st.error(f"The study storage is not available: {plain(err)}")
    st.stop()
worker = own_worker()
running = own_worker_running()
st.session_state[keys.P2_RUNNING_AT_RENDER] = running
if running:
    plan = worker.plans[0]
    st.info(
        f"Study '{plain(plan.study_name)}' is running in the background ({plan.trials} trials to go when it started)."
    )
    st.button("Stop", key="p2_stop", on_click=stop_study, type="primary", help="Fails the running trial.")
elif worker is not None and worker.error:
    st.error(f"The study stopped with an error: {plain(worker.error)}")
elif worker is not None and worker.summaries and worker.summaries[-1].interrupted:
    st.warning("Study stopped: the running trial was marked FAIL; finished trials are kept. Continue below.")
live_study()
if not running:
    if st.session_state.get(FOLLOWED):
        after_study(st.session_state[FOLLOWED])
    class_study = preselect_class_study(storage_names)  # the lesson's class study, selected once
    with st.expander("Set up a new study, or continue or watch one", expanded=True):
        if class_study:
            st.caption(f"Your class study is '{plain(class_study)}': continue it to add your trials to the class's.")
        setup_form(storage_names)
