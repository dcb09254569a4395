"""Cohort scale: DICOM study trees, the series choice, L3 slice export and Dask runs.

Uses a synthetic PACS export (3 patients, 5 studies, 19 series) written once per session.
Needs the ``cohort`` extra (pydicom, dask[distributed]); skips cleanly without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="the cohort extra (pydicom) is not installed")

from L3LocatorLib.cohort.dicom_tree import group_by_study, scan_tree  # noqa: E402
from L3LocatorLib.cohort.series_choice import CHOSEN, SKIPPED, choose_series  # noqa: E402
from L3LocatorLib.cohort.synthetic_export import write_synthetic_export  # noqa: E402
from L3LocatorLib.cohort.tasks import (  # noqa: E402
    IDENTIFIER_FIELDS,
    STATUS_SKIPPED,
    TaskOptions,
    error_row,
    read_task,
    run_task,
    tasks_for_tree,
)
from L3LocatorLib.result import STATUS_OK, L3Result  # noqa: E402
from L3LocatorLib.volume import LPS_TO_RAS, Volume  # noqa: E402


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("pacs") / "export")


# ---------------------------------------------------------------- series choice


def test_best_mode_one_task_per_study_with_the_expected_series_and_reason(export):
    tasks = tasks_for_tree([export.root], series_mode="best")
    assert sorted(t.fields["study_uid"] for t in tasks) == export.studies
    for task in tasks:
        expected = export.expected_choice(task.fields["study_uid"])
        if expected is None:  # scout, dose report and secondary capture only
            assert task.skip and task.fields["series_choice"] == SKIPPED
            for words in ("localizer", "dose report", "secondary capture"):
                assert words in task.scan.problem
            continue
        assert not task.skip and not task.scan.problem
        assert task.scan.series_uid == expected.series_uid
        assert task.fields["series_description"] == expected.description
        assert task.fields["n_images"] == expected.n_images == len(task.scan.files)
        assert task.fields["series_reason"].startswith(("best of", "the only usable"))
        assert not set(IDENTIFIER_FIELDS) & set(task.fields)


def test_all_mode_one_task_per_series_with_its_decision(export):
    tasks = tasks_for_tree([export.root], series_mode="all")
    by_uid = {t.scan.series_uid: t for t in tasks}
    assert len(tasks) == len(by_uid) == len(export.series) == 19
    for series in export.series:
        task = by_uid[series.series_uid]
        assert task.fields["series_choice"] == series.expected, series.description
        assert bool(task.skip) == (series.expected == SKIPPED)
    reasons = {by_uid[s.series_uid].fields["series_reason"] for s in export.series}
    for words in ("localizer", "derived", "dose report", "secondary capture", "covers only",
                  "sharp", "thinner than", "covers less"):
        assert any(words in r for r in reasons), words


def test_flat_folder_is_grouped_by_content_and_files_sorted_along_the_normal(export):
    flat = [s for s in export.series if s.patient_id == "SYN003"]
    assert len({s.folder for s in flat}) == 1
    found = [s for s in scan_tree([flat[0].folder])]
    assert sorted(s.series_uid for s in found) == sorted(s.series_uid for s in flat)
    for series in found:
        assert np.all(np.diff(series.positions_mm) > 0) or series.n_images == 1


def test_files_that_are_not_dicom_or_damaged_are_skipped(export, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    rng = np.random.default_rng(1)
    (junk / "1.2.3.4").write_bytes(rng.bytes(1000))
    (junk / "1.2.3.5").write_bytes(bytes(128) + b"DICM" + rng.bytes(500))
    real = next(s for s in export.series if s.n_images > 10)
    first = sorted(Path(real.folder).iterdir())[0].read_bytes()
    (junk / "1.2.3.6").write_bytes(first[:300])  # cut inside the header
    (junk / "notes.txt").write_text("not a scan")
    assert scan_tree([junk]) == []
    tasks = tasks_for_tree([export.root, junk])
    assert sorted(t.fields["study_uid"] for t in tasks) == export.studies


def test_an_empty_folder_gets_an_error_row(tmp_path):
    from L3LocatorLib.cohort.tasks import tasks_for_inputs

    (tmp_path / "empty").mkdir()
    [task] = tasks_for_inputs([tmp_path / "empty"])
    assert "no CT found" in task.scan.problem and not task.skip
    assert run_task(task, OPTIONS)["status"] == "error"


def test_patient_identifiers_only_when_asked(export):
    plain = tasks_for_tree([export.root])
    named = tasks_for_tree([export.root], patient_ids=True)
    assert all(not set(IDENTIFIER_FIELDS) & set(t.fields) for t in plain)
    ids = {t.fields["patient_id"] for t in named}
    assert ids == {"SYN001", "SYN002", "SYN003"}


def test_choice_ignores_file_order_and_prefers_soft_kernel_over_thickness(export):
    studies = group_by_study(scan_tree([export.root]))
    for series in studies.values():
        forward = [d.series.series_uid for d in choose_series(series) if d.choice == CHOSEN]
        backward = [d.series.series_uid for d in choose_series(series[::-1])
                    if d.choice == CHOSEN]
        assert forward == backward
    seven = [s for s in export.series if s.description.startswith("Abdomen 7.5")]
    assert seven and seven[0].expected == CHOSEN  # 7.5 mm soft beats 1.25 mm sharp


def test_a_series_with_missing_slices_is_skipped_for_the_next_best(export):
    from dataclasses import replace

    from L3LocatorLib.cohort.series_choice import skip_reason

    study = next(s for s in group_by_study(scan_tree([export.root])).values()
                 if any(x.description == "PV 5.0 B30f" for x in s))
    best = next(x for x in study if x.description == "PV 5.0 B30f")
    cut = len(best.files) // 2
    gapped = replace(best, files=best.files[:cut] + best.files[cut + 2:],
                     positions_mm=best.positions_mm[:cut] + best.positions_mm[cut + 2:])
    assert "missing slices" in skip_reason(gapped)
    doubled = replace(best, files=best.files + best.files[:1],
                      positions_mm=sorted(best.positions_mm + best.positions_mm[:1]))
    assert "same position" in skip_reason(doubled)
    others = [x for x in study if x is not best]
    decisions = {d.series.description: d for d in choose_series([gapped, *others])}
    assert decisions["PV 5.0 B30f"].choice == SKIPPED
    assert decisions["PV 1.25 B30f"].choice == CHOSEN  # the next best: same kernel, thinner


def test_chosen_series_reads_with_its_headers_geometry(export):
    task = next(t for t in tasks_for_tree([export.root])
                if t.fields.get("series_description") == "PV 5.0 B30f")
    volume = read_task(task)
    assert volume.array.shape[0] == len(task.scan.files)
    assert np.allclose(volume.spacing, (8.0, 8.0, 5.0), atol=1e-3)
    volume_top = int(np.argmax(volume.ijk_to_ras_points(
        [(0, 0, 0), (0, 0, volume.array.shape[0] - 1)])[:, 2]))
    k_top = volume_top * (volume.array.shape[0] - 1)
    last = pydicom.dcmread(task.scan.files[-1])  # files sorted feet to head
    top_lps = LPS_TO_RAS[:3, :3] @ volume.ijk_to_ras_points((0, 0, k_top))
    assert np.allclose(top_lps, [float(v) for v in last.ImagePositionPatient], atol=1e-3)
    assert np.array_equal(volume.array[k_top], last.pixel_array * float(last.RescaleSlope)
                          + float(last.RescaleIntercept))


# ---------------------------------------------------------------- slice export


def _found(slice_index: int, axis: int = 2) -> L3Result:
    return L3Result(status=STATUS_OK, slice_index=slice_index, slice_axis=axis)


def _lps_of(volume: Volume, ijk) -> np.ndarray:
    return LPS_TO_RAS[:3, :3] @ volume.ijk_to_ras_points(np.asarray(ijk, dtype=float))


def test_exported_slices_keep_position_spacing_and_hu(export, tmp_path):
    import SimpleITK as sitk

    from L3LocatorLib.cohort.slice_export import export_slices

    task = next(t for t in tasks_for_tree([export.root])
                if t.fields.get("series_description") == "PV 5.0 B30f")
    volume = read_task(task)
    k = volume.array.shape[0] // 2
    nifti, dicom_dir, png = export_slices(volume, _found(k), tmp_path, task.stem,
                                          neighbours=1, dicom_source=str(task.scan.files[0]))
    assert nifti.name.startswith(task.fields["study_uid"])

    image = sitk.ReadImage(str(nifti))
    assert image.GetSize() == (*volume.shape_ijk[:2], 3)
    assert np.allclose(image.GetSpacing(), volume.spacing, atol=1e-4)
    assert np.allclose(image.GetOrigin(), _lps_of(volume, (0, 0, k - 1)), atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(image), volume.array[k - 1 : k + 2])

    source = pydicom.dcmread(task.scan.files[0], stop_before_pixels=True)
    files = sorted(dicom_dir.iterdir())
    assert [f.name for f in files] == ["L3+0.dcm", "L3+1.dcm", "L3-1.dcm"]
    series_uids = set()
    for offset in (-1, 0, 1):
        ds = pydicom.dcmread(dicom_dir / f"L3{offset:+d}.dcm")
        assert ds.PatientID == source.PatientID and ds.StudyInstanceUID == source.StudyInstanceUID
        assert "DERIVED" in ds.ImageType and "L3" in ds.SeriesDescription
        series_uids.add(ds.SeriesInstanceUID)
        assert np.allclose([float(v) for v in ds.ImagePositionPatient],
                           _lps_of(volume, (0, 0, k + offset)), atol=1e-3)
        assert np.allclose([float(v) for v in ds.PixelSpacing], volume.spacing[[1, 0]])
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(hu, volume.array[k + offset])
    assert len(series_uids) == 1 and source.SeriesInstanceUID not in series_uids

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dicom_dir)))
    series = reader.Execute()
    assert np.allclose(series.GetOrigin(), image.GetOrigin(), atol=1e-3)
    assert np.allclose(series.GetSpacing(), image.GetSpacing(), atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(series), volume.array[k - 1 : k + 2])

    from PIL import Image

    with Image.open(png) as picture:
        assert picture.size == volume.shape_ijk[:2]


def test_export_along_a_non_k_slice_axis_and_at_the_scan_edge(tmp_path):
    """A scan stored with i head-to-foot: the L3 'slice' is an i plane; at i=0 only the
    slices that exist are written."""
    import SimpleITK as sitk

    from L3LocatorLib.cohort.slice_export import export_slices

    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1500, size=(20, 24, 30)).astype(np.int16)  # [k, j, i]
    direction = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # i -> S
    volume = Volume.from_geometry(array, (2.5, 1.5, 1.0), direction, (10.0, -20.0, 30.0))
    nifti, dicom_dir, _ = export_slices(volume, _found(0, axis=0), tmp_path, "edge",
                                        neighbours=2)
    image = sitk.ReadImage(str(nifti))
    assert image.GetSize() == (3, 24, 20)
    assert np.array_equal(sitk.GetArrayFromImage(image), array[:, :, 0:3])
    for offset in (0, 1, 2):
        ds = pydicom.dcmread(dicom_dir / f"L3{offset:+d}.dcm")
        assert np.allclose([float(v) for v in ds.ImagePositionPatient],
                           _lps_of(volume, (offset, 0, 0)), atol=1e-3)
        assert np.array_equal(ds.pixel_array, array[:, :, offset])
        normal = np.cross([float(v) for v in ds.ImageOrientationPatient[:3]],
                          [float(v) for v in ds.ImageOrientationPatient[3:]])
        assert abs(normal[2]) == pytest.approx(1.0)  # an axial plane in the patient
    assert not (dicom_dir / "L3-1.dcm").exists()


# ---------------------------------------------------------------- Dask

try:
    import distributed  # noqa: F401

    HAVE_DASK = True
except ImportError:  # pragma: no cover - the cohort extra is missing
    HAVE_DASK = False
needs_dask = pytest.mark.skipif(not HAVE_DASK, reason="dask[distributed] is not installed")

OPTIONS = TaskOptions(device="cpu")


def _comparable(row: dict) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in ("seconds", "exported")},
                      sort_keys=True)


@pytest.fixture(scope="module")
def dask_session():
    if not HAVE_DASK:
        pytest.skip("dask[distributed] is not installed")
    from L3LocatorLib.cohort.dask_runner import ClusterOptions, DaskSession

    with DaskSession(ClusterOptions(workers=2)) as session:
        yield session


@needs_dask
@pytest.mark.slow
def test_local_cluster_gives_the_serial_rows(export, dask_session):
    from L3LocatorLib.cohort.command import serial_rows
    from L3LocatorLib.cohort.dask_runner import dask_rows

    tasks = tasks_for_tree([export.root])
    serial = list(serial_rows(tasks, OPTIONS))
    on_dask = list(dask_rows(dask_session, tasks, run_task, OPTIONS, error_row=error_row))
    assert sorted(map(_comparable, serial)) == sorted(map(_comparable, on_dask))
    assert {r["status"] for r in serial} >= {STATUS_OK, STATUS_SKIPPED}
    loaded = dask_session.client.run(_models_loaded)
    assert len(loaded) == 2 and set(loaded.values()) <= {0, 1}  # at most once per worker
    assert sum(loaded.values()) >= 1


def _models_loaded() -> int:
    from L3LocatorLib.cohort import tasks

    return len(tasks._MODELS)


@needs_dask
@pytest.mark.slow
def test_command_on_an_existing_scheduler(export, dask_session, tmp_path):
    serial, remote = tmp_path / "serial.csv", tmp_path / "remote.csv"
    assert _locate(export.root, "--series", "all", "--output", serial) == 0
    address = dask_session.cluster.scheduler_address
    assert address.startswith("tcp://")
    assert _locate(export.root, "--series", "all", "--output", remote, "--cluster", address) == 0
    assert sorted(map(_comparable, _csv_rows(remote))) == sorted(
        map(_comparable, _csv_rows(serial)))
    assert dask_session.threads() == 2  # the cluster is still there: only the client closed


def die_once_or_always(task, options, marker_dir: str, once: str, always: str) -> dict:
    """Run the task, but kill this worker process: the first time for ``once``, every time
    for ``always`` (a scan that crashes its reader)."""
    import hashlib

    key = "\0".join(task.key)
    marker = Path(marker_dir) / f"died-{hashlib.sha1(key.encode()).hexdigest()}"
    if key == always or (key == once and not marker.exists()):
        marker.touch()
        os._exit(1)
    return run_task(task, options)


@needs_dask
@pytest.mark.slow
def test_killed_worker_neither_loses_nor_duplicates_rows(export, dask_session, tmp_path):
    import cloudpickle

    from L3LocatorLib.cohort.dask_runner import dask_rows

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    tasks = [t for t in tasks_for_tree([export.root]) if not t.skip]
    once, always = ("\0".join(t.key) for t in tasks[:2])
    rows = list(dask_rows(dask_session, tasks, die_once_or_always, OPTIONS, str(tmp_path),
                          once, always, error_row=error_row))
    keys = ["\0".join((r["input"], r["series"] or "")) for r in rows]
    assert sorted(keys) == sorted("\0".join(t.key) for t in tasks)
    by_key = dict(zip(keys, rows))
    assert by_key[once]["status"] != "error"  # retried on a fresh worker
    assert len(os.listdir(tmp_path)) == 2  # both scans did kill a worker
    assert by_key[always]["status"] == "error"
    assert "stopped the worker" in by_key[always]["message"]
    assert by_key[always]["study_uid"] == tasks[1].fields["study_uid"]


# ---------------------------------------------------------------- the command


def _locate(*args: str) -> int:
    from L3LocatorLib.cli import main

    return main(["locate", *map(str, args), "--device", "cpu"])


def _csv_rows(path: Path) -> list[dict]:
    from L3LocatorLib.results import read_rows

    return read_rows(path)


def test_command_series_best_and_all_rows(export, tmp_path, capsys):
    best, every = tmp_path / "best.csv", tmp_path / "all.csv"
    assert _locate(export.root, "--series", "best", "--output", best) == 0
    rows = _csv_rows(best)
    assert sorted(r["study_uid"] for r in rows) == export.studies
    for row in rows:
        expected = export.expected_choice(row["study_uid"])
        assert row["series"] == (expected.series_uid if expected else "")
        assert row["status"] == ("skipped" if expected is None else row["status"])
        assert row["series_reason"] and "patient_id" not in row
    assert _locate(export.root, "--series", "all", "--output", every, "--patient-ids") == 0
    rows = _csv_rows(every)
    assert sorted(r["series"] for r in rows) == sorted(s.series_uid for s in export.series)
    assert {r["patient_id"] for r in rows} == {"SYN001", "SYN002", "SYN003"}
    assert "skipped" in capsys.readouterr().err


@needs_dask
@pytest.mark.slow
def test_command_on_a_local_cluster_matches_serial_and_resumes(export, tmp_path, capfd):
    serial, on_dask = tmp_path / "serial.jsonl", tmp_path / "dask.jsonl"
    assert _locate(export.root, "--series", "best", "--output", serial) == 0
    capfd.readouterr()
    assert _locate(export.root, "--series", "best", "--output", on_dask,
                   "--cluster", "local", "--workers", "2", "--export-slices",
                   tmp_path / "slices") == 0
    err = capfd.readouterr().err  # the workers' too: they write to this terminal
    assert _quiet(err), err  # issue 24.14
    expected = sorted(map(_comparable, _csv_rows(serial)))
    assert sorted(map(_comparable, _csv_rows(on_dask))) == expected
    found = [r for r in _csv_rows(on_dask) if r["status"] == STATUS_OK]
    assert found and all(r["exported"] for r in found)
    assert len(list((tmp_path / "slices").glob("*_L3.nii.gz"))) == len(found)

    # An interrupted run: two rows finished, the third cut mid-line; resume on Dask.
    lines = on_dask.read_text().splitlines(keepends=True)
    on_dask.write_text("".join(lines[:2]) + lines[2][:40])
    assert _locate(export.root, "--series", "best", "--output", on_dask, "--resume",
                   "--cluster", "local", "--workers", "2") == 0
    resumed = _csv_rows(on_dask)
    assert len(resumed) == len(expected)
    assert sorted(map(_comparable, resumed)) == expected


@pytest.mark.parametrize(("module", "option"), [("pydicom", ["--series", "best"]),
                                                ("dask.distributed", ["--cluster", "local"])])
def test_command_without_the_cohort_extra_says_what_to_install(export, tmp_path, capsys,
                                                               monkeypatch, module, option):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    output = tmp_path / "rows.csv"
    assert _locate(export.root, *option, "--output", output) == 2
    assert "pip install 'l3locator[cohort]'" in capsys.readouterr().err
    assert not output.exists()


def test_command_interrupted_keeps_finished_rows_and_resumes(export, tmp_path, monkeypatch):
    from L3LocatorLib.cohort import command

    output, calls = tmp_path / "rows.jsonl", []
    real = command.run_task

    def stop_at_the_third(task, options, **kwargs):
        calls.append(task.key)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task, options, **kwargs)

    monkeypatch.setattr(command, "run_task", stop_at_the_third)
    assert _locate(export.root, "--series", "all", "--output", output) == 3
    assert len(_csv_rows(output)) == 2
    monkeypatch.setattr(command, "run_task", real)
    assert _locate(export.root, "--series", "all", "--output", output, "--resume") == 0
    rows = _csv_rows(output)
    assert sorted(r["series"] for r in rows) == sorted(s.series_uid for s in export.series)


def test_command_exports_slices_of_a_nifti_scan(phantom_files, tmp_path):
    import SimpleITK as sitk

    from L3LocatorLib.volume import read_volume

    path, _ = phantom_files["with_l3"]
    out, rows = tmp_path / "slices", tmp_path / "rows.jsonl"
    assert _locate(path, "--export-slices", out, "--neighbours", "2", "--output", rows) == 0
    [row] = _csv_rows(rows)
    assert row["status"] == STATUS_OK and row["exported"]
    k = row["slice_index"]
    volume = read_volume(path)
    nifti, dicom_dir, png = _exported(row)
    assert nifti.parent == dicom_dir.parent == png.parent == out
    assert nifti.name.startswith("with_l3_") and nifti.name.endswith("_L3.nii.gz")
    slab = sitk.ReadImage(str(nifti))
    assert np.array_equal(sitk.GetArrayFromImage(slab), volume.array[k - 2 : k + 3])
    centre = pydicom.dcmread(dicom_dir / "L3+0.dcm")
    assert centre.PatientID == "L3LOCATOR"  # a NIfTI file has no patient: a new study
    assert np.array_equal(centre.pixel_array, volume.array[k])
    assert png.is_file()


# ---------------------------------------------------------------- Trust, round 2 (issue 24)


@pytest.fixture(scope="module")
def look_alikes(export, tmp_path_factory):
    """Two patients stored alike: ``p1/CT`` and ``p2/CT``, the same series description (as
    many PACS exports name them), different studies, series and pixels."""
    root = tmp_path_factory.mktemp("look_alikes") / "cohort"
    sources = {"p1": "PV 5.0 B30f", "p2": "Abdomen 5.0 STANDARD"}
    for patient, description in sources.items():
        series = next(s for s in export.series if s.description == description)
        (root / patient / "CT").mkdir(parents=True)
        for path in Path(series.folder).iterdir():
            ds = pydicom.dcmread(path)
            ds.SeriesDescription = "CT ABDOMEN"
            ds.save_as(root / patient / "CT" / path.name)
    return root


def _exported(row: dict) -> list[Path]:
    return [Path(p) for p in row["exported"].split(" ")]


def _export_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_24_1_7_look_alike_patients_exports_and_resume_inside_the_input_tree(look_alikes,
                                                                            tmp_path):
    """Issue 24.1 and 24.7, end to end: ``p1/CT`` and ``p2/CT`` with one series
    description, exports, QA pictures and results written inside the input tree, with and
    without --series, then resumed: one right row per scan, no shared file, no file
    overwritten, and the run's own outputs never read back as scans."""
    cohort = tmp_path / "cohort"
    shutil.copytree(look_alikes, cohort)
    patients = {(cohort / p / "CT").resolve(): pydicom.dcmread(next((cohort / p / "CT").iterdir()))
                for p in ("p1", "p2")}
    slices, qa = cohort / "l3_slices", cohort / "qa"
    outputs = ("--export-slices", slices, "--qa-dir", qa)
    named: set[Path] = set()
    for mode, results in (([], cohort / "rows.csv"), (["--series", "all"], cohort / "all.csv")):
        assert _locate(cohort, *mode, *outputs, "--output", results) == 0
        rows = _csv_rows(results)
        assert sorted(Path(r["input"]) for r in rows) == sorted(patients)
        for row in rows:
            source = patients[Path(row["input"])]
            assert row["status"] == STATUS_OK and row["series"] == source.SeriesInstanceUID
            nifti, dicom_dir, png = files = _exported(row)
            assert not named & set(files)  # no file named by two rows, or by two runs
            named.update(files)
            centre = pydicom.dcmread(dicom_dir / "L3+0.dcm")
            assert centre.PatientID == source.PatientID  # the row's own patient
            assert source.SeriesInstanceUID in centre.DerivationDescription
            assert nifti.is_file() and png.is_file() and Path(row["qa_png"]).is_file()
        before = _export_files(slices)
        for _ in range(2):  # resumed: nothing to do, whatever was written into the tree
            assert _locate(cohort, *mode, *outputs, "--output", results, "--resume") == 0
            assert len(_csv_rows(results)) == 2
        assert _export_files(slices) == before
    assert len({p.name for p in qa.iterdir()}) == 4  # a picture per scan and per key kind

    # The same scans again into a new results file: new export files, the old ones intact.
    again = cohort / "again.jsonl"
    assert _locate(cohort, *outputs, "--output", again) == 0
    for row in _csv_rows(again):
        assert all(p.name.split("_L3")[0].endswith("-2") for p in _exported(row))
        assert not named & set(_exported(row))
    assert all(_export_files(slices)[name] == data for name, data in before.items())


