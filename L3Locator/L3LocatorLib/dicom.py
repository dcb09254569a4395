"""DICOM files: recognise them by content, group them by series, and read a series with the
geometry its slice positions describe (not the one a reader assumes).

Readers take the slice spacing from the first two slices and ignore gantry tilt, so a
series with missing slices, uneven spacing, duplicate positions or a tilted gantry comes
back with a wrong geometry and L3 lands one vertebra or more off. Here every slice's
ImagePositionPatient is used:

- duplicate positions (zero spacing) and gaps (missing slices) are refused, with where;
- uneven spacing without gaps is resampled to the median spacing (linear, along the slices);
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
#: A step this many times the median spacing means slices are missing.
GAP_FACTOR = 1.5
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
    """True when the file is DICOM: the ``DICM`` marker at byte 128 (DICOM Part 10), or a
    DICOM suffix. Names do not matter otherwise (UID-named files are common)."""
    if is_ignored_name(path.name):
        return False
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return stream.read(4) == DICOM_MAGIC
    except OSError:
        return False


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
    )


def _bytes_per_voxel(pixel_id: int) -> int:
    sitk = _sitk()
    sizes = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2,
             sitk.sitkUInt32: 4, sitk.sitkInt32: 4, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}
    return sizes.get(pixel_id, 4)


def group_series(files: Iterable[Path]) -> tuple[dict[str, list[DicomHeader]], list[Path]]:
    """Headers of the given DICOM files grouped by SeriesInstanceUID, and the files that hold
    no readable image."""
    groups: dict[str, list[DicomHeader]] = {}
    skipped: list[Path] = []
    for path in files:
        header = read_dicom_header(path)
        if header is None:
            skipped.append(path)
        else:
            groups.setdefault(header.series_uid, []).append(header)
    return groups, skipped


def series_bytes(files: Sequence[Path]) -> int:
    """Memory (bytes) the series' voxels take once read, from its first file's header."""
    header = read_dicom_header(Path(files[0])) if files else None
    if header is None:
        return 0
    n_images = header.n_frames if len(files) == 1 else len(files)
    return header.size_ij[0] * header.size_ij[1] * n_images * max(header.bytes_per_voxel, 2)


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
    row, col = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 0.5:
        raise InputError(f"{label}: the slice orientation in the DICOM header is invalid.")
    normal /= np.linalg.norm(normal)
    positions = np.array([h.position for h in headers], dtype=float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    if steps.size == 0:
        raise InputError(f"{label}: the DICOM series holds a single slice; a 3-D CT series "
                         "is needed.")
    duplicates = int(np.sum(steps < DUPLICATE_MM))
    if duplicates:
        raise InputError(
            f"{label}: {duplicates + 1} slices share a position (zero slice spacing), as when "
            "two acquisitions or reconstructions are in one series. Select a single "
            "reconstruction of the CT.")
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        first = int(gaps[0])
        lost = int(sum(round(steps[g] / median) - 1 for g in gaps))
        raise InputError(
            f"{label}: about {lost} slice(s) are missing: a gap of {steps[first]:.1f} mm after "
            f"slice {first + 1} of {len(headers)} where the series' spacing is {median:.2f} mm "
            "(found from the slice positions). Export the complete series.")
    offsets = positions - positions[0] - np.outer(along - along[0], normal)
    in_plane = np.stack([offsets @ row, offsets @ col], axis=1)
    # Tilt: the in-plane drift per mm along the normal (a straight line for a gantry tilt).
    slope = np.polyfit(along - along[0], in_plane, 1)[0] if len(headers) > 1 else np.zeros(2)
    tilt = float(np.degrees(np.arctan(np.hypot(*slope))))
    if tilt > MAX_TILT_DEG:
        raise InputError(
            f"{label}: the slices are sheared by {tilt:.0f} degrees (gantry tilt) - more than "
            f"the {MAX_TILT_DEG:.0f} degrees that can be corrected. Use an axial "
            "reconstruction without tilt.")
    return SliceGeometry(order, normal, steps, in_plane, tilt)


def read_dicom_files(headers: Sequence[DicomHeader], label: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one series; return ``(array [k, j, i], ijk_to_ras 4x4)`` on an even, untilted grid.

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
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(h.path) for h in ordered])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(
            f"{label}: the DICOM series could not be read ({first_line(error)}). Some files "
            "may be missing or damaged.") from None
    array = sitk.GetArrayFromImage(image)
    if array.ndim != 3 or array.shape[0] != len(ordered):
        raise InputError(f"{label}: the DICOM series could not be read as one 3-D volume.")
    si, sj = first.pixel_spacing
    fill = float(array.min())
    if geometry.tilt_deg > TILT_TOLERANCE_DEG:
        array = _untilt(array, geometry.shifts_mm, (si, sj), fill)
        log.warning("%s: gantry tilt of %.1f degrees corrected by shifting each slice.",
                    label, geometry.tilt_deg)
    steps = geometry.steps_mm
    step = float(np.median(steps))
    if steps.max() > (1 + EVEN_TOLERANCE) * steps.min():
        along = np.concatenate([[0.0], np.cumsum(steps)])
        count = int(math.floor(along[-1] / step + 1e-6)) + 1
        array = _resample_along_k(array, along, step * np.arange(count))
        log.warning("%s: uneven slice spacing (%.2f to %.2f mm) resampled to %.2f mm.",
                    label, steps.min(), steps.max(), step)
    else:
        step = float(np.sum(steps) / len(steps))  # the real mean, not the first step
    row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * si, col * sj, geometry.normal * step
    lps[:3, 3] = first.position
    return array, LPS_TO_RAS @ lps


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
