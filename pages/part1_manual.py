"""Part I: manual tuning. Pick hyperparameters, train, watch the curves draw live, compare runs."""

import streamlit as st

from fetal_core import limits
from fetal_core.lesson import CONTROLS, Presets
from fetal_core.manual import (
    LABELS,
    LEARNING_RATES,
    MAX_LAYERS,
    WEIGHT_DECAYS,
    config_from_query,
    config_to_query,
    fit_to_lesson,
    format_layers,
    format_rate,
    format_setting,
    parse_hidden_layers,
    rate_choices,
)
from fetal_core.text import plain
from fetal_core.training import OPTIMIZERS, ConfigError, TrainConfig
from pages import keys
from pages.class_mode import PRESETS_TTL_SECONDS, finish_recording, lesson_presets_now, nickname_query
from pages.common import current_dataset, enter_through_app
from pages.manual_support import (
    curve_figure,
    recover_interrupted_run,
    session_runs,
    show_history,
    show_run,
    train_live,
)

enter_through_app()

CONFIG_KEY = keys.PART1_CONFIG
PRESETS_SEEN_KEY = "part1_presets_seen"  # the lesson presets the widgets were last set up for
EXACT_KEY = "part1_exact"  # the "type exact values" toggle: number boxes instead of sliders
SHARED_WIDGETS = {  # TrainConfig field -> widget key, the same in both modes (a key k carries the CSS class st-key-k)
    "optimizer": "part1_optimizer", "scheduler": "part1_scheduler", "seed": "part1_seed",
    "standardize": "part1_standardize",
}  # fmt: skip
SLIDER_WIDGETS = {"batch_size": "part1_batch_slider", "epochs": "part1_epochs_slider",
                  "learning_rate": "part1_lr", "weight_decay": "part1_wd"}  # fmt: skip
EXACT_WIDGETS = {"hidden_layers": "part1_layers", "batch_size": "part1_batch", "epochs": "part1_epochs",
                 "learning_rate": "part1_lr_exact", "weight_decay": "part1_wd_exact"}  # fmt: skip
LAYER_COUNT_KEY = "part1_layer_count"  # slider mode: how many hidden layers (outside the form: it adds sliders)
LAB_RANGES = {
    "batch_size": limits.BATCH_SIZE,
    "learning_rate": limits.LEARNING_RATE,
    "weight_decay": limits.WEIGHT_DECAY,
    "epochs": limits.EPOCHS,
}  # the exact number boxes take the lab's range: Train checks the lesson's and says why


def width_key(layer: int) -> str:
    return f"part1_width_{layer}"


def widget_values(config: TrainConfig, exact: bool) -> dict:
    """The widget key -> value pairs that show ``config`` in the chosen mode."""
    values = {key: getattr(config, name) for name, key in SHARED_WIDGETS.items()}
    if exact:
        values.update({key: getattr(config, name) for name, key in EXACT_WIDGETS.items()})
        values[EXACT_WIDGETS["hidden_layers"]] = format_layers(config.hidden_layers)
    else:
        values.update({key: getattr(config, name) for name, key in SLIDER_WIDGETS.items()})
        values[LAYER_COUNT_KEY] = len(config.hidden_layers)
        values.update({width_key(i): units for i, units in enumerate(config.hidden_layers)})
    return values


def shown_config(fallback: TrainConfig) -> TrainConfig:
    """The settings the widgets hold now (what a Train would send), ``fallback`` for what they do not hold."""
    state, values = st.session_state, fallback.to_dict()
    exact = bool(state.get(EXACT_KEY, False))
    for name, key in {**SHARED_WIDGETS, **(EXACT_WIDGETS if exact else SLIDER_WIDGETS)}.items():
        if key in state:
            values[name] = state[key]
    try:
        if isinstance(values["hidden_layers"], str):
            values["hidden_layers"] = parse_hidden_layers(values["hidden_layers"])
        elif not exact and LAYER_COUNT_KEY in state:
            values["hidden_layers"] = [state.get(width_key(i), 1) for i in range(int(state[LAYER_COUNT_KEY]))]
        return TrainConfig.from_dict(values)
    except (ConfigError, TypeError, ValueError):
        return fallback


