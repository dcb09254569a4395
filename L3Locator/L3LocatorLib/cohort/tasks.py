"""Units of cohort work: one ``ScanTask`` (a volume file or one DICOM series) -> one row.

``run_task`` is what a serial loop and every Dask worker call; it never raises (a bad
scan becomes an error row) and keeps the loaded model per process, so a worker loads it
once however many scans it runs.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from ..errors import InputError, L3LocatorError
from ..report import result_row, scan_stem
from ..volume import Volume, read_volume, volume_from_sitk
from .dicom_tree import SeriesInfo, group_by_study, scan_tree
from .series_choice import (
    CHOSEN,
    DEFAULT_POLICY,
    SKIPPED,
    SeriesPolicy,
    choose_series,
    summary_of_others,
)

log = logging.getLogger(__name__)

#: Row status of a series or study that was not run (why: ``message``).
STATUS_SKIPPED = "skipped"
#: Row fields added by cohort runs (after the ordinary result fields).
COHORT_FIELDS = (
    "study_uid", "series_uid", "series_number", "series_description", "n_images",
    "series_choice", "series_reason", "other_series", "exported",
)
#: Row fields that identify the patient; present only when asked for.
IDENTIFIER_FIELDS = ("patient_id", "patient_name", "accession_number", "study_date")
SERIES_MODES = ("best", "all")


@dataclass(frozen=True)
class TaskOptions:
    """How every task of a run is processed (the same on every worker)."""

    model: Optional[str] = None  #: model metadata JSON; None: the shipped model
    device: str = "auto"
    views: str = "both"
    export_dir: Optional[str] = None  #: write L3 slices here (see ``slice_export``)
    neighbours: int = 0  #: slices exported on each side of the L3 slice
    qa_dir: Optional[str] = None  #: write a QA picture per scan here


@dataclass
class ScanTask:
    """One row's worth of work.

    ``key`` is the row's ``input`` (unique; what ``--resume`` matches). ``files`` is one
    image file, or the files of one DICOM series sorted along the slice normal. A task
    with ``skip`` set reads nothing: its row has status ``skipped`` and that message.
    """

    key: str
    files: tuple[str, ...]
    dicom: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    skip: str = ""
    export_stem: str = ""


def tasks_for_files(paths: Iterable[Union[str, os.PathLike[str]]]) -> list[ScanTask]:
    """One task per volume file (NIfTI, NRRD, MHA) or DICOM series folder, as given."""
    return [ScanTask(str(p), (str(p),), export_stem=scan_stem(Path(p))) for p in paths]


def tasks_for_tree(
    roots: Sequence[Union[str, os.PathLike[str]]],
    series_mode: str = "best",
    patient_ids: bool = False,
    policy: SeriesPolicy = DEFAULT_POLICY,
) -> list[ScanTask]:
    """Tasks for every DICOM study under ``roots`` (headers only are read here).

    ``series_mode`` "best": one task per study (its chosen series, or a skipped row
    saying why no series suits); "all": one task per series, unusable ones skipped with
    their reason. Patient identifiers go into the rows only with ``patient_ids``.
    """
    if series_mode not in SERIES_MODES:
        raise ValueError(f"series_mode must be one of {SERIES_MODES}, got {series_mode!r}")
    tasks: list[ScanTask] = []
    for study_uid, study_series in group_by_study(scan_tree(roots)).items():
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
            tasks.append(_series_task(d.series, d.choice, d.reason, others, patient_ids))
            continue
        first = study_series[0]
        folder = os.path.commonpath([s.folder for s in study_series])
        task = _series_task(first, SKIPPED, "no usable series", others, patient_ids,
                            skip=f"No series in this study suits finding L3 ({others}).")
        task.key = f"{folder}#{study_uid}"
        for name in ("series_uid", "series_number", "series_description", "n_images"):
            task.fields[name] = None
        tasks.append(task)
    return tasks


def _series_task(series: SeriesInfo, choice: str, reason: str, others: str, patient_ids: bool,
                 skip: str = "") -> ScanTask:
    h = series.first
    fields: dict[str, Any] = {
        "study_uid": series.study_uid,
        "series_uid": series.series_uid,
        "series_number": series.series_number,
        "series_description": series.description,
        "n_images": series.n_images,
        "series_choice": choice,
        "series_reason": reason,
        "other_series": others or None,
    }
    if patient_ids:
        fields.update(patient_id=h.patient_id, patient_name=h.patient_name,
                      accession_number=h.accession_number, study_date=h.study_date)
    return ScanTask(series.key, tuple(series.files), dicom=True, fields=fields, skip=skip,
                    export_stem=f"{series.study_uid}__{series.series_uid}")


def read_series_files(files: Sequence[str], name: str = "") -> Volume:
    """Read one DICOM series from its files, in the given order (HU, RAS geometry)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(
            f"{name or files[0]}: the DICOM series could not be read ({str(error).strip()[-200:]}"
            "). Some files may be missing or damaged."
        ) from None
    return volume_from_sitk(image, name=name)


