"""DICOM files: recognise them by content, group them by series, and read a series with the
geometry its slice positions describe (not the one a reader assumes).

Readers take the slice spacing from the first two slices and ignore gantry tilt, so a
series with missing slices, uneven spacing, duplicate positions or a tilted gantry comes
back with a wrong geometry and L3 lands one vertebra or more off. Here every slice's
ImagePositionPatient is used:

- duplicate positions (zero spacing) and gaps (missing slices) are refused, with where; a
  series made of blocks of regular spacing (4 mm then 7 mm: head/neck and abdomen
  protocols) is complete: a gap is a step much larger than the blocks on both sides of it;
- uneven spacing without gaps is resampled to the finest block's spacing (linear, along the
  slices), and ``SourceSlices`` keeps the real slices so answers are given in them;
- gantry tilt is undone by shifting each slice in its own plane (linear), up to
  ``MAX_TILT_DEG``; steeper tilts are refused.

Arrays are ``[k, j, i]``; matrices map voxel ``(i, j, k)`` to RAS mm (the ``Volume`` layout).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

#: Bytes 128..131 of a DICOM Part 10 file.
DICOM_MAGIC = b"DICM"
#: Suffixes that mark a file as DICOM even without the Part 10 preamble (lower case).
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
#: Files that are never scans: operating-system litter and DICOM media index files.
IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "dicomdir"})

#: Slices closer than this (mm) are at the same position.
DUPLICATE_MM = 0.01
#: Spacing may vary by this fraction before the series is resampled to an even grid.
EVEN_TOLERANCE = 0.05
#: A step this many times the spacing of the slices around it means slices are missing.
GAP_FACTOR = 1.5
#: Steps within this fraction (plus ``BLOCK_JITTER_MM``) of each other are one block of
#: regular spacing ...
BLOCK_TOLERANCE = 0.1
BLOCK_JITTER_MM = 0.05
#: ... and a block needs at least this many steps (fewer are isolated steps between blocks).
MIN_BLOCK_STEPS = 5
#: Gantry tilts up to this angle (degrees) are undone; beyond, the series is refused.
MAX_TILT_DEG = 30.0
#: Tilts below this (degrees) are rounding in the positions, not a tilt.
TILT_TOLERANCE_DEG = 0.05

#: Flips between LPS (ITK, DICOM) and RAS (Slicer): negate the first two axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_ignored_name(name: str) -> bool:
    """macOS resource forks (``._*``), desktop litter and DICOMDIR index files."""
    return name.startswith("._") or name.lower() in IGNORED_NAMES


def is_dicom_file(path: Path) -> bool:
    """True when the file is DICOM: the ``DICM`` marker at byte 128 (DICOM Part 10), a data
    set without that preamble (``starts_like_dataset``), or a DICOM suffix. Names do not
    matter otherwise (UID-named files are common)."""
    if is_ignored_name(path.name):
        return False
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    return head[128:132] == DICOM_MAGIC or starts_like_dataset(head)


def starts_like_dataset(head: bytes) -> bool:
    """True when the bytes begin like a DICOM data set written without the 128-byte
    preamble (older exports do this): a first element of group 0002 (file meta) or 0008
    (identification), little endian, with an explicit VR or a plausible implicit length."""
    if len(head) < 8:
        return False
    group, element = int.from_bytes(head[0:2], "little"), int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008) or element > 0x00FF:
        return False
    vr = head[4:6]
    return (vr.isalpha() and vr.isupper()) or int.from_bytes(head[4:8], "little") < 0x10000


def _sitk() -> Any:
    import SimpleITK as sitk  # lazy: keeps `import L3LocatorLib` fast

    return sitk


def first_line(error: BaseException) -> str:
    """The informative part of an ITK error: its innermost line, without source paths.

    ITK appends the operating system's last error ("Reason: ..."), which is often
    stale and misleading, so it is dropped.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Reason:")]
    if not lines:
        return type(error).__name__
    last = lines[-1]
    if "ITK ERROR:" in last:
        last = last.split("):", 1)[-1].strip()
    return last