def lesson_rules(presets: Presets) -> str:
    """Everything the lesson fixes or caps, in one plain line ("" for a lesson without presets)."""
    fixed = [
        f"{LABELS[c]} {format_setting(c, presets.fixed_value(c))}"
        + (" (not shown)" if presets.seen(c) == "hidden" else "")
        for c in CONTROLS
        if presets.seen(c) != "choose"
    ]
    capped = [f"epochs at most {presets.max_epochs}"] if presets.max_epochs is not None else []
    for name, label in (("layers", "hidden layers"), ("units", "units per layer"), ("batch_size", "batch size"),
                        ("learning_rate", "learning rate"), ("weight_decay", "weight decay")):  # fmt: skip
        if name in presets.ranges:
            low, high = presets.range(name)
            shown = format_rate if name in ("learning_rate", "weight_decay") else (lambda v: f"{v:g}")
            capped.append(f"{label} {shown(low)} to {shown(high)}")
    parts = []
    if fixed:
        parts.append("Fixed for this lesson by your instructor: " + "; ".join(fixed) + ".")
    if capped:
        parts.append("Allowed in this lesson: " + "; ".join(capped) + ".")
    return " ".join(parts)


def forget_widgets() -> None:
    """Drop every settings widget's value: the next run fills them from the stored config (either mode)."""
    for key in [
        *SHARED_WIDGETS.values(),
        *SLIDER_WIDGETS.values(),
        *EXACT_WIDGETS.values(),
        LAYER_COUNT_KEY,
        *(width_key(i) for i in range(MAX_LAYERS)),
    ]:
        st.session_state.pop(key, None)


st.title("Part I: tuning by hand")
st.write(
    "Choose the hyperparameters yourself, train the network and watch its validation accuracy epoch by epoch. "
    "The defaults are the course's deliberately poor starting point: train them once, then try to do better. "
    "Every run of this session is kept below so you can compare what each change did."
)

data = current_dataset()
if data is None:
    st.warning("There is no usable data set yet, so nothing can be trained.")
    st.page_link("pages/home.py", label="Upload fetal_health.csv on Home", icon="🏠")
    st.stop()

recovered = recover_interrupted_run()
if recovered is not None:
    st.info(f"{recovered['label']} was interrupted after {len(recovered['history'])} epoch(s); its curve is kept.")


def apply_to_widgets(config: TrainConfig) -> None:
    """Put a config into the widgets (only valid before they are created in this run)."""
    st.session_state[CONFIG_KEY] = config.to_dict()
    forget_widgets()


# Every config that reaches the widgets goes through fit_to_lesson first: a widget's bounds are the lesson's
# ranges, and Streamlit raises on a value outside them (a 30-epoch trial under a 20-epoch cap once did, on every
# visit). Each setting the lesson changes is said in one line.
presets = lesson_presets_now()  # the instructor's presets of the current lesson (defaults: none)
handed_over = st.session_state.pop(keys.LOAD_INTO_PART1, None)
link_already_read = st.session_state.get(keys.PART1_LINK_READ, False)
st.session_state[keys.PART1_LINK_READ] = True  # a link applies once, when the session opens Part I
if handed_over is not None:
    try:
        # Through the same checks as a shared link, so out-of-range values are dropped with a note.
        loaded, notes = config_from_query(config_to_query(TrainConfig.from_dict(handed_over)), TrainConfig())
    except (ConfigError, TypeError, ValueError, AttributeError) as err:
        st.error(f"Could not load the settings from Part II: {plain(err)}")
    else:
        loaded, fitted = fit_to_lesson(loaded, presets)
        apply_to_widgets(loaded)
        st.success("Loaded the settings from Part II into the form below: press **Train** to run them by hand.")
        for note in notes + fitted:
            st.warning(plain(note))
elif not link_already_read:
    from_link, notes = config_from_query(dict(st.query_params), TrainConfig())
    if from_link != TrainConfig():
        st.info("Loaded the settings from the link.")
    from_link, fitted = fit_to_lesson(from_link, presets, defaults=TrainConfig())
    for note in notes + fitted:
        st.warning(plain(note))  # quotes the link's values: text, not Markdown
    apply_to_widgets(from_link)

try:
    stored, readable = TrainConfig.from_dict(st.session_state.get(CONFIG_KEY, TrainConfig().to_dict())), True
except (ConfigError, TypeError, ValueError, AttributeError):  # kept from before the lab's limits changed
    stored, readable = TrainConfig(), False
# The session's settings may come from an earlier lesson with wider ranges: they move into this one's.
fitted_stored, notes = fit_to_lesson(stored, presets, defaults=TrainConfig())
preset_notes = None  # set when the presets changed in this run: what they changed in the widgets
if not readable or fitted_stored != stored or st.session_state.get(PRESETS_SEEN_KEY) != presets.to_dict():
    if PRESETS_SEEN_KEY in st.session_state and st.session_state[PRESETS_SEEN_KEY] != presets.to_dict():
        preset_notes = fit_to_lesson(shown_config(stored), presets)[1]
    st.session_state[PRESETS_SEEN_KEY] = presets.to_dict()
    stored = fitted_stored
    st.session_state[CONFIG_KEY] = stored.to_dict()
    forget_widgets()  # the widgets start from the fitted settings
    for note in notes:
        st.warning(plain(note))
