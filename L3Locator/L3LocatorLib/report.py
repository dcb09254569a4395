"""One results row per scan, the same for every front end (the command, Slicer's headless
script, cohort runs): its columns, and plain-words messages for errors.

Finding the scans is ``inputs``; the results file is ``results``; the loop is ``batch``.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from .errors import L3LocatorError
from .result import STATUS_ERROR, L3Result

#: Columns of a results file, in order. ``l3_ijk`` and ``l3_ras_mm`` hold JSON lists;
#: ``review`` the reasons to check the level, in words (empty when there are none).
#: For DICOM series ``slice_index`` counts the series' own slices and ``slice_file``,
#: ``slice_sop_uid`` and ``slice_instance`` name that slice; ``resampled`` says when L3 was
#: found on a resampled grid (uneven spacing, gantry tilt).
ROW_FIELDS = (
    "input",
    "series",
    "status",
    "slice_index",
    "l3_ijk",
    "l3_ras_mm",
    "s_mm",
    "confidence",
    "needs_review",
    "presence",
    "candidate_slice_index",
    "candidate_s_mm",
    "candidate_ijk",
    "message",
    "review",
    "slice_axis",
    "slice_file",
    "slice_sop_uid",
    "slice_instance",
    "resampled",
    "model",
    "qa_png",
    "seconds",
)

DICOM_SUFFIXES = (".dcm", ".ima", "")


def result_row(
    input_name: str,
    result: Optional[L3Result] = None,
    error: Union[BaseException, str, None] = None,
    qa_png: str = "",
    series: str = "",
) -> dict[str, Any]:
    """One results row: from a result, or from an error (status ``error``, plain message).

    ``input`` is the scan's resolved path, ``series`` its DICOM SeriesInstanceUID ("" for
    volume files): together they identify the row.
    """
    row: dict[str, Any] = {name: None for name in ROW_FIELDS}
    row["input"] = input_name
    row["series"] = series or None
    row["qa_png"] = qa_png or None
    if result is None:
        row["status"] = STATUS_ERROR
        row["message"] = error_message(error)
        return row
    data = result.to_dict()
    for name in ("status", "slice_index", "l3_ijk", "l3_ras_mm", "s_mm", "confidence",
                 "needs_review", "presence", "candidate_slice_index", "candidate_s_mm",
                 "candidate_ijk", "message", "slice_axis", "slice_file", "slice_sop_uid",
                 "slice_instance", "resampled"):
        row[name] = data[name]
    row["review"] = " ".join(result.review) or None
    row["model"] = " ".join(filter(None, (result.model_name, result.model_version))) or None
    row["seconds"] = round(sum(result.timings_s.values()), 3) if result.timings_s else None
    row.update(result.extra_columns)
    return row


def error_message(error: Union[BaseException, str, None]) -> str:
    """A message for the user: ours verbatim; anything unexpected named as a bug to report."""
    if error is None:
        return "Unknown error."
    if isinstance(error, str):
        return error
    if isinstance(error, L3LocatorError):
        return str(error)
    if isinstance(error, MemoryError):
        return "Not enough memory for this scan. Close other programs or use a bigger machine."
    return (
        f"Unexpected internal error ({type(error).__name__}: {error}). This is a bug in "
        "L3 Locator; please report it with the scan's description (not the scan itself)."
    )
