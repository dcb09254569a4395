"""Export the L3 slice (and neighbours) for body-composition tools: NIfTI, DICOM and PNG.

Slices are taken along the scan's own slice axis (``L3Result.slice_axis``; k for axial
scans) at the original resolution and HU, never resampled: a DICOM series located on a
resampled grid (uneven spacing, gantry tilt) has its real slices read again from the files.
Files are named ``<stem>_L3...``, the stem unique per scan (``outputs.output_stem``: with
``--series`` it starts with the study UID, so a folder listing sorts by study). Nothing is
overwritten: when a scan's files are already there (the scan run again), the new ones are
``<stem>-2_L3...``, ``-3``..., so a results row always names the files made with its own
answer. A scan's files are written whole or not at all (nothing is left when one of them
cannot be written):

- ``<stem>_L3.nii.gz``: the slab of ``2 * neighbours + 1`` slices (fewer at the scan's
  edge), HU as stored, geometry of the source.
- ``<stem>_L3_dicom/<offset>.dcm``: one DICOM CT image per slice; patient and study of the
  source series kept, a new SeriesInstanceUID, ImageType DERIVED\\SECONDARY, a series
  description saying it is the L3 slice. Needs pydicom.
- ``<stem>_L3.png``: the L3 slice in an abdominal soft-tissue window (W 400, L 40 HU),
  displayed radiologically (patient's right on the left, anterior up) for axial slices.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError, L3LocatorError
from ..outputs import EXPORT_DICOM, EXPORT_NIFTI, EXPORT_PNG, write_atomically
from ..result import L3Result
from ..volume import LPS_TO_RAS, Volume, read_real_slices, read_volume, write_volume
from .deps import require_pydicom
from .dicom_write import PATIENT_STUDY_TAGS, ct_image, new_uid, save_dataset

#: Series number given to exported L3 slices (scanner series rarely go this high).
EXPORT_SERIES_NUMBER = 9301


@dataclass(frozen=True)
class PngWindow:
    """Display window of the PNG (HU)."""

    level: float = 40.0
    width: float = 400.0


def slab(volume: Volume, axis: int, start: int, stop: int) -> Volume:
    """Slices ``start <= index < stop`` along voxel ``axis`` (0=i, 1=j, 2=k) as a new Volume
    with the exact geometry of the source (no resampling)."""
    n = volume.shape_ijk[axis]
    start, stop = max(0, int(start)), min(n, int(stop))
    if stop <= start:
        raise ValueError(f"empty slice range {start}..{stop} along axis {axis}")
    index: list[Any] = [slice(None)] * 3
    index[2 - axis] = slice(start, stop)  # array order is [k, j, i]
    offset = np.zeros(3)
    offset[axis] = start
    matrix = np.array(volume.ijk_to_ras)
    matrix[:3, 3] = volume.ijk_to_ras_points(offset)
    return Volume(volume.array[tuple(index)], matrix, volume.name)


def plane(volume: Volume, axis: int, index: int) -> tuple[np.ndarray, int, int]:
    """The 2-D image of slice ``index`` along ``axis`` as ``(pixels[row, column],
    column_axis, row_axis)``: columns run along the lower remaining voxel axis."""
    col_axis, row_axis = [a for a in range(3) if a != axis]
    taken = np.take(volume.array, index, axis=2 - axis)  # remaining axes stay in [.., ..] order
    return np.asarray(taken), col_axis, row_axis


def export_slices(
    volume: Volume,
    result: L3Result,
    out_dir: Path,
    stem: str,
    *,
    neighbours: int = 0,
    dicom_source: Optional[str] = None,
    window: PngWindow = PngWindow(),
) -> list[Path]:
    """Write the L3 slice (``neighbours`` more on each side) as NIfTI, DICOM and PNG.

    Args:
        volume: the CT the result was found in (HU).
        result: a found ``L3Result`` (``slice_index`` along ``slice_axis``).
        stem: file name prefix, unique per scan (``outputs.output_stem``).
        dicom_source: a DICOM file of the source series, whose patient and study
            attributes the DICOM slices keep; None (e.g. NIfTI input): a new study.

    Returns the paths written: the NIfTI file, the DICOM folder, the PNG. Raises
    ``OSError`` (or ``L3LocatorError``: pydicom missing) with nothing left behind when any
    of them cannot be written.
    """
    if not result.found or result.slice_index is None:
        raise InputError("No L3 slice to export: L3 was not found in this scan.")
    axis = 2 if result.slice_axis is None else int(result.slice_axis)
    centre = int(result.slice_index)
    if volume.source is not None and volume.source.changed and axis == 2:
        # Located on a resampled (uneven spacing) or untilted grid: ``slice_index`` counts
        # the series' real slices (``real_slice``), which are exported as stored.
        first_real = max(0, centre - neighbours)
        volume = read_real_slices(volume.source, first_real, centre + neighbours + 1,
                                  volume.name)
        centre -= first_real
    out_dir.mkdir(parents=True, exist_ok=True)
    part = slab(volume, axis, centre - neighbours, centre + neighbours + 1)
    first = max(0, centre - neighbours)
    base = _claim(out_dir, stem)
    nifti, dicom_dir, png = (out_dir / f"{base}{end}"
                             for end in (EXPORT_NIFTI, EXPORT_DICOM, EXPORT_PNG))
    try:
        write_atomically(nifti, lambda path: _write_nifti(part, path))
        _write_dicom(volume, axis, first, part.shape_ijk[axis], centre, dicom_dir,
                     dicom_source)
        write_atomically(png, lambda path: _write_png(volume, axis, centre, path, window))
    except BaseException:
        nifti.unlink(missing_ok=True)
        shutil.rmtree(dicom_dir, ignore_errors=True)
        raise
    return [nifti, dicom_dir, png]


def _claim(out_dir: Path, stem: str) -> str:
    """The first of ``stem``, ``stem-2``, ... whose files are not there yet, claimed by
    creating its (empty) DICOM folder: ``mkdir`` is atomic, so two processes never claim
    one name."""
    base, number = stem, 1
    while True:
        if not any(os.path.lexists(out_dir / f"{base}{end}") for end in (EXPORT_NIFTI, EXPORT_PNG)):
            try:
                (out_dir / f"{base}{EXPORT_DICOM}").mkdir()
                return base
            except FileExistsError:
                pass
        number += 1
        base = f"{stem}-{number}"


def _write_nifti(part: Volume, path: Path) -> None:
    """Write the slab and read it back: SimpleITK reports no error when the disk fills up
    or the file size limit is reached (it leaves a cut file), and a RuntimeError without
    the system's reason when the file cannot be opened; it stops the whole process on a
    path that is not valid UTF-8, which is refused here instead."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise OSError(errno.EINVAL, "the folder's name is not valid UTF-8, which SimpleITK "
                      "cannot write to", str(path)) from None
    try:
        write_volume(part, path)
        complete = np.array_equal(read_volume(path).array, part.array)
    except (RuntimeError, L3LocatorError):
        complete = False
    if not complete:
        raise OSError(errno.EIO, "the NIfTI file could not be written whole; is the disk full?",
                      str(path))


