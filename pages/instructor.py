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
from pages.class_mode import is_instructor, lock, qr_png, student_address, unlock_with_typed_key, write_sign_in_cookie
from pages.common import app_settings, configured_storage, enter_through_app, report_download

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

write_sign_in_cookie()
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

# ---------------------------------------------------------------- the address students type
with st.expander("How students reach this server", expanded=True), st.container(key="instructor_address"):
    address, unreachable = student_address()
    words, picture = st.columns([3, 1])
    words.markdown("Students open this address in their browser (or scan the code):")
    words.code(address, language=None)  # an address can come from the browser's Host header: never Markdown
    if unreachable:
        words.warning(unreachable)
    picture.image(
        qr_png(address), caption="Scan to open the lab", alt=f"QR code of {address}", width=180, output_format="PNG"
    )

RANGE_INPUTS = (
    ("layers", "hidden layers", True),
    ("units", "units per layer", True),
    ("batch_size", "batch size", True),
    ("learning_rate", "learning rate", False),
    ("weight_decay", "weight decay", False),
)
FORM_FOR_KEY = "instructor_form_for"  # the stored lesson the form's widgets were last filled from


def form_values(lesson: Lesson, presets: Presets) -> dict:
    """Widget key -> value: the form as the stored lesson has it."""
    values = {"instr_epochs_cap": int(presets.max_epochs or 0), "instr_new_lesson": "", "instr_class_epochs": 50}
    values["instr_class_study_name"] = lesson.class_study or f"{lesson.name} class study"
    for control in CONTROLS:
        values[f"instr_seen_{control}"] = presets.seen(control)
        value = presets.fixed_value(control)
        if control == "hidden_layers":
            value = format_layers(value)
        elif control in ("scheduler", "standardize"):
            value = bool(value)
        elif control in ("learning_rate", "weight_decay"):
            value = float(value)
        elif control != "optimizer":
            value = int(value)
        values[f"instr_fixed_{control}"] = value
    for name, _, whole in RANGE_INPUTS:
        low, high = presets.range(name)
        values[f"instr_low_{name}"], values[f"instr_high_{name}"] = (int(low), int(high)) if whole else (low, high)
    return values


# The form shows what is saved: whenever the stored lesson differs from what it was filled from (a new lesson,
# presets saved in another tab), every field is filled again from the storage.
built_for = {"lesson": lesson.name, "presets": presets.to_dict(), "class_study": lesson.class_study}
if st.session_state.get(FORM_FOR_KEY) != built_for:
    st.session_state.update(form_values(lesson, presets))
    st.session_state[FORM_FOR_KEY] = built_for


@st.fragment(run_every=2.0)
def follow_lesson() -> None:
    """Another tab's change (presets, class study, a new lesson) refills this page's form within 2 s."""
    try:
        now = current_lesson(storage)
    except Exception:  # the storage is busy: the next check reads it
        return
    seen = {"lesson": now.name, "presets": lesson_presets(now).to_dict(), "class_study": now.class_study}
    if seen != st.session_state.get(FORM_FOR_KEY):
        st.rerun(scope="app")


follow_lesson()

# ---------------------------------------------------------------- presets
with st.expander("Part I for this lesson: what students see, what is fixed, the ranges", expanded=True):
    with st.form("instructor_presets", border=False):
        visibility, fixed = {}, {}
        st.markdown("**Controls** (choose: students set it · fixed: shown, not changeable · hidden: not shown)")
        for control in CONTROLS:
            left, right = st.columns([1, 2])
            visibility[control] = left.selectbox(LABELS[control], VISIBILITY, key=f"instr_seen_{control}")
            label, key = f"fixed {LABELS[control]}", f"instr_fixed_{control}"  # filled by form_values
            if control == "hidden_layers":
                fixed[control] = right.text_input(label, key=key)
            elif control == "optimizer":
                fixed[control] = right.selectbox(label, OPTIMIZERS, key=key)
            elif control in ("scheduler", "standardize"):
                fixed[control] = right.toggle(label, key=key)
            elif control in ("learning_rate", "weight_decay"):
                fixed[control] = right.number_input(label, min_value=0.0, format="%g", key=key)
            else:
                fixed[control] = right.number_input(label, min_value=0, step=1, key=key)
        st.markdown("**Allowed ranges** (for the controls students choose)")
        ranges = {}
        for name, label, whole in RANGE_INPUTS:
            left, right = st.columns(2)
            kind = {"min_value": 0, "step": 1} if whole else {"min_value": 0.0, "format": "%g"}
            ranges[name] = (
                left.number_input(f"{label}: lowest", key=f"instr_low_{name}", **kind),
                right.number_input(f"{label}: highest", key=f"instr_high_{name}", **kind),
            )
        cap = st.number_input("Epochs cap (0: none)", min_value=0, step=1, key="instr_epochs_cap")
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
        name = st.text_input("Study name (a new one, or one that exists)", key="instr_class_study_name")
        epochs = st.number_input("Epochs per trial (for a new study)", 1, 10_000, key="instr_class_epochs")
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

# ---------------------------------------------------------------- the report
with st.expander("Take the lesson home: the report", expanded=True):
    st.caption(
        "One HTML file of this lesson: the leaderboard (removed runs listed apart), the class's runs against Optuna's "
        "trials, what the runs show, the class study's plots with how to read them, and the best settings as PyTorch "
        "code. It opens in any browser, offline. Built when you ask (a few seconds)."
    )

    from fetal_core import report

    report_download(
        lambda: report.lesson_report(storage, lesson.name),
        report.file_name(f"lesson {lesson.name}"),
        "instr_report",
    )
