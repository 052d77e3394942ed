"""fetal_core: the engine of the Fetal Health HPO Lab (data, model, training, studies). No Streamlit here."""
