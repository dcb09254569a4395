"""Units of cohort work: one ``ScanTask`` (a scan of the batch loop plus its cohort columns)
-> one results row.

``run_task`` is what the cohort's serial row source and every Dask worker call; it never
raises (a bad scan becomes an error row) and keeps the loaded model per process, so a
worker loads it once however many scans it runs. Rows have the batch loop's columns
(``report.ROW_FIELDS``: ``input`` the resolved folder or file, ``series`` the DICOM series
UID) plus ``COHORT_FIELDS`` (and ``IDENTIFIER_FIELDS`` only when asked for).
"""

from __future__ import annotations

import logging
import os
import time
from argparse import Namespace
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..dicom_complete import IncompleteSeriesError
from ..errors import InputError, L3LocatorError
from ..inputs import ScanInput, find_scans, read_input
from ..outputs import add_reason, is_own_output, not_written, output_stem
from ..qa import write_scan_qa
from ..report import ROW_FIELDS, result_row
from ..volume import MAX_SCAN_BYTES, Volume, is_volume_file
from .dicom_tree import SeriesInfo, group_by_study, scan_tree
from .series_choice import (
    CHOSEN,
    DEFAULT_POLICY,
    ELIGIBLE,
    SKIPPED,
    SeriesPolicy,
    choose_series,
    preference_key,
    summary_of_others,
)

log = logging.getLogger(__name__)

#: Row status of a series or study that was not run (why: ``message``).
STATUS_SKIPPED = "skipped"
#: Row fields added by cohort runs (after the batch loop's fields).
COHORT_FIELDS = (
    "study_uid", "series_number", "series_description", "n_images", "series_choice",
    "series_reason", "other_series", "exported",
)
#: Row fields that identify the patient; filled only when asked for.
IDENTIFIER_FIELDS = ("patient_id", "patient_name", "accession_number", "study_date")
SERIES_MODES = ("best", "all")


def row_fields(patient_ids: bool = False, composition: bool = False) -> tuple[str, ...]:
    """The columns of a cohort results file (``--composition``: its columns last, as in
    a plain ``locate`` run)."""
    from ..composition.columns import COLUMNS

    return (ROW_FIELDS + COHORT_FIELDS + (IDENTIFIER_FIELDS if patient_ids else ())
            + (COLUMNS if composition else ()))


@dataclass(frozen=True)
class TaskOptions:
    """How every task of a run is processed (the same on every worker)."""

    model: Optional[str] = None  #: model metadata JSON; None: the shipped model
    device: str = "auto"
    views: str = "both"
    max_bytes: float = MAX_SCAN_BYTES  #: larger scans are refused before reading
    export_dir: Optional[str] = None  #: write L3 slices here (see ``slice_export``)
    neighbours: int = 0  #: slices exported on each side of the L3 slice
    qa_dir: Optional[str] = None  #: write a QA picture per scan here
    #: ``--composition`` and its options as (name, value) pairs
    #: (``composition.cohort.composition_options``); None: not measured.
    composition: Optional[tuple[tuple[str, Any], ...]] = None


@dataclass
class ScanTask:
    """One row's worth of work: a scan of the batch loop, the cohort columns of its row,
    and the name prefix of its exported slices. A scan with a ``problem`` is not read:
    its row is an error, or ``skipped`` when ``skip`` (an unusable series or study)."""

    scan: ScanInput
    fields: dict[str, Any] = field(default_factory=dict)
    stem: str = ""
    skip: bool = False
    #: In "best" mode, the study's other usable series, best first: read in turn when the
    #: chosen one cannot be read (``read_task``).
    fallbacks: list[ScanTask] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.scan.key


def tasks_for_scans(scans: Sequence[ScanInput]) -> list[ScanTask]:
    """Tasks for scans found by ``inputs.find_scans`` (every series, no choice)."""
    return [ScanTask(s, {"series_description": s.description or None}, s.stem) for s in scans]


def tasks_for_inputs(
    paths: Sequence[Union[str, os.PathLike[str]]],
    series_mode: str = "best",
    patient_ids: bool = False,
    policy: SeriesPolicy = DEFAULT_POLICY,
) -> list[ScanTask]:
    """Tasks for what the user named: volume files as they are, DICOM under every folder
    grouped by study and series from headers (pydicom), the series chosen per
    ``series_mode`` (see ``tasks_for_tree``). Missing paths become error rows; the batch's
    own outputs found in a named folder are left out (``outputs.is_own_output``)."""
    tasks: list[ScanTask] = []
    folders: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            folders.append(path)
            volume_files = sorted(
                Path(folder) / name for folder, _, names in os.walk(path) for name in names
                if is_volume_file(Path(name)) and not name.startswith(".")
                and not is_own_output(Path(folder) / name, path)
            )
            tasks.extend(tasks_for_scans(find_scans(volume_files)))
        else:
            tasks.extend(tasks_for_scans(find_scans([path])))
    for folder in folders:  # one walk per folder, so an empty one can be named
        found = tasks_for_tree([folder], series_mode, patient_ids, policy)
        resolved = folder.resolve()
        if not found and not any(resolved == t.scan.path or resolved in t.scan.path.parents
                                 for t in tasks):
            found = [ScanTask(ScanInput(folder.resolve(), problem=(
                f"{folder}: no CT found in this folder (no DICOM images, NIfTI, NRRD or MHA "
                "files). Point to the folder that holds the scans.")))]
        tasks.extend(found)
    return tasks


