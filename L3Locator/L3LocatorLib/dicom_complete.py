"""Is a DICOM series all there? A series cut short by an interrupted copy reads as a smaller,
valid scan (and gets "L3 not in the field of view"), so before reading, the series' own
words and its folder are checked:

- the series' own count: every file says how many images the acquisition made
  (ImagesInAcquisition) and fewer are here, or the InstanceNumbers, consecutive along the
  slices, start well above 1 (the first images were not copied);
- neighbouring files: an empty (zero-byte) file beside the series, as a copy leaves while
  it writes;
- a folder still being written: a file changed in the last ``RECENT_S`` seconds, and the
  folder's listing changes within ``SETTLE_S`` seconds.

Any of these raises ``IncompleteSeriesError``: an error row, which ``--resume`` retries.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .dicom import DicomHeader, is_ignored_name
from .errors import InputError

#: A file changed this recently (seconds) may still be being written ...
RECENT_S = 5.0
#: ... so the folder is looked at again after this long (seconds) to see whether it is.
SETTLE_S = 0.5
#: File name endings that are never DICOM images (lower case).
NOT_DICOM_SUFFIXES = (
    ".nii", ".gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".json", ".csv", ".txt", ".xml",
    ".png", ".jpg", ".jpeg", ".pdf", ".html", ".zip", ".jsonl", ".lock",
)
RETRY = ("Copy the whole series again (or wait until the copy has finished), then run again "
         "with --resume: this scan will be retried.")


class IncompleteSeriesError(InputError):
    """The series is partly copied or still being written: try again later."""


def check_complete(headers: Sequence[DicomHeader], label: str) -> None:
    """Raise ``IncompleteSeriesError`` when the series is partly copied (module docstring)."""
    folders = sorted({Path(h.path).parent for h in headers})
    for why in (_count_problem(headers), _numbering_problem(headers),
                _empty_neighbour(folders), _still_written(folders)):
        if why:
            raise IncompleteSeriesError(f"{label}: the series looks partly copied: {why}. "
                                        f"{RETRY}")


def _count_problem(headers: Sequence[DicomHeader]) -> str:
    counts = {h.images_in_acquisition for h in headers}
    if len(counts) != 1 or None in counts or len(headers) == 1:
        return ""
    (count,) = counts
    if count is not None and count > len(headers):
        return (f"its headers say the acquisition made {count} images "
                f"(ImagesInAcquisition) but {len(headers)} are here")
    return ""


def _numbering_problem(headers: Sequence[DicomHeader]) -> str:
    numbers = [h.instance_number for h in headers]
    if len(headers) < 2 or any(n is None for n in numbers) or any(
            h.position is None or h.orientation is None for h in headers):
        return ""
    orientation = np.asarray(headers[0].orientation, float)
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.array([np.dot(normal, h.position) for h in headers])  # type: ignore[arg-type]
    ordered = np.asarray(numbers, dtype=np.int64)[np.argsort(along, kind="stable")]
    steps = np.diff(ordered)
    consecutive = bool(np.all(steps == 1) or np.all(steps == -1))
    first = int(ordered.min())
    if consecutive and first > 2:
        return (f"its InstanceNumbers run from {first} to {int(ordered.max())}, so images "
                f"1 to {first - 1} are not here")
    return ""


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as listing:
            return [e for e in listing if e.is_file() and not is_ignored_name(e.name)
                    and not e.name.startswith(".")]
    except OSError:
        return []


def _empty_neighbour(folders: Sequence[Path]) -> str:
    for folder in folders:
        empty = sorted(e.name for e in _entries(folder) if e.stat().st_size == 0
                       and not e.name.lower().endswith(NOT_DICOM_SUFFIXES))
        if empty:
            return (f"{len(empty)} file(s) beside it are empty (0 bytes, first: {empty[0]}), "
                    "as an interrupted copy leaves them")
    return ""


def _snapshot(folders: Sequence[Path]) -> dict[str, tuple[int, int]]:
    out = {}
    for folder in folders:
        for entry in _entries(folder):
            info = entry.stat()
            out[entry.path] = (info.st_size, info.st_mtime_ns)
    return out


def _still_written(folders: Sequence[Path], now: Optional[float] = None) -> str:
    before = _snapshot(folders)
    newest = max((m for _, m in before.values()), default=0) / 1e9
    if (now if now is not None else time.time()) - newest > RECENT_S:
        return ""
    time.sleep(SETTLE_S)
    if _snapshot(folders) != before:
        return "files in its folder are still being written"
    return ""
