"""The nbgrader course tree written by tools/make_nbgrader.py: a real nbgrader grades it.

A solved submission (the instructor's notebook) gets full marks, the released student version
(stubs) gets zero. Chapter 03 is graded: it executes in about a second.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tools._common import ToolError
from tools.make_nbgrader import make_nbgrader, nbgrader_notebook
from tools.make_student import stub_source

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _solution(source="# Exercise 1.1: square\ndef f(x):\n    # BEGIN SOLUTION\n    return x * x\n    # END SOLUTION"):
    return new_code_cell(source, metadata={"tags": ["solution"]})


def test_every_exercise_becomes_a_solution_cell_and_its_checker_a_graded_test(tmp_path):
    result = make_nbgrader(NOTEBOOKS, tmp_path)
    chapters = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert len(result) >= 9 and all(ids for ids in result.values())
    for name in chapters:
        assignment = "ch" + name[:2]
        if assignment not in result:
            continue
        nb = nbformat.read(tmp_path / "source" / assignment / name, as_version=4)
        meta = [c.metadata.get("nbgrader") for c in nb.cells if c.metadata.get("nbgrader")]
        solutions = [m for m in meta if m["solution"]]
        tests = [m for m in meta if m["grade"]]
        assert len(solutions) == len(tests) == len(result[assignment]), name
        assert all(m["points"] == 1 and m["locked"] for m in tests)
        assert len({m["grade_id"] for m in meta}) == len(meta), f"{name}: grade ids must be unique"
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert not any("remove-student" in c.metadata.get("tags", []) for c in nb.cells)


def test_a_solution_without_a_checker_is_refused():
    nb = new_notebook(cells=[new_markdown_cell("# 01"), _solution()])
    with pytest.raises(ToolError, match="no checker"):
        nbgrader_notebook(nb, "01_x.ipynb")
    nb = new_notebook(cells=[_solution(), new_markdown_cell("text"), new_code_cell("assert f(2) == 4")])
    with pytest.raises(ToolError, match="must be its checker"):
        nbgrader_notebook(nb, "01_x.ipynb")


def test_two_cells_of_one_exercise_are_refused():
    nb = new_notebook(cells=[_solution(), new_code_cell("assert f(2) == 4"), _solution(), new_code_cell("pass")])
    with pytest.raises(ToolError, match="second cell for Exercise 1.1"):
        nbgrader_notebook(nb, "01_x.ipynb")


def test_an_instructor_course_directory_is_never_overwritten(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    with pytest.raises(ToolError, match="refusing to overwrite"):
        make_nbgrader(NOTEBOOKS, tmp_path)


def test_make_student_accepts_nbgrader_markers():
    source = "# Exercise 2.1: x\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert stub_source(source, "here") == ('# Exercise 2.1: x\ndef f():\n'
                                           '    raise NotImplementedError("Exercise 2.1")\n')


def _nbgrader(course: Path, *args: str) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_nbgrader_gives_full_marks_to_a_solved_and_zero_to_a_blank_submission(tmp_path):
    pytest.importorskip("nbgrader")
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    make_nbgrader(NOTEBOOKS, course)
    _nbgrader(course, "generate_assignment", "ch03", "--force")
    released = course / "release" / "ch03" / "03_bn_backward.ipynb"
    text = released.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "YOUR CODE HERE" in text
    for student, src in (("solver", course / "source"), ("blank", course / "release")):
        dst = course / "submitted" / student / "ch03"
        dst.mkdir(parents=True)
        shutil.copy(src / "ch03" / "03_bn_backward.ipynb", dst)
    _nbgrader(course, "autograde", "ch03", "--create")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        solved = gradebook.find_submission("ch03", "solver")
        blank = gradebook.find_submission("ch03", "blank")
        assert solved.max_score >= 3
        assert solved.score == solved.max_score
        assert blank.score == 0
