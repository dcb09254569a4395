"""Walk a folder tree of DICOM files, read headers only, and group them into series.

Hospital exports nest patient/study/series folders (or none at all) and name files by
UID without a suffix, so files are recognised by content (pydicom), never by name.
Pixel data is never read here (``stop_before_pixels``).

Geometry in the headers is DICOM's LPS (mm): ``ImagePositionPatient`` is the centre of
the first transmitted pixel, ``ImageOrientationPatient`` the row and column direction
cosines.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from .deps import require_pydicom

log = logging.getLogger(__name__)

#: Header fields read from every file (everything else is skipped while parsing).
HEADER_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "Modality", "ImageType", "StudyInstanceUID",
    "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "StudyDescription", "StudyDate",
    "AccessionNumber", "PatientID", "PatientName", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "ConvolutionKernel",
    "Rows", "Columns", "BodyPartExamined", "InstanceNumber", "NumberOfFrames",
    "FrameOfReferenceUID",
)
#: File name endings that are certainly not DICOM (skipped without opening them).
NOT_DICOM_SUFFIXES = (
    ".nii", ".gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".json", ".csv", ".txt", ".xml",
    ".png", ".jpg", ".jpeg", ".pdf", ".html", ".zip",
)


@dataclass(frozen=True)
class ImageHeader:
    """The header fields of one DICOM file that matter for choosing a series."""

    path: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    modality: str
    image_type: tuple[str, ...]
    series_number: Optional[int]
    series_description: str
    study_description: str
    study_date: str
    accession_number: str
    patient_id: str
    patient_name: str
    position_lps: Optional[tuple[float, float, float]]  #: mm
    orientation_lps: Optional[tuple[float, ...]]  #: row then column direction cosines
    pixel_spacing: Optional[tuple[float, float]]  #: mm, (between rows, between columns)
    slice_thickness: Optional[float]  #: mm
    kernel: str
    rows: int
    columns: int
    body_part: str
    instance_number: Optional[int]
    n_frames: int


@dataclass
class SeriesInfo:
    """One DICOM series as found in the tree: its headers' common fields and its files.

    ``files`` are sorted along the slice normal (feet to head for axial series) when
    the headers hold positions, else by instance number.
    """

    study_uid: str
    series_uid: str
    first: ImageHeader  #: header of the first file (shared fields)
    files: list[str] = field(default_factory=list)
    positions_mm: list[float] = field(default_factory=list)  #: along the slice normal

    @property
    def n_images(self) -> int:
        return len(self.files)

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def series_number(self) -> Optional[int]:
        return self.first.series_number

    @property
    def normal_lps(self) -> Optional[np.ndarray]:
        """Unit normal of the image planes (LPS), or None without an orientation."""
        o = self.first.orientation_lps
        if o is None or len(o) != 6:
            return None
        n = np.cross(np.asarray(o[:3]), np.asarray(o[3:]))
        norm = float(np.linalg.norm(n))
        return n / norm if norm > 1e-6 else None

    @property
    def extent_mm(self) -> float:
        """Distance covered along the slice normal: first to last slice centre plus one
        slice thickness (mm); 0 when positions are unknown."""
        if len(self.positions_mm) < 1:
            return 0.0
        span = max(self.positions_mm) - min(self.positions_mm)
        return float(span + (self.first.slice_thickness or 0.0))

    @property
    def folder(self) -> str:
        """The deepest folder holding all of the series' files."""
        return os.path.commonpath([os.path.dirname(f) for f in self.files]) if self.files else ""

    @property
    def key(self) -> str:
        """The series' name in results rows: its folder and UID (unique, readable)."""
        return f"{self.folder}#{self.series_uid}"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(value: Any, n: int) -> Optional[tuple[float, ...]]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def read_header(path: Union[str, os.PathLike[str]]) -> Optional[ImageHeader]:
    """The header of one DICOM file (no pixel data read), or None when it is not DICOM
    or has no study/series UID."""
    pydicom = require_pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError):
        return None
    study, series = _text(ds.get("StudyInstanceUID")), _text(ds.get("SeriesInstanceUID"))
    if not study or not series:
        return None
    sop_class = _text(ds.get("SOPClassUID")) or _text(
        getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
    )
    image_type = ds.get("ImageType")
    if image_type is None:
        types: tuple[str, ...] = ()
    elif isinstance(image_type, str):
        types = tuple(t.strip().upper() for t in image_type.split("\\"))
    else:
        types = tuple(_text(t).upper() for t in image_type)
    kernel = ds.get("ConvolutionKernel")
    if kernel is not None and not isinstance(kernel, str):
        kernel = "\\".join(_text(k) for k in kernel)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    thickness = ds.get("SliceThickness")
    return ImageHeader(
        path=str(path),
        study_uid=study,
        series_uid=series,
        sop_class_uid=sop_class,
        modality=_text(ds.get("Modality")).upper(),
        image_type=types,
        series_number=_int(ds.get("SeriesNumber")),
        series_description=_text(ds.get("SeriesDescription")),
        study_description=_text(ds.get("StudyDescription")),
        study_date=_text(ds.get("StudyDate")),
        accession_number=_text(ds.get("AccessionNumber")),
        patient_id=_text(ds.get("PatientID")),
        patient_name=_text(ds.get("PatientName")),
        position_lps=position,  # type: ignore[arg-type]
        orientation_lps=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slice_thickness=float(thickness) if _floats([thickness], 1) else None,
        kernel=_text(kernel),
        rows=_int(ds.get("Rows")) or 0,
        columns=_int(ds.get("Columns")) or 0,
        body_part=_text(ds.get("BodyPartExamined")).upper(),
        instance_number=_int(ds.get("InstanceNumber")),
        n_frames=_int(ds.get("NumberOfFrames")) or 1,
    )