def test_24_1_same_named_volume_files_with_series_get_their_own_exports(look_alikes,
                                                                        tmp_path):
    """Issue 24.1 with --series: ``a/ct.nii.gz`` and ``b/ct.nii`` (two patients) each get
    their own exported slab, holding their own voxels."""
    from L3LocatorLib.volume import read_volume, write_volume

    volumes = {}
    for patient, name in (("p1", "a/ct.nii.gz"), ("p2", "b/ct.nii")):
        (tmp_path / name).parent.mkdir()
        volumes[str(tmp_path / name)] = read_task(tasks_for_tree([look_alikes / patient])[0])
        write_volume(volumes[str(tmp_path / name)], tmp_path / name)
    rows_file = tmp_path / "rows.jsonl"
    assert _locate(*volumes, "--series", "best", "--export-slices", tmp_path / "slices",
                   "--output", rows_file) == 0
    rows = _csv_rows(rows_file)
    assert sorted(r["input"] for r in rows) == sorted(volumes)
    for row in rows:
        k = row["slice_index"]
        slab = read_volume(_exported(row)[0]).array
        assert np.array_equal(slab, volumes[row["input"]].array[k : k + 1])
    assert len(set(_exported(rows[0])) | set(_exported(rows[1]))) == 6


@pytest.fixture(scope="module")
def one_volume(look_alikes):
    task = tasks_for_tree([look_alikes / "p1"])[0]
    return task, read_task(task)


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Files of this process may not grow beyond ``limit`` bytes (the kernel refuses the
    write, as on a full disk); SIGXFSZ ignored so the write fails instead of the process."""
    resource = pytest.importorskip("resource")
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_24_13_an_export_cut_by_a_full_disk_leaves_nothing(one_volume, tmp_path):
    """Issue 24.13: whichever of the NIfTI, DICOM or PNG file the disk fills up on, the
    export fails and leaves no file (SimpleITK alone would leave a cut NIfTI and say
    nothing)."""
    from L3LocatorLib.cohort.slice_export import export_slices

    task, volume = one_volume
    k = volume.array.shape[0] // 2
    whole = export_slices(volume, _found(k), tmp_path / "whole", "scan",
                          dicom_source=str(task.scan.files[0]))
    sizes = sorted({f.stat().st_size for p in whole for f in ([p] if p.is_file()
                                                              else p.iterdir())})
    for limit in (size - 1 for size in sizes):
        out = tmp_path / f"limit{limit}"
        out.mkdir()
        with _file_size_limit(limit), pytest.raises(OSError):
            export_slices(volume, _found(k), out, "scan", dicom_source=str(task.scan.files[0]))
        assert list(out.iterdir()) == [], limit
    odd = tmp_path / os.fsdecode(b"not-utf8-\xff")  # SimpleITK would stop the process here
    with contextlib.suppress(OSError):  # some file systems (APFS) refuse such a name
        odd.mkdir()
        with pytest.raises(OSError, match="not valid UTF-8"):
            export_slices(volume, _found(k), odd, "scan", dicom_source=str(task.scan.files[0]))
        assert list(odd.iterdir()) == []


def test_24_13_a_qa_picture_cut_by_a_full_disk_leaves_the_old_one(one_volume, tmp_path):
    """Issue 24.13: a QA picture that cannot be written whole leaves no cut or empty PNG,
    and the picture of an earlier run in its place is kept."""
    from L3LocatorLib.cohort.tasks import cached_model
    from L3LocatorLib.locate import locate
    from L3LocatorLib.qa import save_qa_png

    _, volume = one_volume
    result = locate(volume, model=cached_model(OPTIONS), device="cpu")
    path = save_qa_png(result, tmp_path / "scan_l3.png")
    earlier = path.read_bytes()
    with _file_size_limit(len(earlier) // 2), pytest.raises(OSError):
        save_qa_png(result, path)
    assert path.read_bytes() == earlier and os.listdir(tmp_path) == [path.name]


def test_24_13_unwritable_qa_and_export_folders_are_said_in_the_row(look_alikes, tmp_path):
    """Issue 24.13: when the QA picture and the exports cannot be written, the row keeps its
    answer, ``qa_png`` and ``exported`` are empty, and ``message`` says why and what to do."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rows_file = tmp_path / "rows.jsonl"
    assert _locate(look_alikes / "p1", "--qa-dir", blocker / "qa", "--export-slices",
                   blocker / "slices", "--output", rows_file) == 0
    [row] = _csv_rows(rows_file)
    assert row["status"] == STATUS_OK and row["slice_index"] is not None
    assert not row["qa_png"] and not row["exported"]
    assert f"The QA picture could not be written in {blocker / 'qa'} (Not a directory)" \
        in row["message"]
    assert "The L3 slice export could not be written" in row["message"]
    assert row["message"].count("choose another") == 2


