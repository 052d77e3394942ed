"""Results."""

import streamlit as st

st.title("Results")
st.info("Coming next: this page is being built.")
