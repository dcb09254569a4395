"""The answer of one L3 search, as every front end (Slicer, CLI, batch) reports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Optional

import numpy as np

from .projection import Projections
from .second_reader import SecondReading

#: ``L3Result.status`` values.
STATUS_OK = "ok"
STATUS_NOT_FOUND = "not_found"
STATUS_ERROR = "error"


@dataclass
class ViewResult:
    """What one view (frontal, sagittal or the fused pair) says on its own."""

    row: Optional[float]  #: sub-pixel projection row of L3, None when absent
    confidence: float  #: 0..1
    s_mm: Optional[float] = None  #: RAS S of ``row`` (mm)


@dataclass
class Evidence:
    """What the answer rests on; drawn by ``qa.qa_picture``."""

    projections: Projections
    profile: np.ndarray  #: P(L3) per projection row of the view that answered
    row: Optional[float]  #: sub-pixel L3 row, None when not found
    threshold: float
    level_rows: dict[str, float] = field(default_factory=dict)


@dataclass
class L3Result:
    """Where L3 is in one CT.

    ``slice_index`` counts along the volume's own voxel axis closest to
    superior-inferior (``slice_axis``: 0=i, 1=j, 2=k; k for ordinary axial
    scans); ``l3_ijk`` is the voxel index ``[i, j, k]`` in the file's own order
    (ITK/SimpleITK convention, the same as Slicer's IJK); ``l3_ras_mm`` is the
    point at the L3 vertebral body in RAS mm.
    """

    status: str
    message: str = ""
    slice_index: Optional[int] = None
    slice_axis: Optional[int] = None
    l3_ijk: Optional[list[int]] = None
    l3_ras_mm: Optional[list[float]] = None
    s_mm: Optional[float] = None
    confidence: float = 0.0
    views: dict[str, ViewResult] = field(default_factory=dict)
    #: S mm of every predicted level (e.g. "L1": 250.0), for the anatomy check.
    levels_s_mm: dict[str, float] = field(default_factory=dict)
    atypical_anatomy: Optional[str] = None  #: plain words when the spine looks unusual
    #: Plain-words reasons to have a person check the level (``review.review_reasons``);
    #: empty when the answer needs no check.
    review: list[str] = field(default_factory=list)
    #: True when ``l3_ras_mm`` is the centroid of the outlined vertebral body; False when
    #: the body could not be outlined and the point lies on the spine's midline instead
    #: (``point_note`` says so in plain words); None when L3 was not found.
    point_in_body: Optional[bool] = None
    point_note: Optional[str] = None
    #: What the model counted, in plain words (``counting.count_levels``), and how many
    #: of L1-L5 it found; ``variants`` lists possible spine variants it can see (also
    #: among ``review`` when L3 was found).
    counted: str = ""
    lumbar_counted: int = 0
    variants: list[str] = field(default_factory=list)
    #: When L3 was not found but the model's peak came close (``ReviewPolicy.
    #: candidate_fraction`` of the threshold): the S (mm) and the voxel ``[i, j, k]`` on
    #: the spine at that peak (its slice: ``candidate_ijk[slice_axis]``), a place for a
    #: person to check, never an answer. None otherwise.
    candidate_s_mm: Optional[float] = None
    candidate_ijk: Optional[list[int]] = None
    #: How sure the answer is (``presence``): "sure" (confidence at or above the model's
    #: threshold), "unsure" (found below it, both views pointing to one vertebra: flagged
    #: for review) or "absent" (not found). Empty for errors.
    presence: str = ""
    #: For a DICOM series (``real_slice``): the file, SOPInstanceUID and InstanceNumber of
    #: the real slice ``slice_index`` counts to; ``resampled``, in words, how the grid L3
    #: was found on differs from the files' (uneven spacing, gantry tilt), or None.
    slice_file: Optional[str] = None
    slice_sop_uid: Optional[str] = None
    slice_instance: Optional[int] = None
    resampled: Optional[str] = None
    model_name: str = ""
    model_version: str = ""
    #: Columns a front end adds to this scan's results row (e.g. body composition,
    #: ``composition.columns.COLUMNS``); not part of ``to_dict``.
    extra_columns: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    #: The second reader's count from the last rib and the sacrum (``second_reader``), or
    #: None when it did not run.
    second_reading: Optional[SecondReading] = None
    #: Projections and heat-map profile behind the answer, for QA pictures (not serialised).
    evidence: Optional[Evidence] = field(default=None, repr=False, compare=False)

    @property
    def found(self) -> bool:
        return self.status == STATUS_OK

    @property
    def shown_voxel(self) -> Optional[list[int]]:
        """Voxel ``[i, j, k]`` whose slice a viewer shows: L3's when found, else the
        candidate's, else None."""
        return self.l3_ijk if self.found else self.candidate_ijk

    @property
    def candidate_slice_index(self) -> Optional[int]:
        """The candidate's slice along ``slice_axis`` (see ``candidate_ijk``), or None."""
        if self.candidate_ijk is None or self.slice_axis is None:
            return None
        return int(self.candidate_ijk[self.slice_axis])

    @property
    def needs_review(self) -> bool:
        """True when a found level should be checked by a person (see ``review``)."""
        return bool(self.review)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (no numpy types, no evidence)."""
        out: dict[str, Any] = {
            "status": self.status,
            "message": self.message,
            "slice_index": self.slice_index,
            "slice_axis": self.slice_axis,
            "l3_ijk": self.l3_ijk,
            "l3_ras_mm": self.l3_ras_mm,
            "s_mm": self.s_mm,
            "confidence": self.confidence,
            "needs_review": self.needs_review,
            "review": list(self.review),
            "views": {
                name: {"row": v.row, "confidence": v.confidence, "s_mm": v.s_mm}
                for name, v in self.views.items()
            },
            "levels_s_mm": dict(self.levels_s_mm),
            "atypical_anatomy": self.atypical_anatomy,
            "point_in_body": self.point_in_body,
            "point_note": self.point_note,
            "counted": self.counted,
            "lumbar_counted": self.lumbar_counted,
            "variants": list(self.variants),
            "candidate_s_mm": self.candidate_s_mm,
            "candidate_ijk": self.candidate_ijk,
            "candidate_slice_index": self.candidate_slice_index,
            "presence": self.presence,
            "slice_file": self.slice_file,
            "slice_sop_uid": self.slice_sop_uid,
            "slice_instance": self.slice_instance,
            "resampled": self.resampled,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "timings_s": dict(self.timings_s),
            "second_reading": self.second_reading.to_dict() if self.second_reading else None,
        }
        return jsonable(out, digits=4)


def jsonable(value: Any, digits: Optional[int] = None) -> Any:
    """Replace numpy scalars/arrays and paths by plain Python values, recursively, so that
    ``json.dumps`` accepts the result; floats are rounded to ``digits`` when given."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), digits)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits) if digits is not None else float(value)
    if isinstance(value, PurePath):
        return str(value)
    return value
