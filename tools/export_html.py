"""Export the executed course to static HTML with a table of contents.

Usage::

    python -m tools.export_html SRC_DIR OUT_DIR               # what a learner reads (solutions stubbed)
    python -m tools.export_html --solutions SRC_DIR OUT_DIR   # the instructors' site

Every ``SRC_DIR/*.ipynb``, in filename order, becomes ``OUT_DIR/<name>.html``
as it was last executed (nothing is re-run; run ``make notebooks`` first).
``OUT_DIR/index.html`` lists the chapters in order, each with its title (the
notebook's first markdown heading) and its ``##`` sections, linked to their
anchors.  Every chapter page gets previous / contents / next links at the top
and bottom.

By default the pages are the *student* versions: every exercise cell shows the
stub that ``tools.make_student`` writes (``raise NotImplementedError(...)``) and
no output, cells tagged ``remove-student`` are left out, and every other cell
keeps its executed output.  ``--solutions`` publishes the notebooks as they are.

The pages read offline, with no request leaving the folder: styles and figures
are inlined; interactive widget outputs are replaced by the static PNG that the
explorers store in the same output (a widget view cannot render without its
saved state and a kernel); MathJax is copied next to the pages
(``OUT_DIR/_static/mathjax/``) from the ``jupyter-server-mathjax`` package
(``pip install jupyter-server-mathjax``, part of the ``html`` and ``dev``
extras); and the require.js that nbconvert loads from a CDN is left out (no
output of the course needs it).
"""
from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import nbformat

from tools._common import (
    WIDGET_STATE_MIME,
    WIDGET_VIEW_MIME,
    ToolError,
    cell_tags,
    read_notebook,
    write_atomic,
)

GENERATOR_MARKER = '<meta name="generator" content="tools.export_html">'
#: Where the MathJax copy goes, relative to OUT_DIR, and how the pages load it.  The
#: jupyter-server-mathjax wheel ships MathJax 2.7 with this combined configuration and the
#: STIX web fonts (HTML-CSS output), the set the classic Jupyter Notebook used.
MATHJAX_DIR = "_static/mathjax"
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
_REQUIRE_JS_RE = re.compile(r'<script src="https?://[^"]*require(?:\.min)?\.js"></script>\s*')
STATIC_WIDGET_NOTE = ("[interactive widget: open the notebook in JupyterLab and run it "
                      "to use the controls]")


@dataclass
class Heading:
    level: int
    anchor: str
    text: str


@dataclass
class Chapter:
    """One exported notebook: where it came from, where it went, and its outline."""

    source: Path
    filename: str  # "<stem>.html", relative to OUT_DIR
    title: str
    sections: list[Heading] = field(default_factory=list)  # the "##" headings
    unexecuted: bool = False


