"""Lazy imports of the optional ``cohort`` extra, with a message that says what to install."""

from __future__ import annotations

from typing import Any

from ..errors import DependencyError

INSTALL_HINT = "Install the cohort extra: pip install 'l3locator[cohort]'"


def require_pydicom() -> Any:
    """The ``pydicom`` module, or ``DependencyError`` saying how to install it."""
    try:
        import pydicom
    except ImportError:
        raise DependencyError(
            f"Reading DICOM headers and writing DICOM slices needs pydicom. {INSTALL_HINT}."
        ) from None
    return pydicom


def require_dask() -> Any:
    """The ``dask.distributed`` module, or ``DependencyError`` saying how to install it."""
    try:
        import dask.distributed as distributed
    except ImportError:
        raise DependencyError(
            f"Running on a Dask cluster (--cluster) needs dask[distributed]. {INSTALL_HINT}."
        ) from None
    return distributed
