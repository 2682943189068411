# Every target installs what it needs into the current Python environment (use a venv if you like).
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet -c constraints.txt
PYTEST_ARGS ?=

.PHONY: install install-dev demo test test-all bench-deps bench-pyctcdecode device-wheels

install:
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PIP) -e ".[synth,plot,f0]"

install-dev:
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PIP) -e ".[dev]"

# Quick start 1: install and run the main job on the built-in demo.
demo: install
	$(PYTHON) -m speechunits demo -o demo_out

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


# The wheels a lent GPU machine lacks (its image has torch, transformers, pyarrow, tokenizers ...; Python 3.12,
# no network): carried as .whl/ by bench/gpu_pretrain.py's device command (docs/train.md, "On a lent GPU").
DEVICE_WHEELS := cffi==2.0.0 pycparser==3.0 soundfile==0.14.0 soxr==1.1.0 rapidfuzz==3.14.6 jiwer==4.0.0 espeakng-loader==0.2.4
device-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform any -d .whl $(DEVICE_WHEELS)
