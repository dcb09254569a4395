"""Flags in words: what may make a tissue's numbers wrong, and which tissue it affects.

Scan flags (``scan_flags``): body cut by the field of view, wall bridged, arms in view,
metal, contrast (DICOM ContrastBolusAgent and KVP, and the aorta's HU). Slab flags
(``slab_spread_flags``): a tissue's area varies across the slab by more than
``SLAB_SPREAD_LIMIT``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from .axial import AxialSlab
from .compartments import Compartments

#: (max - min) / mean of a tissue's area over the slab above which it is flagged.
SLAB_SPREAD_LIMIT = 0.10
#: ... for tissues whose mean area over the slab is at least this (cm^2): a few cm^2 of
#: IMAT always vary by tens of percent.
SLAB_SPREAD_MIN_CM2 = 10.0
#: Metal: HU above this in the body.
METAL_HU = 2500.0
#: The aorta's mean HU (a 7 mm disk) above which the scan is contrast-enhanced.
CONTRAST_AORTA_HU = 150.0
#: Where the aorta is sought, relative to the vertebral body point (mm): in front of it
#: (A) and right/left (+ towards the patient's left).
AORTA_A_MM = (10.0, 70.0)
AORTA_R_MM = (-35.0, 55.0)
#: Wall bridged over more than this many degrees is flagged.
BRIDGED_LIMIT_DEG = 3.0


def aorta_hu(image: np.ndarray, bone: np.ndarray, point_px: np.ndarray,
             spacing: tuple[float, float]) -> Optional[float]:
    """The brightest 7 mm-disk mean (HU) in front of the vertebral body, the vertebra's
    bone excluded: the aorta's lumen at L3 (None when the window is empty).

    Only the bone piece holding the body point is excluded: a contrast-filled aorta is
    above the bone threshold too, and must stay."""
    sp_r, sp_a = spacing
    labels, _ = ndimage.label(bone)
    r, a = (int(np.clip(round(v), 0, n - 1)) for v, n in zip(point_px, bone.shape))
    vertebra = labels == labels[r, a] if labels[r, a] else np.zeros_like(bone)
    rr = (np.arange(image.shape[0]) - point_px[0])[:, None] * sp_r
    aa = (point_px[1] - np.arange(image.shape[1]))[None, :] * sp_a  # + anterior
    window = ((aa >= AORTA_A_MM[0]) & (aa <= AORTA_A_MM[1]) & (rr >= AORTA_R_MM[0])
              & (rr <= AORTA_R_MM[1]) & ~vertebra)
    if not window.any():
        return None
    size = (max(1, int(round(7.0 / sp_r))), max(1, int(round(7.0 / sp_a))))
    values = np.where(window, image, np.nan)
    mean = ndimage.uniform_filter(np.nan_to_num(values, nan=0.0), size=size)
    share = ndimage.uniform_filter(window.astype(np.float32), size=size)
    valid = share > 0.99
    if not valid.any():
        return None
    return float(np.max(mean[valid] / share[valid]))


def scan_flags(slab: AxialSlab, comp: Compartments, point_px: Optional[tuple[float, float]],
               dicom_tags: Optional[dict[str, str]]) -> tuple[list[str], Optional[float]]:
    """Plain-words flags of the measured slice, and the aorta's HU."""
    flags: list[str] = []
    if comp.notes:
        flags.extend(comp.notes)
    if comp.truncated:
        flags.append("Body cut by the field of view: SAT (and possibly muscle) areas are "
                     "too small; measure on a scan with the whole body in view.")
    if comp.bridged_deg > BRIDGED_LIMIT_DEG:
        flags.append(f"Muscle wall thin or missing over {comp.bridged_deg:.0f} degrees and "
                     "bridged from its neighbours: check the SAT/VAT boundary there.")
    if comp.arms_cm2 > 0:
        flags.append(f"Arms in view ({comp.arms_cm2:.0f} cm^2, not counted): check that no "
                     "arm touching the body was counted as muscle or SAT.")
    image = slab.image
    if np.any(image[comp.body] > METAL_HU):
        flags.append("Metal in the slice: streaks can shift HU and areas of every tissue; "
                     "check the slice or use a neighbour.")
    point = (np.asarray(point_px, float) if point_px is not None
             else np.asarray(comp.centre_px, float))
    aorta = aorta_hu(image, comp.bone, point, slab.spacing_ra)
    agent = (dicom_tags or {}).get("ContrastBolusAgent", "").strip()
    kvp = (dicom_tags or {}).get("KVP", "").strip()
    reasons = []
    if agent:
        reasons.append(f"DICOM ContrastBolusAgent '{agent}'")
    if aorta is not None and aorta > CONTRAST_AORTA_HU:
        reasons.append(f"aorta {aorta:.0f} HU")
    if reasons:
        flags.append("Contrast-enhanced (" + ", ".join(reasons) + "): muscle HU is higher "
                     "than without contrast; compare muscle density only within one phase.")
    if kvp:
        try:
            if abs(float(kvp) - 120.0) > 10.0:
                flags.append(f"Tube voltage {float(kvp):g} kV (not 120 kV): HU and the HU "
                             "ranges of the preset shift; compare with care.")
        except ValueError:
            pass
    return flags, aorta


def slab_spread_flags(spread: dict[str, float], mean_cm2: dict[str, float],
                      n_slices: int) -> list[str]:
    """One flag per tissue whose area varies across the slab above the limit."""
    if n_slices < 2:
        return []
    out = []
    for tissue, value in spread.items():
        if value > SLAB_SPREAD_LIMIT and mean_cm2[tissue] >= SLAB_SPREAD_MIN_CM2:
            out.append(f"{tissue.upper() if tissue != 'muscle' else 'Muscle'} area varies by "
                       f"{100 * value:.0f} % across the slab: the level chosen matters; check "
                       "the slice.")
    return out