@dataclass(frozen=True)
class DicomHeader:
    """What one DICOM image file says about itself (LPS, mm).

    ``position`` is ImagePositionPatient (None when absent); ``orientation`` the six
    ImageOrientationPatient cosines (row direction, then column direction).
    """

    path: Path
    series_uid: str
    description: str
    size_ij: tuple[int, int]
    n_frames: int  #: images in the file (more than 1 for an enhanced multi-frame CT)
    bytes_per_voxel: int
    position: Optional[tuple[float, float, float]]
    orientation: Optional[tuple[float, ...]]
    pixel_spacing: Optional[tuple[float, float]]  #: (column step i, row step j) in mm
    sop_uid: str = ""  #: SOPInstanceUID
    instance_number: Optional[int] = None
    patient_id: str = ""
    frame_of_reference: str = ""  #: FrameOfReferenceUID
    images_in_acquisition: Optional[int] = None  #: the series' own count, when it says one
    photometric: str = ""  #: PhotometricInterpretation (CT: MONOCHROME2)
    image_type: str = ""  #: ImageType, backslash-separated, upper case

    @property
    def group_key(self) -> tuple[str, str, str]:
        """What makes files one series: the series UID, and the patient and frame of
        reference (anonymisers that keep UIDs give two patients the same series UID)."""
        return (self.series_uid, self.patient_id, self.frame_of_reference)

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type.split("\\")


def read_dicom_header(path: Path) -> Optional[DicomHeader]:
    """The header of one DICOM file, or None when it holds no image that can be read."""
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        log.info("%s: not a DICOM image (%s)", path, first_line(error))
        return None

    def tag(key: str) -> str:
        return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""

    def numbers(key: str, count: int) -> Optional[tuple[float, ...]]:
        try:
            values = tuple(float(v) for v in tag(key).split("\\"))
        except ValueError:
            return None
        return values if len(values) == count and all(map(math.isfinite, values)) else None

    def integer(key: str) -> Optional[int]:
        value = numbers(key, 1)
        return int(value[0]) if value else None

    size = reader.GetSize()
    spacing = numbers("0028|0030", 2)
    return DicomHeader(
        path=path,
        series_uid=tag("0020|000e"),
        description=tag("0008|103e"),
        size_ij=(int(size[0]), int(size[1])),
        n_frames=int(size[2]) if len(size) > 2 else 1,
        bytes_per_voxel=_bytes_per_voxel(reader.GetPixelID()),
        position=numbers("0020|0032", 3),  # type: ignore[arg-type]
        orientation=numbers("0020|0037", 6),
        # DICOM lists row spacing (between rows, j) first, then column spacing (i).
        pixel_spacing=(spacing[1], spacing[0]) if spacing else None,
        sop_uid=tag("0008|0018"),
        instance_number=integer("0020|0013"),
        patient_id=tag("0010|0020"),
        frame_of_reference=tag("0020|0052"),
        images_in_acquisition=integer("0020|1002"),
        photometric=tag("0028|0004").upper(),
        image_type=tag("0008|0008").upper(),
    )


def _bytes_per_voxel(pixel_id: int) -> int:
    sitk = _sitk()
    sizes = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2,
             sitk.sitkUInt32: 4, sitk.sitkInt32: 4, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}
    return sizes.get(pixel_id, 4)


def group_series(files: Iterable[Path]) -> tuple[dict[str, list[DicomHeader]], list[Path]]:
    """Headers of the given DICOM files (one folder) grouped into series, and the files that
    hold no readable image.

    A series is the files of one SeriesInstanceUID, patient and frame of reference; the key
    is the series UID, with the patient and frame of reference appended when files
    claiming one series UID disagree on them (said in the log). A second copy of an image
    (the same SOPInstanceUID at the same position) is left out, with a warning.
    """
    groups: dict[tuple[str, str, str], list[DicomHeader]] = {}
    skipped: list[Path] = []
    for path in files:
        header = read_dicom_header(path)
        if header is None:
            skipped.append(path)
        else:
            groups.setdefault(header.group_key, []).append(header)
    uids: dict[str, int] = {}
    for series_uid, _, _ in groups:
        uids[series_uid] = uids.get(series_uid, 0) + 1
    named: dict[str, list[DicomHeader]] = {}
    for (series_uid, patient, frame), headers in groups.items():
        key = series_uid
        if uids[series_uid] > 1:
            key = f"{series_uid}|{patient}|{frame}"
            log.warning("%s: files claiming series %s disagree on the patient (%s) or frame "
                        "of reference (%s): read as %d separate series.", headers[0].path.parent,
                        series_uid, patient or "none", frame or "none", uids[series_uid])
        named[key] = drop_copies(headers)
    return named, skipped


def drop_copies(headers: Sequence[DicomHeader]) -> list[DicomHeader]:
    """The headers without second copies of one image (same SOPInstanceUID and position, as
    when a study was copied twice into one folder); logged, never silent."""
    kept: dict[tuple[str, Optional[tuple[float, ...]]], DicomHeader] = {}
    out = []
    for header in headers:
        key = (header.sop_uid, header.position)
        if header.sop_uid and key in kept:
            log.warning("%s is a second copy of %s (same SOPInstanceUID and position); "
                        "the copy is left out.", header.path.name, kept[key].path.name)
            continue
        kept[key] = header
        out.append(header)
    return out


