# Entry points on a fresh machine: `make demo`, `make check` (ruff, mypy and the fast tests,
# under 2 minutes; `make -k check` runs all three even when one fails) and `make test`
# (every test). Each creates .venv and installs the pinned dependencies first. torch is
# pinned to the CPU build found on this project's machines (an unpinned torch pulls a
# multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test fuzz venv clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,neural,gpu,bench,ray]'
	$(PY) -m nacc.kernels.cpu.aot build || true  # optional: without a compiler nacc uses the JIT
	touch $(STAMP)

demo: $(STAMP)
	@tmp=$$(mktemp -d) && cp tests/data/commavq_dev.npy $$tmp/clip.npy && \
	echo "== nacc compress (default predictor) on the shipped real commaVQ clip (its prior saw frames 0-449: not a held-out rate)" && \
	bin/nacc compress -v $$tmp/clip.npy && \
	mv $$tmp/clip.npy $$tmp/original.npy && \
	echo "== nacc decompress" && \
	bin/nacc decompress -v $$tmp/clip.npy.nacc && \
	cmp $$tmp/clip.npy $$tmp/original.npy && echo "== round trip byte-identical" && \
	bin/nacc info $$tmp/clip.npy.nacc && \
	bin/nacc verify $$tmp/original.npy && \
	echo "== the default cm prior was fitted on frames 0-449 of this clip; the honest rate is on 450-599:" && \
	$(PY) -c "import numpy as n; n.save('$$tmp/frames450-599.npy', n.load('tests/data/commavq_dev.npy')[450:])" && \
	bin/nacc verify $$tmp/frames450-599.npy && rm -rf $$tmp

test: $(STAMP)
	$(PY) -m pytest -q tests

# the fuzz suite (tests/fuzz.py): every family for a fixed budget with a fixed seed; it fails
# on any traceback, hang, wrong exit code, partial output or round-trip mismatch, and prints
# its figures (failing cases are saved under $(FUZZ_SAVE))
FUZZ_BUDGET ?= 240
FUZZ_SEED ?= 1
FUZZ_SAVE ?= $${TMPDIR:-/tmp}/nacc-fuzz-failures
fuzz: $(STAMP)
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

lint: $(STAMP)
	$(VENV)/bin/ruff check . $(if $(PENDING),--extend-exclude '$(subst $(_space),$(_comma),$(strip $(PENDING)))')

# a pending module imported by a checked one is still read, its errors silenced
types: $(STAMP)
	$(VENV)/bin/mypy $(if $(PENDING),--follow-imports=silent --exclude '^($(subst $(_space),|,$(strip $(PENDING))))')

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) build *.egg-info