try:
    presets.enforce(stored)
except ConfigError as err:  # ranges in which no network fits the lab's limits: no widget could show them
    st.error(f"This lesson's ranges allow no setting the lab can train ({plain(err)}). Ask your instructor.")
    st.stop()


@st.fragment(run_every=PRESETS_TTL_SECONDS)
def follow_presets() -> None:
    """An open Part I applies the instructor's changed presets without a click: the whole page runs again
    (its widgets are set up above for the presets it read)."""
    if lesson_presets_now().to_dict() != st.session_state.get(PRESETS_SEEN_KEY):
        st.rerun(scope="app")


follow_presets()


def choosable(control: str) -> bool:
    return presets.seen(control) == "choose"


def bounds(name: str, whole: bool = True) -> tuple:
    low, high = presets.range(name)
    return (int(low), int(high)) if whole else (float(low), float(high))


def lesson_slider(label: str, name: str, key: str, **kwargs) -> int:
    """A slider over the lesson's range of ``name``; a range of one value (a slider cannot have equal ends)
    is that value, shown as text."""
    low, high = bounds(name)
    if low == high:
        st.caption(f"{label}: {low} (the only value this lesson allows)")
        return low
    return st.slider(label, low, high, key=key, **kwargs)


def rate_grid(grid: tuple[float, ...], name: str, current: float) -> list[float]:
    """The slider's log grid inside the lesson's range, with its ends and the current value."""
    low, high = bounds(name, whole=False)
    inside = [v for v in grid if low <= v <= high]
    return rate_choices([low, *inside, high], current)


settings_column, chart_column = st.columns([1, 2], gap="large")
exact = settings_column.toggle(
    "Exact values",
    key=EXACT_KEY,
    on_change=forget_widgets,
    help="Number boxes instead of sliders, for values a slider cannot hit. Switching keeps the last trained settings.",
)
for key, value in widget_values(stored, exact).items():
    st.session_state.setdefault(key, value)
rules = lesson_rules(presets)
if rules:
    with settings_column.container(key="part1_fixed"):
        st.caption(plain(rules))
values = {c: presets.fixed_value(c) for c in CONTROLS}  # fixed and hidden controls keep the lesson's values
if not exact and choosable("hidden_layers"):
    with settings_column:
        layer_count = lesson_slider("Number of hidden layers", "layers", LAYER_COUNT_KEY)
    for i in range(layer_count):  # a layer added since the last run starts as wide as the one before it
        st.session_state.setdefault(width_key(i), st.session_state.get(width_key(i - 1), stored.hidden_layers[-1]))

with settings_column, st.form("part1_form", border=True):
    st.markdown("**Hyperparameters**")
    layers_text = format_layers(values["hidden_layers"])
    if choosable("hidden_layers") and exact:
        layers_text = st.text_input(
            "Hidden layer widths",
            key=EXACT_WIDGETS["hidden_layers"],
            help="One width per hidden layer, separated by commas: '15, 10' is two layers of 15 and 10 units.",
        )
    elif choosable("hidden_layers"):
        widths = [lesson_slider(f"Layer {i + 1} units", "units", width_key(i)) for i in range(layer_count)]
        layers_text = format_layers(widths)
    if choosable("batch_size"):
        batch_help = "Rows per weight update (the training part has 1,700 rows)."
        if exact:
            values["batch_size"] = st.number_input(
                "Batch size",
                int(LAB_RANGES["batch_size"].low),
                int(LAB_RANGES["batch_size"].high),
                key=EXACT_WIDGETS["batch_size"],
                help=batch_help,
            )
        else:
            values["batch_size"] = lesson_slider(
                "Batch size", "batch_size", SLIDER_WIDGETS["batch_size"], help=batch_help
            )
    if choosable("optimizer"):
        values["optimizer"] = st.segmented_control(
            "Optimiser", OPTIMIZERS, key=SHARED_WIDGETS["optimizer"], required=True
        )
    for name, label, grid, hint in (
        ("learning_rate", "Learning rate", LEARNING_RATES, "Step size of each update"),
        ("weight_decay", "Weight decay", WEIGHT_DECAYS, "L2 penalty pulling weights to 0"),
    ):
        if not choosable(name):
            continue
        low, high = bounds(name, whole=False)
        if exact:
            values[name] = st.number_input(
                label,
                float(LAB_RANGES[name].low),
                float(LAB_RANGES[name].high),
                step=None,
                format="%g",
                key=EXACT_WIDGETS[name],
                help=f"{hint}: {format_rate(low)} to {format_rate(high)}.",
            )
        else:
            values[name] = st.select_slider(
                f"{label} (log scale)",
                rate_grid(grid, name, st.session_state[SLIDER_WIDGETS[name]]),
                format_func=format_rate,
                key=SLIDER_WIDGETS[name],
                help=f"{hint}: {format_rate(low)} to {format_rate(high)}.",
            )
    if choosable("scheduler"):
        values["scheduler"] = st.toggle(
            "Cosine learning-rate scheduler",
            key=SHARED_WIDGETS["scheduler"],
            help="Lower the learning rate smoothly to 0 over the epochs.",
        )
    if choosable("standardize"):
        values["standardize"] = st.toggle(
            "Standardise features",
            key=SHARED_WIDGETS["standardize"],
            help="Scale every feature to mean 0 and std 1 (using the training rows only). The notebook does not.",
        )
    low_epochs, high_epochs = bounds("epochs")
    epochs_help = f"This lesson allows {low_epochs} to {high_epochs} epochs."
    if choosable("epochs") and exact:
        values["epochs"] = st.number_input(
            "Epochs",
            int(LAB_RANGES["epochs"].low),
            int(LAB_RANGES["epochs"].high),
            step=1,
            key=EXACT_WIDGETS["epochs"],
            help=epochs_help,
        )
    elif choosable("epochs"):
        values["epochs"] = lesson_slider(
            "Epochs", "epochs", SLIDER_WIDGETS["epochs"], help="Too coarse? Switch on 'Exact values' above."
        )
    if choosable("seed"):
        values["seed"] = st.number_input(
            "Seed", 0, 2**31 - 1, step=1, key=SHARED_WIDGETS["seed"], help="Same settings and seed, same curve."
        )
    submitted = st.form_submit_button("▶ Train", type="primary", key="part1_train")