#: Run one scan the way a Dask worker does: a fresh interpreter with no logging set up.
WORKER = """
import json, sys
from L3LocatorLib.cohort.tasks import TaskOptions, run_task, tasks_for_tree
[task] = tasks_for_tree([sys.argv[1]])
print(json.dumps(run_task(task, TaskOptions(device="cpu"))["status"]))
"""


def _quiet(stderr: str) -> bool:
    return "ccache" not in stderr and "INFO" not in stderr


def test_24_14_no_ccache_warning_or_info_lines_from_the_command_or_a_worker(look_alikes):
    """Issue 24.14: PaddlePaddle's "No ccache found" warning, and the INFO lines its import
    lets through on a worker (whose root logger has no handler), stay off the terminal."""
    scan = str(look_alikes / "p1")
    command = subprocess.run([sys.executable, "-m", "L3LocatorLib.cli", "locate", scan,
                              "--device", "cpu"], capture_output=True, encoding="utf-8",
                             errors="replace", timeout=300)
    assert command.returncode == 0 and _quiet(command.stderr), command.stderr
    assert command.stderr.splitlines() == ["1 scan(s): 1 with L3 (0 to check: see 'review'), "
                                           "0 without, 0 failed (see 'message')."]
    worker = subprocess.run([sys.executable, "-c", WORKER, scan], capture_output=True,
                            encoding="utf-8", errors="replace", timeout=300)
    assert worker.stdout.strip() == '"ok"' and _quiet(worker.stderr), worker.stderr


