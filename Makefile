# Two commands do everything on a fresh Linux machine with Python 3.11 and pip:
#   make lab    - JupyterLab on notebooks/ (offline, shipped data)
#   make test   - unit tests + every notebook under nbval + widget and browser checks, then the
#                 portability gates (every notebook again under another BLAS kernel and with 2 threads)
# Both create .venv on first use and reuse it afterwards.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test test-fast test-portability notebooks student html bench venv clean

# One BLAS thread per process: the course's matrices are small (threads cost more than they give),
# pytest runs two notebooks at a time, and the same thread count everywhere (lab, tests, committed
# outputs) keeps printed numbers identical run to run.
ONE_THREAD := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

lab: $(STAMP)
	$(ONE_THREAD) $(VENV)/bin/jupyter lab --notebook-dir=notebooks

test: test-fast test-portability

# Unit tests and every notebook, on this machine's BLAS kernel with one thread.
test-fast: $(STAMP) student
	$(ONE_THREAD) $(PY) -m pytest

# The portability gates: a checked output or an assertion that holds only on the machine that
# executed the notebook is a bug. Every notebook runs again (a) under OpenBLAS's Sandybridge
# kernels (AVX, on every x86-64 CPU since 2011; they round differently from the Haswell, Zen
# and SkylakeX kernels) and (b) with two BLAS threads (one pytest worker: two workers with two
# threads each would oversubscribe two cores).
# Idle BLAS threads sleep instead of spinning (numerics unchanged): two spinning threads per kernel
# on a shared 2-core machine slowed single notebooks from one minute to twenty.
IDLE_SLEEPS := OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4

test-portability: $(STAMP)
	OPENBLAS_CORETYPE=Sandybridge $(ONE_THREAD) $(PY) -m pytest -p no:cacheprovider notebooks
	OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 $(IDLE_SLEEPS) $(PY) -m pytest -p no:cacheprovider -n 1 notebooks

# Re-execute every chapter in place (outputs committed, widget state stripped).
notebooks: $(STAMP)
	$(ONE_THREAD) $(PY) -m tools.execute_notebooks notebooks/*.ipynb

# Student copies (solutions replaced by stubs) into student/.
student: $(STAMP)
	$(PY) -m tools.make_student notebooks student

# The executed course as static HTML with a table of contents, into build/html/.
html: $(STAMP)
	$(PY) -m tools.export_html notebooks build/html

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_explorers.py

clean:
	rm -rf build student .pytest_cache
