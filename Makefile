# Two commands do everything on a fresh Linux machine with Python 3.10+ and pip:
#   make lab    - JupyterLab on notebooks/ (offline, shipped data); installs only what a learner needs
#   make test   - lint, unit tests + every notebook under nbval + widget and browser checks, every
#                 notebook under the GPU stand-in, the portability gates (every notebook again under
#                 another BLAS kernel and with 2 threads), and the wheel installed in a fresh venv
# Both create .venv on first use and reuse it afterwards.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# $(STAMP): the development install (`.[dev]`); $(LAB_STAMP): the learner's (`.[lab]`), or the
# development one reused when it is already there.
STAMP     := $(VENV)/.installed
LAB_STAMP := $(VENV)/.installed-lab
# `make lab NO_INSTALL=1 VENV=/some/venv` starts JupyterLab from an existing venv without installing
# anything (the test of `make lab` uses it); LAB_ARGS adds options (e.g. --no-browser --port=8899).
NO_INSTALL ?=
LAB_ARGS   ?=
# JupyterLab refuses to run as root (Docker, WSL, cloud VMs) unless told it may.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test test-fast test-standin test-portability lint notebooks student nbgrader html html-solutions \
        bench bench-gpu venv clean

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

# The learner's environment: course_lib and its runtime dependencies plus JupyterLab (no test tools).
$(LAB_STAMP): pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then \
	  echo "make lab: using the development environment in $(VENV)"; \
	else \
	  echo "make lab: first run: creating $(VENV) with course_lib, numpy, matplotlib, ipywidgets and"; \
	  echo "          JupyterLab (pip install -e '.[lab]'; a minute or two; later runs start at once)"; \
	  $(PYTHON) -m venv $(VENV) && \
	  $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -e ".[lab]"; \
	fi
	@touch $@

lab: $(if $(NO_INSTALL),,$(LAB_STAMP))
	$(ONE_THREAD) $(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT) $(LAB_ARGS)

test: lint test-fast test-standin test-portability

# ruff (rules and line length in pyproject.toml), over the library, tools, tests and notebooks.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

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

# The GPU path without a GPU: every notebook under the stand-in backend (numpy that fails where cupy
# fails: a numpy array where a device array is needed, an implicit device-to-host copy).
test-standin: $(STAMP)
	COURSE_LIB_DEVICE=standin $(ONE_THREAD) $(PY) -m pytest -p no:cacheprovider notebooks

test-portability: $(STAMP)
	OPENBLAS_CORETYPE=Sandybridge $(ONE_THREAD) $(PY) -m pytest -p no:cacheprovider notebooks
	OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 $(IDLE_SLEEPS) $(PY) -m pytest -p no:cacheprovider -n 1 notebooks

# Re-execute every chapter in place (outputs committed, widget state stripped).
notebooks: $(STAMP)
	$(ONE_THREAD) $(PY) -m tools.execute_notebooks notebooks/*.ipynb

# Student copies (solutions replaced by stubs) into student/.
student: $(STAMP)
	$(PY) -m tools.make_student notebooks student

# An nbgrader course directory into nbgrader/: one assignment per chapter, each exercise a solution
# cell and its checker an autograded 1-point test (see docs/instructor_guide.md, "Grading with nbgrader").
nbgrader: $(STAMP)
	$(PY) -m tools.make_nbgrader notebooks nbgrader

# The executed course as static HTML with a table of contents, readable offline (MathJax copied
# next to the pages): build/html/ shows what a learner gets (exercises as stubs, the solutions
# nowhere); build/html-solutions/ is the instructors' version.
html: $(STAMP)
	$(PY) -m tools.export_html notebooks build/html

html-solutions: $(STAMP)
	$(PY) -m tools.export_html --solutions notebooks build/html-solutions

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_explorers.py

# On a machine with a GPU (after pip install -e ".[gpu]"): W1, W2 and one full epoch of Source A's
# 15-layer BN net at width 1000, course_lib on cupy.
bench-gpu: $(STAMP)
	$(PY) benchmarks/bench_core.py --device gpu

clean:
	rm -rf build student nbgrader .pytest_cache
