"""The first stage: refuse input that cannot be a CT holding a lumbar vertebra, before any
work is done, with a message that names the problem and what to do.

Checked, cheapest first: the voxel grid (plausible voxel sizes in mm, not sheared), the
extent in mm, and the values (a CT in Hounsfield units: soft tissue near 40-80 HU, bone
above 150 HU). Problems of the file itself (missing or duplicate DICOM slices, uneven spacing,
gantry tilt, zero or negative voxel sizes, size) are found by the readers (``volume``,
``dicom``) before the voxels are read.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .volume import Volume

#: The smallest scan that can hold a lumbar vertebra: superior-inferior and in-plane extent (mm).
MIN_EXTENT_SI_MM = 30.0
MIN_EXTENT_INPLANE_MM = 60.0
#: Plausible CT voxel sizes (mm): below, the header is in other units; above, slices are
#: so far apart that a vertebra (about 30 mm tall) is seen in one or two of them.
MIN_VOXEL_MM = 0.1
MAX_VOXEL_MM = 15.0
#: Largest angle (degrees) between voxel axes and a right angle: beyond, the grid is sheared.
MAX_SHEAR_DEG = 0.5
#: In a CT in HU the bulk of what is denser than water is soft tissue (40-80 HU), with
#: bone and contrast above it: the median of all values above ``DENSE_HU`` stays well
#: below ``DENSE_MEDIAN_MAX_HU`` in whole-body scans, tight spine crops (no air at all)
#: and bone-only reconstructions alike. A CT whose rescale intercept (-1024) was lost has
#: its soft tissue near +1050, and an MR's signal has no such scale.
DENSE_HU = 50.0
DENSE_MEDIAN_MAX_HU = 700.0


def check_volume(volume: Volume) -> None:
    """Every check, cheapest first; raises ``InputError`` on the first failure."""
    check_grid(volume)
    check_extent(volume)
    check_ct_like(volume)


def check_grid(volume: Volume) -> None:
    """Refuse voxel sizes no CT has, and sheared grids (a gantry tilt written into the
    geometry), which the projections cannot follow."""
    label = volume.name or "The scan"
    spacing = volume.spacing
    if spacing.min() < MIN_VOXEL_MM or spacing.max() > MAX_VOXEL_MM:
        sizes = " x ".join(f"{s:.3g}" for s in spacing)
        raise InputError(
            f"{label} has voxels of {sizes} mm; a CT's are between {MIN_VOXEL_MM:g} and "
            f"{MAX_VOXEL_MM:g} mm. The file's voxel size is wrong (other units?) or its "
            "slices are too far apart to count vertebrae. Check the export settings.")
    direction = volume.direction
    cosines = np.abs(direction.T @ direction - np.eye(3))
    shear = float(np.degrees(np.arcsin(np.clip(cosines.max(), 0.0, 1.0))))
    if shear > MAX_SHEAR_DEG:
        raise InputError(
            f"{label} has a sheared voxel grid (axes {shear:.1f} degrees off square, as from a "
            "tilted gantry). Resample it onto a regular grid first (for example in 3D Slicer: "
            "Resample Scalar Volume), or export the series as DICOM, which is corrected.")


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
    """Refuse data that cannot be a CT in HU: NaN-only, constant, far off the HU scale, or
    with its soft tissue far above 0 HU (an MR, or a CT that lost its -1024 rescale
    intercept). Scans without air (a tight crop inside the body, a bone-only
    reconstruction on a 0 HU background) are CTs and pass."""
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
    dense = finite[finite > DENSE_HU]
    dense_median = float(np.median(dense)) if dense.size else 0.0
    if dense_median > DENSE_MEDIAN_MAX_HU:
        raise InputError(
            f"{label} is not a CT in Hounsfield units: its tissue is around {dense_median:.0f} "
            "where a CT's soft tissue is 40-80 HU. It may be an MR image, or a CT whose "
            "rescale intercept (usually -1024) was lost when it was exported; export the CT "
            "again with its HU rescaling.")
