"""The results file: appended row by row, never clobbered, locked, resumed with retries."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from L3LocatorLib.report import ROW_FIELDS, result_row
from L3LocatorLib.result import L3Result, ViewResult
from L3LocatorLib.results import OutputError, ResultsFile, read_rows


def _ok(name: str) -> dict:
    result = L3Result(
        status="ok", message="L3 found.", slice_index=np.int64(41), slice_axis=2,
        l3_ijk=[np.int64(10), 20, 41], l3_ras_mm=[1.5, -2.25, 100.125], s_mm=100.125,
        confidence=np.float32(0.93), views={"both": ViewResult(row=12.5, confidence=0.93)},
    )
    return result_row(name, result)


def _error(name: str) -> dict:
    return result_row(name, error="The model could not be loaded.\nCheck --model.")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_rows_append_and_resume_retries_errors(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    with ResultsFile(path) as results:
        results.write(_ok("/a.nii.gz"))
        results.write(_error("/b.nii.gz"))
    rows = read_rows(path)
    assert [r["input"] for r in rows] == ["/a.nii.gz", "/b.nii.gz"]
    assert len(path.read_text().splitlines()) == 2 + (suffix == ".csv")  # one line per row
    if suffix == ".csv":
        assert json.loads(rows[0]["l3_ijk"]) == [10, 20, 41]
    with ResultsFile(path, resume=True) as results:
        assert results.done == {("/a.nii.gz", "")}  # the error row is retried
        results.write(_ok("/b.nii.gz"))
    assert [(r["input"], r["status"]) for r in read_rows(path)] == [
        ("/a.nii.gz", "ok"), ("/b.nii.gz", "ok")]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_an_existing_file_is_never_overwritten(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    with ResultsFile(path) as results:
        results.write(_ok("/a.nii.gz"))
    before = path.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        ResultsFile(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("suffix,content", [
    (".csv", "patient,weight\nP1,70\n"),
    (".csv", ""),  # empty: nothing to lose, so it is used
    (".jsonl", '{"input": "/a", "status": "ok"}\n[1, 2, 3]\n{"input": "/b", "status": "ok"}\n'),
    (".jsonl", '"just a string"\n'),
    (".jsonl", "not json at all\nmore\n"),
])
def test_resume_refuses_a_file_it_did_not_write_and_leaves_it(tmp_path, suffix, content):
    path = tmp_path / f"other{suffix}"
    path.write_text(content)
    if not content:
        # An empty file holds nothing to lose: it is simply used.
        ResultsFile(path, resume=True).close()
        assert path.read_text().splitlines()[0].split(",") == list(ROW_FIELDS)
        return
    with pytest.raises(OutputError, match="not a results file"):
        ResultsFile(path, resume=True)
    assert path.read_text() == content


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_row_cut_by_a_crash_is_redone(tmp_path, suffix):
    path = tmp_path / f"results{suffix}"
    with ResultsFile(path) as results:
        results.write(_ok("/a.nii.gz"))
        results.write(_ok("/b.nii.gz"))
    text = path.read_text()
    # Cut the last row right after its input column, as kill -9 mid-write can.
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    cut = last.index("/b.nii.gz") + len("/b.nii.gz") + 2
    path.write_text(text[: len(text) - len(last) - 1] + last[:cut])
    with ResultsFile(path, resume=True) as results:
        assert results.done == {("/a.nii.gz", "")}
    assert [r["input"] for r in read_rows(path)] == ["/a.nii.gz"]


def test_resume_keeps_the_link_and_the_permissions(tmp_path):
    real = tmp_path / "store" / "results.csv"
    real.parent.mkdir()
    with ResultsFile(real) as results:
        results.write(_ok("/a.nii.gz"))
        results.write(_error("/b.nii.gz"))
    os.chmod(real, 0o664)
    link = tmp_path / "results.csv"
    link.symlink_to(real)
    with ResultsFile(link, resume=True) as results:  # drops the error row: a rewrite
        results.write(_ok("/c.nii.gz"))
    assert link.is_symlink()
    assert (real.stat().st_mode & 0o777) == 0o664
    assert [r["input"] for r in read_rows(real)] == ["/a.nii.gz", "/c.nii.gz"]


def test_unwritable_output_is_refused_before_any_scan(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot be written"):
        ResultsFile(blocker / "results.csv")  # a folder that cannot exist
    if os.geteuid() != 0:  # root may write anywhere
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        with pytest.raises(OutputError, match="cannot be written"):
            ResultsFile(folder / "results.csv")


def test_a_second_writer_is_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsFile(path) as first:
        first.write(_ok("/a.nii.gz"))
        # Another process, as a second `l3locator --output` would be.
        code = textwrap.dedent(f"""
            from L3LocatorLib.results import OutputError, ResultsFile
            try:
                ResultsFile({str(path)!r}, resume=True)
            except OutputError as error:
                print("REFUSED", error)
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                              encoding="utf-8", errors="replace", timeout=60)
        assert "REFUSED" in proc.stdout and "another L3 Locator batch" in proc.stdout, proc
        assert f"process {os.getpid()}" in proc.stdout
        first.write(_ok("/b.nii.gz"))
    # Released on close: the next batch may continue it.
    with ResultsFile(path, resume=True) as again:
        assert again.done == {("/a.nii.gz", ""), ("/b.nii.gz", "")}


