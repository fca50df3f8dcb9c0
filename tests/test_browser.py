"""The explorers in a real browser: JupyterLab + headless Chromium (Playwright).

For the fixture notebook and every chapter whose code calls an explorer
(``..._explorer(``), the test starts from cleared outputs, runs all cells in
JupyterLab, waits for the kernel, then moves every slider of every explorer
("batch size" and "depth" first; also λ, dropout p, init std) one step with the
keyboard and checks that the explorer's image was re-rendered and that no cell
shows an error.  Screenshots go to
``test-artifacts/browser/<notebook>-before.png`` and ``-after.png``.

The notebooks are copied to a temporary folder, so the repository's files are
never modified.  Skipped when Chromium (/usr/bin/chromium) or Playwright is
missing.  Run alone with::

    .venv/bin/python -m pytest tests/test_browser.py -p no:xdist -o addopts="" -q -s
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _helpers import browser_skip_reason, stop_process_group

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "explorer_fixture.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SLIDER_WORDS = ("batch size", "depth")
RUN_TIMEOUT_S = 300      # one notebook, run all cells (chapters take <= 60 s on an idle laptop)
REDRAW_TIMEOUT_S = 90    # one slider step until the new picture is shown


def _code_sources(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def slider_notebooks() -> list[Path]:
    """The fixture plus every chapter notebook whose code calls an explorer."""
    chapters = [p for p in sorted((REPO / "notebooks").glob("*.ipynb"))
                if any("_explorer(" in s for s in _code_sources(p))]
    return [FIXTURE] + chapters


def _skip_reason() -> str | None:
    return browser_skip_reason(CHROMIUM, ("jupyterlab", "pip install -e '.[lab]'"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


# ------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    (root / "notebooks").mkdir(parents=True)
    for nb in slider_notebooks():
        shutil.copy2(nb, root / "notebooks" / nb.name)
    for extra in ("data",):  # relative paths such as ../data keep working
        if (REPO / extra).exists():
            (root / extra).symlink_to(REPO / extra)
    # An isolated Jupyter: no user config, kernel = this Python, all cells in the DOM, no news toasts.
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.update(TQDM_DISABLE="1", JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
    _write_json(tmp / "data" / "kernels" / "python3" / "kernel.json",
                {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                 "display_name": "Python 3 (ipykernel)", "language": "python"})
    _write_json(tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
                {"windowingMode": "none"})
    _write_json(tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    token = secrets.token_hex(16)
    log = open(tmp / "jupyter.log", "w")
    proc, port = None, None
    for _ in range(3):  # a port taken between _free_port() and the bind: try another
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
             "--ServerApp.open_browser=False"] + (["--allow-root"] if os.geteuid() == 0 else []),
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        if proc.poll() is None:
            break
    else:
        pytest.fail(f"JupyterLab did not start; log:\n{(tmp / 'jupyter.log').read_text()[-3000:]}")
    if proc.poll() is not None:
        pytest.fail(f"JupyterLab exited; log:\n{(tmp / 'jupyter.log').read_text()[-3000:]}")
    from playwright.sync_api import sync_playwright
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "browser": browser, "root": root,
               "log": tmp / "jupyter.log"}
    finally:
        browser.close()
        pw.stop()
        stop_process_group(proc)  # the server and the kernels it started
        log.close()


# --------------------------------------------------------------------------- page helpers
_STATE_JS = """() => {
  const p = window.jupyterapp.shell.currentWidget;
  const cells = p.content.widgets.filter(c => c.model.type === 'code'
                                           && c.model.sharedModel.getSource().trim() !== '');
  const errors = [];
  for (const c of cells) {
    for (let i = 0; i < c.model.outputs.length; i++) {
      const o = c.model.outputs.get(i).toJSON();
      if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
    }
  }
  const running = cells.filter(c => (c.node.querySelector('.jp-InputPrompt')?.textContent || '').includes('*'));
  return {status: p.sessionContext.session?.kernel?.status ?? 'none',
          pending: cells.filter(c => c.model.executionCount === null).length + running.length,
          cells: cells.length, errors};
}"""

_OPEN_JS = """async () => {
  const p = window.jupyterapp.shell.currentWidget;
  await p.context.ready;
  await p.sessionContext.ready;
  return p.sessionContext.session?.kernel?.status ?? 'none';
}"""


def _wait(page, predicate_js, timeout_s, what, arg=None):
    """Wait until the JS predicate is true; fail naming ``what`` on timeout."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        page.wait_for_function(predicate_js, arg=arg, timeout=timeout_s * 1000, polling=250)
    except PlaywrightTimeout:
        pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def _open_and_run(page, lab, name):
    page.goto(f"{lab['url']}/lab/tree/notebooks/{name}?reset&token={lab['token']}")
    _wait(page, """() => !!(window.jupyterapp && window.jupyterapp.shell.currentWidget
                          && window.jupyterapp.shell.currentWidget.sessionContext)""", 120, "JupyterLab")
    page.evaluate(_OPEN_JS)
    _wait(page, "() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle'",
          120, "the kernel to start")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    state = None
    while time.monotonic() < deadline:
        state = page.evaluate(_STATE_JS)
        if state["errors"]:
            pytest.fail(f"{name}: a cell raised in JupyterLab: {state['errors']}")
        if state["status"] == "idle" and state["pending"] == 0:
            return state
        time.sleep(0.5)
    pytest.fail(f"{name}: not finished after {RUN_TIMEOUT_S} s: {state}")