# ---------------------------------------------------------------- body composition (issue 26)


def _write_series(volume: Volume, folder: Path, study: dict, number: int,
                  description: str) -> None:
    """Every k slice of ``volume`` as one axial DICOM series (the project's writer) whose
    headers also hold the patient's height, weight and sex."""
    from L3LocatorLib.cohort.dicom_write import ct_image, new_uid, save_dataset

    folder.mkdir(parents=True)
    uid, lps = new_uid(), LPS_TO_RAS @ volume.ijk_to_ras
    spacing = volume.spacing
    orientation = [*(lps[:3, 0] / spacing[0]), *(lps[:3, 1] / spacing[1])]
    for k in range(volume.array.shape[0]):
        ds = ct_image(volume.array[k], lps[:3, :3] @ [0.0, 0.0, k] + lps[:3, 3], orientation,
                      (spacing[1], spacing[0]), spacing[2], series_uid=uid,
                      series_number=number, instance_number=k + 1,
                      series_description=description, kernel="B30f", patient_study=study)
        ds.PatientSize, ds.PatientWeight = "1.64", "58"
        save_dataset(ds, folder / ds.SOPInstanceUID)


@pytest.fixture(scope="module")
def composition_tree(tmp_path_factory):
    """One study: a 24-slice abdomen with exact tissues around L3 (the chosen series) and a
    5-slice series too short to show L3 (skipped)."""
    from L3LocatorLib.phantoms.tissue import make_tissue_phantom

    volume, truth, _ = make_tissue_phantom(
        4244, variant="typical", z_range_mm=(-60.0, 60.0), spacing=(2.0, 2.0, 5.0),
        fov_mm=500.0, fov_shift_mm=0.0, noise_hu=12.0)
    root = tmp_path_factory.mktemp("comp") / "export"
    study = {"PatientID": "COMP01", "PatientSex": "F", "StudyInstanceUID": "1.2.826.0.1.26",
             "FrameOfReferenceUID": "1.2.826.0.1.26.1"}
    _write_series(volume, root / "COMP01" / "pv", study, 2, "PV 5.0 B30f")
    _write_series(volume.crop_slices(0, 5), root / "COMP01" / "short", study, 3, "Limited")
    k = int(np.round(volume.ras_to_ijk_points(truth.l3_landmark_ras)[2]))
    return root, k


