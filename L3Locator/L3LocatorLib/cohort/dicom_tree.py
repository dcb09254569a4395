"""Walk a folder tree of DICOM files, read headers only, and group them into series.

Hospital exports nest patient/study/series folders (or none at all) and name files by
UID without a suffix, so files are recognised by content (pydicom), never by name.
Pixel data is never read here (``stop_before_pixels``).

Geometry in the headers is DICOM's LPS (mm): ``ImagePositionPatient`` is the centre of
the first transmitted pixel, ``ImageOrientationPatient`` the row and column direction
cosines.
"""

from __future__ import annotations

import itertools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from ..dicom import starts_like_dataset
from ..dicom_complete import NOT_DICOM_SUFFIXES
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
    sop_uid: str = ""
    frame_of_reference: str = ""


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
    #: Plain words when other files claim this series' Study/Series UIDs but lie in another
    #: folder or name another patient or frame of reference (read as separate series).
    conflict: str = ""
    #: Appended to the series UID in results rows when another series of the same UIDs
    #: lies in the same folder (other patient or frame of reference), so rows stay apart.
    split: str = ""
    copies: int = 0  #: second copies of an image (same SOPInstanceUID and position) left out

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
    def patient_id(self) -> str:
        return self.first.patient_id

    @property
    def row_uid(self) -> str:
        """The series' UID in results rows (with ``split`` when the UID is shared)."""
        return self.series_uid + self.split


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
    except InvalidDicomError:  # perhaps DICOM written without its 128-byte preamble
        ds = _without_preamble(path)
        if ds is None:
            return None
    except Exception as error:  # a damaged file must not stop the walk: it is not usable
        log.info("%s: DICOM header unreadable (%s: %s)", path, type(error).__name__, error)
        return None
    try:
        return _header_from(ds, str(path))
    except Exception as error:  # malformed values (e.g. a position that is not a number)
        log.info("%s: DICOM header not understood (%s: %s)", path, type(error).__name__, error)
        return None


def _without_preamble(path: Union[str, os.PathLike[str]]) -> Any:
    """The header of a DICOM file written without the 128-byte preamble, or None when the
    file does not begin like a DICOM data set."""
    pydicom = require_pydicom()
    try:
        with open(path, "rb") as stream:
            if not starts_like_dataset(stream.read(8)):
                return None
        return pydicom.dcmread(str(path), stop_before_pixels=True, force=True,
                               specific_tags=list(HEADER_TAGS))
    except Exception as error:  # a damaged file must not stop the walk: it is not usable
        log.info("%s: DICOM header unreadable (%s: %s)", path, type(error).__name__, error)
        return None


def _header_from(ds: Any, path: str) -> Optional[ImageHeader]:
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
        path=path,
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
        sop_uid=_text(ds.get("SOPInstanceUID")),
        frame_of_reference=_text(ds.get("FrameOfReferenceUID")),
    )


def iter_candidate_files(roots: Iterable[Union[str, os.PathLike[str]]]) -> Iterator[str]:
    """Every file under the given folders (or the files themselves) that may be DICOM,
    in a stable order; hidden files and known non-DICOM endings are left out."""
    for root in roots:
        root = Path(root)
        if root.is_file():
            yield str(root)
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name.lower().endswith(NOT_DICOM_SUFFIXES):
                    continue
                yield os.path.join(folder, name)


class _SeriesBuilder:
    """What is kept of one series while its files are read: the first header, and per
    file only its path, position along the first header's slice normal and number (so a
    tree of millions of files needs little memory). A second copy of an image (the same
    SOPInstanceUID at the same position, as when a study was copied twice into one
    folder) is left out and counted."""

    def __init__(self, first: ImageHeader) -> None:
        self.info = SeriesInfo(first.study_uid, first.series_uid, first)
        self.normal = self.info.normal_lps
        self.paths: list[str] = []
        self.along: list[Optional[float]] = []
        self.numbers: list[int] = []
        self.seen: set[tuple[str, Optional[tuple[float, ...]]]] = set()

    def add(self, header: ImageHeader) -> None:
        copy = (header.sop_uid, header.position_lps)
        if header.sop_uid and copy in self.seen:
            self.info.copies += 1
            return
        self.seen.add(copy)
        self.paths.append(header.path)
        self.numbers.append(header.instance_number or 0)
        position = header.position_lps
        self.along.append(None if position is None or self.normal is None
                          else float(np.dot(self.normal, position)))

    def build(self) -> SeriesInfo:
        info = self.info
        if self.along and all(a is not None for a in self.along):
            order = np.argsort(np.asarray(self.along, dtype=float), kind="stable")
            info.positions_mm = [float(self.along[i]) for i in order]  # type: ignore[arg-type]
        else:
            order = sorted(range(len(self.paths)), key=lambda i: (self.numbers[i], self.paths[i]))
        info.files = [self.paths[i] for i in order]
        if info.copies:
            log.warning("%s: %d second copies of images of series %s (same SOPInstanceUID and "
                        "position) left out.", info.folder, info.copies, info.series_uid)
        return info


