"""Every real DICOM series read as it is (issue 24, items 2-6 and 12): series that reuse
UIDs, answers in the scan's own slices after resampling, two blocks of slice spacing,
enhanced CT frames, partly copied series, and the right reason for what cannot be read.

Series are written with the project's own DICOM writer (``cohort.dicom_write``) from
phantoms or a marker volume. Needs pydicom (the cohort extra); skips cleanly without it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="the cohort extra (pydicom) is not installed")

from L3LocatorLib.cohort.dicom_write import ct_image, new_uid, save_dataset  # noqa: E402
from L3LocatorLib.dicom import find_gaps  # noqa: E402
from L3LocatorLib.errors import InputError  # noqa: E402
from L3LocatorLib.inputs import find_scans, read_input  # noqa: E402
from L3LocatorLib.phantoms import make_phantom  # noqa: E402
from L3LocatorLib.volume import LPS_TO_RAS, Volume  # noqa: E402


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, float]:
    """An abdomen-pelvis phantom on 1 mm slices (8 mm pixels, fast), and its L3 S (mm)."""
    volume, truth = make_phantom(3, preset="abdomen_pelvis", spacing=(8.0, 8.0, 1.0),
                                 matrix=48, orientation="axial_lps")
    return volume, float(truth.l3_landmark_ras[2])


def write_slices(volume: Volume, ks: Sequence[int], folder: Path, *,
                 shift_per_mm: Optional[np.ndarray] = None, study: Optional[dict] = None,
                 series_uid: Optional[str] = None, extra: Optional[dict] = None,
                 names: str = "IM{n:04d}") -> list[Path]:
    """The k slices ``ks`` of ``volume`` as one DICOM series (one file each, in order).

    ``shift_per_mm`` moves each slice in its plane by that many mm (LPS) per mm along the
    normal, as a tilted gantry does (pixels are shifted with it, so anatomy stays put).
    """
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ volume.ijk_to_ras
    spacing = volume.spacing
    orientation = [*(lps[:3, 0] / spacing[0]), *(lps[:3, 1] / spacing[1])]
    study = study or {"PatientID": "P1", "StudyInstanceUID": new_uid(),
                      "FrameOfReferenceUID": new_uid()}
    series_uid = series_uid or new_uid()
    files = []
    for n, k in enumerate(ks, start=1):
        position = lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3]
        pixels = volume.array[k].astype(np.float32)
        if shift_per_mm is not None:
            offset = shift_per_mm * (k * spacing[2])
            position = position + offset
            pixels = np.roll(pixels, (-int(round(offset[1] / spacing[1])),
                                      -int(round(offset[0] / spacing[0]))), axis=(0, 1))
        ds = ct_image(pixels, position, orientation, (spacing[1], spacing[0]), 2.0,
                      series_uid=series_uid, series_number=2, instance_number=n,
                      series_description="Abdomen", patient_study=study)
        for name, value in (extra or {}).items():
            setattr(ds, name, value)
        path = folder / names.format(n=n)
        save_dataset(ds, path)
        files.append(path)
    return files


def two_blocks(n_first: int, first_mm: int, second_mm: int, stop: int) -> list[int]:
    """k (1 mm slices) of a series of ``n_first`` slices ``first_mm`` apart, then slices
    ``second_mm`` apart up to ``stop``."""
    ks = list(range(0, n_first * first_mm, first_mm))
    return ks + list(range(ks[-1] + second_mm, stop, second_mm))


def aged(files: Sequence[Path], seconds: float = 60.0) -> None:
    """Date the files ``seconds`` back, as a finished copy is."""
    when = time.time() - seconds
    for path in files:
        os.utime(path, (when, when))


# ---------------------------------------------------------------- item 4


@pytest.mark.parametrize("first_mm, second_mm", [(4, 7), (2, 5)])
def test_item4_two_spacing_blocks_are_a_complete_series(phantom, tmp_path, first_mm, second_mm):
    volume, _ = phantom
    ks = two_blocks(30, first_mm, second_mm, volume.array.shape[0])
    files = write_slices(volume, ks, tmp_path / "ct")
    aged(files)
    [scan] = find_scans([tmp_path / "ct"])
    read = read_input(scan)
    assert read.spacing[2] == pytest.approx(first_mm)  # the finer block's spacing
    assert read.source is not None and "uneven slice spacing" in read.source.note
    assert len(read.source.files) == len(ks)


def test_item4_a_gap_inside_a_block_or_between_blocks_is_still_refused():
    four, seven = [4.0] * 20, [7.0] * 20
    assert find_gaps(np.array(four + seven)) == []
    assert find_gaps(np.array(four + [5.5] + seven)) == []  # a step between the blocks
    assert [g for g, _ in find_gaps(np.array(four[:10] + [12.0] + four[10:] + seven))] == [10]
    assert [g for g, _ in find_gaps(np.array(four + [14.0] + seven))] == [20]
    # Short runs are no block: 8 mm twice inside 4 mm slices are two gaps.
    assert len(find_gaps(np.array(four + [8.0, 8.0] + four))) == 2


def test_item4_two_blocks_with_a_tilted_gantry(phantom, tmp_path):
    """A GE head CT: 4 then 7 mm slices on a gantry tilted by 12 degrees."""
    volume, _ = phantom
    shift = np.array([0.0, np.tan(np.radians(12.0)), 0.0])
    files = write_slices(volume, two_blocks(30, 4, 7, volume.array.shape[0]), tmp_path / "t",
                         shift_per_mm=shift)
    aged(files)
    read = read_input(find_scans([tmp_path / "t"])[0])
    assert "gantry tilt of 12.0 degrees" in read.source.note
    assert read.spacing[2] == pytest.approx(4.0)


# ---------------------------------------------------------------- item 3


def test_item3_answer_given_in_the_real_slices_and_exported_unresampled(phantom, tmp_path):
    """4 mm then 7 mm slices: L3 is found on a resampled 4 mm grid, whose k is not the
    files' index; the row names the nearest real slice and the export is that slice."""
    from L3LocatorLib.cohort.slice_export import export_slices
    from L3LocatorLib.locate import locate
    from L3LocatorLib.report import result_row

    volume, l3_s = phantom
    ks = two_blocks(25, 4, 7, volume.array.shape[0])
    files = write_slices(volume, ks, tmp_path / "ct")
    aged(files)
    [scan] = find_scans([tmp_path / "ct"])
    read = read_input(scan)
    result = locate(read, device="cpu")
    assert result.found, result.message
    n = result.slice_index
    real_s = float((read.ijk_to_ras[:3, :3] @ [0, 0, read.source.k_index[n]]
                    + read.ijk_to_ras[:3, 3])[2])
    s_of_file = [float(volume.ijk_to_ras_points((0, 0, k))[2]) for k in ks]
    assert real_s == pytest.approx(s_of_file[n], abs=1e-3)
    # The nearest real slice to the level found, and the file that holds it.
    assert abs(s_of_file[n] - result.s_mm) <= 3.5 + 1e-6
    assert result.slice_file == str(files[n].resolve()) and result.slice_instance == n + 1
    assert result.slice_sop_uid == pydicom.dcmread(files[n]).SOPInstanceUID
    assert result.l3_ijk[2] == n
    row = result_row(str(scan.path), result, series=scan.series_uid)
    assert row["slice_index"] == n and row["slice_file"] == result.slice_file
    assert "uneven slice spacing" in row["resampled"] and "nearest real slice" in row["resampled"]

    _, dicom_dir, _ = export_slices(read, result, tmp_path / "out", "x",
                                    dicom_source=str(files[0]))
    exported = pydicom.dcmread(dicom_dir / "L3+0.dcm")
    original = pydicom.dcmread(files[n])
    assert np.array_equal(exported.pixel_array, original.pixel_array)
    np.testing.assert_allclose([float(v) for v in exported.ImagePositionPatient],
                               [float(v) for v in original.ImagePositionPatient], atol=1e-3)


