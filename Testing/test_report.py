"""Batch bookkeeping: finding scans, result rows, and a results file that resumes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from geometry_helpers import marker_volume, write_dicom_series

from L3LocatorLib.errors import InputError
from L3LocatorLib.report import ROW_FIELDS, RowWriter, error_message, find_inputs, result_row
from L3LocatorLib.result import L3Result, ViewResult
from L3LocatorLib.volume import write_volume


def _ok_result() -> L3Result:
    return L3Result(
        status="ok", message="L3 found.", slice_index=np.int64(41), slice_axis=2,
        l3_ijk=[np.int64(10), 20, 41], l3_ras_mm=[1.5, -2.25, np.float64(100.125)], s_mm=100.125,
        confidence=np.float32(0.93), views={"both": ViewResult(row=12.5, confidence=0.93)},
        model_name="default", model_version="1", timings_s={"project": 0.1, "network": 0.2},
    )


def test_result_row_from_result_is_json_ready():
    row = result_row("scan.nii.gz", _ok_result())
    assert set(ROW_FIELDS) <= set(row)
    text = json.dumps(row)  # plain Python types only
    back = json.loads(text)
    assert back["status"] == "ok" and back["slice_index"] == 41
    assert back["l3_ijk"] == [10, 20, 41] and back["confidence"] == pytest.approx(0.93, abs=1e-4)
    assert back["seconds"] == pytest.approx(0.3)


def test_result_row_from_errors():
    row = result_row("bad.nii.gz", error=InputError("bad.nii.gz: no such file or folder."))
    assert row["status"] == "error" and row["message"].startswith("bad.nii.gz")
    assert row["slice_index"] is None
    unexpected = error_message(ZeroDivisionError("x"))
    assert "bug" in unexpected and "ZeroDivisionError" in unexpected


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_writer_resumes_and_rewrites_atomically(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    with RowWriter(path) as writer:
        writer.write(result_row("a.nii.gz", _ok_result()))
        writer.write(result_row("b.nii.gz", error="cannot read"))
    assert not list(tmp_path.glob("*.tmp"))
    resumed = RowWriter(path, resume=True)
    assert resumed.done == {"a.nii.gz", "b.nii.gz"}
    resumed.write(result_row("c.nii.gz", _ok_result()))
    if suffix == ".csv":
        rows = list(csv.DictReader(path.open()))
        assert [r["input"] for r in rows] == ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
        assert json.loads(rows[0]["l3_ijk"]) == [10, 20, 41]
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["input"] for r in rows] == ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
    # Without resume the file starts afresh.
    fresh = RowWriter(path)
    assert fresh.done == set()


def test_jsonl_resume_skips_a_line_cut_short(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(result_row("a", _ok_result())) + "\n" + '{"input": "b", "sta')
    assert RowWriter(path, resume=True).done == {"a"}


def test_writer_refuses_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match=".csv or .jsonl"):
        RowWriter(tmp_path / "results.txt")


def test_find_inputs_expands_folders(tmp_path):
    volume = marker_volume((8, 8, 6), (1, 1, 1), np.diag([-1.0, -1.0, 1.0]), (4, 4, 3))
    (tmp_path / "cohort").mkdir()
    write_volume(volume, tmp_path / "cohort" / "p1.nii.gz")
    write_volume(volume, tmp_path / "cohort" / "p2.nrrd")
    (tmp_path / "cohort" / "notes.txt").write_text("not a scan")
    write_dicom_series(volume, tmp_path / "cohort" / "p3" / "series")
    missing = tmp_path / "missing.nii.gz"
    found = find_inputs([tmp_path / "cohort", missing, tmp_path / "cohort" / "p1.nii.gz"])
    names = [p.relative_to(tmp_path).as_posix() if p != missing else "missing" for p in found]
    assert names == ["cohort/p1.nii.gz", "cohort/p2.nrrd", "cohort/p3/series", "missing"]
