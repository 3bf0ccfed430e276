"""Checks of environment.yml, the file Binder (repo2docker) builds the reader's machine from.

Nothing here needs conda, Docker or the network: the YAML is parsed with PyYAML, every
conda spec with py-rattler's ``MatchSpec`` (the conda-forge ecosystem's own parser), and
repo2docker is asked to render its Dockerfile without building it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import rattler
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV_FILE = REPO / "environment.yml"
PYPROJECT = REPO / "pyproject.toml"

# conda-forge package name -> PyPI distribution name, where the two differ.
CONDA_TO_PYPI = {
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "pytorch": "torch",
}
# Tooling that is in the conda environment but is no dependency of the package.
NOT_PACKAGE_DEPS = {"python", "pip"}


def _env() -> dict:
    return yaml.safe_load(ENV_FILE.read_text(encoding="utf-8"))


def _conda_specs(env: dict) -> list[str]:
    return [dep for dep in env["dependencies"] if isinstance(dep, str)]


def _pip_section(env: dict) -> list[str]:
    sections = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict) and "pip" in dep]
    assert len(sections) == 1, "environment.yml needs exactly one `- pip:` list"
    return sections[0]


def _pypi_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"cannot read a package name from {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _conda_name(spec: str) -> str:
    return rattler.MatchSpec(spec, strict=True).name.normalized


def test_is_valid_yaml_mapping():
    env = _env()
    assert isinstance(env, dict), "environment.yml must be a YAML mapping"
    assert isinstance(env.get("dependencies"), list) and env["dependencies"]


def test_channel_is_conda_forge_only():
    assert _env().get("channels") == ["conda-forge"]


def test_python_is_pinned_as_python_equals_3_x():
    pins = [s for s in _conda_specs(_env()) if s.replace(" ", "").startswith("python=")]
    assert len(pins) == 1, "exactly one `python=3.x` pin (repo2docker reads it)"
    assert re.fullmatch(r"python=3\.\d+", pins[0].replace(" ", "")), pins[0]
    minor = int(pins[0].split(".")[-1])
    requires = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["requires-python"]
    floor = re.fullmatch(r">=\s*3\.(\d+)", requires)
    assert floor, f"unexpected requires-python {requires!r}"
    assert minor >= int(floor.group(1)), "Binder's Python must satisfy requires-python"


def test_every_conda_spec_parses_with_rattler():
    for spec in _conda_specs(_env()):
        parsed = rattler.MatchSpec(spec, strict=True)
        assert parsed.name.normalized, spec


def test_pip_section_installs_the_repository_editable():
    pip = [line.strip() for line in _pip_section(_env())]
    assert "-e ." in pip, "the pip section must install the repository itself (`-e .`)"


def test_conda_dependencies_match_the_notebooks_extra():
    conda = {_conda_name(s) for s in _conda_specs(_env())} - NOT_PACKAGE_DEPS
    conda = {CONDA_TO_PYPI.get(name, name) for name in conda}
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extra = {_pypi_name(r) for r in project["optional-dependencies"]["notebooks"]}
    runtime = {_pypi_name(r) for r in project.get("dependencies", [])}
    assert conda - extra - runtime == set(), "in environment.yml but not in pyproject"
    assert extra - conda == set(), "in pyproject's notebooks extra but not in environment.yml"
    assert runtime - conda == set(), "runtime dependencies missing from environment.yml"


@pytest.mark.slow
def test_repo2docker_accepts_the_repository_offline(tmp_path):
    """repo2docker picks the conda buildpack and renders its Dockerfile.

    ``--no-build`` makes repo2docker stop after writing the Dockerfile (printed with
    ``--debug``): no Docker daemon and no network are needed, the conda lock file for
    the requested Python ships inside repo2docker.
    """
    pin = next(s for s in _conda_specs(_env()) if s.replace(" ", "").startswith("python="))
    version = pin.replace(" ", "").split("=", 1)[1]
    proc = subprocess.run(
        [sys.executable, "-m", "repo2docker", "--no-build", "--no-run", "--debug", str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert f"Building conda environment for python={version}" in log, log[-4000:]
    # The conda buildpack applies environment.yml (and with it `pip: [-e .]`).
    assert re.search(r'env update -p \$\{NB_PYTHON_PREFIX\} --file "environment\.yml"', log), log[
        -4000:
    ]
    assert "FROM " in log, "no Dockerfile was rendered"
