"""The results file of a batch (``.csv`` or ``.jsonl``): one row per scan, never lost.

- Rows are appended, one complete line per write, flushed and synced: an interruption at
  any moment (kill -9, power) leaves every finished row in place and at most one cut last
  line, which ``--resume`` drops and redoes. Bookkeeping is linear in the number of rows.
- The file is opened (and so checked writable) and locked before the first scan; a second
  process writing the same file is refused while the first one runs.
- An existing file is never overwritten: without ``resume`` it is refused; with ``resume``
  it must be a results file this tool wrote (same columns / one JSON row per line),
  otherwise it is refused untouched.
- On resume, rows with status ``ok`` or ``not_found`` count as done; error rows and cut
  rows are dropped once (the file is rewritten atomically, keeping its permissions and any
  symbolic link to it), and those inputs are tried again.
- Rows are keyed by ``(input, series)``: the input's resolved path and the DICOM series.
  Keys survive any file name: in a CSV they are kept exactly (a line break in a name stays
  inside the quoted cell), and names that are not valid UTF-8 are written byte for byte.
- CSV cells a spreadsheet would run as a formula (OWASP: a leading ``=``, ``+``, ``-``,
  ``@``, tab or carriage return; numbers excepted) get a ``'`` in front, and so does a cell
  that starts with ``'``, so reading the file back removes exactly one; the JSONL keeps the
  text as it is. Other CSV cells hold their text on one line (line breaks as spaces).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .errors import L3LocatorError
from .report import ROW_FIELDS
from .result import STATUS_NOT_FOUND, STATUS_OK

#: Results file endings (lower case).
RESULT_SUFFIXES = (".csv", ".jsonl")
#: Statuses that finish an input: resuming skips these and retries the rest.
DONE_STATUSES = (STATUS_OK, STATUS_NOT_FOUND)
#: The columns that identify a row's scan (``row_key``): kept exactly in a CSV.
KEY_FIELDS = ("input", "series")
#: First characters that make a spreadsheet run a cell (OWASP's CSV injection list), and
#: the mark put in front of such a cell in a CSV (a cell starting with the mark gets one
#: too, so that ``read_rows`` and resuming remove exactly one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"
#: A number as text ("-12.5", "+3", "1e-5"): a spreadsheet reads it as a number, not a
#: formula, so it is left as it is.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: Results files are UTF-8; file names that are not (bytes a file system allows) are kept
#: byte for byte, so their rows resume.
ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}


class OutputError(L3LocatorError):
    """The results file cannot be used (exists, not ours, locked, not writable)."""


def row_key(row: dict[str, Any]) -> tuple[str, str]:
    """The identity of a row's scan: (input, series)."""
    return (str(row.get("input") or ""), str(row.get("series") or ""))


