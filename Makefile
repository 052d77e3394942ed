# Two commands from a fresh clone:  `make run` (the app) and `make test` (all tests).
# Set-up is idempotent: the venv is rebuilt only when a requirements file changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DATA := data/fetal_health.csv
# Where the app listens: 127.0.0.1 is right for one person; a class uses HOST=0.0.0.0 (see README: Run a class).
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run test setup setup-dev data browser lint bench

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

# Copies ../shared/data/fetal_health.csv, else downloads it from Kaggle (kagglehub).
data: setup
	@test -f $(DATA) || $(PY) -m fetal_core fetch-data

# Debian's chromium for the browser tests (PyPI playwright drives it; never `playwright install`).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

run: setup
	@test -f $(DATA) || $(PY) -m fetal_core fetch-data || echo "No data set yet: upload fetal_health.csv on the Home page."
	$(PY) -m streamlit run serve.py --server.address $(HOST) --server.port $(PORT)

test: setup-dev data browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n 2 --dist worksteal

bench: setup-dev data
	$(PY) -m benchmarks.engine
