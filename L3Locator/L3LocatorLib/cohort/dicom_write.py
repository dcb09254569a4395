"""Writing CT images as DICOM files with pydicom (single-frame CT Image Storage).

Used by the L3 slice export and the synthetic PACS export. Pixels are stored as signed
16-bit integers with rescale slope 1 and intercept 0, so stored value == HU exactly.
Geometry arguments are DICOM LPS (mm).
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from .deps import require_pydicom

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

#: Patient and study attributes copied from a source image to derived images.
PATIENT_STUDY_TAGS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "StudyDescription", "ReferringPhysicianName", "FrameOfReferenceUID",
)


def new_uid() -> str:
    """A new globally unique DICOM UID."""
    return str(require_pydicom().uid.generate_uid())


def save_dataset(ds: Any, path: Union[str, os.PathLike[str]]) -> None:
    """Write ``ds`` as a DICOM Part 10 file (preamble and file meta), pydicom 2.4 or 3."""
    pydicom = require_pydicom()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(str(path), enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x (Python 3.9)
        ds.save_as(str(path), write_like_original=False)


def base_dataset(sop_class_uid: str, sop_instance_uid: Optional[str] = None) -> Any:
    """An empty dataset with file meta for explicit-VR little-endian storage."""
    pydicom = require_pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    uid = sop_instance_uid or new_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = uid
    now = datetime.datetime.now()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    return ds


def ct_image(
    pixels_hu: np.ndarray,
    position_lps: Sequence[float],
    orientation_lps: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_thickness: float,
    *,
    series_uid: str,
    series_number: int,
    instance_number: int,
    series_description: str,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    kernel: str = "",
    patient_study: Optional[dict[str, Any]] = None,
) -> Any:
    """One CT image: ``pixels_hu[row, column]`` in HU (rounded to int16).

    Args:
        position_lps: centre of the first pixel (mm).
        orientation_lps: row direction then column direction cosines (6 values).
        pixel_spacing: (between rows, between columns) in mm.
        patient_study: attribute name -> value for patient and study (see
            ``PATIENT_STUDY_TAGS``); missing ones are left empty.
    """
    ds = base_dataset(CT_IMAGE_STORAGE)
    for name in PATIENT_STUDY_TAGS:
        value = (patient_study or {}).get(name)
        if value not in (None, ""):
            setattr(ds, name, value)
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = new_uid()
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = new_uid()
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(series_number)
    ds.InstanceNumber = int(instance_number)
    ds.SeriesDescription = series_description[:64]
    ds.ImageType = list(image_type)
    if kernel:
        ds.ConvolutionKernel = kernel
    ds.ImagePositionPatient = [_ds(v) for v in position_lps]
    ds.ImageOrientationPatient = [_ds(v) for v in orientation_lps]
    ds.PixelSpacing = [_ds(v) for v in pixel_spacing]
    ds.SliceThickness = _ds(slice_thickness)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    pixels = np.clip(np.rint(pixels_hu), -32768, 32767).astype("<i2")
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def _ds(value: float) -> str:
    """A decimal string (DICOM DS holds at most 16 characters)."""
    for digits in (12, 10, 8, 6):
        text = f"{float(value):.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{float(value):.6g}"
