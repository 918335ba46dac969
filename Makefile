# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed before the project so pip takes the CPU build from local disk.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test golden dgl-env clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m tasks.traffic fit

# One OpenMP thread per test worker: two workers on two cores, no oversubscription (tests that
# compare thread counts set them explicitly).
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

# Regenerate the snapshots of generated code (tests/codegen/golden) after an intended change; review the diff.
golden: $(STAMP)
	GRAPHCORE_UPDATE_GOLDEN=1 $(PY) -m pytest -q -p no:xdist tests/codegen/test_golden.py

clean:
	rm -rf $(VENV) build *.egg-info

# DGL 2.1.0 only loads with torch <= 2.2.1: a separate interpreter for the DGL baselines of
# benchmarks/ogb_rgnn.py (DGL imports pandas and pyyaml without declaring them).
DGL_VENV := .venv-dgl
dgl-env: $(DGL_VENV)/.installed

$(DGL_VENV)/.installed:
	$(PYTHON) -m venv $(DGL_VENV)
	$(DGL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DGL_VENV)/bin/python -m pip install --quiet torch==2.2.1 dgl==2.1.0 torchdata==0.7.1 pydantic pandas pyyaml 'numpy==1.26.*'
	touch $@
