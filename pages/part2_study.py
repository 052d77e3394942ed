"""Part II: Optuna study."""

import streamlit as st

st.title("Part II: Optuna study")
st.info("Coming next: this page is being built.")
