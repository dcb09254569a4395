"""The 3-D point at the L3 vertebral body, from the decoded row and the volume itself.

Right-left from the bone around the spine track in the frontal MIP; anterior-posterior
from the volume along the midline at that level (the body is the bone in front of the
spinal canal). All positions RAS mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .projection import Projections
from .volume import Volume


def vertebral_body_point(volume: Volume, projections: Projections, row: float) -> np.ndarray:
    """RAS (mm) of the centre of the vertebral body seen at a projection row.

    Right-left: the centre of the bone around the spine track in the frontal MIP
    at that row. Anterior-posterior: along the midline of the volume itself at
    that level, the spinal canal is the first gap in the bone behind the spine's
    front; the body is the bone run in front of it, and its middle is the answer.
    Contrast-filled or calcified vessels in front of the body are thereby skipped.
    """
    config = projections.config
    geometry = projections.geometry
    r = int(np.clip(round(row), 0, geometry.n_rows - 1))
    rows = slice(max(0, r - 2), min(geometry.n_rows, r + 3))
    frontal = projections.frontal_hu[rows].max(axis=0)
    spine_col = float(projections.spine_frontal_col[r])
    col = _bone_centre(frontal, spine_col, 30.0 / geometry.pixel_mm, config.bone_hu)
    r_mm = float(geometry.frontal_col_to_r(col))
    s_mm = float(geometry.row_to_s(row))
    spine_a = float(geometry.sagittal_col_to_a(projections.spine_sagittal_col[r]))
    a_mm = _body_centre_ap(volume, r_mm, s_mm, spine_a, config.bone_hu * 0.75)
    return np.array([r_mm, a_mm, s_mm])


def _body_centre_ap(volume: Volume, r_mm: float, s_mm: float, spine_a: float,
                    bone_hu: float) -> float:
    """A (mm) of the vertebral body's centre on the midline line through (r_mm, ., s_mm)."""
    a_values = np.arange(spine_a + 90.0, spine_a - 90.0, -1.0)  # anterior -> posterior, 1 mm
    offsets = [(dr, ds) for dr in (-4.0, -2.0, 0.0, 2.0, 4.0) for ds in (-2.0, 0.0, 2.0)]
    points = np.array([[r_mm + dr, a, s_mm + ds] for dr, ds in offsets for a in a_values])
    kji = volume.ras_to_ijk_points(points)[:, ::-1]
    # Sample from the small block around the line only: never copy the whole volume.
    shape = np.array(volume.array.shape)
    low = np.clip(np.floor(kji.min(axis=0)).astype(int) - 1, 0, shape - 1)
    high = np.clip(np.ceil(kji.max(axis=0)).astype(int) + 2, low + 1, shape)
    block = volume.array[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    samples = ndimage.map_coordinates(
        block.astype(np.float32), (kji - low).T, order=1, cval=-1024.0
    )
    profile = samples.reshape(len(offsets), a_values.size).max(axis=0)
    bone = ndimage.binary_closing(profile > bone_hu, structure=np.ones(3))
    runs = _runs(bone)
    # The body: a run at least 12 mm deep followed by a gap (the canal) of 5 mm or more,
    # nearest to where the spine's bone is thickest.
    candidates = []
    for (start, stop), nxt in zip(runs, runs[1:] + [(bone.size, bone.size)]):
        gap = nxt[0] - stop
        if stop - start >= 12 and 5 <= gap <= 40 and nxt[0] < bone.size:
            candidates.append((start, stop))
    if not candidates:
        return spine_a
    centre_index = a_values.size // 2
    start, stop = min(candidates, key=lambda run: abs(0.5 * (run[0] + run[1]) - centre_index))
    depth = min(stop - start, 45)  # a vessel fused to the front must not drag the centre
    return float(a_values[stop - 1] + 0.5 * (depth - 1))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` index pairs of the True runs of a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _bone_centre(profile: np.ndarray, around: float, half_width: float, bone_hu: float) -> float:
    """Intensity-weighted centre of the bone in ``profile`` within ``around +/- half_width``."""
    lo = int(max(0, np.floor(around - half_width)))
    hi = int(min(profile.size, np.ceil(around + half_width) + 1))
    weights = np.clip(profile[lo:hi] - bone_hu, 0, None)
    if weights.sum() <= 0:
        return around
    return float(lo + (weights * np.arange(weights.size)).sum() / weights.sum())