def test_item3_a_near_miss_candidate_is_named_by_its_real_slice(phantom, tmp_path):
    from L3LocatorLib.real_slice import in_real_slices
    from L3LocatorLib.result import STATUS_NOT_FOUND, L3Result

    volume, _ = phantom
    ks = two_blocks(25, 4, 7, volume.array.shape[0])
    aged(write_slices(volume, ks, tmp_path / "ct"))
    read = read_input(find_scans([tmp_path / "ct"])[0])
    k = 30  # on the 4 mm grid 120 mm up; real slices 27 and 28 lie at 117 and 124 mm
    result = L3Result(status=STATUS_NOT_FOUND, slice_axis=2, candidate_ijk=[3, 4, k],
                      message=f"Its most likely place is slice {k} (S 12 mm): check it.")
    in_real_slices(result, read)
    assert result.candidate_ijk[2] == 27 and "slice 27 (S" in result.message
    assert "uneven slice spacing" in result.resampled and result.slice_file is None


# ---------------------------------------------------------------- item 5


def enhanced_ct(path: Path, volume: Volume, ks: Sequence[int],
                shift_per_mm: Optional[np.ndarray] = None) -> None:
    """An enhanced (multi-frame) CT holding the k slices ``ks`` of ``volume`` as frames,
    each frame's position in its own functional group."""
    from pydicom.dataset import Dataset

    from L3LocatorLib.cohort.dicom_write import base_dataset

    ds = base_dataset("1.2.840.10008.5.1.4.1.1.2.1")  # Enhanced CT Image Storage
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", new_uid(), new_uid()
    ds.PatientID = "P1"
    array = np.asarray(volume.array)[list(ks)]
    ds.NumberOfFrames, ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    lps = LPS_TO_RAS @ volume.ijk_to_ras
    spacing = volume.spacing
    measures, orientation, shared = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing = [float(spacing[1]), float(spacing[0])]
    measures.SliceThickness = 1.0
    orientation.ImageOrientationPatient = [*(lps[:3, 0] / spacing[0]), *(lps[:3, 1] / spacing[1])]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in ks:
        position, frame = Dataset(), Dataset()
        point = lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3]
        if shift_per_mm is not None:
            point = point + shift_per_mm * k * spacing[2]
        position.ImagePositionPatient = [float(v) for v in point]
        frame.PlanePositionSequence = [position]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.ascontiguousarray(array, dtype="<i2").tobytes()
    save_dataset(ds, path)


