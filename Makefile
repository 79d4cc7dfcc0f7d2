# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates .venv, installs tcmcodec, compresses + decompresses the sample photo
#   make test   -> creates .venv, installs tcmcodec with test extras, runs the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU build of PyTorch, pinned for CI (the library itself only asks for torch>=2.2,<3).
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[all]"
	touch $@

demo: setup
	$(VENV)/bin/tcm demo

test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_codec.py --model tcm-s

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
