"""The one entry point: a CT volume in, an ``L3Result`` out.

``volume -> projection -> inference -> decode -> locate``: this module only
chains the stages, times them, and turns the decoded row into a slice index
and a 3-D point at the L3 vertebral body.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import InputError
from .projection import Projections, check_ct_like, project
from .result import STATUS_NOT_FOUND, STATUS_OK, L3Result, ViewResult
from .review import review_reasons
from .volume import Volume

log = logging.getLogger(__name__)

#: The smallest scan that can hold a lumbar vertebra: superior-inferior and in-plane extent (mm).
MIN_EXTENT_SI_MM = 30.0
MIN_EXTENT_INPLANE_MM = 60.0
VIEW_CHOICES = ("both", "frontal", "sagittal")


@dataclass
class Evidence:
    """What the answer rests on; drawn by ``qa.qa_picture``."""

    projections: Projections
    profile: np.ndarray  #: P(L3) per projection row of the view that answered
    row: Optional[float]  #: sub-pixel L3 row, None when not found
    threshold: float
    level_rows: dict[str, float] = field(default_factory=dict)


def check_extent(volume: Volume) -> None:
    """Refuse scans too small (in mm) to contain a lumbar vertebra."""
    extent = (np.asarray(volume.shape_ijk) - 1) * volume.spacing
    direction = np.abs(volume.direction)
    si_axis = int(np.argmax(direction[2]))
    label = volume.name or "The scan"
    if min(volume.shape_ijk) < 2 or extent[si_axis] < MIN_EXTENT_SI_MM:
        raise InputError(
            f"{label} covers only {extent[si_axis]:.0f} mm from head to foot "
            f"({volume.shape_ijk[si_axis]} slices); at least {MIN_EXTENT_SI_MM:.0f} mm are needed "
            "to hold a lumbar vertebra. Use the full CT series."
        )
    inplane = [extent[a] for a in range(3) if a != si_axis]
    if min(inplane) < MIN_EXTENT_INPLANE_MM:
        raise InputError(
            f"{label} is only {min(inplane):.0f} mm wide; at least {MIN_EXTENT_INPLANE_MM:.0f} mm "
            "are needed to see the spine. Use a reconstruction of the whole body cross-section."
        )


def locate(
    volume: Volume,
    model: Union[str, Path, Any, None] = None,
    device: str = "auto",
    views: str = "both",
) -> L3Result:
    """Find L3 in a CT.

    Args:
        volume: the CT (HU), any orientation and spacing. Never modified.
        model: path to a model's metadata JSON, an already loaded model, or None for
            the default model shipped with L3Locator.
        device: "auto" (GPU when available), "cpu" or "gpu".
        views: which view answers: "both" (the fused pair), "frontal" or "sagittal".

    Returns an ``L3Result`` with status "ok" or "not_found". Raises ``InputError``,
    ``ModelError`` or ``DependencyError`` (user-facing messages) when it cannot run.
    """
    from .inference import load_model, predict_rows

    if views not in VIEW_CHOICES:
        raise ValueError(f"views must be one of {VIEW_CHOICES}, got {views!r}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    check_extent(volume)
    check_ct_like(volume)
    timings["validate"] = time.perf_counter() - start

    start = time.perf_counter()
    loaded = model if hasattr(model, "predict") else load_model(model, device=device)
    timings["load_model"] = time.perf_counter() - start

    start = time.perf_counter()
    projections = project(volume, loaded.preprocess)
    timings["project"] = time.perf_counter() - start

    start = time.perf_counter()
    prediction = predict_rows(loaded, projections)
    timings["network"] = time.perf_counter() - start

    start = time.perf_counter()
    wanted = "fused" if views == "both" else views
    if wanted not in prediction.probs:
        raise InputError(
            f"The model {loaded.metadata.name} reads {', '.join(loaded.views)} only; "
            f"it cannot answer from the {views} view."
        )
    geometry = projections.geometry
    view_results = {}
    for name in prediction.probs:
        d = prediction.answer(name)
        s_mm = float(geometry.row_to_s(d.row)) if d.row is not None else None
        view_results[name] = ViewResult(row=d.row, confidence=d.confidence, s_mm=s_mm)
    main = prediction.decoded[wanted]
    l3 = prediction.answer(wanted)
    evidence = Evidence(
        projections=projections,
        profile=prediction.answer_profile(wanted),
        row=l3.row,
        threshold=prediction.threshold,
        level_rows=main.rows,
    )
    result = L3Result(
        status=STATUS_NOT_FOUND,
        confidence=float(l3.confidence),
        views=view_results,
        levels_s_mm={k: float(geometry.row_to_s(r)) for k, r in main.rows.items()},
        model_name=loaded.metadata.name,
        model_version=str(loaded.metadata.version),
        evidence=evidence,
    )
    if l3.row is None:
        result.message = (
            "L3 is not in the field of view (or the scan is too unusual for the model to be "
            f"sure: confidence {l3.confidence:.2f})."
        )
    else:
        point = vertebral_body_point(volume, projections, l3.row)
        ijk = geometry.nearest_voxel(point)
        result.status = STATUS_OK
        result.l3_ras_mm = [float(v) for v in point]
        result.l3_ijk = list(ijk)
        result.slice_axis = geometry.slice_axis
        result.slice_index = ijk[geometry.slice_axis]
        result.s_mm = float(point[2])
        result.atypical_anatomy = main.atypical
        result.review = review_reasons(main, prediction.threshold,
                                       projections.frontal_hu.shape[0], geometry.pixel_mm,
                                       answer=prediction.answer_level)
        if main.atypical:
            log.info("%s", main.atypical)
        result.message = "L3 found; check the level." if result.review else "L3 found."
    timings["decode"] = time.perf_counter() - start
    result.timings_s = timings
    return result


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
    from scipy import ndimage

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