def test_messages_with_line_breaks_stay_on_one_csv_line(tmp_path):
    path = tmp_path / "results.csv"
    with ResultsFile(path) as results:
        results.write(_error("/b.nii.gz"))
    with path.open() as stream:
        [row] = list(csv.DictReader(stream))
    assert row["message"] == "The model could not be loaded. Check --model."


# ------------------------------------------------------------------ Trust, round 2 (issue 24)

#: File names a file system allows that a results file must key exactly (issue 24.7): a line
#: break, a carriage return, other characters Python counts as line ends, quotes and commas,
#: a leading formula character, and bytes that are not UTF-8 (as ``os.fsdecode`` gives them).
ODD_NAMES = [
    "/data/p1\n/CT.nii.gz", "/data/p2\r\n/CT.nii.gz", "/data/p3\r/CT.nii.gz",
    "/data/p4\x0c\x1c\x85\u2028/CT.nii.gz", '/data/"p5", ,/CT.nii.gz', "/data/=p6/CT.nii.gz",
    os.fsdecode(b"/data/p7\xff\xfe/CT.nii.gz"),
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_24_7_resume_keys_survive_any_file_name(tmp_path, suffix):
    """Issue 24.7: a file name with a newline (or any other character) counts as done on
    resume, in CSV as in JSONL: no duplicate row per resume."""
    path = tmp_path / f"results{suffix}"
    series = "=HYPERLINK(\"http://x\")\n2"  # a hostile SeriesInstanceUID is a key too
    with ResultsFile(path) as results:
        for name in ODD_NAMES:
            results.write(result_row(name, L3Result(status="not_found"), series=series))
    expected = {(name, series) for name in ODD_NAMES}
    for _ in range(2):  # resumed twice: nothing is dropped, nothing rewritten
        before = path.read_bytes()
        with ResultsFile(path, resume=True) as results:
            assert results.done == expected
        assert path.read_bytes() == before
    assert [(r["input"], r["series"]) for r in read_rows(path)] == [
        (name, series) for name in ODD_NAMES]


def test_24_7_a_csv_row_cut_inside_a_file_name_is_redone(tmp_path):
    """Issue 24.7: kill -9 right after the line break inside a quoted file name leaves a
    file that ends with a newline; that row is still cut, and redone."""
    path = tmp_path / "results.csv"
    with ResultsFile(path) as results:
        results.write(_ok("/a.nii.gz"))
        results.write(_ok("/b\n/c.nii.gz"))
    text = path.read_bytes()
    path.write_bytes(text[: text.index(b"/b\n") + 3])
    with ResultsFile(path, resume=True) as results:
        assert results.done == {("/a.nii.gz", "")}
    assert [r["input"] for r in read_rows(path)] == ["/a.nii.gz"]


#: Header fields and messages a hostile DICOM or file name can put in a row (issue 24.8).
FORMULAS = ["=HYPERLINK(\"http://evil\",\"click\")", "@SUM(A1:A9)", "+1+cmd|' /C calc'!A0",
            "-2+3", "\t=1+1", "\r=1+1", "'=already quoted"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_24_8_cells_a_spreadsheet_would_run_are_neutralised_in_the_csv_only(tmp_path, suffix):
    """Issue 24.8: a cell starting with = + - @ tab or CR gets a ' in front in the CSV, so
    no spreadsheet runs it; numbers (also negative ones) stay numbers; the JSONL keeps the
    text; reading the CSV back gives the text as it was."""
    path = tmp_path / f"results{suffix}"
    fields = (*ROW_FIELDS, "series_description", "patient_name")
    with ResultsFile(path, fields=fields) as results:
        for text in FORMULAS:
            row = result_row(f"{text}: no such file", error=f"{text}: no such file")
            row.update(series_description=text, patient_name="-12.5", s_mm=-7.25)
            results.write(row)
    rows = read_rows(path)
    # Read back as written (in a CSV, line breaks outside the key columns become spaces).
    shown = [" ".join(text.splitlines()) if suffix == ".csv" else text for text in FORMULAS]
    assert [r["series_description"] for r in rows] == shown
    assert [r["message"] for r in rows] == [f"{text}: no such file" for text in shown]
    assert [r["input"] for r in rows] == [f"{text}: no such file" for text in FORMULAS]
    if suffix == ".jsonl":
        assert all(json.loads(line)["series_description"] in FORMULAS
                   for line in path.read_text().splitlines())
        return
    with path.open(newline="") as stream:
        cells = list(csv.DictReader(stream))  # what a spreadsheet sees
    assert cells[0]["series_description"] == "'" + FORMULAS[0]
    assert cells[-1]["series_description"] == "''=already quoted"
    assert {(c["patient_name"], c["s_mm"]) for c in cells} == {("-12.5", "-7.25")}  # numbers
    assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r"))
                   for cell in cells for name, value in cell.items()
                   if name not in ("patient_name", "s_mm"))
