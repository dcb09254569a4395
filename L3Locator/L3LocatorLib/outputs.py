"""The files a batch writes for each scan (QA picture, exported L3 slices): their names, how
they are written, and how the batch tells them from scans.

- Names are unique per scan: the scan's short name plus a hash of its key (resolved path and
  DICOM series), so ``p1/CT`` and ``p2/CT`` never share a file, and the same scan always gets
  the same name (``output_stem``).
- Files are written whole or not at all: through a hidden temporary file beside the target,
  renamed into place once complete (``write_atomically``), so a full disk or a killed process
  never leaves a zero-byte or cut picture under the final name.
- Those names end in a pattern of their own (``OUTPUT_NAME``), so folders the batch wrote
  into, even inside the input tree, are never read back as new scans (``is_own_output``).
- A file that cannot be written leaves its column empty, and the row says why
  (``not_written``).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Any, Callable, Sequence

from .report import error_message

#: Endings of the files written per scan: the exported slab (NIfTI), its DICOM folder and
#: PNG (``cohort.slice_export``), and the QA picture (``qa``).
EXPORT_NIFTI = "_L3.nii.gz"
EXPORT_DICOM = "_L3_dicom"
EXPORT_PNG = "_L3.png"
QA_PNG = "_l3.png"
#: Hex digits of the key's hash in output names (48 bits: two scans of a 100 000-scan cohort
#: with the same short name share a hash with odds of about 1 in 50 000).
HASH_DIGITS = 12
#: Characters of a scan's name kept in output names (with ``--series``: two UIDs).
MAX_STEM = 150
#: A name written by the batch: ``<stem>_<hash>[-n]<ending>`` (``-n`` when a scan's export
#: is written again: exports are never overwritten); temporary files end the same way.
_ENDINGS = "|".join(re.escape(end) for end in (EXPORT_NIFTI, EXPORT_DICOM, EXPORT_PNG, QA_PNG))
OUTPUT_NAME = re.compile(rf"_[0-9a-f]{{{HASH_DIGITS}}}(?:-[0-9]+)?(?:{_ENDINGS})$")


def output_stem(stem: str, key: Sequence[str]) -> str:
    """The name prefix of a scan's output files: ``stem`` plus a short hash of ``key`` (the
    scan's resolved path and series UID), unique per scan and the same on every run.

    The stem keeps letters, digits, ``.`` and ``-`` (anything else, such as spaces, line
    breaks or bytes that are not UTF-8, becomes ``_``; SimpleITK even stops the process on
    the last), not starting with ``.`` and at most ``MAX_STEM`` characters: the hash keeps
    the name unique."""
    safe = re.sub(r"^\.|[^\w.-]", "_", stem)[:MAX_STEM]
    joined = "\0".join(key).encode("utf-8", "surrogateescape")
    return f"{safe}_{hashlib.sha1(joined).hexdigest()[:HASH_DIGITS]}"


def is_own_output(path: Path, below: Path) -> bool:
    """True when ``path``, found while searching the folder ``below``, is (or lies in) a file
    or folder the batch wrote: an exported slice, a QA picture, or one being written. What
    the user named (``below`` itself and its parents) is never counted, so naming an
    exported file runs it."""
    try:
        parts = Path(path).relative_to(below).parts
    except ValueError:  # not below it (reached through a link): not ours to judge
        return False
    return any(OUTPUT_NAME.search(part) for part in parts)


def write_atomically(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(temporary)`` with a hidden file name beside ``path`` that keeps its ending
    (writers choose the format from it), then rename it to ``path``. When writing fails,
    the temporary file is removed and ``path`` is untouched; the error is raised."""
    path = Path(path)
    temporary = path.with_name(f".tmp-{secrets.token_hex(4)}-{path.name}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def not_written(what: str, folder: Any, error: BaseException, option: str) -> str:
    """The row's words for an output that could not be written (its column stays empty):
    what is missing, why, and what to do."""
    if isinstance(error, OSError):
        why = (f" ({error.strerror or error}). Free some disk space or choose another {option}"
               " that you may write to")
    else:  # ours say what to do (e.g. a package to install); anything else is a bug
        why = f": {error_message(error).splitlines()[0].rstrip('.')}"
    return (f"The {what} could not be written in {folder}{why}; the answer above stands. "
            "Run this scan again into a new --output file to make it.")


def add_reason(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """``row`` with ``reason`` (e.g. ``not_written``) added to its ``message``."""
    if reason:
        row["message"] = " ".join(filter(None, (row.get("message"), reason)))
    return row
