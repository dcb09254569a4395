"""The one batch loop: rows in order, read-ahead within the memory budget, resume, QA names."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_helpers import marker_volume, write_dicom_series

from L3LocatorLib.batch import find_batch_scans, run_batch
from L3LocatorLib.errors import InputError
from L3LocatorLib.inputs import ScanInput, find_scans, read_input, scan_bytes
from L3LocatorLib.outputs import EXPORT_DICOM, EXPORT_NIFTI, is_own_output, output_stem
from L3LocatorLib.qa import qa_file_name
from L3LocatorLib.result import L3Result
from L3LocatorLib.results import ResultsFile, read_rows
from L3LocatorLib.volume import write_volume


def _cohort(folder: Path, n: int) -> list[ScanInput]:
    volume = marker_volume((20, 20, 12), (2.0, 2.0, 2.5), np.diag([-1.0, -1.0, 1.0]),
                           (10, 10, 6))
    folder.mkdir()
    for index in range(n):
        write_volume(volume, folder / f"scan{index:02d}.nii.gz")
    return find_scans([folder])


class _Recorder:
    """read_scan / locate_scan pair that records how many scans are in memory at once."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.lock = threading.Lock()
        self.in_memory = 0
        self.most = 0
        self.fail = fail
        self.order: list[str] = []

    def read(self, scan: ScanInput):
        with self.lock:
            self.in_memory += 1
            self.most = max(self.most, self.in_memory)
        return read_input(scan)

    def locate(self, scan: ScanInput, volume) -> L3Result:
        try:
            time.sleep(0.01)  # let the readers run ahead
            self.order.append(scan.path.name)
            if scan.path.name in self.fail:
                raise InputError(f"{scan.path.name}: made to fail")
            return L3Result(status="not_found", message=str(volume.array.shape))
        finally:
            with self.lock:
                self.in_memory -= 1


@pytest.mark.parametrize("workers,budget_scans,most", [(6, 2.5, 2), (6, 100, 7), (1, 100, 2)])
def test_read_ahead_stays_within_workers_and_memory(tmp_path, workers, budget_scans, most):
    scans = _cohort(tmp_path / "cohort", 10)
    recorder = _Recorder()
    rows = []
    summary = run_batch(scans, recorder.locate, read_scan=recorder.read, workers=workers,
                        memory_budget=budget_scans * scan_bytes(scans[0]), on_row=rows.append,
                        progress=False)
    assert [row["input"] for row in rows] == [str(s.path) for s in scans]  # in order
    assert recorder.order == [s.path.name for s in scans]
    assert summary.counts["not_found"] == 10
    assert recorder.most <= most


def test_a_failing_scan_is_a_row_and_resume_retries_only_failures(tmp_path):
    scans = _cohort(tmp_path / "cohort", 5)
    output = tmp_path / "results.csv"
    with ResultsFile(output) as results:
        first = run_batch(scans, _Recorder(fail={"scan01.nii.gz", "scan03.nii.gz"}).locate,
                          read_scan=read_input, results=results, progress=False)
    assert first.counts == {"ok": 0, "not_found": 3, "error": 2, "review": 0}
    assert first.exit_code == 1
    again = _Recorder()
    with ResultsFile(output, resume=True) as results:
        second = run_batch(scans, again.locate, read_scan=again.read, results=results,
                           progress=False)
    assert again.order == ["scan01.nii.gz", "scan03.nii.gz"]
    assert second.skipped == 3 and second.exit_code == 0
    rows = read_rows(output)
    assert sorted(r["input"] for r in rows) == sorted(str(s.path) for s in scans)
    assert {r["status"] for r in rows} == {"not_found"}


def test_unexpected_exceptions_become_rows_naming_a_bug(tmp_path):
    scans = _cohort(tmp_path / "cohort", 2)

    def broken(scan, volume):
        raise ZeroDivisionError("boom")

    rows = []
    summary = run_batch(scans, broken, on_row=rows.append, progress=False)
    assert summary.counts["error"] == 2
    assert all("bug" in row["message"] and "ZeroDivisionError" in row["message"]
               for row in rows)


def test_without_read_scan_everything_runs_on_the_calling_thread(tmp_path):
    """Slicer's headless script loads scans into the scene itself, on the main thread."""
    scans = _cohort(tmp_path / "cohort", 3)
    threads = set()

    def in_scene(scan, data):
        assert data is None
        threads.add(threading.get_ident())
        return L3Result(status="not_found")

    run_batch(scans, in_scene, workers=4, progress=False)
    assert threads == {threading.get_ident()}


def test_qa_names_differ_for_same_named_scans_and_are_stable():
    a = qa_file_name("CT", ("/data/p1/CT.nii.gz", ""))
    b = qa_file_name("CT", ("/data/p2/CT.nii.gz", ""))
    assert a != b and a.startswith("CT_") and a.endswith("_l3.png")
    assert a == qa_file_name("CT", ("/data/p1/CT.nii.gz", ""))
    assert is_own_output(Path("/data/qa") / a, Path("/data"))
    odd = output_stem(".p1\n/\udcff CT ÄÖ", ("/data/.p1\n/\udcff CT ÄÖ", ""))
    assert odd.startswith("_p1____CT_ÄÖ_") and odd.encode("utf-8")  # portable, writable


def test_24_7_the_batch_never_takes_its_own_outputs_for_scans(tmp_path):
    """Issue 24.7: exported slices (NIfTI and DICOM), QA pictures and a file cut while being
    written, inside the input tree, are not scans; an exported file the user names is one;
    a named folder holding only outputs gets a row saying so."""
    scans = _cohort(tmp_path / "cohort", 2)
    volume = read_input(scans[0])
    exports = tmp_path / "cohort" / "exports"
    exports.mkdir()
    stem = output_stem("scan00", scans[0].key)
    exported = write_volume(volume, exports / f"{stem}{EXPORT_NIFTI}")
    write_volume(volume, exports / f"{output_stem('scan01', scans[1].key)}-2{EXPORT_NIFTI}")
    write_dicom_series(volume, exports / f"{stem}{EXPORT_DICOM}")
    write_volume(volume, exports / f".tmp-0a1b2c3d-{stem}{EXPORT_NIFTI}")
    assert len(find_scans([tmp_path / "cohort"])) == 6  # what the search alone finds
    assert find_batch_scans([tmp_path / "cohort"]) == scans
    assert find_batch_scans([tmp_path / "cohort", exported]) == [*scans, find_scans([exported])[0]]
    [row] = find_batch_scans([exports])
    assert row.path == exports.resolve() and "holds only files L3 Locator wrote" in row.problem
