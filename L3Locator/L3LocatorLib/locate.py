"""The one entry point: a CT volume in, an ``L3Result`` out.

``checks -> projection -> network -> decode -> body_point``: this module only chains
the stages, times each one, and assembles the result.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Union

from .body_point import vertebral_body_point
from .checks import check_volume
from .counting import count_levels
from .decode import LevelDecoding, RowPrediction, decode_prediction, subpixel_peak
from .errors import InputError
from .network import LoadedModel, load_model, predict_views
from .patient_grid import to_patient_grid
from .presence import ABSENT, UNSURE, PresenceDecision, decide
from .projection import ProjectionGeometry, Projections, project
from .real_slice import in_real_slices
from .result import STATUS_NOT_FOUND, STATUS_OK, Evidence, L3Result, ViewResult
from .review import ReviewPolicy, edge_limit_mm, edge_reasons, review_reasons
from .second_reader import SecondReading, confirming_anchors, safe_read, second_read
from .volume import Volume

log = logging.getLogger(__name__)

#: Which view answers: the fused pair, or one view alone.
VIEW_CHOICES = ("both", "frontal", "sagittal")


def locate(
    volume: Volume,
    *,
    model: Union[str, Path, LoadedModel, None] = None,
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

    Returns an ``L3Result`` with status "ok" or "not_found"; ``timings_s`` holds the
    seconds of each stage. Raises ``InputError``, ``ModelError`` or ``DependencyError``
    (user-facing messages) when it cannot run.
    """
    if views not in VIEW_CHOICES:
        raise ValueError(f"views must be one of {VIEW_CHOICES}, got {views!r}")
    timings: dict[str, float] = {}

    def timed(stage: str, start: float) -> None:
        timings[stage] = time.perf_counter() - start

    start = time.perf_counter()
    check_volume(volume)
    timed("validate", start)

    start = time.perf_counter()
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device)
    timed("load_model", start)
    wanted = "fused" if views == "both" else views

    start = time.perf_counter()
    # One patient-axes grid for the projections and the second reader (an oblique CT is
    # resampled to make it).
    grid = to_patient_grid(volume, loaded.preprocess)
    projections = project(volume, loaded.preprocess, grid)
    timed("project", start)

    start = time.perf_counter()
    probs = predict_views(loaded, projections)
    timed("network", start)

    start = time.perf_counter()
    prediction = decode_prediction(
        probs, loaded.levels, threshold=loaded.threshold,
        pixel_mm=loaded.preprocess.pixel_mm, answer_level=loaded.metadata.answer_level,
    )
    if wanted not in prediction.probs:
        raise InputError(
            f"The model {loaded.metadata.name} reads {', '.join(loaded.views)} only; "
            f"it cannot answer from the {views} view."
        )
    timed("decode", start)

    # The second reader counts the vertebrae from the last rib and the sacrum without the
    # network: an answer it confirms needs no check for the anchor it counted from, and a
    # low-confidence answer near a scan edge stands only with its confirmation.
    start = time.perf_counter()
    reading = safe_read(volume, projections, grid)
    timed("second_reader", start)

    start = time.perf_counter()
    result = _assemble(prediction, projections, wanted, loaded, reading)
    timed("assemble", start)

    if result.status == STATUS_OK:
        start = time.perf_counter()
        _place_point(result, volume, projections, result.evidence.row)
        timed("body_point", start)
    in_real_slices(result, volume)
    second_read(result, reading)
    result.timings_s = timings
    return result


