"""Enhanced (multi-frame) CT: one file holds every slice as a frame, and each frame's
position is in its own functional group. Readers take the geometry from the first frames or
the shared spacing (1 mm when absent), so frames missing from the file would be read as a
shorter, wrong scan. Here every frame's ImagePositionPatient is read (pydicom) and given to
the same checks as a series of single-frame files (``dicom.check_positions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class FrameGeometry:
    """Per-frame geometry of an enhanced CT file (LPS mm), frames in file order."""

    positions: np.ndarray  #: (n_frames, 3) ImagePositionPatient of each frame
    orientation: tuple[float, ...]  #: row then column direction cosines
    pixel_spacing: tuple[float, float]  #: (along i, along j) mm


def _first(item: Any, sequence: str, attribute: str) -> Optional[Any]:
    items = item.get(sequence) if item is not None else None
    return items[0].get(attribute) if items else None


def frame_geometry(path: Path, label: str) -> FrameGeometry:
    """Read each frame's position, the orientation and the pixel spacing of an enhanced
    CT (``InputError`` when pydicom is missing or the file does not say them)."""
    try:
        import pydicom
    except ImportError:
        raise InputError(
            f"{label}: is an enhanced (multi-frame) CT; checking that none of its frames is "
            "missing needs pydicom (pip install pydicom, or the 'cohort' extra). Or export "
            "the series as single-frame CT images.") from None
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as error:  # a damaged file is the user's to fix, with its name
        raise InputError(f"{label}: the multi-frame DICOM file could not be read "
                         f"({type(error).__name__}: {error}).") from None
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    positions, orientations = [], []
    for frame in frames:
        position = _first(frame, "PlanePositionSequence", "ImagePositionPatient")
        positions.append(None if position is None else [float(v) for v in position])
        orientations.append(_first(frame, "PlaneOrientationSequence", "ImageOrientationPatient")
                            or _first(shared, "PlaneOrientationSequence",
                                      "ImageOrientationPatient"))
    spacing = (_first(shared, "PixelMeasuresSequence", "PixelSpacing")
               or (_first(frames[0], "PixelMeasuresSequence", "PixelSpacing") if frames
                   else None))
    n_frames = int(ds.get("NumberOfFrames") or 0)
    if not frames or len(frames) != n_frames or any(p is None for p in positions) or (
            any(o is None for o in orientations)) or spacing is None:
        raise InputError(
            f"{label}: the enhanced (multi-frame) CT does not give every frame's position, "
            "orientation and pixel spacing, so its slices cannot be put in place. Export the "
            "series again (or as single-frame CT images).")
    cosines = np.array([[float(v) for v in o] for o in orientations])
    if np.ptp(cosines, axis=0).max() > 1e-3:
        raise InputError(f"{label}: the frames of the enhanced CT have different "
                         "orientations. Export the axial CT series alone.")
    return FrameGeometry(np.asarray(positions, dtype=float), tuple(cosines[0]),
                         (float(spacing[1]), float(spacing[0])))
