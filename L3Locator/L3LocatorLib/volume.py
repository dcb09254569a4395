"""A CT as a numpy array plus its voxel-to-patient geometry, and file readers.

Conventions (the same as 3D Slicer):

- ``array`` is indexed ``[k, j, i]`` (what ``slicer.util.arrayFromVolume`` and
  ``SimpleITK.GetArrayFromImage`` return): ``i`` is the fastest file axis.
- ``ijk_to_ras`` is the 4x4 matrix taking a voxel index ``(i, j, k, 1)`` to a
  patient position ``(R, A, S, 1)`` in millimetres (what
  ``vtkMRMLVolumeNode.GetIJKToRASMatrix`` returns).
- Files on disk (NIfTI, NRRD, MHA, DICOM) are read with SimpleITK, which works in
  LPS; converting to RAS negates the first two rows of the matrix.

The caller's array is never modified: a ``Volume`` holds a read-only view.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .data_files import detached_data_problem
from .dicom import (
    LPS_TO_RAS,
    DicomHeader,
    SourceSlices,
    check_positions,
    first_line,
    group_series,
    is_dicom_file,
    read_dicom_files,
    regrid,
)
from .dicom_complete import IncompleteSeriesError, check_complete
from .dicom_enhanced import frame_geometry
from .errors import InputError

log = logging.getLogger(__name__)


#: File name endings the readers accept (lower case).
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

GB = 1024.0**3
#: Default memory budget for one scan (bytes, see ``estimated_bytes``): a 512 x 512 x 2000
#: CT needs about 3 GB; a damaged header claiming 1024^3 voxels is refused before reading.
MAX_SCAN_BYTES = 4.0 * GB


def closest_axis(ijk_to_ras: np.ndarray, ras_axis: int) -> int:
    """The voxel axis (0=i, 1=j, 2=k) of a 4x4 (or 3x3) IJK->RAS matrix whose direction is
    closest to RAS axis ``ras_axis`` (0=R, 1=A, 2=S), either sign; voxel size is ignored."""
    matrix = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    return int(np.argmax(np.abs(matrix[ras_axis] / np.linalg.norm(matrix, axis=0))))


def slice_axis(ijk_to_ras: np.ndarray) -> int:
    """The voxel axis (0=i, 1=j, 2=k) of a 4x4 IJK->RAS matrix closest to
    superior-inferior: the slice axis of an axial scan (its array axis is ``2 - axis``)."""
    return closest_axis(ijk_to_ras, 2)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D scalar image in patient space.

    Attributes:
        array: voxel values indexed ``[k, j, i]`` (HU for CT). Read-only view.
        ijk_to_ras: 4x4 float64 matrix, voxel index ``(i, j, k)`` -> RAS mm.
        name: a label for messages and reports (file name or node name).
        source: for a volume read from DICOM, its real slices (files, UIDs, where each
            lies along k), so answers are given in them; None otherwise.
    """

    array: np.ndarray
    ijk_to_ras: np.ndarray
    name: str = ""
    source: Optional[SourceSlices] = field(default=None, repr=False)
    _ras_to_ijk: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise InputError(
                f"{self.name or 'The image'} has {arr.ndim} dimension(s); a 3-D CT "
                "volume is needed. Select or export the whole CT series, not a single slice."
            )
        view = arr.view()
        view.flags.writeable = False
        matrix = np.array(self.ijk_to_ras, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"ijk_to_ras must be 4x4, got shape {matrix.shape}")
        if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            raise InputError(
                f"{self.name or 'The image'} has an invalid geometry (singular or "
                "non-finite voxel-to-patient matrix). Check the file's spacing and direction."
            )
        matrix.flags.writeable = False
        inverse = np.linalg.inv(matrix)
        inverse.flags.writeable = False
        object.__setattr__(self, "array", view)
        object.__setattr__(self, "ijk_to_ras", matrix)
        object.__setattr__(self, "_ras_to_ijk", inverse)

    @classmethod
    def from_geometry(
        cls,
        array: np.ndarray,
        spacing: Sequence[float],
        direction: np.ndarray | None = None,
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        name: str = "",
    ) -> Volume:
        """Build from spacing ``(si, sj, sk)`` mm, a 3x3 RAS direction matrix whose
        columns are the unit vectors of the i, j, k axes, and the RAS origin (mm)
        of voxel ``(0, 0, 0)``."""
        direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
        matrix = np.eye(4)
        matrix[:3, :3] = direction @ np.diag(np.asarray(spacing, dtype=float))
        matrix[:3, 3] = np.asarray(origin, dtype=float)
        return cls(array, matrix, name)

    @property
    def ras_to_ijk(self) -> np.ndarray:
        """4x4 matrix, RAS mm -> continuous voxel index ``(i, j, k)``."""
        return self._ras_to_ijk

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i, j, k (the reverse of ``array.shape``)."""
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3x3 RAS direction matrix; column ``n`` is the unit vector of voxel axis n (i, j, k)."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def slice_axis(self) -> int:
        """The voxel axis (0=i, 1=j, 2=k) closest to superior-inferior (``slice_axis``)."""
        return slice_axis(self.ijk_to_ras)

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of the centre of voxel ``(0, 0, 0)``."""
        return self.ijk_to_ras[:3, 3].copy()

    def ijk_to_ras_points(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices ``(..., 3)`` in (i, j, k) order to RAS mm ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ras_to_ijk_points(self, ras: np.ndarray) -> np.ndarray:
        """Map RAS mm ``(..., 3)`` to continuous voxel indices ``(..., 3)`` in (i, j, k) order."""
        ras = np.asarray(ras, dtype=float)
        return ras @ self._ras_to_ijk[:3, :3].T + self._ras_to_ijk[:3, 3]


    def crop_slices(self, k_start: int, k_stop: int) -> Volume:
        """The slices ``k_start <= k < k_stop`` as a new Volume (a view; geometry kept exact)."""
        k_start, k_stop = max(0, int(k_start)), min(self.array.shape[0], int(k_stop))
        if k_stop - k_start < 1:
            raise ValueError(f"empty slice range {k_start}..{k_stop}")
        matrix = np.array(self.ijk_to_ras)
        matrix[:3, 3] = self.ijk_to_ras_points((0.0, 0.0, float(k_start)))
        return Volume(self.array[k_start:k_stop], matrix, self.name)


# ---------------------------------------------------------------- SimpleITK I/O


def _sitk() -> Any:
    import SimpleITK as sitk  # lazy: keeps `import L3LocatorLib` fast

    return sitk


def volume_from_sitk(image: Any, name: str = "") -> Volume:
    """Convert a 3-D SimpleITK image (LPS geometry) to a RAS ``Volume``."""
    label = name or "The image"
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{label} has {image.GetNumberOfComponentsPerPixel()} values per voxel (colour or "
            "vector data); a grey-scale CT volume is needed."
        )
    if image.GetDimension() != 3:
        raise InputError(
            f"{label} is a {image.GetDimension()}-D image; a 3-D CT volume is needed. "
            "Export the whole CT series, not a single slice or a time series."
        )
    sitk = _sitk()
    array = sitk.GetArrayViewFromImage(image).copy()
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return Volume(array, LPS_TO_RAS @ matrix, name)


def volume_to_sitk(volume: Volume) -> Any:
    """Convert a ``Volume`` to a SimpleITK image in LPS (copies the voxels)."""
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    lps = LPS_TO_RAS @ volume.ijk_to_ras
    image.SetSpacing([float(s) for s in volume.spacing])
    image.SetDirection([float(v) for v in (lps[:3, :3] / volume.spacing).ravel()])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    return image


def write_volume(volume: Volume, path: str | os.PathLike[str], compress: bool = True) -> Path:
    """Write a volume to NIfTI, NRRD or MHA (chosen by the file ending)."""
    path = Path(path)
    _sitk().WriteImage(volume_to_sitk(volume), str(path), compress)
    return path


def is_volume_file(path: Path) -> bool:
    """True when the file name ends with a format the readers accept."""
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def estimated_bytes(n_voxels: int, bytes_per_voxel: int) -> int:
    """Memory (bytes) a scan needs: its voxels as stored plus one float32 working copy."""
    return int(n_voxels) * (max(1, int(bytes_per_voxel)) + 4)


def check_size(label: str, shape_ijk: Sequence[int], bytes_per_voxel: int,
               max_bytes: float = MAX_SCAN_BYTES) -> None:
    """Refuse, before reading, a scan whose header promises more voxels than the budget
    (``max_bytes`` of memory; see ``estimated_bytes``)."""
    n_voxels = int(np.prod([max(1, int(n)) for n in shape_ijk], dtype=np.float64))
    need = estimated_bytes(n_voxels, bytes_per_voxel)
    if need > max_bytes:
        size = " x ".join(str(int(n)) for n in shape_ijk)
        raise InputError(
            f"{label}: its header describes {size} voxels, which would need about "
            f"{need / GB:.1f} GB of memory (the limit is {max_bytes / GB:.1f} GB). A CT of the "
            "abdomen is far smaller: the file may be damaged. If the scan is real, downsample "
            "it, or raise the limit (l3locator --max-gb).")


def file_bytes(path: str | os.PathLike[str]) -> int:
    """Memory (bytes, ``estimated_bytes``) the image in ``path`` needs, from its header only;
    0 when the header cannot be read or names data files it may not (the read itself will
    say why)."""
    if detached_data_problem(Path(path)):
        return 0
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return 0
    n_voxels = int(np.prod(reader.GetSize(), dtype=np.float64))
    return estimated_bytes(n_voxels * reader.GetNumberOfComponents(),
                           _bytes_per_component(reader.GetPixelID()))


def _bytes_per_component(pixel_id: int) -> int:
    sitk = _sitk()
    name = sitk.GetPixelIDValueAsString(pixel_id)
    for bits, size in (("64", 8), ("32", 4), ("16", 2), ("8", 1)):
        if bits in name:
            return size
    return 8 if "double" in name else 4


def read_volume(path: str | os.PathLike[str], *, max_bytes: float = MAX_SCAN_BYTES) -> Volume:
    """Read a CT from a NIfTI, NRRD or MHA/MHD file, or a folder holding DICOM series
    (the largest series is read).

    The header is checked before the voxels are read: a scan needing more than
    ``max_bytes`` of memory, a NIfTI file shorter than its header promises, one with a
    zero or negative voxel size, or an NRRD/MetaImage header naming data files outside its
    own folder (``data_files``) is refused. Raises ``InputError`` with the file name and
    the problem when it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder. Check the path and try again.")
    if path.is_dir():
        return read_dicom_series(path, max_bytes=max_bytes)
    problem = detached_data_problem(path)  # before SimpleITK opens any file it names
    if problem:
        raise InputError(problem)
    sitk = _sitk()
    unreadable = (
        f"{path}: could not be read as a CT image. The file may be truncated, still being "
        "copied, or in a format other than NIfTI, NRRD, MHA or DICOM"
    )
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(f"{unreadable} (reader: {first_line(error)}).") from None
    check_size(path.name, reader.GetSize(),
               reader.GetNumberOfComponents() * _bytes_per_component(reader.GetPixelID()),
               max_bytes)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        problem = _nifti_problem(path)
        if problem:
            raise InputError(f"{unreadable} ({problem}).")
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"{unreadable} (reader: {first_line(error)}).") from None
    return volume_from_sitk(image, name=path.name)


def _nifti_problem(path: Path) -> str:
    """Why a NIfTI file cannot be trusted, or "": fewer voxel bytes than its header
    promises, or a voxel size that is zero, negative or not a number.

    ITK reads truncated NIfTI files without complaint (the missing voxels come back as
    zeros) and silently replaces a zero voxel size by 1 mm, so both are checked here: the
    size against the file size for .nii, against the gzip trailer (uncompressed size modulo
    2**32) for .nii.gz.
    """
    import gzip
    import struct

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(352)
    except (OSError, EOFError) as error:
        return f"damaged compression: {error}"
    if len(header) < 348:
        return "the header is incomplete"
    endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
    dims = struct.unpack(endian + "8h", header[40:56])
    bitpix = struct.unpack(endian + "h", header[72:74])[0]
    pixdim = struct.unpack(endian + "8f", header[76:108])
    n_dims = max(0, min(dims[0], 7))
    sizes = list(pixdim[1 : 1 + min(n_dims, 3)])
    if not all(math.isfinite(v) and v > 0 for v in sizes):
        return ("its voxel size is " + " x ".join(f"{v:g}" for v in sizes) + " mm; every "
                "size must be a positive number. Fix the header (pixdim) or export again")
    vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
    n_voxels = int(np.prod([max(1, d) for d in dims[1 : 1 + n_dims]]))
    expected = vox_offset + n_voxels * max(1, bitpix // 8)
    if opener is open:
        actual = path.stat().st_size
        return "" if actual >= expected else f"{actual} of {expected} bytes present"
    with open(path, "rb") as raw:
        raw.seek(-4, os.SEEK_END)
        trailer = struct.unpack("<I", raw.read(4))[0]
    return "" if trailer == expected % 2**32 else "the compressed data ends early"


def dicom_series(folder: Path) -> list[tuple[str, list[str]]]:
    """The DICOM series directly inside ``folder`` (files recognised by content, whatever
    their names): ``[(series_uid, files), ...]``, largest first."""
    groups, _ = group_series(_dicom_files(Path(folder)))
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [(uid, [str(h.path) for h in sorted(headers, key=lambda h: h.path)])
            for uid, headers in ordered]


def _dicom_files(folder: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except OSError as error:
        raise InputError(f"{folder}: this folder cannot be read ({error.strerror}).") from None
    return [folder / n for n in names if (folder / n).is_file() and is_dicom_file(folder / n)]


def read_dicom_series(folder: str | os.PathLike[str], *,
                      max_bytes: float = MAX_SCAN_BYTES) -> Volume:
    """Read the largest DICOM series in a folder (logged when there are several); when it
    cannot be read, the next largest, saying so (a series still being copied is not passed
    over: ``dicom_complete``)."""
    folder = Path(folder)
    groups, _ = group_series(_dicom_files(folder))
    if not groups:
        raise InputError(
            f"{folder}: no DICOM series found in this folder. Point to the folder that "
            "holds the CT's DICOM files, or to a NIfTI/NRRD/MHA file."
        )
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    uid, headers = ordered[0]
    if len(ordered) > 1:
        log.warning(
            "%s holds %d DICOM series; using the largest (%s, %d files).",
            folder, len(ordered), uid, len(headers),
        )
    try:
        return read_dicom(headers, name=folder.name, max_bytes=max_bytes)
    except IncompleteSeriesError:
        raise
    except InputError as error:
        for other_uid, others in ordered[1:]:
            try:
                volume = read_dicom(others, name=folder.name, max_bytes=max_bytes)
            except InputError:
                continue
            log.warning("%s: the largest series could not be read (%s); read the next "
                        "largest that can be (%s, %d files) instead.", folder, error,
                        other_uid, len(others))
            return volume
        raise


def read_dicom(headers: Sequence[DicomHeader], name: str, *,
               max_bytes: float = MAX_SCAN_BYTES) -> Volume:
    """Read one DICOM series (its files' headers, ``dicom.group_series``) with the geometry
    its slice (or frame) positions describe: refused when slices are missing or duplicated
    or the series is partly copied (``dicom_complete``); uneven spacing and gantry tilt are
    resampled (see ``dicom``), and the volume keeps its real slices (``Volume.source``)."""
    if not headers:
        raise InputError(f"{name}: the DICOM series holds no image files.")
    check_complete(headers, name)
    first = headers[0]
    if any(h.photometric == "MONOCHROME1" for h in headers):
        raise InputError(
            f"{name}: the images are stored as MONOCHROME1 (white is the lowest value), which "
            "CT images do not use, so their values are not Hounsfield units as stored. "
            "Export the CT again from the scanner or PACS (MONOCHROME2).")
    if len(headers) == 1 and first.n_frames > 1:
        return _read_enhanced(first, name, max_bytes)
    check_size(name, (*first.size_ij, len(headers)), first.bytes_per_voxel, max_bytes)
    array, ijk_to_ras, source = read_dicom_files(headers, name)
    return Volume(array, ijk_to_ras, name, source)


def _read_enhanced(header: DicomHeader, name: str, max_bytes: float) -> Volume:
    """An enhanced multi-frame CT: one file; its frames checked and placed like files."""
    check_size(name, (*header.size_ij, header.n_frames), header.bytes_per_voxel, max_bytes)
    frames = frame_geometry(header.path, name)
    geometry = check_positions(frames.positions, frames.orientation, name, what="frame")
    try:
        image = _sitk().ReadImage(str(header.path))
    except RuntimeError as error:
        raise InputError(f"{name}: the multi-frame DICOM file could not be read "
                         f"({first_line(error)}).") from None
    array = _sitk().GetArrayFromImage(image)
    if array.ndim != 3 or array.shape[0] != len(frames.positions):
        raise InputError(f"{name}: the multi-frame DICOM file holds {array.shape[0]} frames "
                         f"where its header describes {len(frames.positions)}.")
    order = geometry.order
    array, ijk_to_ras, k_index, note = regrid(array[order], geometry, frames.positions[order[0]],
                                              frames.orientation, frames.pixel_spacing, name)
    source = SourceSlices(
        k_index=k_index, files=(str(header.path),) * len(order),
        sop_uids=(header.sop_uid,) * len(order),
        instance_numbers=tuple(int(n) + 1 for n in order),  # frame numbers, from 1
        positions_lps=tuple(tuple(p) for p in frames.positions[order]),  # type: ignore[misc]
        orientation=frames.orientation, pixel_spacing=frames.pixel_spacing, note=note)
    return Volume(array, ijk_to_ras, name, source)


def read_real_slices(source: SourceSlices, start: int, stop: int, name: str = "") -> Volume:
    """The real slices ``start <= n < stop`` of a DICOM series as stored (never resampled or
    untilted), as a Volume whose ``source`` gives each slice's own position.

    The Volume's k step is the mean distance between those slices (exact for one slice or
    even spacing); per-slice positions are exact in ``source.positions_lps``.
    """
    start, stop = max(0, int(start)), min(len(source.files), int(stop))
    sitk = _sitk()
    frames = []
    for n in range(start, stop):
        image = sitk.ReadImage(source.files[n], imageIO="GDCMImageIO")
        array = sitk.GetArrayFromImage(image)
        # An enhanced CT's slices are frames of one file, numbered in instance_numbers.
        frames.append(array[int(source.instance_numbers[n] or 1) - 1 if len(array) > 1 else 0])
    positions = np.asarray(source.positions_lps[start:stop], dtype=float)
    row, col = np.asarray(source.orientation[:3]), np.asarray(source.orientation[3:])
    normal = np.cross(row, col)
    along = positions @ normal
    step = float(np.mean(np.diff(along))) if len(along) > 1 else 1.0
    lps = np.eye(4)
    lps[:3, 0] = row * source.pixel_spacing[0]
    lps[:3, 1] = col * source.pixel_spacing[1]
    lps[:3, 2] = normal * (step if step > 0 else 1.0)
    lps[:3, 3] = positions[0]
    real = SourceSlices(
        k_index=tuple(float(k) for k in range(stop - start)), files=source.files[start:stop],
        sop_uids=source.sop_uids[start:stop],
        instance_numbers=source.instance_numbers[start:stop],
        positions_lps=source.positions_lps[start:stop], orientation=source.orientation,
        pixel_spacing=source.pixel_spacing)
    return Volume(np.stack(frames), LPS_TO_RAS @ lps, name, real)
