"""The original port's preprocessing (the PaddlePaddle AI Studio article that L3Locator grew
from, after Kanavati et al. 2020), reproduced exactly so its results can be compared:
zoom each MIP to 1 mm, per-image min-max scaling, keep the top 512 rows, pad or crop the
width to 512, zero the frontal MIP's outer 35 % on each side. Training only; the
shipped pipeline uses ``L3LocatorLib.projection``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SeedSample:
    """One scan of the paper's npz after the seed's preprocessing (1 mm pixels)."""

    frontal: np.ndarray  #: float32 [512, 512], 0..1, outer 35% of columns zeroed
    sagittal: np.ndarray  #: float32 [512, 512], 0..1
    l3_row: int  #: L3 row at 1 mm (the seed truncates, it does not round)


SEED_SIZE = 512  #: the seed's fixed height and width (pixels of 1 mm)
SEED_MASK_FRACTION = 0.35  #: columns zeroed on each side of the frontal MIP


def seed_preprocess(
    image_f: np.ndarray, image_s: np.ndarray, l3_row: float, spacing: np.ndarray
) -> SeedSample | None:
    """Reproduce the seed's preprocessing of one npz scan exactly; None when the seed drops it.

    ``image_f``/``image_s`` are the npz's frontal and sagittal MIPs in HU, rows
    along the scan's z axis and columns in-plane; ``spacing`` is the npz's
    ``(s0, s1, s2)`` in mm where ``s2`` is the slice spacing and ``s0`` the
    in-plane one; ``l3_row`` is the annotators' mean L3 row in the original rows.

    Steps (the seed's ``normalise_spacing_and_preprocess`` and ``resize_img``):
    zoom by ``[s2, s0]`` (cubic spline, scipy's default) to 1 mm; clip to
    100..1500 HU and min-max scale *each image* to 0..255 (here divided by 255,
    as the seed's dataset does); L3 row ``int(row * s2)``; drop the scan when that
    row is beyond 512; keep the top 512 rows (or pad below with zeros); centre-crop
    or zero-pad the width to 512; zero the outer 35% of the frontal's columns.

    Our main path (``project``) deliberately differs: a fixed HU window instead
    of per-image min-max (so intensities mean the same in every scan); 2 mm pixels;
    every row kept, so scans whose L3 lies low are not thrown away; width centred
    on the spine, not the image; no column mask (ribs help count vertebrae; arms
    are handled by training); a sub-pixel row instead of a truncated one.
    """
    s = np.asarray(spacing, dtype=float)
    factors = [s[2], s[0]]
    images = []
    for image in (image_f, image_s):
        zoomed = ndimage.zoom(np.asarray(image), factors)
        clipped = np.clip(zoomed, 100, 1500).astype(np.float32)
        scaled = (clipped - np.min(clipped)) / (np.max(clipped) - np.min(clipped) + 1e-8)
        images.append(255.0 * scaled)
    row = int(l3_row * s[2])
    if row > SEED_SIZE:
        return None
    out = []
    for image in images:
        h, w = image.shape
        canvas = np.zeros((SEED_SIZE, w), dtype=np.float32)
        canvas[: min(h, SEED_SIZE)] = image[:SEED_SIZE]
        if w > SEED_SIZE:
            mid = int(w * 0.5)
            canvas = canvas[:, mid - SEED_SIZE // 2 : mid + SEED_SIZE // 2]
        else:
            padded = np.zeros((SEED_SIZE, SEED_SIZE), dtype=np.float32)
            start = int(0.5 * (SEED_SIZE - w))
            padded[:, start : start + w] = canvas
            canvas = padded
        out.append(canvas / 255.0)
    frontal, sagittal = out
    frontal[:, : int(SEED_MASK_FRACTION * SEED_SIZE)] = 0.0
    frontal[:, int((1 - SEED_MASK_FRACTION) * SEED_SIZE) :] = 0.0
    return SeedSample(frontal=frontal, sagittal=sagittal, l3_row=row)
