"""An answer found on a DICOM volume, given in the scan's own slices.

A series with uneven spacing or a tilted gantry is located on a resampled grid, whose slice
numbers are not the files'. The answer is moved to the nearest real slice: ``slice_index``
and the k of ``l3_ijk`` (and of ``candidate_ijk``) count the series' slices in order along
the slice normal, and the result names that slice's file, SOPInstanceUID and
InstanceNumber. ``resampled`` says, in words, how the located grid differed from the
files' (empty when it did not). Volumes without ``source`` (files other than DICOM, Slicer
nodes) are left as they are.
"""

from __future__ import annotations

import numpy as np

from .result import L3Result
from .volume import LPS_TO_RAS, Volume


def in_real_slices(result: L3Result, volume: Volume) -> None:
    """Move ``result`` (found on ``volume``) to the volume's real slices, in place."""
    source = volume.source
    if source is None or result.slice_axis != 2:  # DICOM volumes are read with k the slices
        return
    if source.changed:
        result.resampled = source.note
    if result.candidate_ijk is not None:
        old_k, new_k = result.candidate_ijk[2], source.nearest(result.candidate_ijk[2])
        result.candidate_ijk = [*result.candidate_ijk[:2], new_k]
        # The not-found message names the candidate's slice (``locate``): the real one.
        result.message = result.message.replace(f"slice {old_k} (S", f"slice {new_k} (S")
    if not result.found or result.l3_ras_mm is None:
        return
    k = float(volume.ras_to_ijk_points(np.asarray(result.l3_ras_mm))[2])
    n = source.nearest(k)
    lps = (LPS_TO_RAS[:3, :3] @ np.asarray(result.l3_ras_mm, float)) - source.positions_lps[n]
    row, col = np.asarray(source.orientation[:3]), np.asarray(source.orientation[3:])
    i = int(round(float(lps @ row) / source.pixel_spacing[0]))
    j = int(round(float(lps @ col) / source.pixel_spacing[1]))
    result.slice_index = n
    result.l3_ijk = [i, j, n]
    result.slice_file = source.files[n]
    result.slice_sop_uid = source.sop_uids[n] or None
    result.slice_instance = source.instance_numbers[n]
    if source.changed:
        away_mm = abs(source.k_index[n] - k) * float(volume.spacing[2])
        result.resampled = (f"{source.note}; the answer is the nearest real slice, "
                            f"{away_mm:.1f} mm from the level found")
