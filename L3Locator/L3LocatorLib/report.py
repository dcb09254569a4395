"""Batch bookkeeping shared by the ``l3locator`` command and Slicer's headless script:
finding inputs, one result row per scan, and a results file that survives interruption."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from .errors import L3LocatorError
from .result import STATUS_ERROR, L3Result
from .volume import VOLUME_SUFFIXES, is_volume_file

#: Columns of a results file, in order. ``l3_ijk`` and ``l3_ras_mm`` hold JSON lists;
#: ``review`` the reasons to check the level, in words (empty when there are none).
ROW_FIELDS = (
    "input",
    "series",
    "status",
    "slice_index",
    "l3_ijk",
    "l3_ras_mm",
    "s_mm",
    "confidence",
    "needs_review",
    "message",
    "review",
    "slice_axis",
    "model",
    "qa_png",
    "seconds",
)

DICOM_SUFFIXES = (".dcm", ".ima", "")


def result_row(
    input_name: str,
    result: Optional[L3Result] = None,
    error: Union[BaseException, str, None] = None,
    qa_png: str = "",
    series: str = "",
) -> dict[str, Any]:
    """One results row: from a result, or from an error (status ``error``, plain message).

    ``input`` is the scan's resolved path, ``series`` its DICOM SeriesInstanceUID ("" for
    volume files): together they identify the row.
    """
    row: dict[str, Any] = {name: None for name in ROW_FIELDS}
    row["input"] = input_name
    row["series"] = series or None
    row["qa_png"] = qa_png or None
    if result is None:
        row["status"] = STATUS_ERROR
        row["message"] = error_message(error)
        return row
    data = result.to_dict()
    for name in ("status", "slice_index", "l3_ijk", "l3_ras_mm", "s_mm", "confidence",
                 "needs_review", "message", "slice_axis"):
        row[name] = data[name]
    row["review"] = " ".join(result.review) or None
    row["model"] = " ".join(filter(None, (result.model_name, result.model_version))) or None
    row["seconds"] = round(sum(result.timings_s.values()), 3) if result.timings_s else None
    return row


def error_message(error: Union[BaseException, str, None]) -> str:
    """A message for the user: ours verbatim; anything unexpected named as a bug to report."""
    if error is None:
        return "Unknown error."
    if isinstance(error, str):
        return error
    if isinstance(error, L3LocatorError):
        return str(error)
    if isinstance(error, MemoryError):
        return "Not enough memory for this scan. Close other programs or use a bigger machine."
    return (
        f"Unexpected internal error ({type(error).__name__}: {error}). This is a bug in "
        "L3 Locator; please report it with the scan's description (not the scan itself)."
    )


def find_inputs(paths: Iterable[Union[str, os.PathLike[str]]]) -> list[Path]:
    """Expand the given paths into scans: image files as they are; a folder holding DICOM
    files is one scan; other folders are searched recursively for both.

    Paths that do not exist are kept, so that they are reported as errors in their row.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path not in seen:
            seen.add(path)
            found.append(path)

    for given in paths:
        path = Path(given)
        if not path.is_dir():
            add(path)
            continue
        for folder, subfolders, files in os.walk(path):
            subfolders.sort()
            folder_path = Path(folder)
            if any(_looks_like_dicom(folder_path / name) for name in sorted(files)[:20]):
                add(folder_path)
                continue
            for name in sorted(files):
                if is_volume_file(Path(name)):
                    add(folder_path / name)
    return found


def scan_stem(path: Path) -> str:
    """A scan's name without its image suffix (``ct.nii.gz`` -> ``ct``), for output files."""
    name = Path(path).name
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() not in DICOM_SUFFIXES:
        return False
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


class RowWriter:
    """Results file (``.csv`` or ``.jsonl``) written row by row.

    Every ``write`` replaces the file atomically (temporary file + rename), so an
    interruption never leaves a half-written file. With ``resume=True`` the rows
    already in the file are kept and their inputs listed in ``done``.
    """

    def __init__(self, path: Union[str, os.PathLike[str]], resume: bool = False) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".csv", ".jsonl"):
            raise ValueError(f"{self.path}: the results file must end in .csv or .jsonl")
        self.jsonl = suffix == ".jsonl"
        self.rows: list[dict[str, Any]] = self._read() if resume and self.path.exists() else []
        self.done: set[str] = {str(row.get("input")) for row in self.rows}

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.done.add(str(row["input"]))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as stream:
                stream.write(self._render())
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _render(self) -> str:
        if self.jsonl:
            return "".join(json.dumps(row) + "\n" for row in self.rows)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _csv_cell(row.get(k)) for k in ROW_FIELDS})
        return out.getvalue()

    def _read(self) -> list[dict[str, Any]]:
        text = self.path.read_text(encoding="utf-8")
        if self.jsonl:
            rows = []
            for line in text.splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: that input is redone
            return rows
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value
