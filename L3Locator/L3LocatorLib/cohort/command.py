"""The cohort options of ``l3locator locate`` and the row sources they plug into the batch loop.

``--series best|all`` (choose series per study from DICOM headers), ``--cluster
local|tcp://host:port`` (run on Dask), ``--export-slices DIR`` (+ ``--neighbours N``) and
``--patient-ids`` route a run through ``run_cohort``: the scans come from
``tasks.tasks_for_inputs``; the rows come from ``serial_rows`` (this process, reading ahead
in threads) or ``dask_runner.dask_rows``; ``batch.run_batch`` keeps resume, the one results
file, the counts and the progress bar.
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from ..batch import EXIT_STOPPED, EXIT_USAGE, BatchSummary, find_batch_scans, run_batch
from ..composition.cohort import composition_options
from ..composition.columns import COLUMNS
from ..errors import L3LocatorError
from ..inputs import ScanInput
from ..results import ResultsFile
from ..volume import GB
from .deps import require_dask
from .tasks import (
    SERIES_MODES,
    ScanTask,
    TaskOptions,
    error_row,
    read_task,
    row_fields,
    run_task,
    tasks_for_inputs,
    tasks_for_scans,
)

log = logging.getLogger(__name__)

Row = dict[str, Any]


def add_cohort_arguments(parser: argparse.ArgumentParser) -> None:
    """The cohort options (all optional; without them ``locate`` runs as before)."""
    group = parser.add_argument_group(
        "cohort", "hospital exports and clusters (needs: pip install 'l3locator[cohort]')")
    group.add_argument("--series", choices=SERIES_MODES,
                       help="read DICOM headers and group by study: 'best' gives one row per "
                            "study with the series that suits L3 and why; 'all' one row per "
                            "series (unusable ones skipped with the reason). Without it every "
                            "series found is located")
    group.add_argument("--cluster",
                       help="run on Dask: 'local' (a cluster of --workers processes on this "
                            "machine) or a scheduler address such as tcp://host:8786")
    group.add_argument("--export-slices", type=Path, metavar="DIR",
                       help="write the L3 slice of every scan found as NIfTI, DICOM and PNG")
    group.add_argument("--neighbours", type=int, default=0, metavar="N",
                       help="with --export-slices: also N slices on each side (default 0)")
    group.add_argument("--patient-ids", action="store_true",
                       help="with --series: add patient ID and name, accession number and "
                            "study date to the rows (left out by default)")


def cohort_requested(args: argparse.Namespace) -> bool:
    return bool(args.series or args.cluster or args.export_slices or args.patient_ids)


def cohort_usage_problem(args: argparse.Namespace) -> str:
    """Why the cohort options cannot work together, or ""."""
    if args.neighbours < 0:
        return "--neighbours must be 0 or more"
    if args.neighbours and not args.export_slices:
        return "--neighbours needs --export-slices"
    if args.patient_ids and not args.series:
        return "--patient-ids needs --series (identifiers come from the DICOM headers)"
    if args.cluster and args.cluster != "local" and "://" not in args.cluster:
        return "--cluster must be 'local' or a scheduler address such as tcp://host:8786"
    return ""


def serial_rows(tasks: Sequence[ScanTask], options: TaskOptions,
                read_ahead: int = 1) -> Iterator[Row]:
    """Rows in this process, in order; ``read_ahead`` scans are read in threads while the
    model runs (the same overlap as the batch loop's own)."""
    readable = [t for t in tasks if not t.scan.problem]
    with ThreadPoolExecutor(max_workers=max(1, read_ahead)) as pool:
        pending: dict[tuple[str, str], Future[Any]] = {}
        queue = iter(readable)

        def fill() -> None:
            while len(pending) < read_ahead:
                task = next(queue, None)
                if task is None:
                    return
                pending[task.key] = pool.submit(_timed_read, task, options.max_bytes)

        for task in tasks:
            if task.scan.problem:
                yield run_task(task, options)
                continue
            fill()
            future = pending.pop(task.key)
            fill()
            try:
                volume, seconds = future.result()
            except Exception as error:  # reading failed: this scan's error row
                if not isinstance(error, L3LocatorError):
                    log.exception("Unexpected error reading %s", task.scan.path)
                yield error_row(task, error)
                continue
            yield run_task(task, options, volume=volume, read_s=seconds)
            del volume


def _timed_read(task: ScanTask, max_bytes: float) -> tuple[Any, float]:
    import time

    start = time.perf_counter()
    volume = read_task(task, max_bytes)
    return volume, time.perf_counter() - start


def _row_source(tasks: list[ScanTask], options: TaskOptions, session: Any,
                read_ahead: int) -> Callable[[list[ScanInput]], Iterator[Row]]:
    by_key = {task.key: task for task in tasks}

    def made(chosen: list[ScanTask]) -> Iterator[Row]:
        if session is None:
            yield from serial_rows(chosen, options, read_ahead)
            return
        from .dask_runner import dask_rows

        runnable = [t for t in chosen if not t.scan.problem]
        for task in chosen:  # nothing to read: answered here, not on the cluster
            if task.scan.problem:
                yield run_task(task, options)
        yield from dask_rows(session, runnable, run_task, options, error_row=error_row)

    def rows(todo: list[ScanInput]) -> Iterator[Row]:
        # --composition: every row has its columns, empty where nothing was measured
        # (skipped and unreadable series too), on stdout as in the results file.
        empty = COLUMNS if options.composition is not None else ()
        for row in made([by_key[scan.key] for scan in todo]):
            yield {**row, **{name: None for name in empty if name not in row}}

    return rows


def run_cohort(args: argparse.Namespace, on_row: Callable[[Row], None]) -> tuple[int, str]:
    """``locate`` with the cohort options: (exit code, summary line)."""
    options = TaskOptions(
        model=args.model, device=args.device, views=args.views, max_bytes=args.max_gb * GB,
        export_dir=str(args.export_slices) if args.export_slices else None,
        neighbours=args.neighbours, qa_dir=str(args.qa_dir) if args.qa_dir else None,
        composition=composition_options(args),
    )
    try:
        if args.cluster:  # say what to install before anything is read or written
            require_dask()
        if args.series:
            tasks = tasks_for_inputs(args.inputs, args.series, args.patient_ids)
        else:
            tasks = tasks_for_scans(find_batch_scans(args.inputs))
    except L3LocatorError as error:  # e.g. pydicom missing
        return EXIT_USAGE, str(error)
    results: Optional[ResultsFile] = None
    session = None
    try:
        if args.cluster:  # first: a scheduler that never answers leaves no results file
            from .dask_runner import ClusterOptions, DaskSession

            session = DaskSession(ClusterOptions(address=args.cluster, workers=args.workers))
        if args.output is not None:
            results = ResultsFile(args.output, resume=args.resume,
                                  fields=row_fields(args.patient_ids, args.composition))
        if results is not None and all(t.key in results.done for t in tasks):
            return 0, f"No scans to process: all {len(tasks)} are done in {args.output}."
        summary: BatchSummary = run_batch(
            [t.scan for t in tasks], _never_called, results=results, on_row=on_row,
            row_source=_row_source(tasks, options, session, args.workers),
        )
    except L3LocatorError as error:
        return EXIT_USAGE, str(error)
    except KeyboardInterrupt:
        where = f"are in {args.output}; add --resume to continue" if results else "were printed"
        return EXIT_STOPPED, f"Interrupted. The finished rows {where}."
    finally:
        if session is not None:
            session.close()
        if results is not None:
            results.close()
    return summary.exit_code, summary.line()


def _never_called(scan: ScanInput, data: Any) -> Any:  # pragma: no cover - row_source is set
    raise AssertionError("the cohort's row source makes every row")
