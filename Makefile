# Two commands do everything on a fresh Linux machine with Python 3.11 and pip:
#   make lab    - JupyterLab on notebooks/ (offline, shipped data)
#   make test   - unit tests + every notebook under nbval + widget and browser checks
# Both create .venv on first use and reuse it afterwards.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test notebooks student html bench venv clean

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

test: $(STAMP) student
	$(ONE_THREAD) $(PY) -m pytest

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