def read_task(task: ScanTask) -> Volume:
    """The task's CT volume."""
    if task.dicom:
        return read_series_files(task.files, name=task.fields.get("series_description") or "")
    return read_volume(task.files[0])


_MODELS: dict[tuple[Optional[str], str], Any] = {}


def cached_model(options: TaskOptions) -> Any:
    """The model for ``options``, loaded once per process (each Dask worker keeps its own)."""
    key = (options.model, options.device)
    if key not in _MODELS:
        from ..network import load_model

        _MODELS[key] = load_model(options.model, device=options.device)
    return _MODELS[key]


def skipped_row(task: ScanTask) -> dict[str, Any]:
    """The row of a task that is not run."""
    row = result_row(task.key, error=task.skip)
    row["status"] = STATUS_SKIPPED
    row.update(task.fields, exported=None)
    return row


def error_row(task: ScanTask, error: Union[BaseException, str]) -> dict[str, Any]:
    """The row of a task that failed (status ``error``, message for the user)."""
    row = result_row(task.key, error=error)
    row.update(task.fields, exported=None)
    return row


def run_task(task: ScanTask, options: TaskOptions,
             volume: Optional[Volume] = None, read_s: float = 0.0) -> dict[str, Any]:
    """Read (unless ``volume`` is given), locate, export: the task's row. Never raises."""
    if task.skip:
        return skipped_row(task)
    from ..locate import locate

    try:
        if volume is None:
            start = time.perf_counter()
            volume = read_task(task)
            read_s = time.perf_counter() - start
        result = locate(volume, model=cached_model(options), device=options.device,
                        views=options.views)
        result.timings_s = {"read": read_s, **result.timings_s}
    except Exception as error:  # one bad scan must not stop the batch
        if not isinstance(error, L3LocatorError):
            log.exception("Unexpected error on %s", task.key)
        return error_row(task, error)
    row = result_row(task.key, result, qa_png=_qa(task, result, options))
    row.update(task.fields)
    row["exported"] = _export(task, volume, result, options)
    return row


def _qa(task: ScanTask, result: Any, options: TaskOptions) -> str:
    if options.qa_dir is None:
        return ""
    from ..qa import save_qa_png

    try:
        target = Path(options.qa_dir) / f"{task.export_stem}_l3.png"
        return str(save_qa_png(result, target, title=task.export_stem[:60]))
    except OSError as error:
        log.warning("Could not write the QA picture for %s: %s", task.key, error)
        return ""


def _export(task: ScanTask, volume: Volume, result: Any, options: TaskOptions) -> Optional[str]:
    if options.export_dir is None or not result.found:
        return None
    from .slice_export import export_slices

    try:
        written = export_slices(volume, result, Path(options.export_dir), task.export_stem,
                                neighbours=options.neighbours,
                                dicom_source=task.files[0] if task.dicom else None)
    except (OSError, L3LocatorError) as error:
        log.warning("Could not export the L3 slices of %s: %s", task.key, error)
        return None
    return " ".join(str(p) for p in written)