def tasks_for_tree(
    roots: Sequence[Union[str, os.PathLike[str]]],
    series_mode: str = "best",
    patient_ids: bool = False,
    policy: SeriesPolicy = DEFAULT_POLICY,
) -> list[ScanTask]:
    """Tasks for every DICOM study under ``roots`` (headers only are read here).

    ``series_mode`` "best": one task per study (its chosen series, or a skipped row
    saying why no series suits); "all": one task per series, unusable ones skipped with
    their reason. Patient identifiers go into the rows only with ``patient_ids``. The
    batch's own outputs under ``roots`` (``outputs.is_own_output``) are not series.
    """
    if series_mode not in SERIES_MODES:
        raise ValueError(f"series_mode must be one of {SERIES_MODES}, got {series_mode!r}")
    tasks: list[ScanTask] = []
    # The batch's own exported slices (same study UID as their source) are not series of
    # the study: left out before grouping, so they change neither the choice nor the keys.
    series = [s for s in scan_tree(roots)
              if not any(is_own_output(Path(s.folder), Path(root)) for root in roots)]
    for study_series in group_by_study(series).values():
        study_uid = study_series[0].study_uid
        decisions = choose_series(study_series, policy)
        others = summary_of_others(decisions)
        if series_mode == "all":
            tasks.extend(_series_task(d.series, d.choice, d.reason, "", patient_ids,
                                      skip=d.reason if d.choice == SKIPPED else "")
                         for d in decisions)
            continue
        chosen = [d for d in decisions if d.choice == CHOSEN]
        if chosen:
            d = chosen[0]
            task = _series_task(d.series, d.choice, d.reason, others, patient_ids)
            eligible = sorted((e for e in decisions if e.choice == ELIGIBLE),
                              key=lambda e: preference_key(e.series, policy))
            task.fallbacks = [_series_task(e.series, CHOSEN, e.reason, others, patient_ids)
                              for e in eligible]
            tasks.append(task)
            continue
        folder = os.path.commonpath([s.folder for s in study_series])
        problem = f"No series in this study suits finding L3 ({others})."
        task = _series_task(study_series[0], SKIPPED, "no usable series", others, patient_ids,
                            skip=problem)
        # One row for the study: keyed by its folder and UID (no series was chosen).
        task.scan = ScanInput(Path(f"{Path(folder).resolve()}#{study_uid}"), problem=problem)
        task.fields.update(series_number=None, series_description=None, n_images=None)
        tasks.append(task)
    return tasks


def _series_task(series: SeriesInfo, choice: str, reason: str, others: str, patient_ids: bool,
                 skip: str = "") -> ScanTask:
    h = series.first
    fields: dict[str, Any] = {
        "study_uid": series.study_uid,
        "series_number": series.series_number,
        "series_description": series.description,
        "n_images": series.n_images,
        "series_choice": choice,
        "series_reason": "; ".join(filter(None, (reason, series.conflict))),
        "other_series": others or None,
    }
    if patient_ids:
        fields.update(patient_id=h.patient_id, patient_name=h.patient_name,
                      accession_number=h.accession_number, study_date=h.study_date)
    scan = ScanInput(Path(series.folder).resolve(), series_uid=series.row_uid,
                     files=tuple(Path(f).resolve() for f in series.files),
                     description=series.description, problem=skip)
    return ScanTask(scan, fields, f"{series.study_uid}__{series.series_uid}", skip=bool(skip))


def read_task(task: ScanTask, max_bytes: float = MAX_SCAN_BYTES) -> Volume:
    """The task's CT volume (``inputs.read_input``: DICOM geometry from slice positions).

    When the chosen series cannot be read, the study's next best series are tried in turn
    (``ScanTask.fallbacks``); the task then describes the series read, says why in
    ``series_reason``, and keeps its key (so ``--resume`` knows the study is done). A
    series still being copied is not passed over: its error row is retried later.
    """
    try:
        return read_input(task.scan, max_bytes=max_bytes)
    except IncompleteSeriesError:
        raise
    except InputError as error:
        if not task.fallbacks:
            raise
        failed = f"{_label(task)} could not be read ({error})"
        for fallback in task.fallbacks:
            try:
                volume = read_input(fallback.scan, max_bytes=max_bytes)
            except IncompleteSeriesError:
                raise
            except InputError as other:
                failed += f"; {_label(fallback)} neither ({other})"
                continue
            log.warning("%s: %s; the next best series was read instead.", task.scan.path,
                        failed)
            task.fields = {**fallback.fields, "series_reason": (
                f"the best series, {failed}; used the next best: "
                f"{fallback.fields.get('series_reason')}")}
            task.scan = replace(fallback.scan, path=task.scan.path,
                                series_uid=task.scan.series_uid)
            task.stem, task.fallbacks = fallback.stem, []
            return volume
        raise InputError(f"No series of this study could be read: {failed}.") from None