def _assemble(prediction: RowPrediction, projections: Projections, wanted: str,
              loaded: LoadedModel, reading: SecondReading) -> L3Result:
    """The result of the decoded prediction, before the 3-D point is placed."""
    geometry = projections.geometry
    views = {}
    for name in prediction.probs:
        d = prediction.answer(name)
        s_mm = float(geometry.row_to_s(d.row)) if d.row is not None else None
        views[name] = ViewResult(row=d.row, confidence=d.confidence, s_mm=s_mm)
    main = prediction.decoded[wanted]
    l3 = prediction.answer(wanted)
    decision = decide(prediction, loaded.metadata.flag_threshold, wanted)
    confirmed = confirming_anchors(
        reading, None if decision.row is None else float(geometry.row_to_s(decision.row)))
    if decision.kind == UNSURE and not confirmed and _near_edge(
            decision.row, main, geometry, prediction.answer_level):
        # Where the scan stops one vertebra from the peak, a weak peak is as often the last
        # vertebra in view (L2 called L3) as L3: not an answer without an independent count.
        decision = PresenceDecision(ABSENT, None, decision.confidence)
    result = L3Result(
        status=STATUS_NOT_FOUND,
        confidence=float(l3.confidence),
        views=views,
        levels_s_mm={k: float(geometry.row_to_s(r)) for k, r in main.rows.items()},
        model_name=loaded.metadata.name,
        model_version=str(loaded.metadata.version),
        evidence=Evidence(
            projections=projections,
            profile=prediction.answer_profile(wanted),
            row=decision.row,
            threshold=prediction.threshold,
            level_rows=main.rows,
        ),
    )
    count = count_levels(main.rows, prediction.levels, geometry.pixel_mm,
                         answer=prediction.answer_level)
    result.counted = count.summary
    result.lumbar_counted = count.lumbar
    result.variants = list(count.variants)
    result.presence = decision.kind
    if decision.kind == ABSENT:
        result.message = (
            "L3 is not in the field of view (or the scan is too unusual for the model to be "
            f"sure: confidence {l3.confidence:.2f})."
        )
        _add_candidate(result, prediction, projections, wanted)
        return result
    result.status = STATUS_OK
    result.s_mm = float(geometry.row_to_s(decision.row))
    result.atypical_anatomy = main.atypical
    result.review = review_reasons(main, prediction.threshold, geometry.n_rows,
                                   geometry.pixel_mm, answer=prediction.answer_level,
                                   view_rows=prediction.single_view_peaks(wanted),
                                   unsure_row=decision.row, confirmed=confirmed)
    if confirmed == {"ribs", "sacrum"} and reading.lumbar_between == 5:
        # five lumbar vertebrae counted between the last rib and the sacrum: no transitional
        # vertebra to suspect from the level rows' spacing
        count_flags = [v for v in count.variants if "transitional" not in v]
    else:
        count_flags = list(count.variants)
    result.review += [v for v in count_flags if v not in result.review]
    if main.atypical:
        log.info("%s", main.atypical)
    result.message = "L3 found; check the level." if result.review else "L3 found."
    return result


def _near_edge(row: float, decoding: LevelDecoding, geometry: ProjectionGeometry,
               answer: str) -> bool:
    """Whether ``row`` lies closer to the top or bottom row of the scan than
    ``review.edge_limit_mm`` (about one vertebra)."""
    edge_mm = min(row, geometry.n_rows - 1 - row) * geometry.pixel_mm
    return edge_mm < edge_limit_mm(decoding, answer, geometry.pixel_mm)


def _add_candidate(result: L3Result, prediction: RowPrediction, projections: Projections,
                   wanted: str) -> None:
    """For an L3 not found: name the slice of the model's peak when it came close to the
    threshold, as a place to check (the status stays not_found)."""
    l3 = prediction.answer(wanted)
    policy = ReviewPolicy()
    if l3.confidence < policy.candidate_fraction * prediction.threshold:
        return
    geometry = projections.geometry
    k = l3.peak_index
    row = subpixel_peak(prediction.answer_profile(wanted), k)
    point = geometry.to_ras(row, float(projections.spine_frontal_col[k]),
                            float(projections.spine_sagittal_col[k]))
    result.candidate_s_mm = float(point[2])
    result.candidate_ijk = list(geometry.nearest_voxel(point))
    result.slice_axis = geometry.slice_axis
    # Near a scan edge the peak is most often the last vertebra in view, not L3.
    caveats = edge_reasons(row, geometry.n_rows, geometry.pixel_mm,
                           policy.edge_levels * policy.default_spacing_mm,
                           prediction.answer_level)
    result.message = " ".join([
        f"L3 was not found with enough confidence ({l3.confidence:.2f}; the model needs "
        f"{prediction.threshold:.2f}). Its most likely place is slice "
        f"{result.candidate_ijk[geometry.slice_axis]} (S {result.candidate_s_mm:.0f} mm): "
        "if this scan contains L3, check that slice yourself.", *caveats])


def _place_point(result: L3Result, volume: Volume, projections: Projections,
                 row: float) -> None:
    """Put the L3 point in the vertebral body and report its voxel and slice."""
    geometry = projections.geometry
    body = vertebral_body_point(volume, projections, row)
    point = body.ras
    ijk = geometry.nearest_voxel(point)
    result.point_in_body = body.in_body
    result.point_note = body.note
    result.l3_ras_mm = [float(v) for v in point]
    result.l3_ijk = list(ijk)
    result.slice_axis = geometry.slice_axis
    result.slice_index = ijk[geometry.slice_axis]
    result.s_mm = float(point[2])
    if result.presence == UNSURE:
        result.message = (
            f"L3 is most likely at slice {result.slice_index} (S {result.s_mm:.0f} mm); "
            f"confidence {result.confidence:.2f}, under the model's cut-off of "
            f"{result.evidence.threshold:.2f} for a sure answer: check it.")
    if body.note:
        result.message = f"{result.message} {body.note}"
