"""The install contract: environment.yml and pyproject.toml agree; .ci/run runs the README's test command."""
import pathlib
import re
import shlex
import tomllib

import yaml   # PyYAML, a dependency of dask (in the test extra)

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}          # conda-forge names that differ from PyPI's
CONDA_ONLY = {"python", "pip"}               # not Python packages on PyPI


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pip_names = {_name(r) for r in pyproject["project"]["dependencies"]}
    conda_names = set()
    env = (ROOT / "environment.yml").read_text()
    for line in env.split("\ndependencies:", 1)[1].splitlines():
        m = re.match(r"^  - ([A-Za-z][\w.-]*)", line)   # top-level conda entries, not the pip: section
        if m:
            conda_names.add(CONDA_TO_PIP.get(m.group(1).lower(), m.group(1).lower()))
    assert conda_names - CONDA_ONLY == pip_names
    assert {"numpy", "scipy", "scikit-learn", "torch", "joblib", "tqdm", "matplotlib"} <= pip_names
    assert "-e \".[test]\"" in env   # the suite itself, via pip


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(python -m pytest[^#\n]*?)\s*(?:#.*)?$", quickstart, flags=re.M)
    assert commands and set(commands) == {"python -m pytest"}
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^python -m pytest$", ci, flags=re.M)
    assert "torch==2.13.0" in ci and ci.index("torch==2.13.0") < ci.index('-e ".[test]"')


def test_quickstart_pins_the_torch_ci_installs_and_says_how_to_get_the_cpu_build():
    """One torch version everywhere: the Quickstart's command 1, its CPU-only step (PyTorch's CPU wheel index,
    whose `+cpu` build satisfies the same `==` pin, PEP 440 local versions), and .ci/run; the project itself
    keeps a range."""
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    pins = set(re.findall(r"torch==([\d.]+)", quickstart))
    ci_pins = set(re.findall(r"torch==([\d.]+)", (ROOT / ".ci" / "run").read_text()))
    assert len(pins) == 1 and pins == ci_pins
    version = pins.pop()
    assert f"pip install torch=={version} --index-url https://download.pytorch.org/whl/cpu" in quickstart
    assert f"pip install torch=={version} -e \".[test]\"" in quickstart
    requirement = [r for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                   if _name(r) == "torch"]
    assert requirement == ["torch>=2.1"]


def test_environment_yml_parses_and_its_pip_section_installs_this_project_with_its_tests():
    """What `conda env create -f environment.yml` reads (no conda here to run it): a named environment from
    conda-forge whose conda part installs pip and Python within requires-python, and whose pip part is one
    editable install of the folder holding environment.yml (conda runs pip there) with the test extra, which
    pyproject.toml defines, for the project pyproject.toml names."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert env["name"] == "lazykit" and "conda-forge" in env["channels"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    sections = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert "pip" in conda and len(sections) == 1 and list(sections[0]) == ["pip"]
    assert f"python{pyproject['project']['requires-python']}" in conda
    (line,) = sections[0]["pip"]
    flag, target = shlex.split(line)
    path, extras = re.fullmatch(r"(.+?)\[([\w,-]+)\]", target).groups()
    assert flag == "-e" and (ROOT / path).resolve() == ROOT
    assert (ROOT / path / "pyproject.toml").is_file() and pyproject["project"]["name"] == "lazykit"
    assert extras.split(",") == ["test"] and "test" in pyproject["project"]["optional-dependencies"]