def _explorer_sliders(page):
    """(index, explorer, slider, description) for every slider of every explorer, batch size / depth first."""
    found = []
    explorers = page.locator(".course-explorer")
    for i in range(explorers.count()):
        ex = explorers.nth(i)
        sliders = ex.locator(".widget-slider")
        for j in range(sliders.count()):
            s = sliders.nth(j)
            found.append((i, ex, s, s.locator("label.widget-label").first.inner_text().strip()))
    return sorted(found, key=lambda f: not any(w in f[3] for w in SLIDER_WORDS))


def _status(ex) -> str:
    return ex.locator(".course-explorer-status").first.inner_text().strip()


@pytest.mark.parametrize("notebook", slider_notebooks(), ids=lambda p: p.name)
def test_sliders_redraw_in_jupyterlab(lab, notebook):
    started = time.monotonic()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = notebook.stem
    page = lab["browser"].new_page(viewport={"width": 1400, "height": 1000})
    console_errors = []
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    try:
        _open_and_run(page, lab, notebook.name)
        explorers = page.locator(".course-explorer")
        expected = sum(s.count("_explorer(") for s in _code_sources(notebook))
        _wait(page, "n => document.querySelectorAll('.course-explorer img').length >= n", 60,
              "the explorers to render", arg=expected)
        for i in range(explorers.count()):
            assert _status(explorers.nth(i)).startswith("drawn in"), _status(explorers.nth(i))
        sliders = _explorer_sliders(page)
        assert sliders, f"{notebook.name}: no slider found in the explorers"
        for i in range(explorers.count()):  # every explorer offers at least one slider
            assert explorers.nth(i).locator(".widget-slider").count(), f"explorer {i} has no slider"
        sliders[0][1].scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"{stem}-before.png"))
        moved = []
        for i, ex, slider, label in sliders:
            img = ex.locator("img").first
            src_before = img.get_attribute("src")
            handle = slider.locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            readout = slider.locator(".widget-readout").first
            value_before, shown_before = handle.get_attribute("aria-valuenow"), readout.inner_text().strip()
            at_max = value_before == handle.get_attribute("aria-valuemax")
            ex.screenshot(path=str(ARTIFACTS / f"{stem}-explorer{i}-before.png"))
            handle.focus()
            page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")  # key down + up: the release commits
            t0 = time.monotonic()
            ex_handle = ex.element_handle()
            page.wait_for_function(
                """([ex, before]) => {
                     const img = ex.querySelector('img');
                     const status = ex.querySelector('.course-explorer-status');
                     return img && img.src !== before && status && status.textContent.startsWith('drawn in');
                   }""", arg=[ex_handle, src_before], timeout=REDRAW_TIMEOUT_S * 1000, polling=100)
            waited = time.monotonic() - t0
            # the readout (a log slider's aria-valuenow stays on the exponent's old value)
            assert readout.inner_text().strip() != shown_before, f"{label}: the slider did not move"
            ex.screenshot(path=str(ARTIFACTS / f"{stem}-explorer{i}-after.png"))
            moved.append(f"explorer {i} '{label}': {shown_before} -> {readout.inner_text().strip()}, "
                         f"new picture after {waited:.1f} s ({_status(ex)})")
        sliders[0][1].scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"{stem}-after.png"))
        state = page.evaluate(_STATE_JS)
        assert not state["errors"], state["errors"]
        tracebacks = [t for t in page.locator(
            ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
            if "Traceback" in t]
        assert not tracebacks, tracebacks
        statuses = [_status(explorers.nth(i)) for i in range(explorers.count())]
        assert not [s for s in statuses if s.startswith("error")], statuses
        print(f"\n{notebook.name}: {state['cells']} code cells, {explorers.count()} explorers, "
              f"{time.monotonic() - started:.0f} s")
        for line in moved:
            print("   ", line)
    finally:
        try:
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        except Exception:
            pass
        page.close()