epochs = values["epochs"]

config = None
if submitted:
    try:
        asked = TrainConfig(
            hidden_layers=parse_hidden_layers(layers_text),
            batch_size=int(values["batch_size"]),
            optimizer=values["optimizer"],
            learning_rate=float(values["learning_rate"]),
            weight_decay=float(values["weight_decay"]),
            scheduler=bool(values["scheduler"]),
            epochs=int(values["epochs"]),
            seed=int(values["seed"]),
            standardize=bool(values["standardize"]),
        )
        config = presets.enforce(asked)
    except ConfigError as err:
        with settings_column.container(key="part1_refused"):
            st.error(f"Not trained: {plain(err)}")  # quotes what was typed
    else:
        st.session_state[CONFIG_KEY] = config.to_dict()
        changed = fit_to_lesson(asked, presets)[1] if preset_notes is None else preset_notes
        if preset_notes is not None and not changed:
            changed = ["the instructor changed this lesson's presets just before this run"]
        if changed:
            preset_line = "Trained with this lesson's presets: " + "; ".join(n.rstrip(".") for n in changed) + "."

link = config_to_query(TrainConfig.from_dict(st.session_state.get(CONFIG_KEY, TrainConfig().to_dict())))
link.update(nickname_query())  # the nickname stays in the address across a reload
if dict(st.query_params) != link:
    st.query_params.from_dict(link)  # the address bar now shares these settings

with chart_column:
    if config is not None and changed:
        with st.container(key="part1_preset_note"):
            st.info(plain(preset_line))
    stop_slot = st.empty()
    with st.container(key="part1_progress"):
        status = st.empty()
    with st.container(key="part1_live_chart"):
        chart = st.empty()
    if config is not None:
        train_live(config, data, chart, status, stop_slot)
        stop_slot.empty()

runs = session_runs()
if not runs:
    status.caption("Press **Train** to start; the curve draws here while the network learns.")
    chart.plotly_chart(curve_figure([], data.null_accuracy, int(epochs), "No run yet"))
    st.stop()

latest = runs[-1]
status.markdown(f"**{latest['label']}** · {len(latest['history'])} epoch(s) trained")
st.divider()
with st.container(key="part1_result"):
    labels = [r["label"] for r in runs]
    if st.session_state.get(keys.PART1_RUNS_SEEN) != len(runs):  # a new run: show it
        st.session_state[keys.PART1_RUNS_SEEN] = len(runs)
        st.session_state[keys.PART1_DETAIL_RUN] = labels[-1]
    chosen = st.selectbox("Show the details of", labels[::-1], key=keys.PART1_DETAIL_RUN)
    show_run(runs[labels.index(chosen)])
# The final curve after the numbers: the browser paints the metrics first, then re-draws the chart above them.
latest_figure = curve_figure(latest["history"], latest["null_accuracy"], latest["config"]["epochs"], latest["label"])
chart.plotly_chart(latest_figure)
st.divider()
with st.container(key="part1_history"):
    show_history(runs)
finish_recording()  # the run is on the leaderboard before this page run ends