class ResultsFile:
    """A results file open for appending rows; use as a context manager (releases the lock).

    Args:
        path: ``.csv`` or ``.jsonl``. A symbolic link is followed (the link stays a link).
        resume: continue an existing file of ours; without it an existing non-empty file is
            refused.
        fields: the columns, in order (``report.ROW_FIELDS`` plus any a front end adds,
            e.g. the cohort's series columns); resuming a file with other columns is refused.

    Raises ``OutputError`` (a message for the user) when the file cannot be used.
    ``done`` holds the keys (``row_key``) of the inputs already finished.
    """

    def __init__(self, path: Union[str, os.PathLike[str]], *, resume: bool = False,
                 fields: Sequence[str] = ROW_FIELDS) -> None:
        self.path = Path(path)
        self.fields = tuple(fields)
        suffix = self.path.suffix.lower()
        if suffix not in RESULT_SUFFIXES:
            raise OutputError(f"{self.path}: the results file must end in .csv or .jsonl.")
        self.jsonl = suffix == ".jsonl"
        # Write through a symbolic link to its target, so the link survives.
        self.target = Path(os.path.realpath(self.path))
        self.done: set[tuple[str, str]] = set()
        self._stream: Optional[io.TextIOWrapper] = None
        self._lock = _Lock(self.target)
        try:
            self._open(resume)
        except BaseException:
            self._lock.release()
            raise

    # ---------------------------------------------------------------- opening

    def _open(self, resume: bool) -> None:
        target = self.target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._unwritable(error) from None
        self._lock.acquire()
        exists = target.exists() and target.stat().st_size > 0
        if exists and not resume:
            raise OutputError(
                f"{self.path} already exists. Nothing was changed. To continue that batch add "
                "--resume; to start a new one, choose another --output file.")
        if exists:
            text = self._read_text()
            rows, complete = self._parse(text)
            keep = [row for row in rows if row.get("status") in DONE_STATUSES]
            self.done = {row_key(row) for row in keep}
            if len(keep) != len(rows) or not complete:
                self._rewrite(keep)
        try:
            self._stream = open(target, "a", newline="", **ENCODING)
        except OSError as error:
            raise self._unwritable(error) from None
        if self._stream.tell() == 0 and not self.jsonl:
            try:
                self._write(_csv_line(self.fields))
            except OSError as error:  # a full disk: leave no empty or cut file behind
                self._close_stream()
                if not exists:
                    target.unlink(missing_ok=True)
                raise self._unwritable(error) from None

    def _unwritable(self, error: OSError) -> OutputError:
        return OutputError(
            f"{self.path}: the results file cannot be written ({error.strerror or error}). "
            "Choose a folder you may write to, or free some disk space.")

    def _read_text(self) -> str:
        try:
            return _read_text(self.target)
        except (OSError, UnicodeDecodeError) as error:
            raise OutputError(
                f"{self.path} cannot be read to resume ({error}). It was left unchanged.") from None

    def _not_ours(self, why: str) -> OutputError:
        return OutputError(
            f"{self.path} is not a results file written by L3 Locator ({why}), so it is not "
            "resumed and was left unchanged. Choose another --output file.")

    def _parse(self, text: str) -> tuple[list[dict[str, Any]], bool]:
        """Rows of an existing file of ours, and whether its last row is complete.

        A last row without its newline was cut by an interruption: dropped (redone).
        Anything else that is not one of our rows means the file is not ours.
        """
        records, cut = _records(text, self.jsonl)
        if self.jsonl:
            rows = []
            for number, line in enumerate(records, start=1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise self._not_ours(f"line {number} is not JSON") from None
                if not isinstance(row, dict) or "input" not in row or "status" not in row:
                    raise self._not_ours(f"line {number} is not a results row")
                rows.append(row)
            return rows, not cut
        if not records:
            raise self._not_ours("it has no header line")
        if tuple(_csv_values(records[0])) != self.fields:
            raise self._not_ours("its columns differ")
        rows = []
        for number, record in enumerate(records[1:], start=2):
            values = _csv_values(record)
            if len(values) != len(self.fields):
                raise self._not_ours(f"row {number} has {len(values)} columns")
            rows.append(dict(zip(self.fields, values)))
        return rows, not cut

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file by ``rows`` atomically, keeping its permissions."""
        target = self.target
        mode = target.stat().st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", newline="", **ENCODING) as stream:
                if not self.jsonl:
                    stream.write(_csv_line(self.fields))
                for row in rows:
                    stream.write(self._render(row))
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError as error:
            Path(tmp).unlink(missing_ok=True)
            raise self._unwritable(error) from None

    # ---------------------------------------------------------------- writing

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (one line, synced to disk)."""
        self._append(self._render(row))
        if row.get("status") in DONE_STATUSES:
            self.done.add(row_key(row))

    def _render(self, row: dict[str, Any]) -> str:
        if self.jsonl:
            return json.dumps({name: row.get(name) for name in self.fields}) + "\n"
        return _csv_line([_csv_cell(name, row.get(name)) for name in self.fields])

    def _append(self, text: str) -> None:
        if self._stream is None:
            raise OutputError(f"{self.path} is closed.")
        try:
            self._write(text)
        except OSError as error:  # a full disk, a lost network share
            self._close_stream()
            raise OutputError(
                f"{self.path}: the results file could not be written "
                f"({error.strerror or error}). The rows finished before are in it; free some "
                "disk space (or choose another folder), then run the same command with "
                "--resume.") from None

    def _write(self, text: str) -> None:
        assert self._stream is not None
        self._stream.write(text)
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def _close_stream(self) -> None:
        """Close the stream; a row that could not be written stays cut (resume redoes it)."""
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass  # the write that failed already said why
            self._stream = None

    def close(self) -> None:
        self._close_stream()
        self._lock.release()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rows(path: Union[str, os.PathLike[str]]) -> list[dict[str, Any]]:
    """The rows of a results file (CSV cells as text, as written before the ``'`` mark; a
    cut last row left out)."""
    path = Path(path)
    jsonl = path.suffix.lower() == ".jsonl"
    records, _ = _records(_read_text(path), jsonl)
    if jsonl:
        return [json.loads(line) for line in records]
    if not records:
        return []
    header = _csv_values(records[0])
    return [dict(zip(header, _csv_values(record))) for record in records[1:]]


def _read_text(path: Path) -> str:
    """The file's text as written: no newline translation (a ``\\r`` in a file name stays),
    without the byte-order mark a spreadsheet program adds when it saves the file again."""
    return path.read_bytes().decode(**ENCODING).removeprefix("\ufeff")


def _records(text: str, jsonl: bool) -> tuple[list[str], str]:
    """The complete rows of a results file's text (the header first, for a CSV) and what
    follows the last newline that ends one: "" when the file is complete, else a row cut by
    an interruption. A CSV row ends at a newline outside quotes (one inside a quoted cell
    belongs to a file name)."""
    if jsonl:  # JSON escapes every line break inside a row
        *lines, cut = text.split("\n")
        return lines, cut
    records: list[str] = []
    start = position = 0
    while True:
        end = text.find("\n", position)
        if end < 0:
            return records, text[start:]
        if text.count('"', start, end) % 2 == 0:  # quotes balanced: the row ends here
            records.append(text[start:end + 1])
            start = end + 1
        position = end + 1


def _csv_values(record: str) -> list[str]:
    """The cells of one CSV row, each without the mark ``_csv_cell`` put in front."""
    values = next(csv.reader([record]), [])
    return [value[len(TEXT_MARK):] if value.startswith(TEXT_MARK) else value
            for value in values]


def _csv_line(values: Any) -> str:
    """One CSV row ending in a newline. The writer is told rows end in CR LF so that it
    quotes every cell holding either (with LF alone it leaves a lone CR unquoted)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()[:-2] + "\n"


def _csv_cell(name: str, value: Any) -> Any:
    """One CSV cell: lists as JSON, None as empty, text on one line (line breaks as spaces)
    except in the key columns, and the mark in front of text a spreadsheet would run."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if not isinstance(value, str):
        return value
    if name not in KEY_FIELDS:
        value = " ".join(value.splitlines())
    if value.startswith((*FORMULA_STARTS, TEXT_MARK)) and not _NUMBER.fullmatch(value):
        return TEXT_MARK + value
    return value


class _Lock:
    """An exclusive lock on ``.<results>.lock`` beside the results file, held while a batch
    writes. The operating system releases it when the process dies, so a killed batch never
    blocks the next one. The (empty) lock file is left in place: removing it would let two
    processes lock two different files."""

    def __init__(self, target: Path) -> None:
        self.results = target
        self.path = target.with_name(f".{target.name}.lock")
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputError(
                f"{self.results}: the results file cannot be written "
                f"({error.strerror or error}). Choose a folder you may write to.") from None
        if not _try_lock(fd):
            try:
                holder = os.read(fd, 64).decode("ascii", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            who = f" (process {holder})" if holder else ""
            raise OutputError(
                f"{self.results} is being written by another L3 Locator batch"
                f"{who}. Wait for it to finish, or choose another --output file.")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode("ascii"))
        except OSError as error:  # a full disk
            os.close(fd)
            raise OutputError(
                f"{self.results}: the results file cannot be written "
                f"({error.strerror or error}). Free some disk space or choose another "
                "folder.") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing releases the lock; the empty file stays (no race)
        self._fd = None


def _try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on an open file; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
