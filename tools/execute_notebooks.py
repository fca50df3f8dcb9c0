"""Execute notebooks in place, keeping outputs and making the diffs small and stable.

Usage::

    python -m tools.execute_notebooks [--exitfirst] NOTEBOOK.ipynb [NOTEBOOK.ipynb ...]

Each notebook runs top to bottom in a fresh ``python3`` kernel of the Python
running this tool (the project's environment, whatever other kernels are
installed), with the notebook's folder as working directory so relative paths
such as ``../data`` work exactly as in JupyterLab.  Outputs (figures included)
and execution counts are kept; widget state and per-cell timing metadata are
removed because they change on every run.

A notebook is written back only when every cell succeeded, through a
temporary file and a rename: a failing or interrupted run never replaces the
last good version.  Cells tagged ``raises-exception`` may raise, as in nbval
and JupyterLab.  The exit status is 1 when any notebook failed; the message
names the notebook, the failing cell's index (counting from 0) and its first
line.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from tools._common import (
    ToolError,
    first_line,
    notebook_text,
    read_notebook,
    strip_volatile_metadata,
    write_atomic,
)

#: Seconds a single cell may run before the execution is abandoned.
CELL_TIMEOUT = 600
KERNEL_NAME = "python3"


class _CurrentEnvKernelSpecs(KernelSpecManager):
    """Always answer with ipykernel's spec for *this* interpreter.

    A ``python3`` kernelspec in ``~/.local/share/jupyter`` (or a conda base
    environment) would otherwise win the lookup and run the notebooks with a
    different Python and different packages than the ones under test.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        from ipykernel.kernelspec import RESOURCES, get_kernel_dict

        return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())


def kernel_env() -> dict[str, str]:
    """Environment for the kernel: ours, minus ``MPLBACKEND``, plus ``TQDM_DISABLE=1`` and one BLAS thread.

    ``MPLBACKEND`` is dropped because a headless value such as ``Agg`` (set by
    test runners and CI) would stop the inline backend and so lose every figure
    from the committed outputs.  ``TQDM_DISABLE`` keeps progress bars, whose
    text changes on every run, out of the outputs.
    """
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env["TQDM_DISABLE"] = "1"
    # one BLAS thread, as under `make test`: the committed numbers then match what nbval recomputes,
    # and small matrix products do not stall when other work shares the cores
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


class NotebookFailed(ToolError):
    """A cell raised (or timed out, or the kernel died) while executing a notebook."""

    def __init__(self, path: Path, cell_index: int | None, cell_source: str, reason: str):
        self.path = Path(path)
        self.cell_index = cell_index
        self.reason = reason
        where = "before the first cell ran" if cell_index is None else (
            f"cell index {cell_index} (counting from 0): {first_line(cell_source)}")
        super().__init__(f"{self.path}: execution failed at {where}\n{reason}")


def make_client(nb: nbformat.NotebookNode, cwd: Path, timeout: int = CELL_TIMEOUT,
                allow_errors: bool = False) -> NotebookClient:
    """An nbclient client that runs ``nb`` in this environment's Python with ``cwd`` as folder.

    ``store_widget_state`` and ``record_timing`` are off: both only add
    metadata that churns on every run.
    """
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_CurrentEnvKernelSpecs())
    return NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        allow_errors=allow_errors,
        store_widget_state=False,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )


def run_notebook(nb: nbformat.NotebookNode, cwd: Path, timeout: int = CELL_TIMEOUT,
                 path: Path | None = None) -> nbformat.NotebookNode:
    """Execute ``nb`` in place (outputs, execution counts) and return it.

    Raises :class:`NotebookFailed` naming the failing cell.  ``path`` is only
    used in that message.
    """
    client = make_client(nb, cwd, timeout)
    current: dict[str, int] = {}

    def remember(cell, cell_index, **_):
        current["index"] = cell_index

    client.on_cell_start = remember
    label = path if path is not None else Path("<notebook>")
    try:
        client.execute(env=kernel_env())
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        index = current.get("index")
        source = nb.cells[index].source if index is not None else ""
        if isinstance(exc, CellTimeoutError):
            reason = f"the cell ran longer than the {timeout} s limit"
        elif isinstance(exc, DeadKernelError):
            reason = "the kernel died (out of memory, or a crash in compiled code?)"
        else:
            reason = _error_summary(exc)
        raise NotebookFailed(label, index, source, reason) from exc
    return nb


def _error_summary(exc: CellExecutionError) -> str:
    """``ExceptionName: message`` plus the traceback nbclient captured (colours removed)."""
    text = str(exc)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # ANSI colours from IPython tracebacks
    return text.strip()


def execute_notebook(path: Path, timeout: int = CELL_TIMEOUT) -> float:
    """Execute the notebook at ``path`` and save it over itself on success.

    Returns the wall time in seconds.  On failure the file is left exactly as
    it was and :class:`NotebookFailed` is raised.
    """
    path = Path(path)
    if not path.is_file():
        raise ToolError(f"{path}: no such notebook")
    nb = read_notebook(path)
    start = time.perf_counter()
    run_notebook(nb, cwd=path.resolve().parent, timeout=timeout, path=path)
    elapsed = time.perf_counter() - start
    # nbval and JupyterLab pick the kernel from this; JupyterLab writes the same.
    nb.metadata.setdefault("kernelspec", {
        "display_name": "Python 3 (ipykernel)", "language": "python", "name": KERNEL_NAME})
    strip_volatile_metadata(nb)
    nbformat.validate(nb)
    write_atomic(path, notebook_text(nb))
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.execute_notebooks",
        description="Execute notebooks in place (outputs kept, widget state and timings removed).")
    parser.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK.ipynb")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT,
                        help=f"seconds per cell (default {CELL_TIMEOUT})")
    parser.add_argument("-x", "--exitfirst", action="store_true",
                        help="stop at the first failing notebook")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if path.suffix != ".ipynb":
            parser.error(f"{path} is not a .ipynb notebook")
        if not path.is_file():
            parser.error(f"{path}: no such notebook")

    failures: list[str] = []
    attempted = 0
    total = time.perf_counter()
    for path in args.notebooks:
        attempted += 1
        print(f"executing {path} ...", flush=True)
        try:
            elapsed = execute_notebook(path, timeout=args.timeout)
        except ToolError as exc:
            print(f"FAILED {exc}\n(the file was not changed)", file=sys.stderr, flush=True)
            failures.append(str(path))
            if args.exitfirst:
                break
            continue
        print(f"  ok   {path}  {elapsed:7.1f} s", flush=True)
    print(f"{attempted} notebook(s), {len(failures)} failed, in {time.perf_counter() - total:.1f} s", flush=True)
    if failures:
        print("failed: " + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