def series_bytes(files: Sequence[Path]) -> int:
    """Memory (bytes) the series' voxels take once read, from its first file's header."""
    header = read_dicom_header(Path(files[0])) if files else None
    if header is None:
        return 0
    n_images = header.n_frames if len(files) == 1 else len(files)
    return header.size_ij[0] * header.size_ij[1] * n_images * max(header.bytes_per_voxel, 2)


def spacing_blocks(steps: np.ndarray) -> list[tuple[int, int, float]]:
    """Runs of regular spacing among slice steps (mm): ``[(first, stop, spacing_mm)]`` for
    every run of at least ``MIN_BLOCK_STEPS`` steps within ``BLOCK_TOLERANCE`` of each other
    (protocols that change spacing part-way, e.g. 4 mm over the neck then 7 mm)."""
    blocks = []
    start = 0
    while start < len(steps):
        stop = start + 1
        while stop < len(steps):
            spacing = float(np.median(steps[start:stop]))
            if abs(steps[stop] - spacing) > BLOCK_TOLERANCE * spacing + BLOCK_JITTER_MM:
                break
            stop += 1
        if stop - start >= MIN_BLOCK_STEPS:
            blocks.append((start, stop, float(np.median(steps[start:stop]))))
        start = stop
    return blocks


def find_gaps(steps: np.ndarray) -> list[tuple[int, float]]:
    """Steps (mm) where slices are missing: ``[(step index, expected spacing mm)]``.

    A step is a gap when it is more than ``GAP_FACTOR`` times the spacing of the regular
    blocks on both sides of it (the larger one), so the step between a 4 mm block and a
    7 mm block is not a gap, but 14 mm there is. Without any regular block (a short or
    irregular series) the median step is the spacing.
    """
    steps = np.asarray(steps, dtype=float)
    if steps.size == 0:
        return []
    blocks = spacing_blocks(steps)
    if not blocks:
        median = float(np.median(steps))
        return [(int(n), median) for n in np.flatnonzero(steps > GAP_FACTOR * median)]
    inside = np.zeros(len(steps), dtype=bool)
    for first, stop, _ in blocks:
        inside[first:stop] = True
    gaps = []
    for n in np.flatnonzero(~inside):
        before = [spacing for first, stop, spacing in blocks if stop <= n]
        after = [spacing for first, stop, spacing in blocks if first > n]
        around = max(before[-1:] + after[:1])
        if steps[n] > GAP_FACTOR * around:
            gaps.append((int(n), around))
    return gaps


def grid_spacing(steps: np.ndarray) -> float:
    """The spacing (mm) of the even grid an uneven series is resampled to: the finest regular
    block's (no detail lost), else the median step."""
    blocks = spacing_blocks(np.asarray(steps, dtype=float))
    return min(b[2] for b in blocks) if blocks else float(np.median(steps))


@dataclass(frozen=True)
class SliceGeometry:
    """The grid a series' slice positions describe.

    ``order`` sorts the files along the slice normal; ``steps_mm`` are the distances between
    consecutive sorted slices along the normal; ``shifts_mm`` the in-plane offset of each
    sorted slice from where an untilted grid would put it, as (along i, along j) mm.
    """

    order: np.ndarray
    normal: np.ndarray  #: LPS unit vector of increasing k
    steps_mm: np.ndarray
    shifts_mm: np.ndarray
    tilt_deg: float


