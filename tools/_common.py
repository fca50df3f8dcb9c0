"""Helpers shared by the notebook tools: reading, cleaning and writing notebooks."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat

#: Output mimetype of an ipywidgets view; it points at a model kept in
#: ``metadata.widgets``, so it cannot render once that state is gone.
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
#: Key of the widget state inside ``notebook.metadata.widgets``.
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


class ToolError(Exception):
    """A problem the user has to fix; the CLI prints it and exits with status 1."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read ``path`` as an nbformat-4 notebook, with an error naming the file."""
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # malformed JSON, unknown nbformat version, ...
        raise ToolError(f"{path}: cannot read the notebook ({exc}). "
                        "Is it valid notebook JSON?") from exc


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """Serialise ``nb`` the way nbformat (and JupyterLab) write notebooks, ending in a newline."""
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` via a temporary file and a rename.

    A crash or an error half-way never leaves a truncated file behind, and
    readers see either the old or the new content.  Returns ``False`` without
    touching the file when the content is unchanged, so that timestamps (and
    ``make``) stay quiet on re-runs.
    """
    path = Path(path)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def strip_volatile_metadata(nb: nbformat.NotebookNode) -> None:
    """Remove metadata that changes on every run and only makes diffs noisy.

    * ``metadata.widgets``: the saved widget state churns with every execution
      (new model ids, new values) and is useless without the kernel.
    * per-cell ``metadata.execution``: start/end timestamps.
    * ``metadata.language_info.version``: the patch release of whoever ran the
      notebook last; nothing reads it.
    * the widget-view part of an output that also carries a static ``image/png``
      or ``text/html`` (the explorers and quizzes do): without saved widget state it only shows "model not
      found" and a random model id; the PNG is what a reader without a kernel
      should see.  Running the cell again brings the live widget back.
    """
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            bundle = out.get("data", {})
            if WIDGET_VIEW_MIME in bundle and ({"image/png", "text/html"} & set(bundle)):
                del bundle[WIDGET_VIEW_MIME]
    language_info = nb.metadata.get("language_info")
    if isinstance(language_info, dict):
        language_info.pop("version", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)


def cell_tags(cell) -> list[str]:
    """The cell's tags (``cell.metadata.tags``), an empty list when it has none."""
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, (list, tuple)) else []


def first_line(source: str, width: int = 70) -> str:
    """The first non-blank line of ``source``, shortened to ``width`` characters."""
    for line in source.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= width else line[: width - 3] + "..."
    return "(empty cell)"
