"""A synthetic hospital DICOM export (PACS-like) built from phantoms, for tests and benchmarks.

Three patients, five studies: scouts, arterial and portal-venous phases, thin and thick
reconstructions in soft-tissue and sharp kernels, a coronal MPR, a too-short series, a
dose report (SR), a secondary capture, and a study with nothing usable. Files are named
by SOP instance UID without a suffix, nested ``patient/study/series/`` except patient 3,
whose files all lie in one flat folder. Every series records which decision the series
choice should make about it (``SyntheticSeries.expected``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..phantoms import make_phantom
from ..volume import LPS_TO_RAS, Volume
from .dicom_write import base_dataset, ct_image, new_uid, save_dataset
from .series_choice import CHOSEN, DOSE_SR, ELIGIBLE, SKIPPED

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class SyntheticSeries:
    """One series of the export and the choice expected for it."""

    patient_id: str
    study_uid: str
    series_uid: str
    series_number: int
    description: str
    n_images: int
    expected: str  #: chosen | eligible | skipped
    folder: str
    l3_s_mm: Optional[float] = None  #: RAS S of the phantom's L3 landmark (None: absent)


@dataclass
class SyntheticExport:
    """What was written: the root folder and every series."""

    root: Path
    series: list[SyntheticSeries] = field(default_factory=list)

    @property
    def studies(self) -> list[str]:
        return sorted({s.study_uid for s in self.series})

    def expected_choice(self, study_uid: str) -> Optional[SyntheticSeries]:
        """The series that should be chosen for a study, or None when none is usable."""
        chosen = [s for s in self.series if s.study_uid == study_uid and s.expected == CHOSEN]
        return chosen[0] if chosen else None

    def to_json(self, path: Union[str, os.PathLike[str]]) -> None:
        rows = [asdict(s) for s in self.series]
        Path(path).write_text(json.dumps({"root": str(self.root), "series": rows}, indent=1))


def _thicken(volume: Volume, factor: int) -> Volume:
    """Average ``factor`` consecutive slices (k) into one thicker slice; geometry exact."""
    k = volume.array.shape[0] // factor
    arr = volume.array[: k * factor].astype(np.float32)
    thick = arr.reshape(k, factor, *arr.shape[1:]).mean(axis=1)
    matrix = np.array(volume.ijk_to_ras)
    matrix[:3, 3] = volume.ijk_to_ras_points((0.0, 0.0, (factor - 1) / 2.0))
    matrix[:3, 2] *= factor
    return Volume(np.rint(thick).astype(np.int16), matrix, volume.name)


class _Writer:
    """Writes series of one study, keeping the patient/study attributes together."""

    def __init__(self, export: SyntheticExport, patient: dict[str, str], study: dict[str, str],
                 flat: bool, rng: np.random.Generator) -> None:
        self.export, self.patient, self.flat, self.rng = export, patient, flat, rng
        self.study = dict(study, StudyInstanceUID=new_uid(), FrameOfReferenceUID=new_uid())
        self.number = 0

    @property
    def patient_study(self) -> dict[str, Any]:
        return {**self.patient, **self.study}

    def folder(self, series_uid: str) -> Path:
        base = self.export.root / self.patient["PatientID"]
        return base if self.flat else base / self.study["StudyInstanceUID"] / series_uid

    def record(self, series_uid: str, description: str, n: int, expected: str,
               l3_s_mm: Optional[float] = None) -> None:
        self.export.series.append(SyntheticSeries(
            self.patient["PatientID"], self.study["StudyInstanceUID"], series_uid, self.number,
            description, n, expected, str(self.folder(series_uid)), l3_s_mm,
        ))

    def stack(self, volume: Volume, description: str, expected: str, kernel: str,
              image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
              noise_hu: float = 0.0, l3_s_mm: Optional[float] = None) -> None:
        """Write every k slice of ``volume`` as one axial series."""
        self.number += 1
        uid = new_uid()
        folder = self.folder(uid)
        folder.mkdir(parents=True, exist_ok=True)
        lps = LPS_TO_RAS @ volume.ijk_to_ras
        spacing = volume.spacing
        orientation = [*(lps[:3, 0] / spacing[0]), *(lps[:3, 1] / spacing[1])]
        for k in range(volume.array.shape[0]):
            pixels = volume.array[k].astype(np.float32)
            if noise_hu:
                pixels = pixels + self.rng.normal(0.0, noise_hu, pixels.shape)
            position = lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3]
            ds = ct_image(pixels, position, orientation, (spacing[1], spacing[0]), spacing[2],
                          series_uid=uid, series_number=self.number, instance_number=k + 1,
                          series_description=description, image_type=image_type,
                          kernel=kernel, patient_study=self.patient_study)
            ds.BodyPartExamined = self.study.get("BodyPartExamined", "")
            save_dataset(ds, folder / ds.SOPInstanceUID)
        self.record(uid, description, volume.array.shape[0], expected, l3_s_mm)

    def scout(self, volume: Volume) -> None:
        """A frontal localizer: one coronal image (mean along j of the volume)."""
        self.number += 1
        uid = new_uid()
        folder = self.folder(uid)
        folder.mkdir(parents=True, exist_ok=True)
        lps = LPS_TO_RAS @ volume.ijk_to_ras
        image = volume.array.mean(axis=1)[::-1]  # rows from head to feet
        top = lps[:3, :3] @ np.array([0.0, 0.0, volume.array.shape[0] - 1]) + lps[:3, 3]
        ds = ct_image(image, top, (1, 0, 0, 0, 0, -1), (volume.spacing[2], volume.spacing[0]),
                      1.0, series_uid=uid, series_number=self.number, instance_number=1,
                      series_description="Topogram 0.6 T20s",
                      image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                      patient_study=self.patient_study)
        save_dataset(ds, folder / ds.SOPInstanceUID)
        self.record(uid, "Topogram 0.6 T20s", 1, SKIPPED)

    def coronal_mpr(self, volume: Volume, n: int = 6) -> None:
        """A derived coronal reformat of a few images."""
        self.number += 1
        uid = new_uid()
        folder = self.folder(uid)
        folder.mkdir(parents=True, exist_ok=True)
        lps = LPS_TO_RAS @ volume.ijk_to_ras
        js = np.linspace(0, volume.array.shape[1] - 1, n).astype(int)
        for index, j in enumerate(js):
            image = volume.array[::-1, j, :]
            top = lps[:3, :3] @ np.array([0.0, j, volume.array.shape[0] - 1]) + lps[:3, 3]
            ds = ct_image(image, top, (1, 0, 0, 0, 0, -1),
                          (volume.spacing[2], volume.spacing[0]), volume.spacing[1],
                          series_uid=uid, series_number=self.number, instance_number=index + 1,
                          series_description="Cor 3.0 MPR",
                          image_type=("DERIVED", "SECONDARY", "MPR"),
                          patient_study=self.patient_study)
            save_dataset(ds, folder / ds.SOPInstanceUID)
        self.record(uid, "Cor 3.0 MPR", n, SKIPPED)

    def _one_instance(self, sop_class: str, modality: str, description: str) -> Any:
        """The dataset of a one-image series of this study (saved by ``_save_one``)."""
        self.number += 1
        ds = base_dataset(sop_class)
        for name, value in self.patient_study.items():
            setattr(ds, name, value)
        ds.Modality = modality
        ds.SeriesInstanceUID = new_uid()
        ds.SeriesNumber = self.number
        ds.InstanceNumber = 1
        ds.SeriesDescription = description
        return ds

    def _save_one(self, ds: Any) -> None:
        folder = self.folder(ds.SeriesInstanceUID)
        folder.mkdir(parents=True, exist_ok=True)
        save_dataset(ds, folder / ds.SOPInstanceUID)
        self.record(ds.SeriesInstanceUID, ds.SeriesDescription, 1, SKIPPED)

    def dose_report(self) -> None:
        """An X-ray radiation dose structured report (no pixels)."""
        ds = self._one_instance(DOSE_SR, "SR", "Dose Report")
        ds.ValueType = "CONTAINER"
        self._save_one(ds)

    def secondary_capture(self) -> None:
        """A secondary-capture picture (a protocol page), grey 8-bit."""
        ds = self._one_instance(SECONDARY_CAPTURE, "OT", "Patient Protocol")
        ds.ConversionType = "WSD"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = 32
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = self.rng.integers(0, 255, (32, 32), dtype=np.uint8).tobytes()
        self._save_one(ds)


def write_synthetic_export(
    root: Union[str, os.PathLike[str]],
    *,
    matrix: int = 48,
    inplane_mm: float = 8.0,
    thin_mm: float = 1.25,
    seed: int = 0,
) -> SyntheticExport:
    """Write the export under ``root`` and return what it holds.

    Args:
        matrix, inplane_mm: in-plane size (voxels) and spacing (mm) of every phantom;
            small values keep tests fast (the default is 48 voxels of 8 mm).
        thin_mm: thickness of the thin reconstructions (< 2 mm); thick ones average 4
            (5 mm) or 6 (7.5 mm) thin slices.
    """
    export = SyntheticExport(Path(root))
    rng = np.random.default_rng(seed)

    def phantom(offset: int, preset: str) -> tuple[Volume, Optional[float]]:
        volume, truth = make_phantom(seed + offset, preset=preset,
                                     spacing=(inplane_mm, inplane_mm, thin_mm), matrix=matrix,
                                     orientation="axial_lps")
        l3 = None if truth.l3_landmark_ras is None else float(truth.l3_landmark_ras[2])
        return volume, l3

    four, six = 4, 6
    patients = [
        {"PatientID": "SYN001", "PatientName": "Synthetic^One", "PatientSex": "F",
         "PatientBirthDate": "19500101"},
        {"PatientID": "SYN002", "PatientName": "Synthetic^Two", "PatientSex": "M",
         "PatientBirthDate": "19620202"},
        {"PatientID": "SYN003", "PatientName": "Synthetic^Three", "PatientSex": "F",
         "PatientBirthDate": "19730303"},
    ]
    abdomen = {"StudyDescription": "CT ABDOMEN PELVIS W CONTRAST", "BodyPartExamined": "ABDOMEN"}

    # Patient 1, study 1: two phases, thin/thick, two kernels, MPR, dose report, capture.
    thin, l3 = phantom(0, "abdomen_pelvis")
    thick = _thicken(thin, four)
    w = _Writer(export, patients[0], {**abdomen, "StudyDate": "20240105",
                                      "AccessionNumber": "ACC1001"}, False, rng)
    w.scout(thick)
    upper = thick.crop_slices(thick.array.shape[0] * 55 // 100, thick.array.shape[0])
    w.stack(upper, "Arterial 5.0 B30f", ELIGIBLE, "B30f", l3_s_mm=l3)
    w.stack(thick, "PV 5.0 B30f", CHOSEN, "B30f", l3_s_mm=l3)
    w.stack(thin, f"PV {thin_mm:g} B30f", ELIGIBLE, "B30f", l3_s_mm=l3)
    w.stack(thin, f"PV {thin_mm:g} B70f lung", ELIGIBLE, "B70f", noise_hu=40.0, l3_s_mm=l3)
    w.coronal_mpr(thick)
    w.dose_report()
    w.secondary_capture()

    # Patient 1, study 2: a chest CT (the only usable series; L3 may be outside it).
    chest, l3_chest = phantom(100, "chest")
    w = _Writer(export, patients[0], {"StudyDescription": "CT CHEST", "StudyDate": "20240610",
                                      "BodyPartExamined": "CHEST", "AccessionNumber": "ACC1002"},
                False, rng)
    w.stack(_thicken(chest, four), "Chest 5.0 B31f", CHOSEN, "B31f", l3_s_mm=l3_chest)
    w.dose_report()

    # Patient 2: non-contrast abdomen: thick soft, thin bone kernel, a limited series.
    thin, l3 = phantom(1, "abdomen_pelvis")
    thick = _thicken(thin, four)
    w = _Writer(export, patients[1], {"StudyDescription": "CT ABDOMEN WO", "StudyDate": "20230301",
                                      "BodyPartExamined": "ABDOMEN", "AccessionNumber": "ACC2001"},
                False, rng)
    w.scout(thick)
    w.stack(thick, "Abdomen 5.0 STANDARD", CHOSEN, "STANDARD", l3_s_mm=l3)
    w.stack(thin, f"Abdomen {thin_mm:g} BONE", ELIGIBLE, "BONE", noise_hu=40.0, l3_s_mm=l3)
    w.stack(thick.crop_slices(10, 18), "Limited 5.0 STANDARD", SKIPPED, "STANDARD")

    # Patient 3 (one flat folder): a study with nothing usable, and one where the soft
    # kernel wins over the preferred slice thickness.
    thin, l3 = phantom(2, "abdomen_pelvis")
    w = _Writer(export, patients[2], {"StudyDescription": "CT ABDOMEN", "StudyDate": "20220202",
                                      "BodyPartExamined": "ABDOMEN"}, True, rng)
    w.scout(_thicken(thin, four))
    w.dose_report()
    w.secondary_capture()
    w = _Writer(export, patients[2], {"StudyDescription": "CT ABDOMEN", "StudyDate": "20220909",
                                      "BodyPartExamined": "ABDOMEN"}, True, rng)
    w.stack(_thicken(thin, six), f"Abdomen {thin_mm * six:g} B31f", CHOSEN, "B31f", l3_s_mm=l3)
    w.stack(thin, f"Abdomen {thin_mm:g} B70f", ELIGIBLE, "B70f", noise_hu=40.0, l3_s_mm=l3)
    return export
