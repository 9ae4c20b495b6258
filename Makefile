# Two set-up-and-go commands: `make run` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --constraint constraints.txt

.PHONY: run test lint bench clean chromium

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.lab-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) --editable '.[lab]'
	touch $@

$(VENV)/.dev-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) --editable '.[dev]'
	touch $@ $(VENV)/.lab-installed

# The main job: the seed experiment as a one-shot comparison (issue 4).
run: $(VENV)/.lab-installed
	$(VENV)/bin/optimlab compare

# Headless Chromium for the report test comes from Debian's package.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "warning: chromium not installed; the browser test will be skipped" >&2; fi; }

test: $(VENV)/.dev-installed chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.lab-installed
	$(PY) benchmarks/step_throughput.py
	$(PY) benchmarks/compare_settings.py
	$(PY) benchmarks/lab_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