def _label(task: ScanTask) -> str:
    number = task.fields.get("series_number")
    words = " ".join(filter(None, (str(number or ""), task.fields.get("series_description"))))
    return f"series {words or task.scan.series_uid}"


_MODELS: dict[tuple[Optional[str], str], Any] = {}


def cached_model(options: TaskOptions) -> Any:
    """The model for ``options``, loaded once per process (each Dask worker keeps its own)."""
    key = (options.model, options.device)
    if key not in _MODELS:
        from ..network import load_model
        from ..quiet import quiet_libraries

        quiet_libraries()  # before PaddlePaddle is imported (on a Dask worker: first here)

        _MODELS[key] = load_model(options.model, device=options.device)
    return _MODELS[key]


def warm_up(options: TaskOptions) -> None:
    """Load the model in this process now (``Client.run`` on every Dask worker), so the
    first scans do not wait for it; returns nothing (a model cannot travel back)."""
    cached_model(options)


def _row(task: ScanTask, **kwargs: Any) -> dict[str, Any]:
    row = result_row(str(task.scan.path), series=task.scan.series_uid, **kwargs)
    row.update(task.fields)
    row.setdefault("exported", None)
    return row


def skipped_row(task: ScanTask) -> dict[str, Any]:
    """The row of a series or study that is not run (status ``skipped``)."""
    row = _row(task, error=task.scan.problem)
    row["status"] = STATUS_SKIPPED
    return row


def error_row(task: ScanTask, error: Union[BaseException, str]) -> dict[str, Any]:
    """The row of a task that failed (status ``error``, message for the user)."""
    return _row(task, error=error)


def run_task(task: ScanTask, options: TaskOptions,
             volume: Optional[Volume] = None, read_s: Optional[float] = None) -> dict[str, Any]:
    """Read (unless ``volume`` is given), locate, write the QA picture and the L3 slices:
    the task's row. Never raises."""
    if task.skip:
        return skipped_row(task)
    if task.scan.problem:
        return error_row(task, task.scan.problem)
    try:
        if volume is None:
            start = time.perf_counter()
            volume = read_task(task, options.max_bytes)
            read_s = time.perf_counter() - start
        result = _locate_step(options)(task.scan, volume)
        if read_s is not None:
            result.timings_s = {"read": read_s, **result.timings_s}
    except Exception as error:  # one bad scan must not stop the batch
        if not isinstance(error, L3LocatorError):
            log.exception("Unexpected error on %s", task.scan.path)
        return error_row(task, error)
    qa_png = why_no_qa = ""
    if options.qa_dir is not None and result.evidence is not None:
        qa_png, why_no_qa = write_scan_qa(result, options.qa_dir, task.stem, task.key,
                                          task.scan.title)
    row = add_reason(_row(task, result=result, qa_png=qa_png), why_no_qa)
    row["exported"], why_not_exported = _export(task, volume, result, options)
    return add_reason(row, why_not_exported)


def _locate_step(options: TaskOptions) -> Any:
    """locate(scan, volume) -> L3Result; with ``--composition`` followed by the measurement
    (the command's own hook: the same columns, ``comp_error`` when it fails)."""
    from ..composition.cohort import with_composition
    from ..locate import locate

    def locate_scan(scan: ScanInput, volume: Volume) -> Any:
        return locate(volume, model=cached_model(options), device=options.device,
                      views=options.views)

    if options.composition is None:
        return locate_scan
    return with_composition(locate_scan, Namespace(**dict(options.composition),
                                                   qa_dir=options.qa_dir))


def _export(task: ScanTask, volume: Volume, result: Any,
            options: TaskOptions) -> tuple[Optional[str], str]:
    """The scan's L3 slices written (``slice_export``): (their paths, ""), or (None, why
    not) when they cannot be written."""
    if options.export_dir is None or not result.found:
        return None, ""
    from .slice_export import export_slices

    try:
        written = export_slices(volume, result, Path(options.export_dir),
                                output_stem(task.stem, task.key),
                                neighbours=options.neighbours,
                                dicom_source=str(task.scan.files[0]) if task.scan.files else None)
    except Exception as error:  # the row keeps its answer and says why the files are missing
        if not isinstance(error, (OSError, L3LocatorError)):
            log.exception("Unexpected error exporting the L3 slices of %s", task.scan.path)
        else:
            log.warning("Could not export the L3 slices of %s: %s", task.scan.path, error)
        return None, not_written("L3 slice export", options.export_dir, error,
                                 "--export-slices folder")
    return " ".join(str(p) for p in written), ""
