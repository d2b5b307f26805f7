# Assay — two commands: `make serve` and `make test`. `make venv` is the shared set-up step.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# torch first, pinned to the CPU build that lies on this disk, so the project's
# `torch>=…` requirement is already satisfied and pip never fetches a CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.assay-installed

.PHONY: venv test lint serve demo bench clean chromium espeak

venv: $(STAMP) espeak

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,generative,privacy,ray,slurm]"
	@touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Debian's chromium drives the dashboard's browser tests (Playwright); installed once.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Debian's espeak-ng speaks the Voicebox workload's toy corpus (assay.generative.voicebox.data).
espeak:
	@test -x /usr/bin/espeak-ng || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng; }

test: venv lint chromium espeak
	$(PY) -m pytest -q

serve: venv
	$(VENV)/bin/assay db upgrade
	$(VENV)/bin/assay serve --demo

demo: venv
	$(VENV)/bin/assay demo

bench: venv
	$(PIP) install -q -e ".[dev,bench]"
	$(PY) benchmarks/bo_quality.py

clean:
	rm -rf $(VENV) build dist *.egg-info
