"""`make html` gives a site that reads offline and does not publish the solutions.

The site is built from the committed notebooks into a temporary folder exactly as
``make html`` does (``python -m tools.export_html notebooks OUT``: the student view),
then every page is opened from disk in headless Chromium with **every request that is
not a ``file://`` URL blocked**.  On every page:

* no request was blocked (nothing tries to reach a CDN);
* MathJax ran and typeset every formula: MathJax output elements are present on
  every chapter whose markdown has a formula, and no markdown cell still shows raw
  ``$$`` / ``$...$`` TeX;
* the text ``BEGIN SOLUTION`` appears nowhere.

Skipped when Chromium (/usr/bin/chromium) or Playwright is missing.  Alone::

    .venv/bin/python -m pytest tests/test_html_offline.py -p no:xdist -o addopts="" -q
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import browser_skip_reason
from test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TYPESET_TIMEOUT_MS = 120_000

# MathJax 2 output elements (HTML-CSS, CommonHTML, SVG, MathML output processors).
_MATH_SELECTOR = ".MathJax, .MathJax_Display, .MathJax_CHTML, .MathJax_SVG, .MathJax_MathML, mjx-container"
# Raw TeX left in the rendered markdown: $$...$$ or an inline $...\command...$.
_RAW_TEX = re.compile(r"\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")


def _skip_reason() -> str | None:
    return browser_skip_reason(CHROMIUM, ("jupyter_server_mathjax", "pip install -e '.[html]'"))


def _markdown_has_math(path: Path) -> bool:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            if "$" in text:
                return True
    return False


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("html")
    run = subprocess.run([sys.executable, "-m", "tools.export_html", "notebooks", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"export_html failed:\n{run.stdout}\n{run.stderr}"
    return out


@pytest.fixture(scope="module")
def browser():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _open_offline(browser, path: Path):
    """Open ``path`` with every non-file request blocked; return (page, blocked URLs, console errors)."""
    context = browser.new_context()
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(("file://", "data:", "blob:", "about:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(path.as_uri(), wait_until="load")
    return context, page, blocked, errors


def test_site_is_built_from_the_student_view(site):
    pages = sorted(site.glob("*.html"))
    chapters = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in pages if p.name != "index.html"] == [c.stem for c in chapters]
    assert (site / "_static" / "mathjax" / "MathJax.js").is_file()
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text, f"{page.name} publishes a solution"
        assert not re.search(r'<script[^>]+src="https?://', text), f"{page.name} loads a script from the network"
    # the exercises are there, as stubs
    assert any('NotImplementedError' in p.read_text(encoding="utf-8") for p in pages)


def test_every_page_typesets_offline(site, browser):
    failures = []
    for path in sorted(site.glob("*.html")):
        context, page, blocked, errors = _open_offline(browser, path)
        try:
            if path.name != "index.html":
                page.wait_for_function("() => !!window.MathJax && !!window.MathJax.Hub",
                                       timeout=TYPESET_TIMEOUT_MS)
                page.evaluate("() => new Promise(done => MathJax.Hub.Queue(() => done(true)))")
            n_math = page.locator(_MATH_SELECTOR).count()
            markdown = page.evaluate("""() => Array.from(document.querySelectorAll('.jp-MarkdownCell'))
                                          .map(c => c.innerText).join('\\n')""")
            body = page.evaluate("() => document.body.innerText")
        finally:
            context.close()
        source = REPO / "notebooks" / (path.stem + ".ipynb")
        if blocked:
            failures.append(f"{path.name}: requests outside the folder: {blocked[:3]}")
        if errors:
            failures.append(f"{path.name}: script errors: {errors[:3]}")
        if source.exists() and _markdown_has_math(source) and n_math == 0:
            failures.append(f"{path.name}: has formulas but MathJax typeset none")
        raw = _RAW_TEX.search(markdown)
        if raw:
            failures.append(f"{path.name}: raw TeX left on the page: {raw.group(0)[:60]!r}")
        if "BEGIN SOLUTION" in body:
            failures.append(f"{path.name}: 'BEGIN SOLUTION' on the page")
    assert not failures, "\n".join(failures)
