"""The 3-D point in the vertebral body, from the decoded row and the volume itself.

Right-left first comes from the bone around the spine track in the frontal MIP at
that row. Then, on an axial slab of the volume around that level (1 mm grid, RAS):

1. the spinal canal: in the maximum over +/- 8 mm along S, a hole in the bone (an
   enclosed soft-tissue region of canal size) within 18 mm of the midline; when
   several qualify the most posterior (a body whose cancellous bone is below the
   bone threshold also looks like a hole, but lies in front of the canal);
2. the body: the bone within 2 mm of the level, its large enclosed holes filled (the
   cancellous interior), opened with a 4 mm disk (which cuts off the thin posterior
   elements and a contrast-filled aorta touching the body), the part up to 55 mm in
   front of the canal that touches the canal's front;
3. its centroid is the answer.

Steps 1-2 run at the usual bone threshold and, when they fail there, once more at 0.6
of it: osteoporotic bone (marrow near 100-150 HU, thin cortex) breaks the arch and the
body's shell apart at the first.

Nothing here relies on one front-back spine position for the whole scan: the spine
curves by several centimetres between T11 and L3. When the canal or the body cannot
be found robustly (no closed vertebral arch at that level, implausible body size),
the point falls back onto the spine's midline (15 mm in front of the canal, or the
body's middle along a front-back line through the spine) and ``BodyPoint.in_body``
is False with a plain-words ``note`` saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from .projection import Projections
from .volume import Volume

#: Half-width (R, mm) and half-depth (A, mm) of the axial window around the spine.
WINDOW_HALF_R_MM = 45.0
WINDOW_HALF_A_MM = 100.0
#: S offsets (mm) sampled around the level: all for the canal, the middle three for the body.
SLAB_OFFSETS_MM = (-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0)
#: Spinal canal in an axial slab: area (mm^2), largest extent (mm), distance to midline (mm).
CANAL_AREA_MM2 = (50.0, 900.0)
CANAL_MAX_EXTENT_MM = (35.0, 40.0)  # front-back, right-left
CANAL_MAX_OFF_MIDLINE_MM = 18.0
#: How far (mm) the canal's front may lie in front of the sagittal MIP's spine track: the
#: canal is behind the body, so a "canal" farther forward is a gap between ribs, sternum
#: or cartilage (seen at the lower bone threshold on coarse voxels), not the spine's.
CANAL_MAX_ANTERIOR_OF_TRACK_MM = 30.0
#: Enclosed holes larger than this (mm^2) are a body's cancellous interior, not the canal.
BODY_HOLE_MM2 = 400.0
#: Plausible vertebral body in an axial slab (mm): depth range, largest width.
BODY_DEPTH_MM = (15.0, 50.0)
BODY_MAX_WIDTH_MM = 70.0
#: Bone thresholds tried, as fractions of ``PreprocessConfig.bone_hu``: the usual one, then
#: a lower one for thin (osteoporotic) bone whose arch or cortex breaks up at the first.
BONE_HU_SCALES = (1.0, 0.6)
#: Fallback: the body centre's usual distance in front of the canal (mm).
BODY_HALF_DEPTH_MM = 15.0


@dataclass(frozen=True)
class BodyPoint:
    """The point the user gets, and how sure it is to lie in the vertebral body.

    Attributes:
        ras: RAS (mm), shape (3,).
        in_body: True when the vertebral body was outlined and ``ras`` is its centroid;
            False for the fallback on the spine's midline.
        note: plain words for the user when ``in_body`` is False, else None.
    """

    ras: np.ndarray
    in_body: bool
    note: Optional[str] = None


def vertebral_body_point(volume: Volume, projections: Projections, row: float) -> BodyPoint:
    """The centre of the vertebral body seen at a projection row (RAS mm).

    ``volume`` is the CT (HU) the projections were made from; ``row`` is a sub-pixel
    projection row (superior -> inferior).
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

    a_low, a_high = _a_range(volume)
    a_high = min(a_high, spine_a + WINDOW_HALF_A_MM)
    a_low = max(a_low, spine_a - WINDOW_HALF_A_MM)
    r_values = np.arange(r_mm + WINDOW_HALF_R_MM, r_mm - WINDOW_HALF_R_MM - 0.5, -1.0)
    a_values = np.arange(a_high, a_low - 0.5, -1.0)  # index 0 = most anterior
    if a_values.size < 20:
        return _midline_fallback(volume, r_mm, s_mm, spine_a, config.bone_hu)
    hu = sample_axial_slab(volume, r_values, a_values, s_mm + np.asarray(SLAB_OFFSETS_MM))
    slab_max = hu.max(axis=0)
    middle = hu[2:5].max(axis=0)  # within 2 mm of the level
    first_canal = None
    for scale in BONE_HU_SCALES:
        threshold = scale * config.bone_hu
        canal = find_canal(slab_max > threshold, r_mm - r_values)
        if canal is None or a_values[canal[0]] - spine_a > CANAL_MAX_ANTERIOR_OF_TRACK_MM:
            continue
        first_canal = first_canal or canal
        body = body_in_front_of_canal(middle > 0.75 * threshold, *canal)
        if body is not None:
            a_index, r_index = body
            return BodyPoint(np.array([_interp(r_values, r_index), _interp(a_values, a_index),
                                       s_mm]), True)
    if first_canal is None:
        return _midline_fallback(volume, r_mm, s_mm, spine_a, config.bone_hu)
    canal_front, canal_col = first_canal
    a_mm = float(a_values[canal_front]) + BODY_HALF_DEPTH_MM
    return BodyPoint(np.array([float(r_values[canal_col]), a_mm, s_mm]), False, (
        "The vertebral body could not be outlined at this level, so the point lies on "
        f"the spine's midline {BODY_HALF_DEPTH_MM:.0f} mm in front of the spinal canal: "
        "check it before measuring there."))


