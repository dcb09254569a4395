"""The first stage: refuse input that cannot be a CT holding a lumbar vertebra, before any
work is done, with a message that names the problem and what to do."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .volume import Volume

#: The smallest scan that can hold a lumbar vertebra: superior-inferior and in-plane extent (mm).
MIN_EXTENT_SI_MM = 30.0
MIN_EXTENT_INPLANE_MM = 60.0


def check_volume(volume: Volume) -> None:
    """Every check, cheapest first; raises ``InputError`` on the first failure."""
    check_extent(volume)
    check_ct_like(volume)


def check_extent(volume: Volume) -> None:
    """Refuse scans too small (in mm) to contain a lumbar vertebra."""
    extent = (np.asarray(volume.shape_ijk) - 1) * volume.spacing
    direction = np.abs(volume.direction)
    si_axis = int(np.argmax(direction[2]))
    label = volume.name or "The scan"
    if min(volume.shape_ijk) < 2 or extent[si_axis] < MIN_EXTENT_SI_MM:
        raise InputError(
            f"{label} covers only {extent[si_axis]:.0f} mm from head to foot "
            f"({volume.shape_ijk[si_axis]} slices); at least {MIN_EXTENT_SI_MM:.0f} mm are needed "
            "to hold a lumbar vertebra. Use the full CT series."
        )
    inplane = [extent[a] for a in range(3) if a != si_axis]
    if min(inplane) < MIN_EXTENT_INPLANE_MM:
        raise InputError(
            f"{label} is only {min(inplane):.0f} mm wide; at least {MIN_EXTENT_INPLANE_MM:.0f} mm "
            "are needed to see the spine. Use a reconstruction of the whole body cross-section."
        )


def check_ct_like(volume: Volume) -> None:
    """Refuse data that cannot be a CT in HU: NaN-only, constant, or far off the HU scale."""
    array = volume.array
    label = volume.name or "The image"
    step = max(1, int(round((array.size / 2e6) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float32)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise InputError(f"{label} holds no valid numbers (all NaN or infinite).")
    low, high = float(finite.min()), float(finite.max())
    if high - low < 1e-3:
        raise InputError(f"{label} is constant ({low:g} everywhere): there is nothing to analyse.")
    p99 = float(np.percentile(finite, 99.5))
    if high < 150.0 or p99 < 100.0 or low < -5000.0 or p99 > 20000.0:
        raise InputError(
            f"{label} does not look like a CT in Hounsfield units (values {low:g} to {high:g}; "
            "no bone-like values). L3 Locator needs a CT; MR, PET or rescaled images will not work."
        )