def _read_enhanced(tmp_path: Path, volume: Volume, ks: Sequence[int], **kwargs: Any) -> Volume:
    folder = tmp_path / "mf"
    folder.mkdir(parents=True)
    enhanced_ct(folder / "ENHANCED", volume, ks, **kwargs)
    aged([folder / "ENHANCED"])
    [scan] = find_scans([folder])
    return read_input(scan)


def test_item5_enhanced_ct_read_with_its_frame_positions(phantom, tmp_path):
    volume, _ = phantom
    ks = list(range(0, volume.array.shape[0], 3))
    read = _read_enhanced(tmp_path, volume, ks)
    assert read.spacing[2] == pytest.approx(3.0)  # never the 1 mm a reader assumes
    np.testing.assert_array_equal(read.array, volume.array[ks])
    np.testing.assert_allclose(read.ijk_to_ras_points((0, 0, 2)),
                               volume.ijk_to_ras_points((0, 0, ks[2])), atol=1e-3)


def test_item5_enhanced_ct_with_missing_frames_is_refused(phantom, tmp_path):
    volume, _ = phantom
    ks = list(range(0, 60, 3)) + list(range(120, volume.array.shape[0], 3))
    with pytest.raises(InputError, match=r"about 20 frame\(s\) are missing"):
        _read_enhanced(tmp_path, volume, ks)


def test_item5_enhanced_ct_duplicate_frames_and_tilt(phantom, tmp_path):
    volume, _ = phantom
    ks = list(range(0, 90, 3))
    with pytest.raises(InputError, match="frames share a position"):
        _read_enhanced(tmp_path / "dup", volume, ks + ks[:4])
    tilted = _read_enhanced(tmp_path / "tilt", volume, ks,
                            shift_per_mm=np.array([0.0, np.tan(np.radians(15.0)), 0.0]))
    assert "gantry tilt of 15.0 degrees" in tilted.source.note


# ---------------------------------------------------------------- item 2