def _patient_study(dicom_source: Optional[str]) -> dict[str, Any]:
    if dicom_source is None:
        return {"PatientName": "Anonymous", "PatientID": "L3LOCATOR"}
    pydicom = require_pydicom()
    ds = pydicom.dcmread(dicom_source, stop_before_pixels=True)
    return {name: ds.get(name) for name in PATIENT_STUDY_TAGS if ds.get(name) is not None} | {
        "_description": str(ds.get("SeriesDescription", "") or ""),
        "_kernel": str(ds.get("ConvolutionKernel", "") or "") if isinstance(
            ds.get("ConvolutionKernel", ""), str) else "",
        "_thickness": ds.get("SliceThickness"),
        "_series_uid": str(ds.get("SeriesInstanceUID", "")),
    }


def _write_dicom(volume: Volume, axis: int, first: int, count: int, centre: int,
                 folder: Path, dicom_source: Optional[str]) -> Path:
    """One DICOM CT image per slice; files named by offset from the L3 slice."""
    source = _patient_study(dicom_source)
    folder.mkdir(parents=True, exist_ok=True)  # claimed by the caller (``_claim``)
    lps = LPS_TO_RAS @ volume.ijk_to_ras
    spacing = volume.spacing
    series_uid = new_uid()
    description = f"L3 slice (L3Locator) of {source.get('_description') or volume.name}"
    thickness = source.get("_thickness") or spacing[axis]
    for number, index in enumerate(range(first, first + count), start=1):
        pixels, col_axis, row_axis = plane(volume, axis, index)
        corner = np.zeros(3)
        corner[axis] = index
        position = lps[:3, :3] @ corner + lps[:3, 3]
        if volume.source is not None and axis == 2:  # the real slice's own position
            position = np.asarray(volume.source.positions_lps[index], dtype=float)
        orientation = [*(lps[:3, col_axis] / spacing[col_axis]),
                       *(lps[:3, row_axis] / spacing[row_axis])]
        ds = ct_image(pixels, position, orientation, (spacing[row_axis], spacing[col_axis]),
                      float(thickness), series_uid=series_uid,
                      series_number=EXPORT_SERIES_NUMBER, instance_number=number,
                      series_description=description,
                      image_type=("DERIVED", "SECONDARY", "AXIAL", "L3"),
                      kernel=source.get("_kernel", ""), patient_study=source)
        ds.DerivationDescription = (f"Slice {index} (L3{index - centre:+d}) along voxel axis "
                                    f"{'ijk'[axis]} of series {source.get('_series_uid', '')}, "
                                    "not resampled")[:1024]
        save_dataset(ds, folder / f"L3{index - centre:+d}.dcm")
    return folder


def _write_png(volume: Volume, axis: int, index: int, path: Path, window: PngWindow) -> Path:
    from PIL import Image

    pixels, col_axis, row_axis = plane(volume, axis, index)
    direction = volume.direction
    if volume.slice_axis == axis:  # an axial plane: show it radiologically
        if direction[0, col_axis] > 0:  # columns run toward the patient's right
            pixels = pixels[:, ::-1]
        if direction[1, row_axis] > 0:  # rows run toward anterior
            pixels = pixels[::-1, :]
    low = window.level - window.width / 2.0
    grey = np.clip((pixels.astype(np.float32) - low) / window.width * 255.0, 0, 255)
    Image.fromarray(grey.astype(np.uint8)).save(path, format="PNG")
    return path
