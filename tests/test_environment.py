"""environment.yml (conda) and pyproject.toml (pip) must list the same packages at the same versions."""

import re
import tomllib

import yaml

from bonetumor import paths

# conda-forge names that differ from the PyPI ones
CONDA_TO_PYPI = {"pytorch": "torch"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    pins = {}
    for spec in specs:
        name, sep, version = spec.partition("==")
        assert sep, f"pyproject.toml: {spec!r} is not pinned with =="
        pins[_norm(name)] = version
    return pins


def environment_pins() -> tuple[dict[str, str], list]:
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    pins, pip_section = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section = dep["pip"]
            continue
        name, _, version = dep.partition("=")
        if name in ("python", "pip"):
            continue
        pins[_norm(CONDA_TO_PYPI.get(name, name))] = version
    return pins, pip_section


def test_environment_yml_matches_pyproject():
    pip_pins = pyproject_pins()
    conda_pins, _ = environment_pins()
    only_pip = sorted(set(pip_pins) - set(conda_pins))
    only_conda = sorted(set(conda_pins) - set(pip_pins))
    assert not only_pip, f"in pyproject.toml but not environment.yml: {only_pip}"
    assert not only_conda, f"in environment.yml but not pyproject.toml: {only_conda}"
    differ = {n: (pip_pins[n], conda_pins[n]) for n in pip_pins if pip_pins[n] != conda_pins[n]}
    assert not differ, f"versions differ (pyproject, environment.yml): {differ}"


def test_environment_installs_the_package_itself():
    _, pip_section = environment_pins()
    assert "-e ." in pip_section


def test_named_packages_are_all_pinned():
    pins = pyproject_pins()
    for name in ("jupyterlab", "papermill", "torch", "torchvision", "pycocotools", "seaborn", "pandas",
                 "scikit-learn", "nbval"):
        assert name in pins, name


def test_python_versions_agree():
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    conda_python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = conda_python.split("=")[1]
    low = re.search(r">=\s*([\d.]+)", requires).group(1)
    high = re.search(r"<\s*([\d.]+)", requires).group(1)
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))
    assert as_tuple(low) <= as_tuple(version) < as_tuple(high)