def candidate_files(roots: Iterable[Union[str, os.PathLike[str]]]) -> list[str]:
    """Every file under the given folders (or the files themselves) that may be DICOM,
    in a stable order; hidden files and known non-DICOM endings are left out."""
    found: list[str] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            found.append(str(root))
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name.lower().endswith(NOT_DICOM_SUFFIXES):
                    continue
                found.append(os.path.join(folder, name))
    return found


def scan_tree(
    roots: Sequence[Union[str, os.PathLike[str]]], threads: int = 8
) -> list[SeriesInfo]:
    """All DICOM series under ``roots``, read from headers only.

    Files that are not DICOM are skipped (counted in the log). ``threads`` overlaps the
    many small reads of a network share. Returns series sorted by study then series
    number, each with its files sorted along the slice normal.
    """
    require_pydicom()
    files = candidate_files(roots)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        headers = list(pool.map(read_header, files, chunksize=64))
    groups: dict[tuple[str, str], list[ImageHeader]] = {}
    skipped = 0
    for header in headers:
        if header is None:
            skipped += 1
            continue
        groups.setdefault((header.study_uid, header.series_uid), []).append(header)
    if skipped:
        log.info("%d file(s) under %s are not DICOM images with study and series UIDs; "
                 "skipped.", skipped, ", ".join(map(str, roots)))
    series = [_series(items) for items in groups.values()]
    series.sort(key=lambda s: (s.study_uid, s.series_number or 0, s.series_uid))
    return series


def _series(headers: list[ImageHeader]) -> SeriesInfo:
    first = headers[0]
    info = SeriesInfo(first.study_uid, first.series_uid, first)
    normal = info.normal_lps
    if normal is not None and all(h.position_lps is not None for h in headers):
        along = [float(np.dot(normal, h.position_lps)) for h in headers]  # type: ignore[arg-type]
        order = np.argsort(along, kind="stable")
        info.files = [headers[i].path for i in order]
        info.positions_mm = [along[i] for i in order]
    else:
        ordered = sorted(headers, key=lambda h: (h.instance_number or 0, h.path))
        info.files = [h.path for h in ordered]
    return info


def group_by_study(series: Iterable[SeriesInfo]) -> dict[str, list[SeriesInfo]]:
    """Series grouped by StudyInstanceUID, in first-seen order."""
    studies: dict[str, list[SeriesInfo]] = {}
    for s in series:
        studies.setdefault(s.study_uid, []).append(s)
    return studies
