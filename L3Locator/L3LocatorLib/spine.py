"""Where the spine is on the patient grid: its right-left position per axial level and
its anterior-posterior position for the scan, from bone thickness, robust to arms,
table and contrast. Used to centre the projections and to restrict the sagittal MIP
to a slab around the spine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .patient_grid import PatientGrid
from .preprocess import PreprocessConfig


@dataclass(frozen=True)
class SpineTrack:
    """Where the spine is on each patient-grid row (axis 0), in patient-grid voxel units."""

    r_index: np.ndarray  #: continuous index along axis 1 (right->left), one per row
    a_index: float  #: continuous index along axis 2 (anterior->posterior), one for the scan


def _smooth_track(values: np.ndarray, weights: np.ndarray, window: int) -> np.ndarray:
    """Weighted running mean that fills rows without evidence from their neighbours."""
    window = max(3, window | 1)
    num = ndimage.uniform_filter1d(values * weights, window, mode="nearest")
    den = ndimage.uniform_filter1d(weights, window, mode="nearest")
    fallback = np.sum(values * weights) / max(np.sum(weights), 1e-9)
    out = np.where(den > 1e-6, num / np.maximum(den, 1e-9), fallback)
    return out


def _track_lr(bone: np.ndarray, body_centre: np.ndarray, coarse_mm: np.ndarray) -> np.ndarray:
    """Right-left column of the spine per coarse row, from bone thickness ``bone[s, r, a]``."""
    n_rows, n_cols = bone.shape[:2]
    thickness = bone.sum(axis=2, dtype=np.float32) * coarse_mm[2]  # [s, r] mm of bone
    cols = np.arange(n_cols, dtype=np.float32)
    # Vertical continuity: the spine is a column of bone over many rows; ribs are not.
    column_rows = max(1, int(round(60.0 / coarse_mm[0])))
    smooth = ndimage.uniform_filter1d(thickness, column_rows, axis=0, mode="nearest")
    smooth = ndimage.uniform_filter1d(smooth, max(1, int(round(12.0 / coarse_mm[1]))), axis=1)
    sigma_cols = 50.0 / coarse_mm[1]
    prior = np.exp(-0.5 * ((cols[None, :] - body_centre[:, None]) / sigma_cols) ** 2)
    score = smooth * prior
    best = score.argmax(axis=1)
    evidence = score[np.arange(n_rows), best]
    weights = (evidence > 0.25 * max(float(evidence.max()), 1e-6)).astype(np.float32) * evidence
    return _smooth_track(best.astype(np.float32), weights, int(round(80.0 / coarse_mm[0])))


def _spine_ap(bone: np.ndarray, track: np.ndarray, coarse_mm: np.ndarray,
              slab_mm: float) -> float:
    """Anterior-posterior index (coarse) where the slab around ``track`` holds most bone."""
    n_rows, n_cols, n_ap = bone.shape
    half = max(1, int(round(0.5 * slab_mm / coarse_mm[1])))
    centre_cols = np.clip(np.round(track).astype(int), 0, n_cols - 1)
    lo = np.clip(centre_cols - half, 0, n_cols)
    hi = np.clip(centre_cols + half + 1, 0, n_cols)
    profile = np.zeros(n_ap, dtype=np.float32)
    for row in range(n_rows):
        profile += bone[row, lo[row] : hi[row], :].sum(axis=0)
    profile = ndimage.uniform_filter1d(profile, max(1, int(round(40.0 / coarse_mm[2]))))
    return float(np.argmax(profile)) if profile.max() > 0 else (n_ap - 1) / 2.0


def find_spine(grid: PatientGrid, config: PreprocessConfig) -> SpineTrack:
    """Locate the spine's right-left position per row and its anterior-posterior position.

    Works on a coarse sub-sample (about 4 mm) of the patient grid. Bone thickness
    along anterior-posterior peaks at the spine (vertebral body plus posterior
    elements); arms are discounted by a prior centred on the body and the table
    by its thinness. A first pass finds the spine roughly and its front-back
    position; the second counts only bone behind the front of the vertebral
    bodies, which leaves out contrast-filled vessels (the aorta lies in front of
    the spine) while keeping the symmetric posterior elements.
    """
    step = np.maximum(1, np.round(4.0 / grid.spacing).astype(int))
    coarse = grid.array[:: step[0], :: step[1], :: step[2]]
    coarse_mm = grid.spacing * step
    bone = coarse > config.bone_hu
    body_width = (coarse > config.body_hu).any(axis=2)  # [s, r]
    n_rows, n_cols = body_width.shape
    # Body centre per row: the middle of the body's right-left extent, else the FOV centre.
    has_body = body_width.any(axis=1)
    body_centre = np.full(n_rows, (n_cols - 1) / 2.0, dtype=np.float32)
    if has_body.any():
        weights = body_width.astype(np.float32)
        cols = np.arange(n_cols, dtype=np.float32)
        body_centre[has_body] = (weights[has_body] @ cols) / weights[has_body].sum(axis=1)
    rough = _track_lr(bone, body_centre, coarse_mm)
    a_coarse = _spine_ap(bone, rough, coarse_mm, config.slab_mm)
    # Behind a line 15 mm in front of the bone's centre: the bodies' back half and everything
    # posterior of them.
    a_cut = int(max(0, round(a_coarse - 15.0 / coarse_mm[2])))
    track = _track_lr(bone[:, :, a_cut:], body_centre, coarse_mm)
    a_coarse = _spine_ap(bone, track, coarse_mm, config.slab_mm)
    full_rows = np.arange(grid.array.shape[0]) / step[0]
    r_index = np.interp(full_rows, np.arange(n_rows), track) * step[1]
    return SpineTrack(r_index=r_index, a_index=a_coarse * step[2])
