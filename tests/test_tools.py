"""Tests of the notebook tools (tools/) on small synthetic notebooks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``pytest`` (not ``python -m pytest``) leaves the root off the path
    sys.path.insert(0, str(ROOT))

from tools import execute_notebooks, export_html, make_student  # noqa: E402
from tools._common import WIDGET_STATE_MIME, WIDGET_VIEW_MIME, ToolError  # noqa: E402

# A 1x1 PNG: the static fallback the explorers store next to a widget view.
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def write(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def code(source: str, tags=(), **metadata):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    cell.metadata.update(metadata)
    return cell


# --------------------------------------------------------------------------- execute_notebooks

def test_execute_fills_outputs_and_strips_volatile_metadata(tmp_path, monkeypatch, capsys):
    # A headless backend in the caller's environment must not cost the notebook its figures.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    nb = new_notebook(cells=[
        new_markdown_cell("# Title"),
        code("import os\nprint(os.environ.get('TQDM_DISABLE'), os.getcwd())",
             execution={"iopub.execute_input": "2020-01-01T00:00:00Z"}),
        code("import matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.show()"),
        code("import ipywidgets\nipywidgets.IntSlider()"),
    ])
    nb.metadata["widgets"] = {WIDGET_STATE_MIME: {"state": {"abc": {}}, "version_major": 2}}
    nb.metadata["language_info"] = {"name": "python", "version": "3.0.0"}
    path = write(tmp_path / "sub" / "nb.ipynb", nb)

    assert execute_notebooks.main([str(path)]) == 0
    assert "nb.ipynb" in capsys.readouterr().out  # per-notebook wall time line

    done = nbformat.read(str(path), as_version=4)
    cells = done.cells
    assert [c.execution_count for c in cells[1:]] == [1, 2, 3]
    printed = cells[1].outputs[0].text.split()
    assert printed == ["1", str(path.parent)]  # TQDM_DISABLE=1, cwd = notebook's folder
    assert any("image/png" in o.get("data", {}) for o in cells[2].outputs)
    assert WIDGET_VIEW_MIME in cells[3].outputs[0].data
    assert "widgets" not in done.metadata
    assert "version" not in done.metadata.get("language_info", {})
    assert done.metadata.kernelspec.name == "python3"
    assert all("execution" not in c.metadata for c in cells)
    nbformat.validate(done)


def test_failing_notebook_keeps_the_original_and_exits_nonzero(tmp_path, capsys):
    nb = new_notebook(cells=[code("x = 1"), code("y = 2"), code("1 / 0  # boom"), code("z = 3")])
    path = write(tmp_path / "broken.ipynb", nb)
    before = path.read_bytes()

    assert execute_notebooks.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "broken.ipynb" in err
    assert "cell index 2" in err and "1 / 0  # boom" in err
    assert "ZeroDivisionError" in err
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["broken.ipynb"]  # no temporary files left


# --------------------------------------------------------------------------- make_student

SOLUTION_SOURCE = '''\
# Exercise 3.2: simplified backward
import numpy as np

def bn_backward(dout, cache):
    """Docstring stays."""
    x_hat, gamma = cache
    # BEGIN SOLUTION
    dbeta = dout.sum(axis=0)
    return dbeta
    # END SOLUTION

# BEGIN SOLUTION
answer = 42
# END SOLUTION
print("after")'''

STUB_SOURCE = '''\
# Exercise 3.2: simplified backward
import numpy as np

def bn_backward(dout, cache):
    """Docstring stays."""
    x_hat, gamma = cache
    raise NotImplementedError("Exercise 3.2")

raise NotImplementedError("Exercise 3.2")
print("after")'''


def course_notebook():
    out = new_output("execute_result", data={"text/plain": "3"}, execution_count=7)
    setup = code("a = 1 + 2\na")
    setup.outputs = [out]
    setup.execution_count = 7
    return new_notebook(cells=[
        new_markdown_cell("# Chapter"),
        setup,
        code(SOLUTION_SOURCE, tags=["solution", "keep-me"]),
        new_markdown_cell("Worked answer: 42", metadata={"tags": ["remove-student"]}),
        code("print('instructor only')", tags=["remove-student"]),
        code("assert True  # checker"),
    ])


def test_student_copy_stubs_solutions_and_drops_instructor_cells(tmp_path):
    src = tmp_path / "src"
    write(src / "03_backward.ipynb", course_notebook())
    result = make_student.make_student(src, tmp_path / "student")

    nb = nbformat.read(str(tmp_path / "student" / "03_backward.ipynb"), as_version=4)
    sources = [c.source for c in nb.cells]
    assert sources == ["# Chapter", "a = 1 + 2\na", STUB_SOURCE, "assert True  # checker"]
    assert nb.cells[2].metadata.tags == ["exercise", "keep-me"]
    assert all(c.outputs == [] and c.execution_count is None
               for c in nb.cells if c.cell_type == "code")
    assert result == {"03_backward.ipynb": [make_student.Exercise("03_backward.ipynb", 2, "3.2")]}
    readme = (tmp_path / "student" / "README.md").read_text()
    assert "generated" in readme and "do not edit" in readme
    compile(STUB_SOURCE, "stub", "exec")  # the stub is valid Python


def test_student_copy_is_idempotent_and_removes_stale_copies(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "student"
    write(src / "01_a.ipynb", course_notebook())
    write(src / "02_b.ipynb", new_notebook(cells=[code("print(1)")]))
    make_student.make_student(src, dst)
    first = {p.name: p.read_bytes() for p in dst.iterdir()}
    (src / "02_b.ipynb").unlink()
    assert make_student.main([str(src), str(dst)]) == 0
    second = {p.name: p.read_bytes() for p in dst.iterdir()}
    assert set(second) == {"01_a.ipynb", "README.md"}
    assert second["01_a.ipynb"] == first["01_a.ipynb"]


@pytest.mark.parametrize("source, message", [
    ("# Exercise 1.1\nx = 1", "has no '# BEGIN SOLUTION'"),
    ("# Exercise 1.1\n# BEGIN SOLUTION\nx = 1", "never closed"),
    ("# Exercise 1.1\nx = 1\n# END SOLUTION", "without a matching"),
    ("# Exercise 1.1\n# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "cannot nest"),
    ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "no '# Exercise X.Y'"),
    ("# Exercise 1.1\n#BEGIN SOLUTION\nx = 1\n# END SOLUTION", "looks like a solution marker"),
])
def test_bad_solution_cells_are_errors_naming_notebook_and_cell(tmp_path, source, message):
    src = tmp_path / "src"
    write(src / "05_limits.ipynb",
          new_notebook(cells=[new_markdown_cell("# T"), code(source, tags=["solution"])]))
    with pytest.raises(ToolError) as info:
        make_student.make_student(src, tmp_path / "student")
    assert "05_limits.ipynb, cell 1" in str(info.value)
    assert message in str(info.value)
    assert not (tmp_path / "student").exists()  # nothing written


def test_markers_in_an_untagged_cell_are_an_error(tmp_path, capsys):
    src = tmp_path / "src"
    write(src / "x.ipynb", new_notebook(cells=[
        code("# Exercise 2.1\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION")]))
    assert make_student.main([str(src), str(tmp_path / "student")]) == 1
    err = capsys.readouterr().err
    assert "x.ipynb, cell 0" in err and "not tagged 'solution'" in err


def test_make_student_refuses_to_overwrite_sources_or_foreign_folders(tmp_path):
    src = tmp_path / "src"
    write(src / "a.ipynb", new_notebook(cells=[code("1")]))
    with pytest.raises(ToolError, match="same folder"):
        make_student.make_student(src, src)
    foreign = tmp_path / "mine"
    write(foreign / "precious.ipynb", new_notebook())
    with pytest.raises(ToolError, match="refusing"):
        make_student.make_student(src, foreign)
    assert (foreign / "precious.ipynb").exists()


def test_make_student_cli_reports_errors(tmp_path):
    src = tmp_path / "src"
    write(src / "bad.ipynb", new_notebook(cells=[code("x = 1", tags=["solution"])]))
    proc = subprocess.run([sys.executable, "-m", "tools.make_student", str(src),
                           str(tmp_path / "student")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "bad.ipynb, cell 0" in proc.stderr


# --------------------------------------------------------------------------- export_html

def widget_output():
    return new_output("display_data", data={
        WIDGET_VIEW_MIME: {"model_id": "0123abcd", "version_major": 2, "version_minor": 0},
        "image/png": PNG_1x1,
        "text/plain": "VBox(children=(IntSlider(value=0),))",
    })


def executed(cells):
    for i, cell in enumerate(cells, start=1):
        if cell.cell_type == "code":
            cell.execution_count = i
    return new_notebook(cells=cells)


def test_export_html_index_navigation_and_png_fallback(tmp_path, capsys):
    src, out = tmp_path / "nbs", tmp_path / "html"
    slider = code("explorer()")
    slider.outputs = [widget_output()]
    plain_widget = code("ipywidgets.IntSlider()")
    plain_widget.outputs = [new_output("execute_result", execution_count=3, data={
        WIDGET_VIEW_MIME: {"model_id": "ffff", "version_major": 2, "version_minor": 0},
        "text/plain": "IntSlider(value=0)"})]
    write(src / "02_forward.ipynb", executed([
        new_markdown_cell("# 02 BN forward\n\nIntro.\n\n## Train mode\n\ntext\n\n### Detail"),
        slider, plain_widget,
        new_markdown_cell("## Eval mode")]))
    write(src / "01_init.ipynb", executed([new_markdown_cell("# 01 Initialisation"),
                                           code("1")]))
    write(src / "03_backward.ipynb", executed([new_markdown_cell("Some text\n\n# 03 Backward")]))
    (out).mkdir()
    (out / "old.html").write_text(f"<html>{export_html.GENERATOR_MARKER}</html>")
    (out / "notes.html").write_text("<html>hand-written</html>")

    assert export_html.main([str(src), str(out)]) == 0
    index = (out / "index.html").read_text()
    links = [line.split('"')[1] for line in index.split("<li class=\"chapter\"><a href=")[1:]]
    assert links == ["01_init.html", "02_forward.html", "03_backward.html"]
    for title in ("01 Initialisation", "02 BN forward", "03 Backward"):
        assert title in index
    assert index.index('href="02_forward.html#Train-mode"') < index.index(
        'href="02_forward.html#Eval-mode"')
    assert "Detail" not in index  # only "##" sections are listed

    page = (out / "02_forward.html").read_text()
    assert "<title>02 BN forward</title>" in page
    assert page.count('href="01_init.html"') == 2 and page.count('href="03_backward.html"') == 2
    assert page.count('href="index.html"') == 2
    assert 'id="Train-mode"' in page
    assert WIDGET_VIEW_MIME not in page  # the widget view could not render without state
    assert PNG_1x1 in page
    assert export_html.STATIC_WIDGET_NOTE in page
    first = (out / "01_init.html").read_text()
    assert 'rel="prev"' not in first and 'href="02_forward.html"' in first

    assert not (out / "old.html").exists()  # stale generated page removed
    assert (out / "notes.html").exists()  # foreign file kept
    assert "3 chapter(s)" in capsys.readouterr().out


def test_widget_view_with_saved_state_and_no_png_is_kept():
    cell = code("w")
    cell.outputs = [new_output("display_data", data={
        WIDGET_VIEW_MIME: {"model_id": "m1", "version_major": 2, "version_minor": 0},
        "text/plain": "IntSlider()"})]
    nb = new_notebook(cells=[cell])
    nb.metadata["widgets"] = {WIDGET_STATE_MIME: {"state": {"m1": {}}}}
    assert WIDGET_VIEW_MIME in export_html.static_widget_outputs(nb).cells[0].outputs[0].data
    del nb.metadata["widgets"]
    fixed = export_html.static_widget_outputs(nb)
    assert fixed.cells[0].outputs[0].data == {"text/plain": export_html.STATIC_WIDGET_NOTE}
    assert WIDGET_VIEW_MIME in nb.cells[0].outputs[0].data  # the input is not modified


def test_export_html_errors_on_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert export_html.main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 1


# --------------------------------------------------------------------------- full_scale progress
def _tiny_splits():
    import types

    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 20)).astype(np.float32)
    y = rng.integers(0, 10, 120)
    return types.SimpleNamespace(x_train=x[:80], y_train=y[:80], x_val=x[80:100], y_val=y[80:100],
                                 x_test=x[100:], y_test=y[100:])


def test_full_scale_shows_a_progress_bar_over_all_epochs(monkeypatch, capsys):
    from tools import full_scale
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(full_scale, "load_mnist", lambda *a, **k: _tiny_splits())
    assert full_scale.main(["--dataset", "fashion-mnist", "--epochs", "2", "--width", "8", "--depths", "2", "3",
                            "--batch-size", "40"]) == 0
    captured = capsys.readouterr()
    assert "full scale" in captured.err and "8/8" in captured.err  # 2 depths x (plain, BN) x 2 epochs
    assert captured.out.count("epoch 2:") == 4  # the per-epoch lines stay on stdout, for log files
    assert "| 3 layers, BN |" in captured.out

    assert full_scale.main(["--dataset", "fashion-mnist", "--epochs", "1", "--width", "8", "--depths", "2",
                            "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "full scale" not in captured.err and "epoch 1:" not in captured.out


# --------------------------------------------------------------------------- install_cell
def _chapter():
    return new_notebook(cells=[new_markdown_cell("# 01 — Title\n\nText $x^2$."),
                               code("%matplotlib inline\nimport numpy as np"),
                               code("# Exercise 1.1: add\ndef add(a, b):\n    # BEGIN SOLUTION\n"
                                    "    return a + b\n    # END SOLUTION", tags=["solution"]),
                               code("print(add(1, 2))")])


def test_install_cell_inserts_badges_and_guard_idempotently(tmp_path):
    from tools import install_cell
    path = write(tmp_path / "nbs" / "01_x.ipynb", _chapter())
    url = "https://github.com/someone/course"
    assert install_cell.main([str(path.parent), "--repository", url, "--check"]) == 1  # not current yet
    assert install_cell.main([str(path.parent), "--repository", url]) == 0
    text = path.read_text()
    assert install_cell.main([str(path.parent), "--repository", url]) == 0
    assert path.read_text() == text  # idempotent
    assert install_cell.main([str(path.parent), "--repository", url, "--check"]) == 0
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].metadata.tags == [install_cell.BADGE_TAG]
    assert "colab.research.google.com/github/someone/course/blob/main/notebooks/01_x.ipynb" in nb.cells[0].source
    assert "mybinder.org/v2/gh/someone/course/main?labpath=notebooks%2F01_x.ipynb" in nb.cells[0].source
    assert nb.cells[1].source.startswith("# 01")  # the title stays the first heading
    assert nb.cells[2].metadata.tags == [install_cell.INSTALL_TAG]  # the first code cell
    assert "git+https://github.com/someone/course" in nb.cells[2].source
    assert [c.source for c in nb.cells[3:]] == [c.source for c in _chapter().cells[1:]]

    # a new URL updates the cells in place; a stale output of the guard is dropped; no duplicates
    nb.cells[2].outputs = [new_output("stream", name="stdout", text="Successfully installed\n")]
    nb.cells.append(copy_of(nb.cells[2]))
    write(path, nb)
    assert install_cell.main([str(path.parent), "--repository", url + "2"]) == 0
    nb = nbformat.read(str(path), as_version=4)
    assert sum(install_cell.INSTALL_TAG in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert nb.cells[2].outputs == [] and "course2" in nb.cells[2].source and "course2" in nb.cells[0].source

    # the student copy keeps both cells and still stubs the exercise
    assert make_student.main([str(path.parent), str(tmp_path / "student")]) == 0
    student = nbformat.read(str(tmp_path / "student" / "01_x.ipynb"), as_version=4)
    assert student.cells[2].source == nb.cells[2].source
    assert 'raise NotImplementedError("Exercise 1.1")' in student.cells[4].source


def copy_of(cell):
    import copy
    cell = copy.deepcopy(cell)
    cell["id"] = "duplicate-install-cell"
    return nbformat.from_dict(cell)


def test_install_cell_reads_the_repository_from_pyproject(tmp_path):
    from tools import install_cell
    assert install_cell.repository_url().startswith("https://github.com/")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(ToolError, match="Repository"):
        install_cell.repository_url(tmp_path / "pyproject.toml")
    with pytest.raises(ToolError, match="github.com/OWNER/NAME"):
        install_cell.badge_source("https://example.org/x", "notebooks/a.ipynb")


def test_install_guard_is_a_silent_no_op_when_course_lib_imports(tmp_path):
    """nbval runs the guard in every chapter: with course_lib installed it prints nothing and installs nothing."""
    from tools import install_cell
    nb = new_notebook(cells=[code(install_cell.install_source("https://github.com/someone/course")),
                             code("import course_lib\nprint('ok')")])
    path = write(tmp_path / "guard.ipynb", nb)
    assert execute_notebooks.main([str(path)]) == 0
    done = nbformat.read(str(path), as_version=4)
    assert done.cells[0].outputs == []
    assert done.cells[1].outputs[0].text == "ok\n"


# --------------------------------------------------------------------------- export_html: student view, offline
def test_export_html_publishes_the_student_view_and_loads_nothing_from_the_network(tmp_path):
    from tools import install_cell
    src = tmp_path / "nbs"
    nb = _chapter()
    nb.cells[2].outputs = [new_output("stream", name="stdout", text="the answer is 42\n")]
    nb.cells[3].outputs = [new_output("stream", name="stdout", text="3\n")]
    write(src / "01_x.ipynb", nb)
    install_cell.main([str(src), "--repository", "https://github.com/someone/course"])

    assert export_html.main([str(src), str(tmp_path / "html")]) == 0
    page = (tmp_path / "html" / "01_x.html").read_text()
    assert "BEGIN SOLUTION" not in page and "return a + b" not in page and "the answer is 42" not in page
    assert "NotImplementedError" in page and "3\n" in page  # other outputs kept
    assert "colab-badge.svg" not in page  # badge images would be fetched from the network
    assert export_html.MATHJAX_URL in page and (tmp_path / "html" / "_static" / "mathjax" / "MathJax.js").is_file()
    assert "require.min.js" not in page and "cdnjs" not in page.split("mermaid")[0]

    assert export_html.main(["--solutions", str(src), str(tmp_path / "sol")]) == 0
    page = (tmp_path / "sol" / "01_x.html").read_text()
    assert "BEGIN SOLUTION" in page and "the answer is 42" in page


def test_every_chapter_has_current_badges_and_install_cell():
    from tools import install_cell

    url = install_cell.repository_url()
    stale = [p.name for p in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
             if install_cell.update_notebook(p, url, write=False)]
    assert not stale, f"run `python -m tools.install_cell notebooks`: {stale}"