def _widget_models(nb: nbformat.NotebookNode) -> set[str]:
    """Model ids whose state is saved in the notebook metadata (usually none: it is stripped)."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    return set(state) if isinstance(state, dict) else set()


def static_widget_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` in which widget outputs show their static fallback.

    A widget-view output whose model state is absent renders as nothing (or
    an error) in HTML, and one whose state is present needs a CDN script and
    still has no kernel behind its controls.  So the widget mimetype is
    dropped whenever the same output carries an ``image/png`` snapshot, or
    when there is no saved state; an output left with only ``text/plain``
    (``HBox(children=...)``) gets a short note instead.
    """
    nb = copy.deepcopy(nb)
    models = _widget_models(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data or WIDGET_VIEW_MIME not in data:
                continue
            model_id = (data[WIDGET_VIEW_MIME] or {}).get("model_id")
            if "image/png" in data or model_id not in models:
                del data[WIDGET_VIEW_MIME]
                if set(data) <= {"text/plain"}:
                    data["text/plain"] = STATIC_WIDGET_NOTE
    return nb


class _HeadingCollector(HTMLParser):
    """Collect the headings (level, id, text) of the markdown cells of an nbconvert page.

    Headings inside outputs (an HTML table, say) are ignored: only
    ``jp-MarkdownCell`` blocks are looked at.  The ``¶`` anchor link that
    nbconvert appends to each heading is left out of the text.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.headings: list[Heading] = []
        self._div_depth = 0
        self._markdown_depth: int | None = None
        self._heading: tuple[int, str] | None = None
        self._text: list[str] = []
        self._in_anchor_link = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div":
            self._div_depth += 1
            if self._markdown_depth is None and "jp-MarkdownCell" in (attrs.get("class") or ""):
                self._markdown_depth = self._div_depth
        elif self._markdown_depth is not None and re.fullmatch(r"h[1-6]", tag) and attrs.get("id"):
            self._heading = (int(tag[1]), attrs["id"])
            self._text = []
        elif tag == "a" and self._heading and "anchor-link" in (attrs.get("class") or ""):
            self._in_anchor_link += 1

    def handle_endtag(self, tag):
        if tag == "div":
            if self._markdown_depth == self._div_depth:
                self._markdown_depth = None
            self._div_depth -= 1
        elif tag == "a" and self._in_anchor_link:
            self._in_anchor_link -= 1
        elif self._heading and tag == f"h{self._heading[0]}":
            text = " ".join("".join(self._text).split())
            self.headings.append(Heading(self._heading[0], self._heading[1], text))
            self._heading = None

    def handle_data(self, data):
        if self._heading and not self._in_anchor_link:
            self._text.append(data)


def page_headings(page: str) -> list[Heading]:
    """The markdown headings of an exported page, in order."""
    collector = _HeadingCollector()
    collector.feed(page)
    collector.close()
    return collector.headings


def _nav(chapters: list[Chapter], index: int) -> str:
    """Previous / contents / next links for chapter ``index``."""
    parts = []
    if index > 0:
        prev = chapters[index - 1]
        parts.append(f'<a class="course-nav-prev" rel="prev" href="{html.escape(prev.filename)}">'
                     f"&larr; {html.escape(prev.title)}</a>")
    else:
        parts.append('<span class="course-nav-prev"></span>')
    parts.append('<a class="course-nav-contents" href="index.html">Contents</a>')
    if index + 1 < len(chapters):
        nxt = chapters[index + 1]
        parts.append(f'<a class="course-nav-next" rel="next" href="{html.escape(nxt.filename)}">'
                     f"{html.escape(nxt.title)} &rarr;</a>")
    else:
        parts.append('<span class="course-nav-next"></span>')
    return '<nav class="course-nav">' + "".join(parts) + "</nav>"


_NAV_STYLE = """<style>
.course-nav { display: flex; justify-content: space-between; gap: 1em; max-width: 1200px;
  margin: 0.5em auto; padding: 0.5em 1em; font-family: system-ui, sans-serif; font-size: 14px;
  border-top: 1px solid #ddd; border-bottom: 1px solid #ddd; }
.course-nav a { text-decoration: none; }
.course-nav-next { text-align: right; }
</style>"""


def inject_nav(page: str, nav: str, title: str) -> str:
    """Put ``nav`` right after ``<body>`` and right before ``</body>``; set ``<title>``."""
    page = re.sub(r"<title>.*?</title>", lambda _: f"<title>{html.escape(title)}</title>",
                  page, count=1, flags=re.S)
    page = page.replace("</head>", f"{GENERATOR_MARKER}\n{_NAV_STYLE}\n</head>", 1)
    page, found = re.subn(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + nav, page, count=1)
    if not found:
        raise ToolError("the nbconvert page has no <body> tag to put the navigation in")
    head, sep, tail = page.rpartition("</body>")
    return head + nav + "\n" + sep + tail


def index_page(chapters: list[Chapter], course_title: str) -> str:
    """The table of contents: chapters in order, each with its ``##`` sections."""
    items = []
    for chapter in chapters:
        href = html.escape(chapter.filename)
        sections = "".join(
            f'<li><a href="{href}#{html.escape(h.anchor)}">{html.escape(h.text)}</a></li>'
            for h in chapter.sections)
        note = ' <span class="unexecuted">(not executed)</span>' if chapter.unexecuted else ""
        items.append(f'<li class="chapter"><a href="{href}">{html.escape(chapter.title)}</a>{note}'
                     + (f"<ul>{sections}</ul>" if sections else "") + "</li>")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{GENERATOR_MARKER}
<title>{html.escape(course_title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 50em; margin: 2em auto; padding: 0 1em;
  line-height: 1.5; color: #222; }}
ol.chapters > li {{ margin: 0.8em 0; font-size: 1.1em; }}
ol.chapters ul {{ font-size: 0.9em; margin: 0.2em 0; }}
.unexecuted {{ color: #a00; font-size: 0.8em; }}
a {{ text-decoration: none; }}
</style>
</head>
<body>
<h1>{html.escape(course_title)}</h1>
<p>The executed notebooks as static pages: read them here, run them in JupyterLab.</p>
<ol class="chapters">
{chr(10).join(items)}
</ol>
</body>
</html>
"""


def student_view(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """``nb`` as a student sees it, but with the executed outputs of every non-exercise cell.

    The student copy comes from :func:`tools.make_student.student_notebook` (so every
    check it makes holds here too: a stray solution marker is an error, not a leak);
    it clears all outputs, and the outputs of the cells that are not exercises are put
    back.  Exercise cells show their stub and no output.
    """
    from tools.make_student import EXERCISE_TAG, REMOVE_TAG, student_notebook

    student, _ = student_notebook(nb, name)
    kept = [c for c in nb.cells if REMOVE_TAG not in cell_tags(c)]
    if len(kept) != len(student.cells):  # make_student changed how it drops cells
        raise ToolError(f"{name}: the student copy has {len(student.cells)} cells, expected {len(kept)}")
    for source, cell in zip(kept, student.cells):
        if cell.cell_type == "code" and EXERCISE_TAG not in cell_tags(cell):
            cell.outputs = copy.deepcopy(source.get("outputs", []))
            cell.execution_count = source.get("execution_count")
    return student


def without_badges(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without the Colab/Binder badge cell (its images would be fetched from the network)."""
    from tools.install_cell import BADGE_TAG

    if not any(BADGE_TAG in cell_tags(c) for c in nb.cells):
        return nb
    nb = copy.copy(nb)
    nb.cells = [c for c in nb.cells if BADGE_TAG not in cell_tags(c)]
    return nb


def mathjax_source() -> Path:
    """The folder holding ``MathJax.js`` in the installed ``jupyter-server-mathjax`` package."""
    try:
        import jupyter_server_mathjax
    except ImportError as exc:
        raise ToolError("the offline pages need a MathJax copy: pip install jupyter-server-mathjax "
                        "(or: pip install -e '.[html]'), then run this again") from exc
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "MathJax.js").is_file():
        raise ToolError(f"{static}: MathJax.js is missing; reinstall it: "
                        "pip install --force-reinstall jupyter-server-mathjax")
    return static


def copy_mathjax(out_dir: Path) -> Path:
    """Copy MathJax into ``out_dir/_static/mathjax`` (skipped when the same copy is there)."""
    source = mathjax_source()
    target = Path(out_dir) / MATHJAX_DIR
    stamp = target / ".source"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == str(source) and (target / "MathJax.js").is_file():
        return target
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    stamp.write_text(str(source), encoding="utf-8")
    return target


def offline_page(page: str) -> str:
    """``page`` without the CDN require.js tag (nothing in the course's outputs needs it)."""
    return _REQUIRE_JS_RE.sub("", page)


def _is_unexecuted(nb: nbformat.NotebookNode) -> bool:
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    return bool(code) and all(c.get("execution_count") is None for c in code)


def export_html(src_dir: Path, out_dir: Path, course_title: str | None = None,
                solutions: bool = False) -> list[Chapter]:
    """Export ``src_dir/*.ipynb`` to ``out_dir`` (pages + ``index.html``); return the chapters.

    ``solutions=False`` (the default) publishes the student view (see :func:`student_view`).
    """
    from nbconvert import HTMLExporter  # slow import; keep ``--help`` fast

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise ToolError(f"{src_dir}: source folder does not exist")
    sources = sorted(src_dir.glob("*.ipynb"))
    if not sources:
        raise ToolError(f"{src_dir}: no .ipynb notebooks to export")

    exporter = HTMLExporter(template_name="lab", mathjax_url=MATHJAX_URL)
    chapters: list[Chapter] = []
    pages: list[str] = []
    for source in sources:
        nb = read_notebook(source)
        shown = nb if solutions else student_view(nb, source.name)
        shown = without_badges(shown)
        try:
            page, _ = exporter.from_notebook_node(
                static_widget_outputs(shown), resources={"metadata": {"name": source.stem}})
        except Exception as exc:
            raise ToolError(f"{source}: nbconvert could not export it ({exc})") from exc
        page = offline_page(page)
        headings = page_headings(page)
        title = headings[0].text if headings else source.stem
        chapters.append(Chapter(source, source.stem + ".html", title,
                                [h for h in headings if h.level == 2], _is_unexecuted(nb)))
        pages.append(page)

    out_dir.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out_dir)
    for i, (chapter, page) in enumerate(zip(chapters, pages)):
        write_atomic(out_dir / chapter.filename, inject_nav(page, _nav(chapters, i), chapter.title))
    if course_title is None:
        course_title = "Batch Normalization from scratch"
    write_atomic(out_dir / "index.html", index_page(chapters, course_title))

    # Pages of notebooks that were renamed or deleted; only our own pages go.
    keep = {c.filename for c in chapters} | {"index.html"}
    for old in out_dir.glob("*.html"):
        if old.name not in keep and GENERATOR_MARKER in old.read_text(encoding="utf-8",
                                                                      errors="replace"):
            old.unlink()
    return chapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.export_html",
        description="Export executed notebooks to static HTML with a table of contents.")
    parser.add_argument("src_dir", type=Path, metavar="SRC_DIR")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--title", default=None, help="course title on the contents page")
    parser.add_argument("--solutions", action="store_true",
                        help="publish the solutions (instructors); default: the student view, exercises stubbed")
    args = parser.parse_args(argv)
    try:
        chapters = export_html(args.src_dir, args.out_dir, args.title, solutions=args.solutions)
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for chapter in chapters:
        if chapter.unexecuted:
            print(f"warning: {chapter.source} has no outputs; run "
                  f"'python -m tools.execute_notebooks {chapter.source}' first", file=sys.stderr)
    print(f"{len(chapters)} chapter(s) -> {args.out_dir / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