@pytest.fixture(scope="module")
def two_patients(phantom, tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """Two patients' CTs written by an anonymiser that kept the Study and Series UIDs: in
    their own folders, and (patient 3 and 4) mixed in one flat folder."""
    volume, _ = phantom
    other, _ = make_phantom(4, preset="abdomen_pelvis", spacing=(8.0, 8.0, 1.0), matrix=48,
                            orientation="axial_lps")
    root = tmp_path_factory.mktemp("reused_uids")
    study, series = new_uid(), new_uid()
    files = {}
    for patient, source, folder, offset in (("P1", volume, "p1/CT", 0), ("P2", other, "p2/CT", 2),
                                            ("P3", volume, "flat", 0), ("P4", other, "flat", 2)):
        files[patient] = write_slices(
            source, range(offset, source.array.shape[0] - 4, 5), root / folder,
            study={"PatientID": patient, "StudyInstanceUID": study,
                   "FrameOfReferenceUID": f"1.2.3.{patient[1]}"},
            series_uid=series, names=patient + "_{n:04d}")
        aged(files[patient])
    return root, files


def test_item2_series_that_reuse_uids_are_not_merged(two_patients):
    from L3LocatorLib.cohort.tasks import read_task, tasks_for_tree

    root, files = two_patients
    tasks = tasks_for_tree([root], series_mode="best")
    assert len(tasks) == 4 and len({t.key for t in tasks}) == 4
    by_files = {frozenset(t.scan.files): t for t in tasks}
    for written in files.values():
        task = by_files[frozenset(p.resolve() for p in written)]  # each patient's own files
        assert "claim the same Study/Series UIDs" in task.fields["series_reason"]
        assert "another patient" in task.fields["series_reason"]
        volume = read_task(task)
        first = pydicom.dcmread(written[0])
        np.testing.assert_array_equal(volume.array[0], first.pixel_array)


def test_item2_plain_locate_parts_patients_in_one_folder(two_patients, caplog):
    root, files = two_patients
    scans = find_scans([root / "flat"])
    assert sorted(len(s.files) for s in scans) == sorted(len(files[p]) for p in ("P3", "P4"))
    assert len({s.key for s in scans}) == 2
    assert "disagree on the patient" in caplog.text


# ---------------------------------------------------------------- item 6


def _rows(scans: list, results_path: Path, resume: bool) -> list[dict]:
    """One batch over ``scans`` into ``results_path``: the rows made (locate is not what
    these tests are about: every readable scan is answered not_found)."""
    from L3LocatorLib.batch import read_scan_volume, run_batch
    from L3LocatorLib.result import L3Result
    from L3LocatorLib.results import ResultsFile

    rows: list[dict] = []
    with ResultsFile(results_path, resume=resume) as results:
        run_batch(scans, lambda scan, volume: L3Result(status="not_found"), results=results,
                  read_scan=read_scan_volume(1e9), on_row=rows.append, progress=False)
    return rows


def test_item6_partly_copied_series_is_an_error_row_that_resume_retries(phantom, tmp_path):
    """The first 40 of 80 files, whose headers say the acquisition made 80 images."""
    volume, _ = phantom
    ks = list(range(0, 160, 2))
    study = {"PatientID": "P1", "StudyInstanceUID": new_uid(), "FrameOfReferenceUID": new_uid()}
    everything = write_slices(volume, ks, tmp_path / "all", study=study,
                              extra={"ImagesInAcquisition": len(ks)})
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in everything[:40]:
        (copy / path.name).write_bytes(path.read_bytes())
    aged(list(copy.iterdir()))
    results = tmp_path / "results.csv"
    [row] = _rows(find_scans([copy]), results, resume=False)
    assert row["status"] == "error"
    assert "partly copied" in row["message"] and "80 images" in row["message"]
    assert "--resume" in row["message"]

    for path in everything[40:]:  # the copy completes; the next run retries the scan
        (copy / path.name).write_bytes(path.read_bytes())
    aged(list(copy.iterdir()))
    [row] = _rows(find_scans([copy]), results, resume=True)
    assert row["status"] == "not_found"


def test_item6_the_series_own_numbering_and_its_neighbours_say_it_goes_on(phantom, tmp_path):
    from L3LocatorLib.dicom_complete import IncompleteSeriesError

    volume, _ = phantom
    files = write_slices(volume, range(0, 160, 2), tmp_path / "tail")
    for path in files[:40]:  # only the second half was copied: numbers 41..80
        path.unlink()
    aged(files[40:])
    with pytest.raises(IncompleteSeriesError, match="InstanceNumbers run from 41 to 80"):
        read_input(find_scans([tmp_path / "tail"])[0])

    files = write_slices(volume, range(0, 160, 2), tmp_path / "empty")
    (tmp_path / "empty" / "IM0081").write_bytes(b"")  # the copy stopped as it began a file
    aged([*files, tmp_path / "empty" / "IM0081"])
    with pytest.raises(IncompleteSeriesError, match=r"empty \(0 bytes, first: IM0081\)"):
        read_input(find_scans([tmp_path / "empty"])[0])


def test_item6_a_folder_still_being_written_is_not_read(phantom, tmp_path):
    import threading

    from L3LocatorLib.dicom_complete import IncompleteSeriesError

    volume, _ = phantom
    files = write_slices(volume, range(0, 100, 2), tmp_path / "live")
    [scan] = find_scans([tmp_path / "live"])
    more = threading.Timer(0.1, write_slices, (volume, [100], tmp_path / "live"),
                           {"names": "IM9{n:03d}"})
    more.start()
    try:
        with pytest.raises(IncompleteSeriesError, match="still being written"):
            read_input(scan)
    finally:
        more.join()
    (tmp_path / "live" / "IM9001").unlink()
    # Written a moment ago but finished: read (after a short look).
    assert read_input(scan).array.shape[0] == len(files)


# ---------------------------------------------------------------- item 12


def test_item12_duplicate_copies_of_a_study_are_not_phases_mixed(phantom, tmp_path, caplog):
    from L3LocatorLib.cohort.tasks import tasks_for_tree

    volume, _ = phantom
    files = write_slices(volume, range(0, 150, 3), tmp_path / "ct")
    for path in files:
        (path.parent / (path.name + " (copy)")).write_bytes(path.read_bytes())
    aged(list((tmp_path / "ct").iterdir()))
    [task] = tasks_for_tree([tmp_path])
    assert not task.skip and task.fields["n_images"] == len(files)
    assert "second copies" in caplog.text
    [scan] = find_scans([tmp_path / "ct"])
    assert read_input(scan).array.shape[0] == len(files)


def test_item12_dicom_without_its_preamble_is_found(phantom, tmp_path):
    from L3LocatorLib.cohort.tasks import tasks_for_tree

    volume, _ = phantom
    files = write_slices(volume, range(0, 150, 3), tmp_path / "old")
    for path in files:
        path.write_bytes(path.read_bytes()[132:])  # no 128-byte preamble, no "DICM"
    aged(files)
    [scan] = find_scans([tmp_path / "old"])
    assert read_input(scan).array.shape[0] == len(files)
    [task] = tasks_for_tree([tmp_path / "old"])
    assert not task.skip and len(task.scan.files) == len(files)


def test_item12_a_file_damaged_from_the_start_is_named_for_what_it_is(phantom, tmp_path):
    from L3LocatorLib.cohort.tasks import read_task, tasks_for_tree

    volume, _ = phantom
    files = write_slices(volume, range(0, 150, 3), tmp_path / "ct")
    damaged = files[10]
    damaged.write_bytes(damaged.read_bytes()[:-4000])  # pixel data cut short
    aged(files)
    [task] = tasks_for_tree([tmp_path])
    with pytest.raises(InputError) as error:
        read_task(task)
    message = str(error.value)
    assert damaged.name in message and "since the batch started" not in message


def test_item12_monochrome1_is_not_blamed_on_a_lost_intercept(phantom, tmp_path):
    volume, _ = phantom
    files = write_slices(volume, range(0, 150, 3), tmp_path / "m1",
                         extra={"PhotometricInterpretation": "MONOCHROME1"})
    aged(files)
    with pytest.raises(InputError, match="MONOCHROME1") as error:
        read_input(find_scans([tmp_path / "m1"])[0])
    assert "intercept" not in str(error.value)


def test_item12_a_link_loop_is_not_an_empty_folder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")
    [scan] = find_scans([tmp_path / "a"])
    assert "link loop" in scan.problem and "empty" not in scan.problem


def test_item12_a_localizer_beside_a_good_series_is_no_error(phantom, tmp_path):
    from L3LocatorLib.cohort.dicom_write import save_dataset as save

    volume, _ = phantom
    files = write_slices(volume, range(0, 150, 3), tmp_path / "ct")
    scout = ct_image(volume.array[:, 20, :], (0.0, 0.0, 0.0), (1, 0, 0, 0, 0, -1), (1.0, 8.0),
                     1.0, series_uid=new_uid(), series_number=1, instance_number=1,
                     series_description="Topogram", image_type=("ORIGINAL", "PRIMARY",
                                                                 "LOCALIZER"))
    save(scout, tmp_path / "ct" / "SCOUT")
    aged([*files, tmp_path / "ct" / "SCOUT"])
    rows = _rows(find_scans([tmp_path / "ct"]), tmp_path / "r.csv", resume=False)
    assert [r["status"] for r in rows] == ["not_found"]


def test_item12_next_best_series_when_the_chosen_cannot_be_read(tmp_path):
    from L3LocatorLib.cohort.synthetic_export import write_synthetic_export
    from L3LocatorLib.cohort.tasks import read_task, tasks_for_tree

    export = write_synthetic_export(tmp_path / "pacs")
    task = next(t for t in tasks_for_tree([export.root])
                if t.fields["series_description"] == "PV 5.0 B30f")
    key = task.key
    chosen = task.scan.files
    for path in chosen[5:]:  # every file of the chosen series is damaged from the start
        path.write_bytes(path.read_bytes()[:-2000])
    volume = read_task(task)
    assert task.key == key  # the study's row keeps its key: resume knows it is done
    assert task.fields["series_description"] == "PV 1.25 B30f"
    assert task.fields["series_reason"].startswith("the best series, series 3 PV 5.0 B30f "
                                                   "could not be read")
    assert "used the next best" in task.fields["series_reason"]
    assert volume.array.shape[0] == task.fields["n_images"] == len(task.scan.files)


def test_item12_an_excel_saved_results_file_resumes(tmp_path):
    from L3LocatorLib.report import ROW_FIELDS
    from L3LocatorLib.results import ResultsFile

    path = tmp_path / "results.csv"
    row = dict.fromkeys(ROW_FIELDS, "")
    row.update(input="/data/ct.nii.gz", status="ok")
    path.write_text("\ufeff" + ",".join(ROW_FIELDS) + "\r\n"
                    + ",".join(str(row[f]) for f in ROW_FIELDS) + "\r\n", encoding="utf-8")
    with ResultsFile(path, resume=True) as results:
        assert ("/data/ct.nii.gz", "") in results.done


# ---------------------------------------------------------------- the command, end to end


def test_item2_3_4_command_over_reused_uids_and_two_block_series(phantom, tmp_path):
    """`--series best` with `--export-slices` and `--resume` over two patients that share
    Study/Series UIDs, one scanned in two spacing blocks: one right row per patient, the
    two-block one answered in its real slices, nothing redone on resume."""
    from L3LocatorLib.cli import main
    from L3LocatorLib.results import read_rows

    volume, _ = phantom
    other, _ = make_phantom(4, preset="abdomen_pelvis", spacing=(8.0, 8.0, 1.0), matrix=48,
                            orientation="axial_lps")
    root = tmp_path / "tree"
    study, series = new_uid(), new_uid()
    written = {}
    for patient, source, ks in (("P1", volume, two_blocks(25, 4, 7, volume.array.shape[0])),
                                ("P2", other, range(0, other.array.shape[0], 3))):
        written[patient] = write_slices(
            source, ks, root / patient / "CT", study={
                "PatientID": patient, "StudyInstanceUID": study, "FrameOfReferenceUID": study},
            series_uid=series)
        aged(written[patient])
    out = tmp_path / "results.csv"
    args = ["locate", str(root), "--series", "best", "--output", str(out), "--device", "cpu",
            "--export-slices", str(tmp_path / "slices")]
    assert main(args) == 0
    rows = read_rows(out)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        patient = Path(row["input"]).parent.name
        assert Path(row["slice_file"]).parent.parent.name == patient  # its own files
        n = int(row["slice_index"])
        assert Path(row["slice_file"]) == written[patient][n].resolve()
        assert bool(row["resampled"]) == (patient == "P1")
    assert main([*args, "--resume"]) == 0
    assert len(read_rows(out)) == 2


def test_item12_a_folder_read_falls_back_to_the_next_series_and_says_so(phantom, tmp_path,
                                                                         caplog):
    from L3LocatorLib.volume import read_volume

    volume, _ = phantom
    big = write_slices(volume, range(0, 150, 2), tmp_path / "ct")
    small = write_slices(volume, range(0, 150, 3), tmp_path / "ct", names="THICK{n:04d}")
    for path in big[30:50]:  # slices lost from the middle: the series cannot be read
        path.unlink()
    aged([*big[:30], *big[50:], *small])
    assert read_volume(tmp_path / "ct").array.shape[0] == len(small)
    assert "the largest series could not be read" in caplog.text
