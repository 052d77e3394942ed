"""Part I: manual tuning."""

import streamlit as st

st.title("Part I: manual tuning")
st.info("Coming next: this page is being built.")
