"""Body composition on one slice and on the slab around it: the entry point.

``measure_composition(volume, s_mm=..., body_point_ras=..., preset=..., height=...)``
returns a :class:`CompositionResult`: per tissue the area (cm^2), mean and SD of HU on
the slice, the same on every slab slice and their spread, SMI with the height's source,
the named cut-off flags and plain-words flags. ``measure_at_l3`` takes an ``L3Result``;
``measure_at_slice`` a slice index along the scan's own slice axis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..volume import Volume
from .axial import AxialSlab, axial_slab, s_of_slice_index
from .compartments import Compartments, find_compartments
from .cutoffs import Patient, cutoff_flags, smi
from .flags import scan_flags, slab_spread_flags
from .presets import TISSUES, Preset, get_preset

#: Slab slices are taken at least this far apart (mm): thin-slice scans are sampled every
#: n-th slice (speed; the slab's means and spread are estimated from those slices).
SLAB_MIN_STEP_MM = 2.0


@dataclass
class TissueStats:
    """Area (cm^2), mean and SD of HU of one tissue on one slice (None when empty)."""

    area_cm2: float
    mean_hu: Optional[float]
    sd_hu: Optional[float]


@dataclass
class CompositionResult:
    """What was measured, where, and how far to trust it.

    ``slice`` and ``slab`` hold per-tissue :class:`TissueStats`; ``slab`` summarises the
    slab slices (mean area, pooled mean and SD of HU), ``slab_area_sd_cm2`` and
    ``slab_area_spread`` (max - min over mean area) their spread across slices.
    ``masks`` are the tissue masks ``[r, a]`` of the measured slice (patient axes).
    """

    preset: str
    s_mm: float
    slab_s_mm: list[float]
    slice: dict[str, TissueStats]
    slab: dict[str, TissueStats]
    slab_area_sd_cm2: dict[str, float]
    slab_area_spread: dict[str, float]
    slab_areas_cm2: dict[str, list[float]]
    height_m: Optional[float] = None
    height_source: str = ""
    smi_cm2_m2: Optional[float] = None
    cutoffs: dict[str, Optional[bool]] = field(default_factory=dict)
    cutoff_rules: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    aorta_hu: Optional[float] = None
    #: the vertebral body point (RAS mm) that placed psoas and paraspinal compartments
    body_point_ras: Optional[list[float]] = None
    seconds: float = 0.0
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: the tissue masks of every slab slice (``slab_geometry.images`` order)
    slab_masks: list[dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    compartments: Optional[Compartments] = field(default=None, repr=False)
    slab_geometry: Optional[AxialSlab] = field(default=None, repr=False)

    def to_row(self) -> dict[str, Any]:
        """Flat columns (``composition.columns.COLUMNS``) for a results row."""
        from .columns import row_of

        return row_of(self)


def tissue_masks(image: np.ndarray, comp: Compartments, preset: Preset) -> dict[str, np.ndarray]:
    """Compartment x HU range: the four tissue masks ``[r, a]`` of one slice."""
    def within(tissue: str) -> np.ndarray:
        low, high = preset.hu_range(tissue)
        return (image >= low) & (image <= high)

    return {
        "muscle": comp.muscle & within("muscle"),
        "imat": comp.muscle & within("imat"),
        "vat": comp.visceral & within("vat"),
        "sat": comp.subcutaneous & within("sat"),
    }


def tissue_stats(image: np.ndarray, mask: np.ndarray, pixel_mm2: float) -> TissueStats:
    """Area (cm^2), mean and SD (HU) of ``image`` over ``mask``."""
    values = image[mask]
    if values.size == 0:
        return TissueStats(0.0, None, None)
    return TissueStats(values.size * pixel_mm2 / 100.0, float(values.mean()),
                       float(values.std()))


def measure_composition(volume: Volume, s_mm: float, *,
                        body_point_ras: Optional[np.ndarray] = None,
                        preset: Optional[str] = None, slab_half_mm: Optional[float] = None,
                        patient: Optional[Patient] = None,
                        dicom_tags: Optional[dict[str, str]] = None) -> CompositionResult:
    """Body composition on the axial slice at RAS S ``s_mm`` and the slab around it.

    Args:
        volume: the CT (HU); never modified.
        s_mm: RAS S (mm) of the slice to measure (the nearest axial slice is used).
        body_point_ras: the L3 vertebral body point (RAS mm); None: found in the slice.
        preset: a ``presets.PRESETS`` key (default Alberta).
        slab_half_mm: slab half-thickness (mm, default the preset's 5 mm); 0: slice only.
        patient: height (m, and its source), sex and weight for SMI and cut-offs.
        dicom_tags: ContrastBolusAgent and KVP when the scan is DICOM (for the flags).
    """
    start = time.perf_counter()
    chosen = get_preset(preset)
    half = chosen.slab_half_mm if slab_half_mm is None else float(slab_half_mm)
    slab = axial_slab(volume, s_mm, half, min_step_mm=SLAB_MIN_STEP_MM)
    point_px = None
    if body_point_ras is not None:
        point_px = tuple(slab.ras_to_pixel(np.asarray(body_point_ras, float)))
    all_masks: list[dict[str, np.ndarray]] = []
    # The centre slice first: without a given body point, the one it finds serves the slab.
    centre_comp = find_compartments(slab.image, slab.spacing_ra, point_px)
    centre_masks = tissue_masks(slab.image, centre_comp, chosen)
    point_px = point_px or centre_comp.body_point_px
    for n, image in enumerate(slab.images):
        if n == slab.centre:
            all_masks.append(centre_masks)
            continue
        comp = find_compartments(image, slab.spacing_ra, point_px)
        all_masks.append(tissue_masks(image, comp, chosen))
    result = summarise(slab, chosen, all_masks, patient)
    result.compartments = centre_comp
    if centre_comp.body_point_px is not None:
        result.body_point_ras = [float(v) for v in slab.pixel_to_ras(
            np.asarray(centre_comp.body_point_px))]
    flags, aorta = scan_flags(slab, centre_comp, point_px, dicom_tags)
    result.aorta_hu = aorta
    result.flags = flags + result.flags
    result.seconds = time.perf_counter() - start
    return result


def summarise(slab: AxialSlab, preset: Preset, slab_masks: list[dict[str, np.ndarray]],
              patient: Optional[Patient] = None) -> CompositionResult:
    """Statistics of given tissue masks (one dict per slab slice, ``[r, a]``) on the slab's
    images: the slice, the slab, the spread, SMI and cut-offs, the slab-spread flags.
    Used after the method (``measure_composition``) and after a user edited the masks."""
    pixel_mm2 = slab.pixel_mm2
    per_slice = [{t: tissue_stats(image, masks[t], pixel_mm2) for t in TISSUES}
                 for image, masks in zip(slab.images, slab_masks)]
    areas = {t: [s[t].area_cm2 for s in per_slice] for t in TISSUES}
    slab_stats = {}
    for t in TISSUES:
        values = np.concatenate([image[masks[t]] for image, masks in zip(slab.images,
                                                                          slab_masks)])
        slab_stats[t] = TissueStats(float(np.mean(areas[t])),
                                    float(values.mean()) if values.size else None,
                                    float(values.std()) if values.size else None)
    spread = {t: (float((max(a) - min(a)) / np.mean(a)) if np.mean(a) > 0 else 0.0)
              for t, a in areas.items()}
    result = CompositionResult(
        preset=preset.name, s_mm=float(slab.s_mm[slab.centre]),
        slab_s_mm=[float(v) for v in slab.s_mm], slice=per_slice[slab.centre],
        slab=slab_stats, slab_area_sd_cm2={t: float(np.std(a)) for t, a in areas.items()},
        slab_area_spread=spread, slab_areas_cm2=areas, masks=slab_masks[slab.centre],
        slab_masks=list(slab_masks), slab_geometry=slab)
    result.flags = slab_spread_flags(spread, {t: slab_stats[t].area_cm2 for t in TISSUES},
                                     len(slab.images))
    if patient is not None:
        result.height_m, result.height_source = patient.height_m, patient.height_source
        muscle = result.slice["muscle"]
        result.smi_cm2_m2 = smi(muscle.area_cm2, patient.height_m)
        result.cutoffs, result.cutoff_rules = cutoff_flags(
            result.smi_cm2_m2, muscle.mean_hu, patient)
    return result


def where_to_measure(volume: Volume, l3: Any = None, slice_index: Optional[int] = None
                     ) -> tuple[float, Optional[np.ndarray]]:
    """RAS S (mm) of the slice to measure and the L3 body point (RAS mm, None when L3 was
    not found): ``slice_index`` (along the scan's slice axis) when given, else the found
    L3's slice. Raises ``ValueError`` with advice when neither is there."""
    point = None
    if getattr(l3, "found", False) and l3.l3_ras_mm is not None:
        point = np.asarray(l3.l3_ras_mm, float)
    if slice_index is not None:
        return s_of_slice_index(volume, int(slice_index)), point
    if point is None:
        raise ValueError("L3 was not found in this scan, so there is no L3 slice to measure. "
                         "Give the slice yourself (--slice, or the slice field in Slicer).")
    return float(point[2]), point


def measure_at_l3(volume: Volume, l3: Any, **options: Any) -> CompositionResult:
    """Measure at a found ``L3Result`` (its S and vertebral body point)."""
    s_mm, point = where_to_measure(volume, l3)
    return measure_composition(volume, s_mm, body_point_ras=point, **options)


def measure_at_slice(volume: Volume, slice_index: int, **options: Any) -> CompositionResult:
    """Measure on slice ``slice_index`` along the scan's own slice axis."""
    return measure_composition(volume, s_of_slice_index(volume, slice_index), **options)
