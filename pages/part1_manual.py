"""Part I: manual tuning. Pick hyperparameters, train, watch the curves draw live, compare runs."""

import streamlit as st

from fetal_core.manual import (
    LEARNING_RATES,
    MAX_BATCH,
    MAX_EPOCHS,
    WEIGHT_DECAYS,
    config_from_query,
    config_to_query,
    format_layers,
    format_rate,
    parse_hidden_layers,
    rate_choices,
)
from fetal_core.text import plain
from fetal_core.training import OPTIMIZERS, ConfigError, TrainConfig
from pages import keys
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
WIDGETS = {  # TrainConfig field -> widget key (a widget with key k carries the CSS class st-key-k)
    "hidden_layers": "part1_layers", "batch_size": "part1_batch", "optimizer": "part1_optimizer",
    "learning_rate": "part1_lr", "weight_decay": "part1_wd", "scheduler": "part1_scheduler",
    "epochs": "part1_epochs", "seed": "part1_seed", "standardize": "part1_standardize",
}  # fmt: skip

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
    for name, key in WIDGETS.items():
        value = getattr(config, name)
        st.session_state[key] = format_layers(value) if name == "hidden_layers" else value


handed_over = st.session_state.pop(keys.LOAD_INTO_PART1, None)
link_already_read = st.session_state.get(keys.PART1_LINK_READ, False)
st.session_state[keys.PART1_LINK_READ] = True  # a link applies once, when the session opens Part I
if handed_over is not None:
    try:
        # Through the same checks as a shared link, so out-of-range values are dropped with a note.
        loaded, notes = config_from_query(config_to_query(TrainConfig.from_dict(handed_over)), TrainConfig())
    except (ConfigError, TypeError, ValueError) as err:
        st.error(f"Could not load the settings from Part II: {plain(err)}")
    else:
        apply_to_widgets(loaded)
        st.success("Loaded the settings from Part II into the form below: press **Train** to run them by hand.")
        for note in notes:
            st.warning(plain(note))
elif not link_already_read:
    from_link, notes = config_from_query(dict(st.query_params), TrainConfig())
    if from_link != TrainConfig():
        st.info("Loaded the settings from the link.")
    for note in notes:
        st.warning(plain(note))  # quotes the link's values: text, not Markdown
    apply_to_widgets(from_link)

stored = TrainConfig.from_dict(st.session_state.get(CONFIG_KEY, TrainConfig().to_dict()))
for name, key in WIDGETS.items():
    if key not in st.session_state:
        value = getattr(stored, name)
        st.session_state[key] = format_layers(value) if name == "hidden_layers" else value

settings_column, chart_column = st.columns([1, 2], gap="large")
with settings_column, st.form("part1_form", border=True):
    st.markdown("**Hyperparameters**")
    layers_text = st.text_input(
        "Hidden layer widths", key=WIDGETS["hidden_layers"],
        help="One width per hidden layer, separated by commas: '15, 10' is two layers of 15 and 10 units.",
    )  # fmt: skip
    batch_size = st.number_input("Batch size", 1, MAX_BATCH, step=1, key=WIDGETS["batch_size"],
                                 help="Rows per weight update (the training part has 1,700 rows).")  # fmt: skip
    optimizer = st.segmented_control("Optimiser", OPTIMIZERS, key=WIDGETS["optimizer"], required=True)
    learning_rate = st.select_slider(
        "Learning rate (log scale)", rate_choices(LEARNING_RATES, st.session_state[WIDGETS["learning_rate"]]),
        format_func=format_rate, key=WIDGETS["learning_rate"], help="Step size of each update: 1e-5 … 1.",
    )  # fmt: skip
    weight_decay = st.select_slider(
        "Weight decay (log scale)", rate_choices(WEIGHT_DECAYS, st.session_state[WIDGETS["weight_decay"]]),
        format_func=format_rate, key=WIDGETS["weight_decay"], help="L2 penalty pulling weights to 0: 0 or 1e-5 … 1.",
    )  # fmt: skip
    scheduler = st.toggle("Cosine learning-rate scheduler", key=WIDGETS["scheduler"],
                          help="Lower the learning rate smoothly to 0 over the epochs.")  # fmt: skip
    standardize = st.toggle(
        "Standardise features", key=WIDGETS["standardize"],
        help="Scale every feature to mean 0 and std 1 (using the training rows only). The notebook does not.",
    )  # fmt: skip
    epochs = st.number_input("Epochs", 1, MAX_EPOCHS, step=1, key=WIDGETS["epochs"])
    seed = st.number_input("Seed", 0, 2**31 - 1, step=1, key=WIDGETS["seed"],
                           help="Same settings and seed, same curve.")  # fmt: skip
    submitted = st.form_submit_button("▶ Train", type="primary", key="part1_train")

config = None
if submitted:
    try:
        config = TrainConfig(
            hidden_layers=parse_hidden_layers(layers_text), batch_size=int(batch_size), optimizer=optimizer,
            learning_rate=float(learning_rate), weight_decay=float(weight_decay), scheduler=bool(scheduler),
            epochs=int(epochs), seed=int(seed), standardize=bool(standardize),
        )  # fmt: skip
    except ConfigError as err:
        settings_column.error(plain(err))  # quotes what was typed
    else:
        st.session_state[CONFIG_KEY] = config.to_dict()

link = config_to_query(TrainConfig.from_dict(st.session_state.get(CONFIG_KEY, TrainConfig().to_dict())))
if dict(st.query_params) != link:
    st.query_params.from_dict(link)  # the address bar now shares these settings

with chart_column:
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
latest_figure = curve_figure(latest["history"], latest["null_accuracy"], latest["config"]["epochs"], latest["label"])
chart.plotly_chart(latest_figure)
st.divider()
with st.container(key="part1_result"):
    labels = [r["label"] for r in runs]
    if st.session_state.get(keys.PART1_RUNS_SEEN) != len(runs):  # a new run: show it
        st.session_state[keys.PART1_RUNS_SEEN] = len(runs)
        st.session_state[keys.PART1_DETAIL_RUN] = labels[-1]
    chosen = st.selectbox("Show the details of", labels[::-1], key=keys.PART1_DETAIL_RUN)
    show_run(runs[labels.index(chosen)])
st.divider()
with st.container(key="part1_history"):
    show_history(runs)
