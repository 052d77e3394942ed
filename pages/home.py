"""Home."""

import streamlit as st

st.title("Home")
st.info("Coming next: this page is being built.")
