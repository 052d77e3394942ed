"""Timing runs that print numbers (not tests): `python -m benchmarks.engine`."""