def check_positions(positions: np.ndarray, orientation: Sequence[float], label: str,
                    what: str = "slice") -> SliceGeometry:
    """Check and measure slice (or frame) positions (LPS mm, one row each) that share one
    orientation: refused (``InputError``) when positions coincide, slices are missing or
    the gantry tilt is too steep."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 0.5:
        raise InputError(f"{label}: the slice orientation in the DICOM header is invalid.")
    normal /= np.linalg.norm(normal)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    if steps.size == 0:
        raise InputError(f"{label}: the DICOM series holds a single {what}; a 3-D CT series "
                         "is needed.")
    duplicates = int(np.sum(steps < DUPLICATE_MM))
    if duplicates:
        raise InputError(
            f"{label}: {duplicates + 1} {what}s share a position (zero slice spacing), as when "
            "two acquisitions or reconstructions are in one series. Select a single "
            "reconstruction of the CT.")
    gaps = find_gaps(steps)
    if gaps:
        first, spacing = gaps[0]
        lost = int(sum(round(steps[g] / s) - 1 for g, s in gaps))
        raise InputError(
            f"{label}: about {lost} {what}(s) are missing: a gap of {steps[first]:.1f} mm "
            f"after {what} {first + 1} of {len(positions)} where the series' spacing is "
            f"{spacing:.2f} mm (found from the {what} positions). Export the complete series.")
    offsets = positions - positions[0] - np.outer(along - along[0], normal)
    in_plane = np.stack([offsets @ row, offsets @ col], axis=1)
    # Tilt: the in-plane drift per mm along the normal (a straight line for a gantry tilt).
    slope = np.polyfit(along - along[0], in_plane, 1)[0]
    tilt = float(np.degrees(np.arctan(np.hypot(*slope))))
    if tilt > MAX_TILT_DEG:
        raise InputError(
            f"{label}: the slices are sheared by {tilt:.0f} degrees (gantry tilt) - more than "
            f"the {MAX_TILT_DEG:.0f} degrees that can be corrected. Use an axial "
            "reconstruction without tilt.")
    return SliceGeometry(order, normal, steps, in_plane, tilt)


def slice_geometry(headers: Sequence[DicomHeader], label: str) -> SliceGeometry:
    """Check and measure the slice positions of one series (raises ``InputError``)."""
    missing = [h.path.name for h in headers if h.position is None or h.orientation is None]
    if missing:
        raise InputError(
            f"{label}: {len(missing)} slice(s) have no position or orientation in their DICOM "
            f"header (first: {missing[0]}), so the slices cannot be put in order. Export the "
            "series again from the scanner or PACS.")
    orientations = np.array([h.orientation for h in headers], dtype=float)
    if np.ptp(orientations, axis=0).max() > 1e-3:
        raise InputError(
            f"{label}: the slices have different orientations (a localizer or a second "
            "reconstruction mixed into the series). Select the axial CT series alone.")
    positions = np.array([h.position for h in headers], dtype=float)
    return check_positions(positions, orientations[0], label)


@dataclass(frozen=True)
class SourceSlices:
    """The real slices behind a volume read from DICOM, in the volume's k order, so an answer
    found on a resampled or untilted grid is given in the scan's own slices.

    ``k_index`` is each real slice's continuous k index in the volume; ``positions_lps`` its
    ImagePositionPatient (mm); ``orientation`` the six row/column cosines shared by all;
    ``note`` says, for the results row, how the volume's grid differs from the files'
    ("" when the volume's slices are the files' own, unchanged).
    """

    k_index: tuple[float, ...]
    files: tuple[str, ...]
    sop_uids: tuple[str, ...]
    instance_numbers: tuple[Optional[int], ...]
    positions_lps: tuple[tuple[float, float, float], ...]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]  #: (along i, along j) mm
    note: str = ""

    @property
    def changed(self) -> bool:
        """True when the volume's voxels are interpolated (resampled or untilted)."""
        return bool(self.note)

    def nearest(self, k: float) -> int:
        """The real slice (index in ``files``) nearest the volume's continuous index ``k``."""
        return int(np.argmin(np.abs(np.asarray(self.k_index) - float(k))))


def read_dicom_files(headers: Sequence[DicomHeader], label: str
                     ) -> tuple[np.ndarray, np.ndarray, SourceSlices]:
    """Read one series; return ``(array [k, j, i], ijk_to_ras 4x4, real slices)`` on an
    even, untilted grid.

    Raises ``InputError`` (with ``label`` and what to do) when the slices cannot make one.
    """
    geometry = slice_geometry(headers, label)
    ordered = [headers[int(n)] for n in geometry.order]
    first = ordered[0]
    if first.pixel_spacing is None or min(first.pixel_spacing) <= 0:
        raise InputError(f"{label}: the DICOM header gives no valid pixel spacing "
                         f"({first.pixel_spacing}). Export the series again.")
    if any(h.size_ij != first.size_ij for h in ordered):
        raise InputError(f"{label}: the slices have different sizes; select the axial CT "
                         "series alone.")
    array = _read_pixels(ordered, label)
    array, ijk_to_ras, k_index, note = regrid(array, geometry, first.position,  # type: ignore
                                              first.orientation, first.pixel_spacing, label)
    source = SourceSlices(
        k_index=k_index,
        files=tuple(str(h.path) for h in ordered),
        sop_uids=tuple(h.sop_uid for h in ordered),
        instance_numbers=tuple(h.instance_number for h in ordered),
        positions_lps=tuple(h.position for h in ordered),  # type: ignore[misc]
        orientation=tuple(first.orientation),  # type: ignore[arg-type]
        pixel_spacing=first.pixel_spacing,
        note=note)
    return array, ijk_to_ras, source