def sample_axial_slab(volume: Volume, r_values: np.ndarray, a_values: np.ndarray,
                      s_values: np.ndarray, fill: float = -1024.0) -> np.ndarray:
    """HU (linear interpolation) on the RAS grid ``[s, a, r]`` (mm); ``fill`` outside.

    Reads only the block of the volume around the grid, never a copy of the whole volume.
    """
    ras_to_ijk = volume.ras_to_ijk
    linear, offset = ras_to_ijk[:3, :3], ras_to_ijk[:3, 3]
    # The grid is separable: ijk = offset + R * col0 + A * col1 + S * col2.
    ijk = (offset[None, None, None, :]
           + s_values[:, None, None, None] * linear[:, 2]
           + a_values[None, :, None, None] * linear[:, 1]
           + r_values[None, None, :, None] * linear[:, 0])
    kji = ijk.reshape(-1, 3)[:, ::-1]
    shape = np.array(volume.array.shape)
    low = np.clip(np.floor(kji.min(axis=0)).astype(int) - 1, 0, shape - 1)
    high = np.clip(np.ceil(kji.max(axis=0)).astype(int) + 2, low + 1, shape)
    block = volume.array[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    samples = ndimage.map_coordinates(block.astype(np.float32), (kji - low).T, order=1,
                                      cval=fill)
    return samples.reshape(len(s_values), len(a_values), len(r_values))


def find_canal(bone: np.ndarray, r_offset_mm: np.ndarray) -> Optional[tuple[int, int]]:
    """The spinal canal in an axial bone mask ``[a, r]`` (1 mm pixels, row 0 anterior).

    ``r_offset_mm`` is each column's distance (mm) from the spine's midline. Returns the
    canal's most anterior row and its middle column, or None when no enclosed hole of
    canal size lies near the midline.
    """
    closed = ndimage.binary_closing(bone, structure=np.ones((3, 3), bool))
    holes = ndimage.binary_fill_holes(closed) & ~closed
    labels, _ = ndimage.label(holes)
    best = None
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        a_idx, r_idx = np.nonzero(labels[box] == index)
        area = a_idx.size
        depth, width = np.ptp(a_idx) + 1, np.ptp(r_idx) + 1
        col = int(round(r_idx.mean())) + box[1].start
        if not (CANAL_AREA_MM2[0] <= area <= CANAL_AREA_MM2[1]) or depth > CANAL_MAX_EXTENT_MM[0] \
                or width > CANAL_MAX_EXTENT_MM[1] \
                or abs(r_offset_mm[col]) > CANAL_MAX_OFF_MIDLINE_MM:
            continue
        middle = a_idx.mean() + box[0].start
        if best is None or middle > best[0]:  # the canal lies behind the body
            best = (middle, int(a_idx.min()) + box[0].start, col)
    return None if best is None else (best[1], best[2])


def body_in_front_of_canal(bone: np.ndarray, canal_front: int, canal_col: int
                           ) -> Optional[tuple[float, float]]:
    """Centroid (row, column; fractional pixels) of the vertebral body in an axial bone
    mask ``[a, r]`` (1 mm pixels, row 0 anterior) in front of the canal, or None when no
    body of plausible size touches the canal's front."""
    bone = bone.copy()
    holes = ndimage.binary_fill_holes(bone) & ~bone
    labels, n = ndimage.label(holes)
    if n:
        areas = ndimage.sum(holes, labels, range(1, n + 1))
        bone |= np.isin(labels, 1 + np.flatnonzero(areas > BODY_HOLE_MM2))
    y, x = np.mgrid[-4:5, -4:5]
    opened = ndimage.binary_opening(bone, structure=(x**2 + y**2) <= 16)
    opened[canal_front + 1 :] = False
    opened[: max(0, canal_front - 55)] = False
    labels, _ = ndimage.label(opened)
    seeds = labels[max(0, canal_front - 12) : canal_front + 1,
                   max(0, canal_col - 3) : canal_col + 4]
    ids = [i for i in np.unique(seeds) if i]
    if not ids:
        return None
    a_idx, r_idx = np.nonzero(np.isin(labels, ids))
    depth, width = np.ptp(a_idx) + 1, np.ptp(r_idx) + 1
    if not BODY_DEPTH_MM[0] <= depth <= BODY_DEPTH_MM[1] or width > BODY_MAX_WIDTH_MM:
        return None
    return float(a_idx.mean()), float(r_idx.mean())


def _midline_fallback(volume: Volume, r_mm: float, s_mm: float, spine_a: float,
                      bone_hu: float) -> BodyPoint:
    """The body's middle on a front-back line through the spine when no canal is found."""
    a_mm = _body_centre_ap(volume, r_mm, s_mm, spine_a, 0.75 * bone_hu)
    return BodyPoint(np.array([r_mm, a_mm, s_mm]), False, (
        "The spinal canal was not found at this level, so the point lies on the spine's "
        "midline at the middle of the bone in front of the first gap: check its front-back "
        "position before measuring there."))


def _interp(values: np.ndarray, index: float) -> float:
    """``values`` (evenly spaced) at a fractional index."""
    return float(np.interp(index, np.arange(values.size), values))


def _a_range(volume: Volume) -> tuple[float, float]:
    """Smallest and largest A (mm) of the volume's corners."""
    n = np.asarray(volume.shape_ijk, dtype=float) - 1
    corners = np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
    a = volume.ijk_to_ras_points(corners)[:, 1]
    return float(a.min()), float(a.max())


def _body_centre_ap(volume: Volume, r_mm: float, s_mm: float, spine_a: float,
                    bone_hu: float) -> float:
    """A (mm) of the vertebral body's centre on the midline line through (r_mm, ., s_mm):
    the bone run in front of the first gap (the canal) nearest ``spine_a``."""
    a_values = np.arange(spine_a + 90.0, spine_a - 90.0, -1.0)  # anterior -> posterior, 1 mm
    samples = sample_axial_slab(volume, r_mm + np.array([-4.0, -2.0, 0.0, 2.0, 4.0]),
                                a_values, s_mm + np.array([-2.0, 0.0, 2.0]))
    profile = samples.max(axis=(0, 2))
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
