"""Instructor: shape the lesson (Part I presets), start the class study, start a new lesson, remove a run.

Present only when the server has ``FETAL_HPO_INSTRUCTOR_KEY`` and usable only after that key was entered in
this session: the session keeps a keyed hash of it (never the key), and every action checks it again.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from fetal_core import live
from fetal_core.lesson import (
    CONTROLS,
    VISIBILITY,
    Lesson,
    Presets,
    claim_hand_study,
    current_lesson,
    hand_study_name,
    instructor_key,
    lesson_presets,
    lesson_trials,
    save_lesson,
    start_lesson,
    student,
)
from fetal_core.limits import ConfigError
from fetal_core.manual import LABELS, format_layers, parse_hidden_layers
from fetal_core.search import StudyPlan, check_study_name, open_study
from fetal_core.text import plain
from fetal_core.training import OPTIMIZERS
from pages import keys
from pages.class_mode import is_instructor, lock, unlock_with_typed_key
from pages.common import app_settings, configured_storage, enter_through_app

enter_through_app()

st.title("Instructor")
try:
    key_set = instructor_key() is not None
except ConfigError as err:  # a key too short to resist guessing: serve.py does not start with it
    st.error(f"The server refuses its instructor key. {plain(err)}")
    st.stop()
if not key_set:  # the page exists only with the key; a direct link without it acts on nothing
    st.info("This server has no instructor key (FETAL_HPO_INSTRUCTOR_KEY), so there is no instructor page.")
    st.stop()

if not is_instructor():
    st.write("Enter the instructor key the server was started with. Students do not need this page.")
    with st.form("instructor_unlock", border=True):
        st.text_input("Instructor key", type="password", key=keys.INSTRUCTOR_KEY_INPUT)
        st.form_submit_button("Unlock", key="instructor_unlock_button", on_click=unlock_with_typed_key)
    refused = st.session_state.pop(keys.INSTRUCTOR_REFUSED, None)
    if refused:
        st.error(plain(refused if isinstance(refused, str) else "That is not the instructor key."))
    st.stop()


def allowed() -> bool:
    """Checked again at every action: a session whose token no longer matches (a changed key) does nothing."""
    if is_instructor():
        return True
    st.error("Not unlocked: enter the instructor key again.")
    return False


storage = configured_storage()
lesson = current_lesson(storage)
presets = lesson_presets(lesson)
st.button("Lock this page", key="instructor_lock", on_click=lock, type="tertiary")
st.subheader(f"Current lesson: {plain(lesson.name)}")
try:  # the lesson's runs have their study from now on (on a fresh server: before the first run)
    lesson = claim_hand_study(storage, lesson)[1]
except ConfigError as err:
    st.error(plain(err))
if lesson.name_taken:
    st.warning(
        f"'{plain(hand_study_name(lesson.name))}' was taken by a study that class mode did not make: this lesson's "
        f"runs are recorded in '{plain(lesson.hand_study)}' (the leaderboard reads it)."
    )
hand, machine = lesson_trials(storage, lesson)
shown_study = plain(lesson.class_study) if lesson.class_study else "none yet"
st.caption(f"{len(hand)} run(s) by hand · class study: {shown_study} ({len(machine)} finished trial(s))")


def saved(changed: Lesson, message: str) -> None:
    try:
        save_lesson(storage, changed, make_current=True)
    except ConfigError as err:  # the class's control study name is held by a study with trials
        st.error(plain(err))
        return
    st.session_state[keys.INSTRUCTOR_MESSAGE] = message
    st.rerun()


message = st.session_state.pop(keys.INSTRUCTOR_MESSAGE, None)
if message:
    st.success(plain(message))

# ---------------------------------------------------------------- presets
with st.expander("Part I for this lesson: what students see, what is fixed, the ranges", expanded=True):
    with st.form("instructor_presets", border=False):
        visibility, fixed = {}, {}
        st.markdown("**Controls** (choose: students set it · fixed: shown, not changeable · hidden: not shown)")
        for control in CONTROLS:
            left, right = st.columns([1, 2])
            visibility[control] = left.selectbox(
                LABELS[control], VISIBILITY, index=VISIBILITY.index(presets.seen(control)), key=f"instr_seen_{control}"
            )
            value = presets.fixed_value(control)
            label = f"fixed {LABELS[control]}"
            if control == "hidden_layers":
                fixed[control] = right.text_input(label, format_layers(value), key=f"instr_fixed_{control}")
            elif control == "optimizer":
                fixed[control] = right.selectbox(
                    label, OPTIMIZERS, index=OPTIMIZERS.index(value), key=f"instr_fixed_{control}"
                )
            elif control in ("scheduler", "standardize"):
                fixed[control] = right.toggle(label, bool(value), key=f"instr_fixed_{control}")
            elif control in ("learning_rate", "weight_decay"):
                fixed[control] = right.number_input(
                    label, value=float(value), min_value=0.0, format="%g", key=f"instr_fixed_{control}"
                )
            else:
                fixed[control] = right.number_input(
                    label, value=int(value), min_value=0, step=1, key=f"instr_fixed_{control}"
                )
        st.markdown("**Allowed ranges** (for the controls students choose)")
        ranges = {}
        for name, label, whole in (
            ("layers", "hidden layers", True),
            ("units", "units per layer", True),
            ("batch_size", "batch size", True),
            ("learning_rate", "learning rate", False),
            ("weight_decay", "weight decay", False),
        ):
            low, high = presets.range(name)
            left, right = st.columns(2)
            kind = {"step": 1} if whole else {"format": "%g"}
            ranges[name] = (
                left.number_input(
                    f"{label}: lowest", value=int(low) if whole else float(low), key=f"instr_low_{name}", **kind
                ),
                right.number_input(
                    f"{label}: highest", value=int(high) if whole else float(high), key=f"instr_high_{name}", **kind
                ),
            )
        cap = st.number_input(
            "Epochs cap (0: none)", value=int(presets.max_epochs or 0), min_value=0, step=1, key="instr_epochs_cap"
        )
        if st.form_submit_button("Apply to every student", type="primary", key="instr_presets_save") and allowed():
            try:
                kept = {c: v for c, v in fixed.items() if visibility[c] != "choose"}
                if "hidden_layers" in kept:
                    kept["hidden_layers"] = parse_hidden_layers(kept["hidden_layers"])
                new = Presets({c: v for c, v in visibility.items() if v != "choose"}, kept, ranges, cap or None)
            except ConfigError as err:
                st.error(plain(err))
            else:
                saved(
                    dataclasses.replace(lesson, presets=new.to_dict()),
                    "Presets saved: every student's Part I applies them at its next page run.",
                )
    if st.button("Clear the presets (students choose everything)", key="instr_presets_clear") and allowed():
        saved(dataclasses.replace(lesson, presets={}), "Presets cleared.")

# ---------------------------------------------------------------- the class study
with st.expander("Class study (every student's Part II follows it)", expanded=True):
    names = live.study_names(storage, optuna_only=True)
    with st.form("instructor_class_study", border=False):
        name = st.text_input(
            "Study name (a new one, or one that exists)",
            value=lesson.class_study or f"{lesson.name} class study",
            key="instr_class_study_name",
        )
        epochs = st.number_input("Epochs per trial (for a new study)", 1, 10_000, 50, key="instr_class_epochs")
        if st.form_submit_button("Make it the class study", key="instr_class_study_start") and allowed():
            try:
                plan = StudyPlan(app_settings().storage_url, check_study_name(name), epochs=int(epochs))
                open_study(plan, storage)  # creates it (with its sampler, pruner and space) or loads it
            except (ConfigError, ValueError) as err:
                st.error(plain(err))
            else:
                saved(
                    dataclasses.replace(lesson, class_study=plan.study_name),
                    f"Class study: {plan.study_name}. Part II selects it for every student.",
                )
    st.caption("Existing studies: " + (", ".join(plain(n) for n in names) if names else "none"))

# ---------------------------------------------------------------- lessons
with st.expander("Start a new lesson (the current one is archived: its runs stay in the storage)"):
    with st.form("instructor_new_lesson", border=False):
        new_name = st.text_input("New lesson name", key="instr_new_lesson")
        if st.form_submit_button("Start the new lesson", key="instr_new_lesson_start") and allowed():
            try:
                started = start_lesson(storage, new_name, lesson)
            except ConfigError as err:
                st.error(plain(err))
            else:
                # a taken by-hand name is said by the warning under the lesson's name
                st.session_state[keys.INSTRUCTOR_MESSAGE] = f"Lesson {started.name} started; {lesson.name} is archived."
                st.rerun()

# ---------------------------------------------------------------- remove a run
with st.expander("Remove a run from the leaderboard"):
    if not hand:
        st.caption("No run yet.")
    else:
        choices = {t.number: f"#{t.number} · {student(t)} · {t.value if t.value is not None else 0:.2f}%" for t in hand}
        number = st.selectbox("Run", list(choices)[::-1], format_func=lambda n: choices[n], key="instr_remove_run")
        if st.button("Remove this run", key="instr_remove", type="primary") and allowed():
            saved(
                dataclasses.replace(lesson, removed=(*lesson.removed, int(number))),
                f"Run #{number} removed from the leaderboard (it stays in the storage).",
            )
