# Every target installs what it needs into the current Python environment (use a venv if you like).
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet -c constraints.txt
PYTEST_ARGS ?=

.PHONY: install install-dev demo test test-all bench-deps bench-pyctcdecode

install:
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PIP) -e ".[synth,plot,f0]"

install-dev:
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PIP) -e ".[dev]"

# Quick start 1: install and run the main job on the built-in demo.
demo: install
	speechunits demo -o demo_out

# Quick start 2: install test requirements and run the CI subset (slow end-to-end checks excluded).
test: install-dev
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

# Everything, slow end-to-end checks included.
test-all: install-dev
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The benchmarks' baselines (bench/*.py); Libri-Light's ABX without torchaudio (see pyproject's bench extra).
bench-deps:
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PIP) -e ".[bench]"
	$(PIP) --no-deps "zerospeech-libriabx2>=0.9.8"

# bench/probe_lm.py's baseline: pyctcdecode + kenlm pin numpy < 2, so they get a venv of their own.
bench-pyctcdecode:
	$(PYTHON) -m venv .venv-pyctcdecode
	.venv-pyctcdecode/bin/python -m pip install --quiet "numpy<2" "pyctcdecode==0.5.0" "kenlm>=0.2"

