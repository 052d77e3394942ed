"""Strategy race."""

import streamlit as st

st.title("Strategy race")
st.info("Coming next: this page is being built.")
