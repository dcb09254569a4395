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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

#: Flips between LPS (ITK, DICOM) and RAS (Slicer): negate the first two axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: File name endings the readers accept (lower case).
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D scalar image in patient space.

    Attributes:
        array: voxel values indexed ``[k, j, i]`` (HU for CT). Read-only view.
        ijk_to_ras: 4x4 float64 matrix, voxel index ``(i, j, k)`` -> RAS mm.
        name: a label for messages and reports (file name or node name).
    """

    array: np.ndarray
    ijk_to_ras: np.ndarray
    name: str = ""
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


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a CT from a NIfTI, NRRD or MHA/MHD file, or a folder holding one DICOM series.

    Raises ``InputError`` with the file name and the problem when it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder. Check the path and try again.")
    if path.is_dir():
        return read_dicom_series(path)
    sitk = _sitk()
    unreadable = (
        f"{path}: could not be read as a CT image. The file may be truncated, still being "
        "copied, or in a format other than NIfTI, NRRD, MHA or DICOM"
    )
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{unreadable} (reader: {_first_line(error)}).") from None
    if path.name.lower().endswith((".nii", ".nii.gz")):
        problem = _nifti_incomplete(path)
        if problem:
            raise InputError(f"{unreadable} ({problem}).")
    return volume_from_sitk(image, name=path.name)


def _nifti_incomplete(path: Path) -> str:
    """Why a NIfTI file holds fewer voxel bytes than its header promises, or "".

    ITK reads truncated NIfTI files without complaint (the missing voxels come
    back as zeros), so the size is checked here: against the file size for .nii,
    against the gzip trailer (uncompressed size modulo 2**32) for .nii.gz.
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
    vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
    n_voxels = int(np.prod([max(1, d) for d in dims[1 : 1 + max(0, min(dims[0], 7))]]))
    expected = vox_offset + n_voxels * max(1, bitpix // 8)
    if opener is open:
        actual = path.stat().st_size
        return "" if actual >= expected else f"{actual} of {expected} bytes present"
    with open(path, "rb") as raw:
        raw.seek(-4, os.SEEK_END)
        trailer = struct.unpack("<I", raw.read(4))[0]
    return "" if trailer == expected % 2**32 else "the compressed data ends early"


def dicom_series(folder: Path) -> list[tuple[str, list[str]]]:
    """The DICOM series directly inside ``folder``: ``[(series_uid, files), ...]``,
    largest first."""
    sitk = _sitk()
    series = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        series.append((uid, list(files)))
    series.sort(key=lambda item: len(item[1]), reverse=True)
    return series


def read_dicom_series(folder: str | os.PathLike[str]) -> Volume:
    """Read the largest DICOM series in a folder (logged when there are several)."""
    folder = Path(folder)
    series = dicom_series(folder)
    if not series:
        raise InputError(
            f"{folder}: no DICOM series found in this folder. Point to the folder that "
            "holds the CT's .dcm files, or to a NIfTI/NRRD/MHA file."
        )
    uid, files = series[0]
    if len(series) > 1:
        log.warning(
            "%s holds %d DICOM series; using the largest (%s, %d files).",
            folder, len(series), uid, len(files),
        )
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(
            f"{folder}: the DICOM series {uid} could not be read ({_first_line(error)}). "
            "Some files may be missing or damaged."
        ) from None
    if image.GetDimension() == 3 and image.GetSize()[2] < 2:
        raise InputError(
            f"{folder}: the DICOM series holds a single slice; a 3-D CT series is needed."
        )
    return volume_from_sitk(image, name=folder.name)


def _first_line(error: Exception) -> str:
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