def _series_key(header: ImageHeader) -> tuple[str, ...]:
    """Files are one series when they share the Study and Series UIDs, the patient, the
    frame of reference and the folder: anonymisers that keep UIDs give two patients' scans
    the same UIDs, and a study copied twice has the same UIDs in two folders."""
    return (header.study_uid, header.series_uid, header.patient_id, header.frame_of_reference,
            os.path.dirname(header.path))


def _note_conflicts(series: Sequence[SeriesInfo]) -> None:
    """Say, on every series whose Study/Series UIDs other files also claim, where those lie
    and how they differ (``SeriesInfo.conflict``); split same-folder ones (``split``)."""
    claims: dict[tuple[str, str], list[SeriesInfo]] = {}
    for s in series:
        claims.setdefault((s.study_uid, s.series_uid), []).append(s)
    for group in claims.values():
        if len(group) < 2:
            continue
        for s in group:
            others = [o for o in group if o is not s]
            if any(o.folder == s.folder for o in others):
                s.split = f"|{s.patient_id}|{s.first.frame_of_reference}"
            words = []
            for o in others:
                how = [what for what, differs in (
                    ("another patient", o.patient_id != s.patient_id),
                    ("another frame of reference",
                     o.first.frame_of_reference != s.first.frame_of_reference),
                    (f"folder {o.folder}", o.folder != s.folder)) if differs]
                words.append(", ".join(how))
            s.conflict = (f"{len(others)} other set(s) of files claim the same Study/Series "
                          f"UIDs ({'; '.join(words)}): read as separate series")
            log.warning("%s: %s.", s.folder, s.conflict)


def scan_tree(
    roots: Sequence[Union[str, os.PathLike[str]]], threads: int = 8, chunk: int = 2048
) -> list[SeriesInfo]:
    """All DICOM series under ``roots``, read from headers only.

    Files that are not DICOM are skipped (counted in the log). ``threads`` overlaps the
    many small reads of a network share; files are read ``chunk`` at a time. Returns
    series sorted by study then series number, each with its files sorted along the
    slice normal (by instance number when positions are missing).
    """
    require_pydicom()
    groups: dict[tuple[str, ...], _SeriesBuilder] = {}
    skipped = 0
    files = iter_candidate_files(roots)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        while True:
            batch = list(itertools.islice(files, chunk))
            if not batch:
                break
            for header in pool.map(read_header, batch):
                if header is None:
                    skipped += 1
                    continue
                key = _series_key(header)
                if key not in groups:
                    groups[key] = _SeriesBuilder(header)
                groups[key].add(header)
    if skipped:
        log.info("%d file(s) under %s are not DICOM images with study and series UIDs; "
                 "skipped.", skipped, ", ".join(map(str, roots)))
    series = [builder.build() for builder in groups.values()]
    _note_conflicts(series)
    series.sort(key=lambda s: (s.study_uid, s.series_number or 0, s.series_uid))
    return series


def group_by_study(series: Iterable[SeriesInfo]) -> dict[str, list[SeriesInfo]]:
    """Series grouped into studies, in first-seen order: by StudyInstanceUID and patient,
    and, when series of one study reuse a series UID in several folders (copies, or
    anonymised patients that kept the UIDs), by the folder each copy lies in. Keys are the
    Study UID, with the patient and copy's folder appended when they are needed to part
    studies."""
    studies: dict[tuple[str, str], list[SeriesInfo]] = {}
    for s in series:
        studies.setdefault((s.study_uid, s.patient_id), []).append(s)
    out: dict[str, list[SeriesInfo]] = {}
    patients: dict[str, int] = {}
    for study_uid, _ in studies:
        patients[study_uid] = patients.get(study_uid, 0) + 1
    for (study_uid, patient), members in studies.items():
        name = study_uid if patients[study_uid] == 1 else f"{study_uid}|{patient}"
        for root, copy in _copies(members).items():
            out[name if not root else f"{name}|{root}"] = copy
    return out


def _copies(members: list[SeriesInfo]) -> dict[str, list[SeriesInfo]]:
    """The series of one study split by copy: ``{copy root folder: series}`` ("" when the
    study is not copied). A copy root is the folder, below the folders the copies share,
    that holds one copy of a series UID found in several folders."""
    folders: dict[str, set[str]] = {}
    for s in members:
        folders.setdefault(s.series_uid, set()).add(s.folder)
    repeated = [sorted(f) for f in folders.values() if len(f) > 1]
    if not repeated:
        return {"": members}
    roots: list[str] = []
    for group in repeated:
        common = os.path.commonpath(group)
        for folder in group:
            below = os.path.relpath(folder, common).split(os.sep)[0]
            root = folder if below == "." else os.path.join(common, below)
            if root not in roots:
                roots.append(root)
    copies: dict[str, list[SeriesInfo]] = {root: [] for root in roots}
    for s in members:
        inside = [r for r in roots if s.folder == r or s.folder.startswith(r + os.sep)]
        copies[max(inside, key=len) if inside else roots[0]].append(s)
    return {root: copy for root, copy in copies.items() if copy}
