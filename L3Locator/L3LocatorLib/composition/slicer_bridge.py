"""The array work behind Slicer's "Body composition" step (no Slicer import here).

Slicer holds the tissues as segments on the CT's own voxel grid (arrays ``[k, j, i]``,
what ``arrayFromVolume`` gives). The measurement works on axial slices in patient axes
(``axial.AxialSlab``). These functions move masks between the two exactly (each slab
pixel is the voxel whose centre it is; for oblique scans, resampled on reading, the
nearest voxel), recompute the numbers from (edited) masks without touching them, and
lay out the table.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..volume import Volume
from .axial import AxialSlab, axial_slab
from .cutoffs import Patient
from .measure import SLAB_MIN_STEP_MM, CompositionResult, summarise
from .presets import TISSUE_COLOURS, TISSUE_NAMES, TISSUES, get_preset

#: Segment tag holding the tissue key (``TISSUES``) and the HU range, for Recompute and
#: the Segment Editor's masking range.
TAG_TISSUE = "L3Locator.tissue"
TAG_HU_RANGE = "L3Locator.huRange"


def segment_specs(preset_name: Optional[str]) -> list[dict[str, Any]]:
    """Per tissue: key, segment name, colour (RGB 0..1) and HU range (low, high)."""
    preset = get_preset(preset_name)
    return [{"tissue": t, "name": TISSUE_NAMES[t], "colour": TISSUE_COLOURS[t],
             "hu_range": preset.hu_range(t)} for t in TISSUES]


def _voxels(volume: Volume, slab: AxialSlab) -> tuple[np.ndarray, np.ndarray]:
    """Voxel index ``(n, r, a, 3)`` as ``[k, j, i]`` of every slab pixel, and whether it lies
    inside the volume."""
    n_r, n_a = slab.images.shape[1:]
    rr, aa = np.meshgrid(np.arange(n_r), np.arange(n_a), indexing="ij")
    out = []
    for s_mm in slab.s_mm:
        ras = np.stack([slab.corner_ras[0] - rr * slab.spacing_ra[0],
                        slab.corner_ras[1] - aa * slab.spacing_ra[1],
                        np.full(rr.shape, s_mm)], axis=-1)
        out.append(np.round(volume.ras_to_ijk_points(ras)).astype(np.int64)[..., ::-1])
    kji = np.stack(out)
    shape = np.array(volume.array.shape)
    inside = np.all((kji >= 0) & (kji < shape), axis=-1)
    return np.clip(kji, 0, shape - 1), inside


def masks_to_volume(volume: Volume, result: CompositionResult) -> dict[str, np.ndarray]:
    """The slab's tissue masks as uint8 arrays ``[k, j, i]`` on the CT's grid (1 inside)."""
    slab = result.slab_geometry
    kji, inside = _voxels(volume, slab)
    out = {}
    for tissue in TISSUES:
        array = np.zeros(volume.array.shape, np.uint8)
        for n, masks in enumerate(result.slab_masks):
            hit = masks[tissue] & inside[n]
            index = kji[n][hit]
            array[index[:, 0], index[:, 1], index[:, 2]] = 1
        out[tissue] = array
    return out


def masks_from_volume(volume: Volume, slab: AxialSlab, arrays: dict[str, np.ndarray]
                      ) -> list[dict[str, np.ndarray]]:
    """Per slab slice, the tissue masks ``[r, a]`` read from arrays ``[k, j, i]`` (non-zero
    = inside; a missing tissue is empty)."""
    kji, inside = _voxels(volume, slab)
    out = []
    for n in range(len(slab.s_mm)):
        index = kji[n]
        masks = {}
        for tissue in TISSUES:
            array = arrays.get(tissue)
            if array is None:
                masks[tissue] = np.zeros(inside[n].shape, bool)
                continue
            masks[tissue] = (array[index[..., 0], index[..., 1], index[..., 2]] != 0) & inside[n]
        out.append(masks)
    return out


def recompute(volume: Volume, s_mm: float, slab_half_mm: float, arrays: dict[str, np.ndarray],
              preset_name: Optional[str] = None, patient: Optional[Patient] = None
              ) -> CompositionResult:
    """The numbers of (edited) tissue masks: areas, HU, slab, SMI, cut-offs. The masks are
    used as they are: nothing is thresholded or recomputed behind the user's back."""
    slab = axial_slab(volume, s_mm, slab_half_mm, min_step_mm=SLAB_MIN_STEP_MM)
    return summarise(slab, get_preset(preset_name), masks_from_volume(volume, slab, arrays),
                     patient)


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


#: Table columns (the Table node's, in order).
TABLE_COLUMNS = ("Measure", "Area (cm2)", "Mean HU", "SD HU", "Slab mean area (cm2)",
                 "Slab mean HU", "Slab SD HU", "Note")


def table_rows(result: CompositionResult) -> list[list[str]]:
    """Rows of the results table (strings, ``TABLE_COLUMNS``): one per tissue, then SMI,
    each cut-off with its rule, the preset and the flags."""
    rows = []
    for tissue in TISSUES:
        one, slab = result.slice[tissue], result.slab[tissue]
        rows.append([TISSUE_NAMES[tissue], _fmt(one.area_cm2, 2), _fmt(one.mean_hu),
                     _fmt(one.sd_hu), _fmt(slab.area_cm2, 2), _fmt(slab.mean_hu),
                     _fmt(slab.sd_hu),
                     f"slab spread {100 * result.slab_area_spread[tissue]:.0f} % over "
                     f"{len(result.slab_s_mm)} slices"])
    height = (f"height {result.height_m} m ({result.height_source})" if result.height_m
              else "no height: give it to compute SMI")
    rows.append(["SMI (cm2/m2)", _fmt(result.smi_cm2_m2, 2), "", "", "", "", "", height])
    for name, flag in result.cutoffs.items():
        verdict = "not applied (needs sex/BMI)" if flag is None else (
            "below cut-off" if flag else "not below cut-off")
        rows.append([name, verdict, "", "", "", "", "", result.cutoff_rules.get(name, "")])
    rows.append(["Preset", result.preset, "", "", "", "", "", f"S = {result.s_mm:.1f} mm"])
    for flag in result.flags:
        rows.append(["Flag", "", "", "", "", "", "", flag])
    return rows
