"""pyproject.toml and environment.yml must describe the same environment."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = pathlib.Path(__file__).resolve().parent.parent
# conda-forge names that differ from PyPI names.
CONDA_TO_PYPI = {"pytorch": "torch", "arch-py": "arch"}
# Entries of environment.yml that are the environment itself, not a dependency.
CONDA_ONLY = {"python", "pip"}
# Extras that environment.yml leaves out on purpose: `instructor` (otter-grader) goes into its own
# environment, .venv-instructor (`make instructor`), because it changes the notebooks' stored outputs.
SEPARATE_EXTRAS = {"instructor"}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(text: str) -> tuple[str, str]:
    """Split 'name>=1,<2' into ('name', '>=1,<2') with a normalised name."""
    text = text.split(";")[0]
    match = _REQUIREMENT.match(text)
    if match is None:
        raise ValueError(f"cannot parse requirement {text!r}")
    name, spec = match.groups()
    return _normalise(name), spec.replace(" ", "")


def pyproject_requirements(path: pathlib.Path = ROOT / "pyproject.toml") -> dict[str, str]:
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    texts = list(project["dependencies"])
    for name, extra in project.get("optional-dependencies", {}).items():
        if name not in SEPARATE_EXTRAS:
            texts.extend(extra)
    return dict(parse_requirement(t) for t in texts)


def conda_requirements(path: pathlib.Path = ROOT / "environment.yml") -> dict[str, str]:
    env = yaml.safe_load(path.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):  # the pip: section
            for pip_entry in entry.get("pip", []):
                if pip_entry.startswith("-"):  # options such as "-e ."
                    continue
                name, spec = parse_requirement(pip_entry)
                found[name] = spec
            continue
        name, spec = parse_requirement(entry)
        if name in CONDA_ONLY:
            continue
        found[CONDA_TO_PYPI.get(name, name)] = spec
    return found


def compare(pip: dict[str, str], conda: dict[str, str]) -> list[str]:
    """Every difference between the two, as sentences a maintainer can act on."""
    problems = [f"{n} is in pyproject.toml but not in environment.yml" for n in sorted(set(pip) - set(conda))]
    problems += [f"{n} is in environment.yml but not in pyproject.toml" for n in sorted(set(conda) - set(pip))]
    problems += [
        f"{n}: pyproject.toml asks for {pip[n]!r}, environment.yml for {conda[n]!r}"
        for n in sorted(set(pip) & set(conda))
        if pip[n] != conda[n]
    ]
    return problems


def test_pyproject_and_environment_list_the_same_dependencies():
    problems = compare(pyproject_requirements(), conda_requirements())
    assert not problems, "\n".join(problems)


def test_compare_catches_a_missing_and_a_mismatched_dependency(tmp_path):
    env = tmp_path / "environment.yml"
    env.write_text(
        "name: t\ndependencies:\n  - python>=3.10\n  - pytorch>=2.2\n  - numpy>=1.0\n"
        "  - pip:\n      - extra-only>=1\n      - -e .\n",
        encoding="utf-8",
    )
    conda = conda_requirements(env)
    assert conda == {"torch": ">=2.2", "numpy": ">=1.0", "extra-only": ">=1"}
    problems = compare({"torch": ">=2.2", "numpy": ">=1.24", "tqdm": ">=4"}, conda)
    assert problems == [
        "tqdm is in pyproject.toml but not in environment.yml",
        "extra-only is in environment.yml but not in pyproject.toml",
        "numpy: pyproject.toml asks for '>=1.24', environment.yml for '>=1.0'",
    ]


def test_runtime_dependencies_are_lower_bounds_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for text in project["dependencies"]:
        name, spec = parse_requirement(text)
        assert spec.startswith(">=") and "," not in spec and "==" not in spec, (
            f"runtime dependency {name} should have a lower bound only, got {spec!r}"
        )
    assert project["requires-python"] == ">=3.10,<3.14"


def test_the_wheel_carries_every_module_and_the_measured_results(tmp_path):
    # What Colab gets from `pip install git+...`: a wheel. Files the notebooks read
    # through importlib.resources (bigmodel_lib/results/*.json, the articles' listings)
    # must be inside it.
    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the repository
    shutil.copytree(ROOT / "bigmodel_lib", source / "bigmodel_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
         str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("bigmodel_lib-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(ROOT)).replace("\\", "/")
        for pattern in ("bigmodel_lib/**/*.py", "bigmodel_lib/results/*.json", "bigmodel_lib/articles/listings/*.txt",
                        "bigmodel_lib/speech_data/*")
        for p in ROOT.glob(pattern)
    }
    assert expected and expected <= names, sorted(expected - names)
    assert sum(name.startswith("bigmodel_lib/articles/listings/") for name in names) == 12  # 6 listings x 2 layouts
