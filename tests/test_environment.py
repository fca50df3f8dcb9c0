"""environment.yml (conda, Binder) and pyproject.toml (pip) must name the same packages.

Two ways to install the course exist; when a dependency is added to one file
only, one group of learners gets an ImportError.  The sets compared:

* environment.yml: the conda ``dependencies`` plus the ``pip:`` subsection,
  without ``python``, ``pip`` and the ``-e .`` line (which installs this project);
* pyproject.toml: ``dependencies`` plus every optional extra except ``gpu``
  (cupy is wheel-per-CUDA-version and deliberately pip-only).

Where both files give a lower bound (``>=``, ``==``, ``~=`` or conda's ``=``),
the bounds must be the same version.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
EXCLUDED_EXTRAS = {"gpu"}
NOT_PACKAGES = {"python", "pip"}

_SPEC_RE = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<rest>.*)$")
_LOWER_RE = re.compile(r"(?:>=|==|~=|(?<![<>!=~])=(?!=))\s*(?P<version>[0-9][0-9A-Za-z.*+!-]*)")


def normalise(name: str) -> str:
    """PEP 503 form, so ``pytest_xdist`` and ``pytest-xdist`` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"numpy>=1.24"`` -> ``("numpy", "1.24")``; the bound is ``None`` when there is none."""
    spec = spec.split(";", 1)[0].split("#", 1)[0]  # environment markers, comments
    match = _SPEC_RE.match(spec)
    if not match:
        raise ValueError(f"cannot read the requirement {spec!r}")
    lower = _LOWER_RE.search(match.group("rest"))
    return normalise(match.group("name")), lower.group("version").rstrip(".*") if lower else None


def version_key(version: str) -> tuple:
    """``"8.0"`` and ``"8"`` compare equal: trailing zero components are dropped."""
    parts = [int(p) if p.isdigit() else p for p in re.split(r"[.]", version)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _add(table: dict[str, set[str | None]], spec: str) -> None:
    name, lower = parse_spec(spec)
    table.setdefault(name, set()).add(lower)


def conda_requirements(path: Path = ROOT / "environment.yml") -> dict[str, set[str | None]]:
    """``{name: {lower bounds}}`` from environment.yml's conda and pip dependencies."""
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    table: dict[str, set[str | None]] = {}
    for entry in data.get("dependencies") or []:
        specs = entry.get("pip", []) if isinstance(entry, dict) else [entry]
        for spec in specs:
            spec = str(spec).strip()
            if spec.startswith("-e") or spec in {".", "-e ."}:
                continue  # the project itself
            if "::" in spec:  # conda "channel::package"
                spec = spec.split("::", 1)[1]
            if normalise(parse_spec(spec)[0]) in NOT_PACKAGES:
                continue
            _add(table, spec)
    return table


def pyproject_requirements(path: Path = ROOT / "pyproject.toml") -> dict[str, set[str | None]]:
    """``{name: {lower bounds}}`` from pyproject's dependencies and extras (but ``gpu``)."""
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    table: dict[str, set[str | None]] = {}
    specs = list(project.get("dependencies", []))
    for extra, extra_specs in project.get("optional-dependencies", {}).items():
        if extra not in EXCLUDED_EXTRAS:
            specs.extend(extra_specs)
    for spec in specs:
        if normalise(parse_spec(spec)[0]) == normalise(project["name"]):
            continue  # self-referencing extras such as "course_lib[dask]"
        _add(table, spec)
    return table


def test_parse_spec():
    assert parse_spec("numpy>=1.24") == ("numpy", "1.24")
    assert parse_spec("pytest_xdist >=3.3,<4") == ("pytest-xdist", "3.3")
    assert parse_spec("python=3.11") == ("python", "3.11")
    assert parse_spec("dask[distributed]==2023.1.*") == ("dask", "2023.1")
    assert parse_spec("tqdm") == ("tqdm", None)
    assert parse_spec("foo<2") == ("foo", None)
    assert version_key("8.0") == version_key("8")


def test_environment_yml_and_pyproject_name_the_same_packages():
    conda, pip = conda_requirements(), pyproject_requirements()
    only_conda = sorted(set(conda) - set(pip))
    only_pip = sorted(set(pip) - set(conda))
    assert not only_conda and not only_pip, (
        "environment.yml and pyproject.toml have drifted apart.\n"
        f"  only in environment.yml: {only_conda or '-'}\n"
        f"  only in pyproject.toml (dependencies + extras except gpu): {only_pip or '-'}\n"
        "Add each package to the other file (same lower bound) or remove it from both.")


def test_lower_bounds_agree():
    conda, pip = conda_requirements(), pyproject_requirements()
    problems = []
    for name in sorted(set(conda) & set(pip)):
        for source, table in (("environment.yml", conda), ("pyproject.toml", pip)):
            bounds = {b for b in table[name] if b}
            if len({version_key(b) for b in bounds}) > 1:
                problems.append(f"{name}: {source} gives several lower bounds {sorted(bounds)}")
        ours = {version_key(b) for b in conda[name] if b}
        theirs = {version_key(b) for b in pip[name] if b}
        if ours and theirs and ours != theirs:
            problems.append(f"{name}: environment.yml >={'.'.join(map(str, min(ours)))} but "
                            f"pyproject.toml >={'.'.join(map(str, min(theirs)))}")
    assert not problems, "lower bounds differ:\n  " + "\n  ".join(problems)


def test_environment_python_satisfies_requires_python():
    """Binder builds with environment.yml's Python; pip refuses versions outside requires-python."""
    yaml = pytest.importorskip("yaml")
    deps = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))["dependencies"]
    pythons = [parse_spec(str(d))[1] for d in deps
               if isinstance(d, str) and parse_spec(d)[0] == "python"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.search(r">=\s*([0-9.]+)", requires)
    if not pythons or not pythons[0] or not minimum:
        pytest.skip("no pinned python in environment.yml or no '>=' in requires-python")
    assert version_key(pythons[0]) >= version_key(minimum.group(1)), (
        f"environment.yml pins python={pythons[0]}, below requires-python {requires!r}")
