"""The course as a pip or Colab learner gets it: the wheel, in a fresh venv, from another folder.

One test, in steps (each failure names its step):

1. build the wheel from a copy of the working tree (tracked and untracked-but-not-ignored
   files: what a clone would have), with the development venv's setuptools when it is
   recent enough (else pip fetches one into an isolated build env); check that the build
   prints no setuptools deprecation warning, that the wheel carries the shipped data and
   stays small;
2. create a fresh venv (no system site-packages) and ``pip install`` the wheel: the runtime
   dependencies come from the package index (pip's cache makes repeat runs fast);
3. uninstall course_lib again (its dependencies stay), so the chapters start where a Colab
   learner starts: course_lib missing;
4. copy chapter 00 and a data-heavy chapter (01: MNIST) alone into a temporary folder
   outside the repository, put the install cell in them (``tools.install_cell``), and run
   them with nbclient on a kernel of the fresh venv, ``COURSE_LIB_INSTALL_SPEC`` pointing at
   the wheel: chapter 00's guard installs it, chapter 01's finds it; both chapters run to
   the end and course_lib is imported from the venv, not from the repository.

Needs the package index for step 2 (CI has it).  Takes one to three minutes.  Alone::

    .venv/bin/python -m pytest tests/test_packaging.py -p no:xdist -o addopts="" -q -s
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from _helpers import stop_process_group

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = ["00_setup_and_tour.ipynb", "01_weight_init.ipynb"]
MAX_WHEEL_MB = 10
CELL_TIMEOUT_S = 600


def _run(step: str, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    print(f"[{step}] {time.perf_counter() - start:.1f} s: {' '.join(map(str, cmd))[:120]}")
    assert proc.returncode == 0, f"{step} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _working_tree_copy(dest: Path) -> Path:
    """The files a clone of the working tree would have (git's view), copied to ``dest``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _build_isolation() -> list[str]:
    """``--no-build-isolation`` when this venv's setuptools can build the project (no download), else nothing.

    ``license = "MIT"`` (SPDX) needs setuptools >= 77; a Python 3.11 venv starts with 65.
    """
    try:
        import setuptools
        major = int(setuptools.__version__.split(".")[0])
    except (ImportError, ValueError):
        return []
    return ["--no-build-isolation"] if major >= 77 else []


def _kernel_manager(python: Path):
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class FreshVenvSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=[str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="fresh venv", language="python", resource_dir="")

    return KernelManager(kernel_name="python3", kernel_spec_manager=FreshVenvSpecs())


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to list the working tree's files")
def test_wheel_in_a_fresh_venv_runs_chapters_from_another_folder(tmp_path):
    from nbclient import NotebookClient

    from tools import install_cell

    # 1. the wheel
    src = _working_tree_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    built = _run("build", [sys.executable, "-m", "pip", "wheel", "--no-deps", *_build_isolation(), "-v",
                           "-w", str(dist), str(src)])
    assert "SetuptoolsDeprecationWarning" not in built.stdout + built.stderr, (
        "the build warns about a deprecated setting in pyproject.toml:\n"
        + "\n".join(line for line in (built.stdout + built.stderr).splitlines() if "eprecat" in line))
    wheels = list(dist.glob("course_lib-*.whl"))
    assert len(wheels) == 1, f"expected one course_lib wheel in {dist}: {list(dist.iterdir())}"
    wheel = wheels[0]
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("course_lib/datasets/") and n.endswith(".npz") for n in names), (
        f"the shipped MNIST files are not in the wheel: {names}")
    size_mb = wheel.stat().st_size / 1e6
    print(f"[build] {wheel.name}: {size_mb:.1f} MB, {len(names)} files")
    assert size_mb < MAX_WHEEL_MB

    # 2. a fresh venv with the wheel and its runtime dependencies
    venv = tmp_path / "venv"
    _run("venv", [sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    _run("install", [str(python), "-m", "pip", "install", "-q", str(wheel)], env=env, cwd=tmp_path)
    du = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0]
    print(f"[install] learner venv: {du} MB")
    # nothing a notebook does not need
    listed = _run("list", [str(python), "-m", "pip", "list", "--format=freeze"], env=env).stdout.lower()
    for dev_only in ("jupyterlab==", "pytest==", "playwright==", "nbval==", "dask=="):
        assert dev_only not in listed, f"{dev_only.rstrip('=')} is installed with the wheel: a runtime dependency?"

    # 3. course_lib missing, its dependencies present (a Colab kernel)
    _run("uninstall", [str(python), "-m", "pip", "uninstall", "-y", "-q", "course_lib"], env=env)
    probe = subprocess.run([str(python), "-c", "import course_lib"], capture_output=True, cwd=tmp_path, env=env)
    assert probe.returncode != 0, "course_lib still imports after the uninstall"

    # 4. the chapters, alone in a folder outside the repository
    work = tmp_path / "learner"
    work.mkdir()
    for name in CHAPTERS:
        shutil.copy2(REPO / "notebooks" / name, work / name)
    install_cell.main([str(work)])
    kernel_env = dict(env, COURSE_LIB_INSTALL_SPEC=str(wheel), TQDM_DISABLE="1",
                      OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    kernel_env.pop("MPLBACKEND", None)
    for i, name in enumerate(CHAPTERS):
        nb = nbformat.read(str(work / name), as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell("import course_lib\nprint('COURSE_LIB_AT', course_lib.__file__)"))
        start = time.perf_counter()
        client = NotebookClient(nb, km=_kernel_manager(python), timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}})
        try:
            client.execute(env=kernel_env)
        except Exception as exc:  # CellExecutionError names the cell and carries the traceback
            pytest.fail(f"{name} failed in the fresh venv from {work}:\n{exc}")
        print(f"[run] {name}: {time.perf_counter() - start:.1f} s")
        guard = next(c for c in nb.cells if install_cell.INSTALL_TAG in c.metadata.get("tags", []))
        guard_text = "".join(o.get("text", "") for o in guard.outputs)
        if i == 0:
            assert guard.outputs, "the install cell did not install course_lib although it was missing"
        else:
            assert not guard_text, f"the install cell ran pip although course_lib was installed: {guard_text}"
        where = nb.cells[-1].outputs[0].text
        assert "COURSE_LIB_AT" in where and str(venv) in where and str(REPO) not in where, where


