"""The floor under the Results page's timings: a bare Streamlit page with ``?charts=N`` three-point Plotly charts
(nothing to read or compute), served by ``benchmarks/results_render.py`` beside the app."""

import plotly.graph_objects as go
import streamlit as st

st.title("Floor")
for number in range(int(st.query_params.get("charts", "1"))):
    st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])), key=f"chart_{number}")