def regrid(array: np.ndarray, geometry: SliceGeometry, first_position: Sequence[float],
           orientation: Sequence[float], pixel_spacing: tuple[float, float], label: str
           ) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], str]:
    """Put slices (``array [k, j, i]`` in ``geometry.order``) on an even, untilted grid.

    Returns the array, its IJK->RAS matrix, each real slice's continuous k index in it, and
    a note saying what was changed ("" when nothing: the slices are the files' own).
    """
    si, sj = pixel_spacing
    notes = []
    if geometry.tilt_deg > TILT_TOLERANCE_DEG:
        array = _untilt(array, geometry.shifts_mm, (si, sj), float(array.min()))
        notes.append(f"gantry tilt of {geometry.tilt_deg:.1f} degrees undone")
        log.warning("%s: gantry tilt of %.1f degrees corrected by shifting each slice.",
                    label, geometry.tilt_deg)
    steps = geometry.steps_mm
    along = np.concatenate([[0.0], np.cumsum(steps)])
    if steps.max() > (1 + EVEN_TOLERANCE) * steps.min():
        step = grid_spacing(steps)
        count = int(math.floor(along[-1] / step + 1e-6)) + 1
        array = _resample_along_k(array, along, step * np.arange(count))
        notes.insert(0, f"uneven slice spacing ({steps.min():.2f} to {steps.max():.2f} mm) "
                        f"resampled to {step:.2f} mm")
        log.warning("%s: uneven slice spacing (%.2f to %.2f mm) resampled to %.2f mm.",
                    label, steps.min(), steps.max(), step)
    else:
        step = float(np.sum(steps) / len(steps))  # the real mean, not the first step
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * si, col * sj, geometry.normal * step
    lps[:3, 3] = first_position
    return array, LPS_TO_RAS @ lps, tuple(float(a / step) for a in along), "; ".join(notes)


def _read_pixels(ordered: Sequence[DicomHeader], label: str) -> np.ndarray:
    """The voxels of the files in this order, ``[k, j, i]``; a file that cannot be read is
    named."""
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(h.path) for h in ordered])
    try:
        array = sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as error:
        bad = unreadable_files([h.path for h in ordered])
        named = (f"{len(bad)} file(s) cannot be read (first: {bad[0].name}), perhaps damaged "
                 "or partly copied" if bad else f"{first_line(error)}")
        raise InputError(
            f"{label}: the DICOM series could not be read: {named}. Copy the series again "
            "from its source.") from None
    if array.ndim != 3 or array.shape[0] != len(ordered):
        raise InputError(f"{label}: the DICOM series could not be read as one 3-D volume.")
    return array


def unreadable_files(paths: Sequence[Path]) -> list[Path]:
    """The files whose pixels cannot be read (one by one: only after a series failed)."""
    sitk = _sitk()
    bad = []
    for path in paths:
        try:
            sitk.ReadImage(str(path), imageIO="GDCMImageIO")
        except RuntimeError:
            bad.append(Path(path))
    return bad


def _untilt(array: np.ndarray, shifts_mm: np.ndarray, spacing_ij: tuple[float, float],
            fill: float) -> np.ndarray:
    """Shift each slice ``k`` back by its in-plane offset so the k axis is the slice normal."""
    from scipy import ndimage

    out = np.empty(array.shape, dtype=np.float32)
    for k in range(array.shape[0]):
        shift_ji = (shifts_mm[k, 1] / spacing_ij[1], shifts_mm[k, 0] / spacing_ij[0])
        out[k] = ndimage.shift(array[k].astype(np.float32), shift_ji, order=1, mode="constant",
                               cval=fill)
    return out


def _resample_along_k(array: np.ndarray, along_mm: np.ndarray, wanted_mm: np.ndarray
                      ) -> np.ndarray:
    """Linear interpolation between the two slices around each wanted position (mm)."""
    upper = np.clip(np.searchsorted(along_mm, wanted_mm, side="right"), 1, len(along_mm) - 1)
    lower = upper - 1
    weight = (wanted_mm - along_mm[lower]) / (along_mm[upper] - along_mm[lower])
    out = np.empty((len(wanted_mm),) + array.shape[1:], dtype=np.float32)
    for n, (lo, hi, w) in enumerate(zip(lower, upper, np.clip(weight, 0.0, 1.0))):
        out[n] = (1.0 - w) * array[lo] + w * array[hi]
    return out
