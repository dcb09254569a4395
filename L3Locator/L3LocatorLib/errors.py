"""Exceptions whose messages are written for the person running the tool.

Every message names the problem and what to do about it; callers show
``str(error)`` as is (a dialog in Slicer, the ``message`` field of a CLI row).
"""

from __future__ import annotations


class L3LocatorError(Exception):
    """Base class: a problem the user can act on (not a bug)."""


class InputError(L3LocatorError):
    """The input image cannot be used (unreadable, not 3-D, not CT, too small...)."""


class ModelError(L3LocatorError):
    """The model files are missing, corrupt or not understood by this version."""


class DependencyError(L3LocatorError):
    """A required package (PaddlePaddle) or device (GPU) is not available."""
