"""Packaging promises (issue 13.13): what the README tells users to install is enough."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[;\s]", r, maxsplit=1)[0].lower() for r in requirements}


def test_training_has_an_extra_with_what_it_imports():
    """``python -m training train`` draws its curves with matplotlib: the ``train`` extra
    installs it, and the README's training section installs the extra."""
    project = _pyproject()["project"]
    assert "matplotlib" not in _requirement_names(project["dependencies"])  # Slicer stays lean
    assert "matplotlib" in _requirement_names(project["optional-dependencies"]["train"])
    training_imports = {
        name for path in (REPO / "training").glob("*.py")
        for name in re.findall(r"^\s*import (matplotlib)\b", path.read_text(), re.M)}
    assert training_imports == {"matplotlib"}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Training your own", 1)[1]
    before_first_train = section.split("python -m training train", 1)[0]
    assert 'pip install ".[train]"' in before_first_train


def test_shipped_model_files_are_packaged():
    """The wheel carries the model's JSON and its .npz weights (not a pickle format)."""
    data = _pyproject()["tool"]["setuptools"]["package-data"]["L3LocatorLib._models"]
    assert "*.npz" in data and not any(p.endswith(".pdparams") for p in data)
    models = REPO / "L3Locator" / "Resources" / "Models"
    assert (models / "default.npz").is_file() and not list(models.glob("*.pdparams"))


def test_every_library_subpackage_is_in_the_wheel():
    """``pip install .`` installs only the packages pyproject lists: every folder of
    L3LocatorLib with an ``__init__.py`` is one of them, mapped to its folder."""
    setuptools = _pyproject()["tool"]["setuptools"]
    library = REPO / "L3Locator" / "L3LocatorLib"
    found = {"L3LocatorLib." + ".".join(p.parent.relative_to(library).parts)
             for p in library.rglob("__init__.py") if p.parent != library}
    assert found <= set(setuptools["packages"]), sorted(found - set(setuptools["packages"]))
    for name in found:
        folder = "L3Locator/" + name.replace(".", "/")
        assert setuptools["package-dir"][name] == folder
