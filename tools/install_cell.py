"""Put the Colab/Binder badges and the install-when-missing cell at the top of every chapter.

Usage::

    python -m tools.install_cell notebooks            # insert or update, in place
    python -m tools.install_cell notebooks --check    # exit 1 if a notebook is not up to date

For every ``DIR/*.ipynb``:

* a markdown cell tagged ``course-badges`` becomes the first cell: "Open in Colab"
  and "Launch Binder" badges for this notebook (``notebooks/<name>`` in the
  repository, branch ``main``);
* a code cell tagged ``course-install`` becomes the first code cell: it installs
  course_lib with ``%pip`` **only when it cannot be imported** (Colab, a fresh pip
  environment), so under ``make lab``, nbval and the tests it is a no-op that
  prints nothing.  It installs ``course_lib@git+<repository>``; the environment
  variable ``COURSE_LIB_INSTALL_SPEC`` overrides what is installed (a local wheel,
  say: the packaging test uses it).

The repository URL is read from ``[project.urls] Repository`` in pyproject.toml,
the one place that names it.  Running the tool again changes nothing when the
cells are current (files are only rewritten when their text changes); when the
URL changes, the cells are updated in place.  Outputs of the two cells are never
kept: neither has any when course_lib is installed.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from tools._common import ToolError, cell_tags, notebook_text, read_notebook, write_atomic

ROOT = Path(__file__).resolve().parents[1]
BADGE_TAG = "course-badges"
INSTALL_TAG = "course-install"
SPEC_VARIABLE = "COURSE_LIB_INSTALL_SPEC"
BRANCH = "main"


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """``[project.urls] Repository`` of pyproject.toml, without a trailing slash or ``.git``."""
    try:
        text = Path(pyproject).read_text(encoding="utf-8")
    except OSError as exc:
        raise ToolError(f"{pyproject}: cannot read it ({exc})") from exc
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # Python 3.10: the one line we need
        match = re.search(r'^\s*Repository\s*=\s*"([^"]+)"', text, re.M)
        url = match.group(1) if match else None
    else:
        url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    if not url:
        raise ToolError(f"{pyproject}: no [project.urls] Repository entry; add one, e.g. "
                        'Repository = "https://github.com/OWNER/NAME"')
    return re.sub(r"(\.git)?/*$", "", url)


def _github_path(url: str) -> str:
    """``"OWNER/NAME"`` of a GitHub URL (Colab and Binder open GitHub repositories by that)."""
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url)
    if not match:
        raise ToolError(f"{url}: the badges need a https://github.com/OWNER/NAME repository URL")
    return match.group(1)


def badge_source(url: str, notebook: str) -> str:
    """Markdown with the Colab and Binder badges for ``notebook`` (a path inside the repository)."""
    repo = _github_path(url)
    colab = f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/{notebook}"
    binder = f"https://mybinder.org/v2/gh/{repo}/{BRANCH}?labpath={notebook.replace('/', '%2F')}"
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
            f"[![Launch Binder](https://mybinder.org/badge_logo.svg)]({binder})")


def install_source(url: str) -> str:
    """The first code cell: ``%pip install`` course_lib only when it is missing."""
    return f'''# On Colab or in a fresh pip environment: install course_lib when it is missing (else: nothing happens).
import importlib.util
import os

if importlib.util.find_spec("course_lib") is None:
    _spec = os.environ.get("{SPEC_VARIABLE}",
                           "course_lib@git+{url}")
    %pip install --quiet {{_spec}}
    importlib.invalidate_caches()'''


def _tagged(source: str, tag: str, cell_type: str):
    cell = new_code_cell(source) if cell_type == "code" else new_markdown_cell(source)
    cell.metadata["tags"] = [tag]
    return cell


def apply_cells(nb: nbformat.NotebookNode, url: str, notebook: str) -> nbformat.NotebookNode:
    """``nb`` with the badge cell first and the install cell as first code cell (in place; returned).

    Existing tagged cells are updated (source; stale outputs cleared) and moved where
    they belong; duplicates are removed.  Cell ids of existing cells are kept.
    """
    wanted = {BADGE_TAG: ("markdown", badge_source(url, notebook)), INSTALL_TAG: ("code", install_source(url))}
    found: dict[str, nbformat.NotebookNode] = {}
    rest = []
    for cell in nb.cells:
        tag = next((t for t in wanted if t in cell_tags(cell)), None)
        if tag is None:
            rest.append(cell)
        elif tag not in found and cell.cell_type == wanted[tag][0]:
            found[tag] = cell
        # else: a duplicate (or a cell of the wrong type) carrying our tag: dropped
    for tag, (cell_type, source) in wanted.items():
        cell = found.get(tag)
        if cell is None:
            found[tag] = _tagged(source, tag, cell_type)
        elif cell.source != source:
            cell.source = source
            if cell_type == "code":  # outputs of the old source are stale; an executed, current cell keeps its own
                cell.outputs = []
                cell.execution_count = None
    first_code = next((i for i, c in enumerate(rest) if c.cell_type == "code"), len(rest))
    nb.cells = [found[BADGE_TAG]] + rest[:first_code] + [found[INSTALL_TAG]] + rest[first_code:]
    return nb


def update_notebook(path: Path, url: str, prefix: str = "notebooks", write: bool = True) -> bool:
    """Apply the cells to the notebook at ``path``; return whether its text changed (written if ``write``)."""
    path = Path(path)
    nb = read_notebook(path)
    before = notebook_text(nb)
    apply_cells(nb, url, f"{prefix.strip('/')}/{path.name}" if prefix else path.name)
    nbformat.validate(nb)
    after = notebook_text(nb)
    if after == before:
        return False
    if write:
        write_atomic(path, after)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.install_cell",
        description="Insert or update the Colab/Binder badges and the install-when-missing cell in notebooks.")
    parser.add_argument("folder", type=Path, metavar="DIR")
    parser.add_argument("--repository", default=None,
                        help="repository URL (default: [project.urls] Repository in pyproject.toml)")
    parser.add_argument("--prefix", default="notebooks",
                        help="the folder's path inside the repository, for the badge links (default: notebooks)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not current")
    args = parser.parse_args(argv)
    try:
        url = args.repository or repository_url()
        if not args.folder.is_dir():
            raise ToolError(f"{args.folder}: no such folder")
        paths = sorted(args.folder.glob("*.ipynb"))
        if not paths:
            raise ToolError(f"{args.folder}: no .ipynb notebooks")
        changed = [p for p in paths if update_notebook(p, url, args.prefix, write=not args.check)]
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        for p in changed:
            print(f"not current: {p} (run: python -m tools.install_cell {args.folder})", file=sys.stderr)
        return 1 if changed else 0
    print(f"{len(paths)} notebook(s), {len(changed)} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
