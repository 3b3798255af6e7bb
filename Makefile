# Everything a fresh machine needs: `make test` creates .venv, installs, runs pytest.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml or constraints.txt changes (idempotent).
# constraints.txt holds the exact versions this project is tested with (torch, torchvision);
# pyproject.toml keeps library-style lower bounds.
CONSTRAINTS := constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[offline-weights,test]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) build *.egg-info
