"""Exceptions whose messages are written for the person running the tool.

Every message names the problem and what to do about it; callers show
``str(error)`` as is (a dialog in Slicer, the ``message`` field of a CLI row).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any


class L3LocatorError(Exception):
    """Base class: a problem the user can act on (not a bug)."""


class InputError(L3LocatorError):
    """The input image cannot be used (unreadable, not 3-D, not CT, too small...)."""


class ModelError(L3LocatorError):
    """The model files are missing, corrupt or not understood by this version."""


class DependencyError(L3LocatorError):
    """A required package (PaddlePaddle) or device (GPU) is not available."""


def refuse_unknown_fields(cls: type, data: dict[str, Any], what: str) -> None:
    """Raise ``ModelError`` when ``data`` holds keys that are not fields of dataclass ``cls``:
    a model made by a newer L3Locator, whose settings this version cannot honour."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ModelError(
            f"{what} uses settings this version of L3Locator does not know "
            f"({', '.join(unknown)}). Update L3Locator or use a model made for it."
        )


def refuse_other_version(found: int, supported: int, what: str) -> None:
    """Raise ``ModelError`` when a model's settings of kind ``what`` have another version."""
    if found != supported:
        raise ModelError(
            f"{what} is version {found}; this version of L3Locator implements version "
            f"{supported}. Update L3Locator or use a model made for it."
        )
