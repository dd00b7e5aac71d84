# Entry points on a fresh machine: `make demo` (a light .venv: only what coding needs, numpy,
# numba, click and tqdm; no torch, triton or ray), `make check` (ruff, mypy and the fast tests;
# `make -k check` runs all three even when one fails) and `make test` (every test).
# Measured on a 2-core machine (2026-12-06, one run each): `make check` 80 s warm in one
# process; 242 s with every cache cold (numba's, mypy's, and the AOT module, whose 48 s
# rebuild `make` otherwise does at setup); `make test` 12 minutes in one process. Later, with
# cheaper interpreter cases and the machine shared at load 2 (one run each): the whole suite
# 7.7 minutes in one process (7.4 CPU minutes), 5.0 in the two of TEST_JOBS=2 (8.0).
# With numba's cache cold, as in CI's fresh clone (each process compiles the kernels it
# uses): 11.5 minutes in two processes; 13.4 with another CPU-bound job beside it.
# The test targets add everything else to the same .venv: torch (the CPU build on a machine
# without an NVIDIA GPU, see TORCH_INDEX), triton, ray, matplotlib, brotli, zstandard,
# constriction (the reference coder the tests compare with), pytest, pytest-xdist, ruff, mypy.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
TORCH_PIN := torch==2.13.0
# Where torch comes from. Without an NVIDIA GPU (no nvidia-smi on PATH) PyTorch's CPU wheel
# index is added as an extra index, so pip takes the CPU build (about 200 MB) instead of the
# CUDA build PyPI serves on Linux (several GB); when that index cannot be reached, pip uses
# its configured indexes alone (a line says so). TORCH_INDEX= turns the CPU index off (e.g.
# with a GPU), TORCH_INDEX=URL names another index.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,$(TORCH_CPU_INDEX))
STAMP := $(VENV)/.installed-coding
STAMP_ALL := $(VENV)/.installed-all

.PHONY: demo test fuzz venv venv-all clean

venv: $(STAMP)
venv-all: $(STAMP_ALL)

# The editable install is setuptools' "compat" mode: a .pth line naming this folder, where the
# default mode imports a finder (pathlib, urllib...) at every Python start (~18 ms CPU of a
# 600-frame `nacc decompress`).  compileall writes nacc's bytecode now, so that runs with
# PYTHONDONTWRITEBYTECODE set do not compile nacc's modules at every start (~55 ms).
EDITABLE := --config-settings editable_mode=compat

$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e . $(EDITABLE)
	$(PY) -m compileall -q nacc
	$(PY) -m nacc.kernels.cpu.aot build || true  # optional: without a compiler nacc uses the JIT
	touch $(STAMP)

$(STAMP_ALL): $(STAMP)
	@extra=""; if [ -n "$(TORCH_INDEX)" ]; then \
	  if $(PY) -c "import urllib.request; urllib.request.urlopen('$(TORCH_INDEX)/torch/', timeout=10)" 2>/dev/null; \
	  then extra="--extra-index-url $(TORCH_INDEX)"; echo "torch: CPU build from $(TORCH_INDEX)"; \
	  else echo "torch: $(TORCH_INDEX) not reachable; pip's configured indexes choose the build"; fi; fi; \
	echo "$(PIP) $$extra $(TORCH_PIN)"; $(PIP) $$extra $(TORCH_PIN)
	$(PIP) -e '.[test,neural,gpu,bench,ray]' $(EDITABLE)
	touch $(STAMP_ALL)

demo: $(STAMP)
	@tmp=$$(mktemp -d) && cp tests/data/commavq_dev.npy $$tmp/clip.npy && \
	echo "== nacc compress (default predictor) on the shipped real commaVQ clip (its prior commavq-v5 saw every frame: not a held-out rate)" && \
	bin/nacc compress -v $$tmp/clip.npy && \
	mv $$tmp/clip.npy $$tmp/original.npy && \
	echo "== nacc decompress" && \
	bin/nacc decompress -v $$tmp/clip.npy.nacc && \
	cmp $$tmp/clip.npy $$tmp/original.npy && echo "== round trip byte-identical" && \
	bin/nacc info $$tmp/clip.npy.nacc && \
	bin/nacc verify $$tmp/original.npy && \
	echo "== a held-out rate: frames 450-599 with the prior commavq-v4, fitted on frames 0-449 only:" && \
	$(PY) -c "import numpy as n; n.save('$$tmp/frames450-599.npy', n.load('tests/data/commavq_dev.npy')[450:])" && \
	bin/nacc verify --param prior=commavq-v4 $$tmp/frames450-599.npy && rm -rf $$tmp

# make test and make check run the tests in TEST_JOBS processes (pytest-xdist, in the test
# extra), each test file whole in one process (--dist loadfile: a module's fixtures are built
# once); TEST_JOBS=auto takes one per core, TEST_JOBS=0 runs them all in make's process.
TEST_JOBS ?= 2
PYTEST := $(PY) -m pytest -q $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile)

test: $(STAMP_ALL)
	$(PYTEST) tests

# the fuzz suite (tests/fuzz.py): every family for a fixed budget with a fixed seed; it fails
# on any traceback, hang, wrong exit code, partial output or round-trip mismatch, and prints
# its figures (failing cases are saved under $(FUZZ_SAVE))
FUZZ_BUDGET ?= 240
FUZZ_SEED ?= 1
FUZZ_SAVE ?= $${TMPDIR:-/tmp}/nacc-fuzz-failures
fuzz: $(STAMP_ALL)
	OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 $(PY) tests/fuzz.py --budget $(FUZZ_BUDGET) \
		--seed $(FUZZ_SEED) --save $(FUZZ_SAVE)

.PHONY: check lint types test-fast
check: lint types test-fast

# Files that lint and types may skip while their owners clean them on a branch: empty, so
# both check everything (ruff: the whole tree; mypy: nacc/).
PENDING :=
_empty :=
_space := $(_empty) $(_empty)
_comma := ,

lint: $(STAMP_ALL)
	$(VENV)/bin/ruff check . $(if $(PENDING),--extend-exclude '$(subst $(_space),$(_comma),$(strip $(PENDING)))')

# a pending module imported by a checked one is still read, its errors silenced
types: $(STAMP_ALL)
	$(VENV)/bin/mypy $(if $(PENDING),--follow-imports=silent --exclude '^($(subst $(_space),|,$(strip $(PENDING))))')

test-fast: $(STAMP_ALL)
	$(PYTEST) -m "not slow" tests

clean:
	rm -rf $(VENV) build *.egg-info
