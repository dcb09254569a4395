"""Stand-in for ``slicer.packaging`` (Slicer 5.10+): checks are real, installs are recorded.

Tests emulate an older Slicer (no ``pip_ensure``) by hiding this module.
"""

from __future__ import annotations

import logging

import slicer

#: what pip_ensure was asked for: (requirement strings, requester)
ENSURED: list = []


def _requirementName(requirement) -> str:
    text = str(requirement)
    for sep in "<>=!~;[ ":
        text = text.split(sep)[0]
    return text.strip()


def pip_check(requirements) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    if isinstance(requirements, str):
        requirements = requirements.split()
    for requirement in requirements:
        try:
            version(_requirementName(requirement))
        except PackageNotFoundError:
            return False
    return True


def load_requirements(path):
    with open(path) as f:
        return [line.strip() for line in f
                if line.strip() and not line.strip().startswith(("#", "-"))]


def pip_install(requirements, **kwargs):
    slicer.util.pip_install(requirements)


def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True,
               prompt_restart=True, requester=None, skip_in_testing=True, show_progress=True):
    """Same flow as Slicer's: check, (testing: skip), ask, install."""
    if isinstance(requirements, str):
        requirements = requirements.split()
    missing = [str(r) for r in requirements if not pip_check([r])]
    if not missing:
        return None
    ENSURED.append((missing, requester))
    if skip_in_testing and slicer.app.testingEnabled():
        logging.info("Testing mode is enabled: skipping pip_ensure for %s", missing)
        return None
    if prompt_install and not slicer.util.confirmOkCancelDisplay(
            "Python packages need to be installed:\n" + "\n".join(missing),
            f"{requester} - Install Python Packages" if requester else None):
        raise RuntimeError("User declined package installation")
    slicer.util.pip_install(missing)
    return None
