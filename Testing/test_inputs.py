"""Input discovery: every input named or found is a row; DICOM recognised by content."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from geometry_helpers import marker_volume, write_dicom_series

from L3LocatorLib.batch import read_scan_volume, run_batch
from L3LocatorLib.inputs import ScanInput, find_scans, read_input, scan_bytes
from L3LocatorLib.result import L3Result
from L3LocatorLib.volume import write_volume


def _volume(n_slices: int = 12):
    return marker_volume((20, 20, n_slices), (2.0, 2.0, 2.5), np.diag([-1.0, -1.0, 1.0]),
                         (10, 10, n_slices // 2))


def _uid_named_series(folder: Path, description: str = "CT", n_slices: int = 12) -> list[Path]:
    """A DICOM series whose files carry UID names (no suffix), as PACS exports write them."""
    files = write_dicom_series(_volume(n_slices), folder, series_description=description)
    renamed = []
    for n, path in enumerate(files):
        target = path.with_name(f"1.2.826.0.1.3680043.8.498.{abs(hash(description)) % 997}.{n}")
        path.rename(target)
        renamed.append(target)
    return renamed


def _make_unreadable(path: Path) -> None:
    """A file that cannot be opened: no read permission, or (as root, who may read anything)
    a link to a file that is gone."""
    if os.geteuid() == 0:
        os.symlink(path.parent / "gone.dcm", path)
    else:
        path.write_bytes(b"\0" * 200)
        path.chmod(0)


def _hospital_tree(root: Path) -> dict[str, Path]:
    """UID-named files behind 25 macOS ``._*`` files, two series in one folder, an empty
    folder, an unreadable file, a NIfTI, and a text note."""
    study = root / "patient1" / "study"
    _uid_named_series(study, "abdomen")
    _uid_named_series(study, "localizer", n_slices=3)
    for n in range(25):
        (study / f"._{n:03d}").write_bytes(b"\x00\x05\x16\x07" + bytes(200))
    (study / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + bytes(100))
    (root / "patient2").mkdir()
    (root / "patient3").mkdir()
    _make_unreadable(root / "patient3" / "IM0001")
    write_volume(_volume(), root / "patient4.nii.gz")
    (root / "notes.txt").write_text("not a scan")
    return {"study": study, "empty": root / "patient2",
            "unreadable": root / "patient3" / "IM0001", "nifti": root / "patient4.nii.gz"}


def test_hospital_tree_gives_one_row_per_input_each_error_explained(tmp_path):
    paths = _hospital_tree(tmp_path / "export")
    missing = tmp_path / "missing.nii.gz"
    scans = find_scans([tmp_path / "export", missing])
    by_path: dict[Path, list[ScanInput]] = {}
    for scan in scans:
        by_path.setdefault(scan.path, []).append(scan)
    study = by_path[paths["study"].resolve()]
    assert sorted(len(s.files) for s in study) == [3, 12]  # two series, both found
    assert all(not s.problem and s.series_uid for s in study)
    assert all(not f.name.startswith("._") and f.name != "DICOMDIR"
               for s in study for f in s.files)
    assert "empty" in by_path[paths["empty"].resolve()][0].problem
    unreadable = [s for s in scans if s.path.name == "IM0001"]
    assert len(unreadable) == 1 and "cannot be opened" in unreadable[0].problem
    assert not by_path[paths["nifti"].resolve()][0].problem
    assert "no such file" in by_path[missing][0].problem
    assert len(scans) == 6  # 2 series + empty + unreadable + nifti + missing; no text note

    # Through the batch: one row per input, every error row says what is wrong.
    rows = []
    summary = run_batch(scans, lambda scan, volume: L3Result(status="not_found"),
                        read_scan=read_scan_volume(1e9), on_row=rows.append, progress=False)
    assert len(rows) == 6 and summary.counts["error"] == 3
    errors = {row["input"]: row["message"] for row in rows if row["status"] == "error"}
    assert any("empty" in m for m in errors.values())
    assert any("cannot be opened" in m for m in errors.values())
    assert any("no such file" in m for m in errors.values())
    assert summary.exit_code == 1


def test_named_folder_without_scans_and_single_dicom_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    [scan] = find_scans([tmp_path / "docs"])
    assert "no CT found" in scan.problem
    files = _uid_named_series(tmp_path / "series")
    [scan] = find_scans([files[3]])  # one file named: its whole series
    assert not scan.problem and len(scan.files) == len(files)


def test_same_scan_by_relative_absolute_and_linked_path_is_one_row(tmp_path, monkeypatch):
    path = write_volume(_volume(), tmp_path / "ct.nii.gz")
    os.symlink(path, tmp_path / "link.nii.gz")
    monkeypatch.chdir(tmp_path)
    scans = find_scans(["ct.nii.gz", str(path), "./ct.nii.gz", tmp_path / "link.nii.gz",
                        tmp_path])
    assert [s.path for s in scans] == [path.resolve()]


def test_read_input_reads_a_uid_named_series(tmp_path):
    _uid_named_series(tmp_path / "s")
    [scan] = find_scans([tmp_path / "s"])
    volume = read_input(scan)
    expected = _volume()
    assert volume.array.shape == expected.array.shape
    np.testing.assert_allclose(volume.ijk_to_ras, expected.ijk_to_ras, atol=1e-4)
    assert scan_bytes(scan) >= volume.array.size * 2


@pytest.mark.parametrize("name", ["series.dcm", "IM0001", "1.2.3.4"])
def test_dicom_recognised_whatever_its_name(tmp_path, name):
    files = write_dicom_series(_volume(), tmp_path / "s")
    for n, path in enumerate(files):
        path.rename(path.with_name(f"{name}.{n}" if n else name))
    [scan] = find_scans([tmp_path / "s"])
    assert len(scan.files) == len(files)


def test_linked_folders_are_followed_once_and_link_loops_end(tmp_path):
    real = tmp_path / "store" / "patient9"
    real.mkdir(parents=True)
    write_volume(_volume(), real / "ct.nii.gz")
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "patient9").symlink_to(real, target_is_directory=True)
    (cohort / "again").symlink_to(real, target_is_directory=True)
    (cohort / "loop").symlink_to(cohort, target_is_directory=True)
    scans = find_scans([cohort])
    assert [s.path for s in scans] == [(real / "ct.nii.gz").resolve()]


def _enhanced_ct(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """An enhanced (multi-frame) CT file: one file, one frame per slice."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", generate_uid(), generate_uid()
    ds.NumberOfFrames, ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    measures = Dataset()
    measures.PixelSpacing = [spacing[1], spacing[0]]
    measures.SliceThickness = measures.SpacingBetweenSlices = spacing[2]
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in range(array.shape[0]):
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, spacing[2] * k]
        frame.PlanePositionSequence = [position]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.ascontiguousarray(array, dtype="<i2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def test_a_multi_frame_dicom_file_is_one_scan(tmp_path):
    array = np.asarray(_volume().array, np.int16)
    (tmp_path / "mf").mkdir()
    _enhanced_ct(tmp_path / "mf" / "ENHANCED", array, (2.0, 2.0, 2.5))
    [scan] = find_scans([tmp_path / "mf"])
    assert len(scan.files) == 1 and not scan.problem
    volume = read_input(scan)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.spacing, [2.0, 2.0, 2.5])
    assert scan_bytes(scan) >= array.size * 2