def test_26_composition_with_series_best_same_columns_as_plain_locate(composition_tree,
                                                                      tmp_path, capsys):
    """``locate --series best --composition``: every row has the composition columns (the
    skipped series' empty), height from DICOM PatientSize, and the chosen series' values
    are those of a plain ``locate --composition`` of that series."""
    from L3LocatorLib.composition.columns import COLUMNS

    root, k = composition_tree
    options = ["--composition", "--slice", k, "--preset", "vat_wide", "--slab-mm", "5"]
    cohort, plain = tmp_path / "cohort.csv", tmp_path / "plain.csv"
    assert _locate(root, "--series", "all", "--output", cohort, *options) in (0, 1)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = {r["series_description"]: r for r in _csv_rows(cohort)}
    assert set(rows) == {"PV 5.0 B30f", "Limited"}
    assert all(set(COLUMNS) <= set(r) for r in printed) and len(printed) == 2
    assert rows["Limited"]["status"] == STATUS_SKIPPED
    assert all(rows["Limited"][c] in ("", None) for c in COLUMNS)
    chosen = rows["PV 5.0 B30f"]
    assert chosen["height_source"] == "DICOM PatientSize" and chosen["height_m"] == "1.64"
    assert float(chosen["muscle_area_cm2"]) > 50 and chosen["comp_preset"] == "vat_wide"
    assert chosen["smi_cm2_m2"] and not chosen["comp_error"]

    assert _locate(root / "COMP01" / "pv", "--output", plain, *options) in (0, 1)
    alone = _csv_rows(plain)[0]
    assert {c: chosen[c] for c in COLUMNS} == {c: alone[c] for c in COLUMNS}

    # a measurement that fails keeps the row; comp_error says why
    failed = tmp_path / "failed.csv"
    assert _locate(root, "--series", "best", "--output", failed, "--composition",
                   "--slice", "999") in (0, 1)
    (row,) = _csv_rows(failed)
    assert row["status"] == STATUS_OK and "999" in row["comp_error"]
    assert row["muscle_area_cm2"] == ""

    # --series best at the located L3 (no --slice): the same as plain locate again
    best, plain = tmp_path / "best.csv", tmp_path / "plain_l3.csv"
    assert _locate(root, "--series", "best", "--output", best, "--composition") in (0, 1)
    assert _locate(root / "COMP01" / "pv", "--output", plain, "--composition") in (0, 1)
    (row,), (alone,) = _csv_rows(best), _csv_rows(plain)
    assert row["status"] == alone["status"] and row["comp_preset"] == "alberta"
    assert {c: row[c] for c in COLUMNS} == {c: alone[c] for c in COLUMNS}


@needs_dask
@pytest.mark.slow
def test_26_composition_on_dask_gives_the_serial_rows(composition_tree, dask_session):
    """The composition options travel to the workers: the same rows as in this process."""
    import argparse

    from L3LocatorLib.cohort.command import serial_rows
    from L3LocatorLib.cohort.dask_runner import dask_rows
    from L3LocatorLib.composition.cohort import add_composition_arguments, composition_options

    parser = argparse.ArgumentParser()
    add_composition_arguments(parser)
    options = TaskOptions(device="cpu", composition=composition_options(
        parser.parse_args(["--composition", "--sex", "M"])))
    tasks = tasks_for_tree([composition_tree[0]])
    serial = list(serial_rows(tasks, options))
    on_dask = list(dask_rows(dask_session, tasks, run_task, options, error_row=error_row))
    assert sorted(map(_comparable, serial)) == sorted(map(_comparable, on_dask))
    measured = [r for r in serial if r.get("muscle_area_cm2") is not None]
    assert len(measured) == 1 and measured[0]["height_source"] == "DICOM PatientSize"
