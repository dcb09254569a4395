"""The one batch loop: scans in, one results row per scan out, whatever goes wrong.

Used by the ``l3locator locate`` command (volumes read with SimpleITK, in worker threads
ahead of the model) and by Slicer's headless ``Scripts/locate_l3.py`` (volumes loaded into
the MRML scene on the main thread). Both pass their own per-scan callable; the loop owns
everything else: skipping finished scans on resume, error rows for inputs that cannot be
read, read-ahead under a memory budget, QA pictures with unique names, the results file,
progress and the summary.

API::

    scans = find_batch_scans(["/data/cohort", "ct.nii.gz"])  # inputs.find_scans, minus
                                                              # the batch's own outputs
    with ResultsFile("results.csv", resume=True) as results:  # results.ResultsFile
        summary = run_batch(
            scans,
            locate_scan,            # (ScanInput, data) -> L3Result; raise to fail this scan
            results=results,        # optional
            read_scan=read_input,   # optional (ScanInput) -> data, run ahead in threads;
                                    #   without it, data is None and all runs on this thread
            workers=2,              # reads in flight at most
            memory_budget=4 * GB,   # bytes of scans read ahead + the one being located
            qa_dir=Path("qa"),      # optional: a QA picture per found/not-found scan
            on_row=print_row,       # optional: called with every row (dict) as it is made
        )
    sys.exit(summary.exit_code)

``locate_scan`` gets the ``ScanInput`` (``path``, ``files`` and ``series_uid`` for a DICOM
series, ``title``, ``stem``) and what ``read_scan`` returned (or None). A scan whose
``problem`` is set (missing, empty folder, unreadable file) gets an error row without either
callable being called. Any exception from either callable becomes that scan's error row
(``report.error_message``: our errors verbatim, anything else named as a bug) and the batch
goes on; ``KeyboardInterrupt`` stops it (finished rows are already safe on disk).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Iterable, Optional, Sequence, Union

from .errors import L3LocatorError
from .inputs import ScanInput, find_scans, read_input, scan_bytes
from .locate import VIEW_CHOICES
from .outputs import add_reason, is_own_output
from .qa import write_scan_qa
from .report import result_row
from .result import L3Result
from .results import RESULT_SUFFIXES, ResultsFile
from .volume import GB, MAX_SCAN_BYTES

log = logging.getLogger(__name__)

#: Exit statuses of both batch front ends: no scan failed; some did; bad usage (options,
#: results file, missing packages); the batch stopped (interrupted, or a bug).
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
#: ``--device`` choices ("gpu:N" is accepted by ``network.resolve_device`` too).
DEVICE_CHOICES = ("auto", "cpu", "gpu")

LocateScan = Callable[[ScanInput, Any], L3Result]
ReadScan = Callable[[ScanInput], Any]
RowCallback = Callable[[dict[str, Any]], None]
RowSource = Callable[[list[ScanInput]], Iterable[dict[str, Any]]]


@dataclass
class BatchSummary:
    """What a batch did: rows made and how they ended."""

    total: int = 0  #: scans given
    skipped: int = 0  #: already done in the results file (resume)
    counts: dict[str, int] = field(
        default_factory=lambda: {"ok": 0, "not_found": 0, "error": 0, "review": 0})

    @property
    def processed(self) -> int:
        return self.counts["ok"] + self.counts["not_found"] + self.counts["error"]

    @property
    def exit_code(self) -> int:
        """``EXIT_SOME_FAILED`` when any scan errored, else ``EXIT_OK``."""
        return EXIT_SOME_FAILED if self.counts["error"] else EXIT_OK

    def line(self) -> str:
        """The one-line summary for the end of a run."""
        c = self.counts
        text = (f"{self.processed} scan(s): {c['ok']} with L3 ({c['review']} to check: see "
                f"'review'), {c['not_found']} without, {c['error']} failed (see 'message').")
        if c.get("skipped"):
            text += f" {c['skipped']} skipped (no usable CT series: see 'message')."
        if self.skipped:
            text += f" {self.skipped} already done before (resume)."
        return text


def find_batch_scans(inputs: Iterable[Union[str, os.PathLike[str]]]) -> list[ScanInput]:
    """The scans of what the user named (``inputs.find_scans``), without the batch's own
    outputs found inside a named folder (exported slices, QA pictures:
    ``outputs.is_own_output``): a run that writes into its input tree never reads them back
    as new scans, on resume or later. A file the user named is always kept; a named folder
    that holds nothing but outputs gets an error row saying so."""
    inputs = list(inputs)
    scans = find_scans(inputs)
    roots = [Path(os.path.realpath(path)) for path in inputs]
    kept: list[ScanInput] = []
    emptied: set[Path] = set()
    for scan in scans:
        holding = [root for root in roots if root == scan.path or root in scan.path.parents]
        if holding and all(is_own_output(scan.path, root) for root in holding):
            emptied.update(holding)
        else:
            kept.append(scan)
    for root in sorted(emptied):
        if not any(root == s.path or root in s.path.parents for s in kept):
            kept.append(ScanInput(root, problem=(
                f"{root}: holds only files L3 Locator wrote (exported L3 slices, QA "
                "pictures), which are never read as scans. Point to the folder with the CT "
                "scans.")))
    return kept


def run_batch(
    scans: Sequence[ScanInput],
    locate_scan: LocateScan,
    *,
    results: Optional[ResultsFile] = None,
    read_scan: Optional[ReadScan] = None,
    workers: int = 1,
    memory_budget: float = MAX_SCAN_BYTES,
    qa_dir: Optional[Path] = None,
    on_row: Optional[RowCallback] = None,
    progress: bool = True,
    row_source: Optional[RowSource] = None,
) -> BatchSummary:
    """Locate L3 in every scan; one row each, in order (see the module docstring).

    ``row_source``, when given, makes the rows instead of this loop (e.g. on a Dask
    cluster, ``cohort``): it gets the scans still to do and yields exactly one row per
    scan, in any order; ``locate_scan``, ``read_scan`` and ``qa_dir`` are then unused.
    Resume, the results file, the counts and the progress bar stay here.
    """
    if workers < 1:
        raise ValueError("workers must be 1 or more")
    summary = BatchSummary(total=len(scans))
    todo = list(scans)
    if results is not None and results.done:
        todo = [scan for scan in scans if scan.key not in results.done]
        summary.skipped = len(scans) - len(todo)
        if summary.skipped:
            log.warning("Resuming: %d of %d scans already done.", summary.skipped, len(scans))
    bar = _progress(len(todo)) if progress else _NoProgress()
    reader = _ReadAhead(todo if row_source is None else [], read_scan, workers, memory_budget)
    rows = (row_source(todo) if row_source is not None
            else (_one_row(scan, reader, locate_scan, qa_dir) for scan in todo))
    try:
        for row in rows:
            summary.counts[row["status"]] = summary.counts.get(row["status"], 0) + 1
            summary.counts["review"] += bool(row.get("needs_review"))
            if results is not None:
                results.write(row)
            if on_row is not None:
                on_row(row)
            bar.update(1)
    finally:
        reader.close()
        bar.close()
    return summary


def _one_row(scan: ScanInput, reader: _ReadAhead, locate_scan: LocateScan,
             qa_dir: Optional[Path]) -> dict[str, Any]:
    if scan.problem:
        reader.skip(scan)
        return result_row(str(scan.path), error=scan.problem, series=scan.series_uid)
    try:
        data, read_s = reader.take(scan)
        result = locate_scan(scan, data)
        if read_s is not None:
            result.timings_s = {"read": read_s, **result.timings_s}
    except Exception as error:  # one bad scan must not stop the batch
        if not isinstance(error, L3LocatorError):
            log.exception("Unexpected error on %s", scan.path)
        return result_row(str(scan.path), error=error, series=scan.series_uid)
    finally:
        reader.done(scan)
    qa_png = why = ""
    if qa_dir is not None and result.evidence is not None:
        qa_png, why = write_scan_qa(result, qa_dir, scan.stem, scan.key, scan.title)
    return add_reason(result_row(str(scan.path), result, qa_png=qa_png, series=scan.series_uid),
                      why)


class _ReadAhead:
    """Runs ``read_scan`` in worker threads ahead of the loop: at most ``workers`` reads in
    flight, and the scans read ahead plus the one being located within ``budget`` bytes
    (from their headers; at least one scan is always allowed)."""

    def __init__(self, scans: Sequence[ScanInput], read_scan: Optional[ReadScan],
                 workers: int, budget: float) -> None:
        self.queue: Deque[ScanInput] = deque(s for s in scans if not s.problem)
        self.read_scan = read_scan
        self.workers = workers
        self.budget = budget
        self.pending: dict[tuple[str, str], tuple[Future[Any], int]] = {}
        self.current = 0
        self.pool = ThreadPoolExecutor(max_workers=workers) if read_scan is not None else None

    def _fill(self) -> None:
        while self.pool is not None and self.queue and len(self.pending) < self.workers:
            scan = self.queue[0]
            cost = scan_bytes(scan)
            in_memory = self.current + sum(c for _, c in self.pending.values())
            if (self.pending or self.current) and in_memory + cost > self.budget:
                return
            self.queue.popleft()
            self.pending[scan.key] = (self.pool.submit(_timed, self.read_scan, scan), cost)

    def skip(self, scan: ScanInput) -> None:
        self._fill()

    def take(self, scan: ScanInput) -> tuple[Any, Optional[float]]:
        """What ``read_scan`` returned for this scan, and the seconds it took."""
        if self.pool is None:
            return None, None
        self._fill()
        if scan.key not in self.pending:  # not yet submitted (budget): read it now
            if self.queue and self.queue[0].key == scan.key:
                self.queue.popleft()
            self.current = scan_bytes(scan)
            return _timed(self.read_scan, scan)
        future, self.current = self.pending.pop(scan.key)
        self._fill()
        return future.result()

    def done(self, scan: ScanInput) -> None:
        self.current = 0
        self._fill()

    def close(self) -> None:
        if self.pool is not None:
            for future, _ in self.pending.values():
                future.cancel()
            self.pool.shutdown(wait=True)


def _timed(read_scan: Optional[ReadScan], scan: ScanInput) -> tuple[Any, float]:
    start = time.perf_counter()
    data = read_scan(scan) if read_scan is not None else None
    return data, time.perf_counter() - start


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int) -> Any:
    """A progress bar on stderr for batches of more than one scan; none without tqdm."""
    if total <= 1:
        return _NoProgress()
    try:  # lazy: only batches draw it
        from tqdm import tqdm
    except ImportError:  # never a hard dependency: no Slicer release bundles tqdm
        log.debug("tqdm is not installed: no progress bar.")
        return _NoProgress()
    return tqdm(total=total, unit="scan", file=sys.stderr, desc="Locating L3")


# ------------------------------------------------------------------ shared options


def add_batch_arguments(parser: argparse.ArgumentParser, *, read_ahead: bool = True) -> None:
    """The options both batch front ends share (model, device, views, output, QA, resume,
    memory; ``--workers`` only where volumes are read ahead)."""
    parser.add_argument("--model", help="model metadata JSON (default: the shipped model)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--views", choices=VIEW_CHOICES, default="both",
                        help="which view answers (default: both, fused)")
    parser.add_argument("--output", type=Path,
                        help="results file, .csv or .jsonl, written as it goes; an existing "
                             "file is only continued with --resume, never overwritten")
    parser.add_argument("--qa-dir", type=Path, help="write a QA picture (PNG) per scan here")
    parser.add_argument("--resume", action="store_true",
                        help="continue --output: skip scans done there, retry failed ones")
    parser.add_argument("--max-gb", type=float, default=MAX_SCAN_BYTES / GB,
                        help="memory one scan (and the scans read ahead) may take, in GB; "
                             "larger scans are refused before reading (default %(default)g)")
    if read_ahead:
        parser.add_argument("--workers", type=int, default=1,
                            help="scans read ahead in parallel while the model runs "
                                 "(default 1; all within --max-gb)")


def usage_problem(args: argparse.Namespace) -> str:
    """Why the shared options cannot work together, or "" (print it, exit ``EXIT_USAGE``)."""
    if args.resume and args.output is None:
        return "--resume needs --output (the results file to continue)"
    if args.output is not None and args.output.suffix.lower() not in RESULT_SUFFIXES:
        return "--output must end in .csv or .jsonl"
    if getattr(args, "workers", 1) < 1:
        return "--workers must be 1 or more"
    if not args.max_gb > 0:
        return "--max-gb must be a positive number of gigabytes"
    return ""


def read_scan_volume(max_bytes: float) -> ReadScan:
    """``read_scan`` for the command: the scan as a ``Volume`` (``inputs.read_input``)."""

    def read(scan: ScanInput) -> Any:
        return read_input(scan, max_bytes=max_bytes)

    return read
