"""The CT around the spine on a coarse grid, and the array helpers the reader shares.

Arrays are ``[s, r, a]`` (superior -> inferior, right -> left, anterior -> posterior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..patient_grid import PatientGrid
from ..projection import Projections
from .reading import SecondReaderConfig


@dataclass(frozen=True)
class Box:
    """Block mean and block max of the grid around the spine, ``[s, r, a]`` (HU, float32),
    with the S (mm) of each row of blocks."""

    mean: np.ndarray
    high: np.ndarray
    s_mm: np.ndarray
    step_mm: np.ndarray  #: block size along s, r, a (mm)
    track_r: np.ndarray  #: continuous r index of the spine's midline per row
    fov_r_mm: tuple[float, float]  #: lateral reach (mm) of the scanned field, right / left


def pool(array: np.ndarray, steps: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Block mean and block max (float32) of ``array`` over ``steps`` voxels per axis.

    One axis at a time, each as elementwise operations on strided views, the first pass in
    the voxels' own type (numpy reduces short inner axes slowly: as one 6-D reduction a
    512x512x400 CT's box took seconds).
    """
    n = [s // k for s, k in zip(array.shape, steps)]
    high = mean = array[: n[0] * steps[0], : n[1] * steps[1], : n[2] * steps[2]]
    for axis, step in enumerate(steps):
        if step == 1:
            continue

        def part(x: np.ndarray, offset: int, step: int = step, axis: int = axis) -> np.ndarray:
            return x[(slice(None),) * axis + (slice(offset, None, step),)]

        new_high = np.maximum(part(high, 0), part(high, 1))
        new_mean = np.add(part(mean, 0), part(mean, 1), dtype=np.float32)
        for offset in range(2, step):
            np.maximum(new_high, part(high, offset), out=new_high)
            new_mean += part(mean, offset)
        new_mean /= np.float32(step)
        high, mean = new_high, new_mean
    return np.asarray(mean, dtype=np.float32), np.asarray(high, dtype=np.float32)


def make_box(grid: PatientGrid, projections: Projections, config: SecondReaderConfig) -> Box:
    """The box around the spine: right-left ``box_half_r_mm`` beyond the projections'
    spine track, front-back from ``box_front_mm`` in front of the back of the spine to
    ``box_back_mm`` behind it, every row of the scan; pooled to about ``grid_mm``."""
    spacing = np.asarray(grid.spacing, dtype=float)
    steps = tuple(int(max(1, np.floor(config.grid_mm / s + 0.5))) for s in spacing)
    step_mm = spacing * steps
    geometry = projections.geometry
    n0 = grid.array.shape[0]
    corner = np.asarray(grid.corner_ras, dtype=float)
    rows_s = corner[2] - np.arange(n0) * spacing[0]
    frontal_col = np.interp(geometry.s_to_row(rows_s), np.arange(geometry.n_rows),
                            projections.spine_frontal_col)
    track_r_full = (corner[0] - geometry.frontal_col_to_r(frontal_col)) / spacing[1]
    back_full = (corner[1] - spine_back_mm(projections)) / spacing[2]
    half_r = config.box_half_r_mm / spacing[1]
    r0 = int(max(0, np.floor(track_r_full.min() - half_r)))
    r1 = int(min(grid.array.shape[1], np.ceil(track_r_full.max() + half_r)))
    a0 = int(max(0, np.floor(back_full - config.box_front_mm / spacing[2])))
    a1 = int(min(grid.array.shape[2], np.ceil(back_full + config.box_back_mm / spacing[2])))
    sub = grid.array[:, r0:r1, a0:a1]
    if not np.issubdtype(sub.dtype, np.floating) or np.isfinite(sub).all():
        clean = sub
    else:
        clean = np.nan_to_num(sub, nan=-1024.0, posinf=-1024.0, neginf=-1024.0)
    # Pool in the array's memory order (the grid is a transposed, flipped view of the
    # volume): reading the voxels against their layout costs ten times more.
    order = [int(i) for i in np.argsort([-abs(st) for st in clean.strides])]
    back = [int(i) for i in np.argsort(order)]
    mean, high = pool(clean.transpose(order), tuple(steps[i] for i in order))
    mean = np.ascontiguousarray(mean.transpose(back))
    high = np.ascontiguousarray(high.transpose(back))
    centre = (np.asarray(steps) - 1) / 2.0
    s_idx = np.arange(mean.shape[0]) * steps[0] + centre[0]
    track_r = (np.interp(s_idx, np.arange(n0), track_r_full) - r0 - centre[1]) / steps[1]
    spine_back = (back_full - a0 - centre[2]) / steps[2]
    track_r = midline(mean, track_r, spine_back, step_mm)
    mid_r = float(np.median(track_r_full))
    fov = ((mid_r - 0) * spacing[1], (grid.array.shape[1] - 1 - mid_r) * spacing[1])
    return Box(mean, high, corner[2] - s_idx * spacing[0], step_mm, track_r, fov)


def spine_back_mm(projections: Projections) -> float:
    """RAS A (mm) of the back of the spine (the tips of the spinous processes), from the
    restricted sagittal MIP: walking back from the projections' spine position through
    bone (above 250 HU in most rows' maximum) with gaps shorter than 25 mm (the canal, the
    spaces between the processes). The projections' position is where bone is thickest,
    which in a kyphotic chest with a contrast-filled aorta lies in front of the bodies;
    the back of the spine does not move with that."""
    geometry = projections.geometry
    profile = np.percentile(projections.sagittal_hu, 75, axis=0)  # per column (A)
    col = int(np.clip(round(float(projections.spine_sagittal_col[0])), 0, len(profile) - 1))
    gap_cols = int(round(25.0 / geometry.pixel_mm))
    last_bone, gap = col, 0
    for c in range(col, len(profile)):  # columns run anterior -> posterior
        if profile[c] > 250.0:
            last_bone, gap = c, 0
        else:
            gap += 1
            if gap > gap_cols:
                break
    return float(geometry.sagittal_col_to_a(last_bone))


def midline(mean: np.ndarray, track_r: np.ndarray, spine_back: float, step_mm: np.ndarray
             ) -> np.ndarray:
    """The spine's right-left midline per row (continuous r index of the box): the
    centre of the bone within 30 mm of the projections' track, in the 70 mm in front of
    the back of the spine (``spine_back``, an a index: the bodies' back, the canal, the
    arch and the processes). The projections' track follows bone thickness, which can sit
    on one side's pedicles; these symmetric parts centre it. The aorta lies in front."""
    n_s, n_r, n_a = mean.shape
    a_lo = int(max(0, round(spine_back - 70.0 / step_mm[2])))
    a_hi = int(min(n_a, round(spine_back) + 1))
    weight = np.clip(mean[:, :, a_lo:a_hi] - 150.0, 0.0, None).sum(axis=2)  # [s, r]
    cols = np.arange(n_r, dtype=np.float32)[None, :]
    track = track_r.astype(np.float32)
    sigma = max(1.0, 8.0 / step_mm[0])
    for _ in range(2):
        w = weight * (np.abs(cols - track[:, None]) * step_mm[1] <= 30.0)
        total = w.sum(axis=1)
        centre = (w * cols).sum(axis=1) / np.maximum(total, 1e-6)
        known = (total > 0).astype(np.float32)
        num = ndimage.gaussian_filter1d(centre * known, sigma, mode="nearest")
        den = ndimage.gaussian_filter1d(known, sigma, mode="nearest")
        track = np.where(den > 1e-3, num / np.maximum(den, 1e-6), track)
    return track


def shift(x: np.ndarray, k: int, axis: int = -1) -> np.ndarray:
    """``y[..., i] = x[..., i + k]`` along ``axis``; NaN where ``i + k`` is outside."""
    y = np.full_like(x, np.nan, dtype=np.float32)
    n = x.shape[axis]
    if abs(k) >= n:
        return y
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    src[axis] = slice(max(0, k), n + min(0, k))
    dst[axis] = slice(max(0, -k), n - max(0, k))
    y[tuple(dst)] = x[tuple(src)]
    return y


def window(x: np.ndarray, lo: int, hi: int, reduce: str, axis: int = -1) -> np.ndarray:
    """For every index i along ``axis``: the mean or max of ``x[i + lo .. i + hi]``
    (NaN-aware; NaN when the window lies wholly outside)."""
    stack = np.stack([shift(x, k, axis) for k in range(lo, hi + 1)])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(stack, axis=0) if reduce == "mean" else np.nanmax(stack, axis=0)


def slab_along_track(values: np.ndarray, track: np.ndarray, half: int) -> np.ndarray:
    """Mean of ``values[s, r, a]`` over ``r`` within ``track[s] +/- half``: ``[s, a]``."""
    n_s, n_r = values.shape[:2]
    cols = np.clip(np.round(track).astype(int)[:, None] + np.arange(-half, half + 1), 0, n_r - 1)
    return values[np.arange(n_s)[:, None], cols].mean(axis=1)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of every run of True in a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


def lateral_mm(box: Box) -> np.ndarray:
    """Signed right-left distance (mm) of each box column from the spine, per row
    ``[s, r]`` (positive: patient left)."""
    return (np.arange(box.mean.shape[1])[None, :] - box.track_r[:, None]) * box.step_mm[1]
