# Everything a fresh machine needs: `make test` creates .venv, installs, runs pytest.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser test test-slow demo checkpoints gpu-wheels clean

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

# The demo's browser test drives Debian's chromium (Playwright with executable_path): installed here
# once, as root, from the distribution's packages (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get) for the demo's browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: chromium could not be installed (not root?): the browser test will be skipped"; }

test: install browser
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

# The Gradio demo on the bundled checkpoints (app/checkpoints): http://127.0.0.1:$${PORT:-7860}
PORT ?= 7860
demo: install
	$(VENV)/bin/t2i demo --port $(PORT)

# Retrain (resumably, through the benchmark runner) and repack app/checkpoints; hours on a CPU.
checkpoints: install
	$(PY) scripts/make_checkpoints.py

# The packages the lent GPU machine lacks, as Python 3.12 wheels in .whl/ (git-ignored), for
# scripts/gpu_session.sh (the versions this project is tested with here; see that script's header).
GPU_WHEELS := diffusers==0.42.1 importlib_metadata==10.2.0 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
gpu-wheels: install
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	@ls -s .whl

clean:
	rm -rf $(VENV) build *.egg-info