# ------------------------------------------------------------------------------------------ make lab
def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_make_lab_starts_on_a_fresh_copy_as_whoever_runs_it(tmp_path):
    """`make lab` on a fresh copy of the working tree (as root in CI and Docker): the server answers.

    The development venv is reused (``VENV=... NO_INSTALL=1``) so the test takes seconds;
    the learner's install path is checked by reading what make would run.
    """
    import json
    import secrets
    import urllib.request

    clone = _working_tree_copy(tmp_path / "clone")
    venv = Path(sys.prefix)
    assert (venv / "bin" / "jupyter").exists(), f"{venv} has no jupyter; run make test to install .[dev]"

    # what the first run of a learner's `make lab` does: learner extras only, and it says so
    plan = _run("make -n", ["make", "-n", "-C", str(clone), "lab", f"VENV={tmp_path / 'new-venv'}"]).stdout
    assert "first run" in plan and "a minute" in plan
    assert "-e \".[lab]\"" in plan and ".[dev]" not in plan
    if os.geteuid() == 0:
        assert "--allow-root" in plan

    port, token = _free_port(), secrets.token_hex(8)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 "
            f"--IdentityProvider.token={token}")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(["make", "-C", str(clone), "lab", f"VENV={venv}", "NO_INSTALL=1", f"LAB_ARGS={args}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    status = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                    status = (r.status, json.loads(r.read()))
            except OSError:
                time.sleep(0.5)
    finally:
        stop_process_group(proc)
        log.close()
    text = (tmp_path / "lab.log").read_text()
    assert status is not None, (f"JupyterLab did not answer on /api/status (exit {proc.returncode}); "
                                f"log:\n{text[-3000:]}")
    assert status[0] == 200 and "started" in status[1], status
    assert "Running as root is not recommended" not in text
    assert "--notebook-dir=notebooks" in text  # make echoed the command it ran
