"""The environment is pinned once and the pins agree everywhere they are written."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml

PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)==(?P<version>[^\s;#]+)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(requirements: list[str], source: str) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = PIN.match(requirement.strip())
        if match is None:
            raise AssertionError(f"{source}: {requirement!r} is not an exact pin (name==version)")
        pins[_canonical(match["name"])] = match["version"]
    return pins


@pytest.fixture(scope="module")
def pyproject_pins(repo_root: Path) -> dict[str, str]:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return _pins(requirements, "pyproject.toml")


def test_pyproject_pins_the_packages_the_book_needs(pyproject_pins: dict[str, str]) -> None:
    assert pyproject_pins["torch"] == "2.14.1"
    assert pyproject_pins["torchvision"] == "0.29.1"
    assert pyproject_pins["jupyter-book"].startswith("1.")  # JB2 ignores _config.yml/_toc.yml
    assert pyproject_pins["opencv-python-headless"].startswith("4.")  # OpenCV 5 lacks Haar cascades
    assert pyproject_pins["opencv-python"] == pyproject_pins["opencv-python-headless"]
    setuptools_major = int(pyproject_pins["setuptools"].split(".")[0])
    assert (
        77 <= setuptools_major < 81
    )  # torch needs >= 77; face_recognition_models needs pkg_resources


def test_environment_yml_carries_the_same_pins(
    repo_root: Path, pyproject_pins: dict[str, str]
) -> None:
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    pip_section = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    conda_pins = _pins([req for req in pip_section if not req.startswith("-")], "environment.yml")
    assert conda_pins == pyproject_pins
    assert "python=3.11" in env["dependencies"]


def test_lock_file_agrees_with_pyproject(repo_root: Path, pyproject_pins: dict[str, str]) -> None:
    lines = (repo_root / "constraints.txt").read_text().splitlines()
    locked = _pins([line for line in lines if line and not line.startswith("#")], "constraints.txt")
    disagreeing = {
        name: (pinned, locked.get(name))
        for name, pinned in pyproject_pins.items()
        if locked.get(name) != pinned
    }
    assert not disagreeing, f"pyproject.toml vs constraints.txt: {disagreeing}"


def test_installed_environment_is_the_pinned_one(pyproject_pins: dict[str, str]) -> None:
    wrong = {}
    for name, pinned in pyproject_pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed is None or installed.split("+")[0] != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"pinned vs installed: {wrong}; run `make install`"


def test_opencv_is_the_4x_build_with_cascades() -> None:
    import cv2

    assert cv2.__version__.startswith("4.")
    assert Path(cv2.data.haarcascades, "haarcascade_frontalface_default.xml").is_file()
