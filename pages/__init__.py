"""The app's pages (thin: layout, widgets, callbacks); the work happens in fetal_core."""
