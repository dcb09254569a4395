"""Stand-in for ``slicer.packaging`` (Slicer 5.12+, ``Base/Python/slicer/packaging.py``).

Same signatures and the same flow as Slicer's: ``pip_ensure`` checks, skips in testing
mode, asks (``RuntimeError`` when declined), then calls ``pip_install``, which by default
shows a MODAL progress dialog (recorded here as a ``progressDialog`` display, also without
a main window, as Slicer does); a failed install shows "Package installation failed." and
raises ``subprocess.CalledProcessError``. Nothing is ever installed (``_standin.run_pip``).

On the stand-in's 5.6-5.10 versions this module cannot be imported, as in those Slicers.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import slicer

from . import _standin

if slicer.app.minorVersion < 12:
    raise ImportError(f"slicer.packaging does not exist in Slicer {slicer.app.version}")

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


def pip_install(requirements, constraints=None, no_deps_requirements=None, skip_packages=None,
                blocking=True, show_progress=True, requester=None, parent=None,
                logCallback=None, completedCallback=None):
    """Slicer 5.12's: modal progress dialog when ``show_progress`` and ``blocking`` (not in
    testing mode); on failure an error dialog, then ``CalledProcessError``."""
    dialog = show_progress and blocking and not slicer.app.testingEnabled()
    if dialog:
        _standin.DISPLAYED.append(("progressDialog", f"Installing {requirements}", requester))
        # visible from a separate process too (run_slicer.py): Slicer opens it even
        # without a main window, and a batch then waits on a dialog nobody sees
        print(f"[stand-in] modal progress dialog: installing {requirements}", file=sys.stderr,
              flush=True)
    try:
        _standin.run_pip(requirements)
    except subprocess.CalledProcessError as error:
        if dialog:
            slicer.util.errorDisplay("Package installation failed.",
                                     windowTitle=f"{requester} - Installation Failed"
                                     if requester else "Installation Failed")
        raise subprocess.CalledProcessError(error.returncode, "pip install") from None
    return None


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
    return pip_install(missing, constraints=constraints, skip_packages=skip_packages,
                       blocking=True, show_progress=show_progress, requester=requester)
