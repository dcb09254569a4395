"""The package's shape: every module imports on its own in a fresh interpreter (no import
circle anywhere), the pipeline never imports ``training``, and the Slicer module list
names every file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "L3Locator" / "L3LocatorLib"


def _modules() -> list[str]:
    names = []
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(("L3LocatorLib", *parts)))
    return names


@pytest.mark.parametrize("module", _modules())
def test_module_imports_first_in_a_fresh_interpreter(module):
    # Importing a module first is what exposes a circle: the partner it needs is then
    # only half initialised. A fresh interpreter per module gives each that chance.
    code = f"import importlib; importlib.import_module({module!r})"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_library_never_imports_training_slicer_or_qt():
    offenders = {}
    for path in sorted(LIB.rglob("*.py")):
        bad = _imported_top_levels(path) & {"training", "slicer", "qt", "ctk", "vtk"}
        if bad:
            offenders[str(path.relative_to(LIB))] = sorted(bad)
    assert offenders == {}


def test_pipeline_stays_out_of_the_phantoms_package():
    # Synthetic CTs are for training, tests and the demo; the locating pipeline must
    # not depend on them (only the command's demo/phantom sub-commands may).
    allowed = {"cli.py"}
    offenders = []
    for path in sorted(LIB.glob("*.py")):
        if path.name in allowed:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("phantoms"):
                offenders.append(path.name)
    assert offenders == []


def test_heavy_dependencies_stay_lazy():
    # Slicer loads the module before PaddlePaddle (or pydicom, dask) may be installed.
    code = (
        "import sys, L3LocatorLib.locate, L3LocatorLib.cli, L3LocatorLib.qa; "
        "print(sorted(m for m in ('paddle', 'pydicom', 'dask') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
