"""Every student copy runs up to its first exercise stub, and stops exactly there.

For each ``notebooks/*.ipynb`` the student copy is generated into a temporary
folder and executed from the real ``notebooks/`` folder (so ``../data`` and
friends resolve).  A chapter with exercises must fail with
``NotImplementedError("Exercise X.Y")`` of its first exercise, and nothing
before that exercise may fail: otherwise students would meet a broken cell
(a solution leaking into later cells, a setup cell depending on an answer)
before they reach the work we ask of them.  A chapter without exercises must
run to the end.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``pytest`` (not ``python -m pytest``) leaves the root off the path
    sys.path.insert(0, str(ROOT))

from tools.execute_notebooks import kernel_env, make_client  # noqa: E402
from tools.make_student import make_student_notebook  # noqa: E402

NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300


@pytest.mark.slow
@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_student_copy_stops_at_its_first_exercise(source, tmp_path):
    student_path = tmp_path / source.name
    exercises = make_student_notebook(source, student_path)
    nb = nbformat.read(str(student_path), as_version=4)

    started: list[int] = []
    client = make_client(nb, cwd=NOTEBOOKS_DIR, timeout=CELL_TIMEOUT)
    client.on_cell_start = lambda cell, cell_index, **_: started.append(cell_index)
    error = None
    try:
        client.execute(env=kernel_env())
    except CellExecutionError as exc:
        error = exc  # asserted on below, outside the handler, to keep the report short

    if error is None:
        assert not exercises, (
            f"{source.name}: the student copy ran to the end, but it has exercises "
            f"({', '.join(e.exercise_id for e in exercises)}); the first stub should have "
            f"raised NotImplementedError('Exercise {exercises[0].exercise_id}').")
        return

    failed_at = started[-1]
    where = (f"{source.name}: the student copy failed at cell {failed_at}:\n"
             f"{_shorten(nb.cells[failed_at].source)}\n{error.ename}: {_plain(error.evalue)}")
    if not exercises:
        pytest.fail(f"{where}\n(the notebook has no exercises, so it must run to the end)",
                    pytrace=False)
    first = exercises[0]
    if failed_at < first.cell_index:
        pytest.fail(f"{where}\nThis cell comes before the first exercise (Exercise "
                    f"{first.exercise_id}, cell {first.cell_index}), so it must run without "
                    "any solution.", pytrace=False)
    if (error.ename, error.evalue) != ("NotImplementedError", f"Exercise {first.exercise_id}"):
        pytest.fail(f"{where}\nExpected NotImplementedError('Exercise {first.exercise_id}') "
                    "from the first exercise's stub.", pytrace=False)


def _plain(text: str) -> str:
    """Without the ANSI colour codes of IPython tracebacks."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(text))


def _shorten(source: str, lines: int = 8) -> str:
    head = source.splitlines()[:lines]
    return "\n".join("    " + line for line in head) + ("\n    ..." if len(source.splitlines()) > lines else "")


def test_notebooks_dir_exists():
    """The parametrised test above silently collects nothing if the folder moved."""
    assert NOTEBOOKS_DIR.is_dir(), f"{NOTEBOOKS_DIR} is missing"
