"""``--composition`` for the ``l3locator locate`` command: options, columns, and the hook
that measures each scan right after L3 is located (the volume is still in memory).

A measurement that fails never loses the row: its ``comp_error`` column says why.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import L3LocatorError
from ..report import error_message
from ..result import STATUS_ERROR, L3Result
from ..volume import Volume, write_volume
from .columns import COLUMNS
from .cutoffs import Patient, checked_height
from .measure import CompositionResult, measure_composition, where_to_measure
from .presets import PRESETS, TISSUES

log = logging.getLogger(__name__)

#: DICOM tags read for the measurement (SimpleITK keys).
DICOM_TAGS = {"PatientSize": "0010|1020", "PatientWeight": "0010|1030",
              "PatientSex": "0010|0040", "ContrastBolusAgent": "0018|0010", "KVP": "0018|0060"}
#: The options ``add_composition_arguments`` adds (argparse destinations).
OPTION_NAMES = ("composition", "height_m", "sex", "weight_kg", "slice", "preset", "slab_mm",
                "masks_dir")
#: Label value of each tissue in the mask files.
MASK_LABELS = {t: n for n, t in enumerate(TISSUES, 1)}


def add_composition_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("body composition at L3")
    group.add_argument("--composition", action="store_true",
                       help="measure muscle, IMAT, VAT and SAT on the L3 slice and the slab "
                            "around it; adds columns to every row")
    group.add_argument("--height-m", type=float,
                       help="patient height in metres for SMI (default: DICOM PatientSize)")
    group.add_argument("--sex", choices=("M", "F"),
                       help="for the Prado 2008 / Martin 2013 cut-offs (default: DICOM)")
    group.add_argument("--weight-kg", type=float,
                       help="for BMI in Martin 2013 (default: DICOM PatientWeight)")
    group.add_argument("--slice", type=int,
                       help="measure on this slice (index along the scan's slice axis) "
                            "instead of the located L3")
    group.add_argument("--preset", choices=tuple(PRESETS), default="alberta",
                       help="HU ranges (default: alberta; vat_wide: VAT -190..-30 HU)")
    group.add_argument("--slab-mm", type=float, default=None,
                       help="slab half-thickness in mm (default 5)")
    group.add_argument("--masks-dir", type=Path,
                       help="write the tissue masks of the measured slice as NIfTI here")


def composition_fields(args: argparse.Namespace) -> tuple[str, ...]:
    """The extra results-file columns (none without ``--composition``)."""
    return COLUMNS if getattr(args, "composition", False) else ()


def composition_options(args: argparse.Namespace) -> Optional[tuple[tuple[str, Any], ...]]:
    """``--composition`` and its options as (name, value) pairs that travel to Dask workers
    (``cohort.tasks.TaskOptions.composition``; paths as text); None without it."""
    if not getattr(args, "composition", False):
        return None
    return tuple((name, str(value) if isinstance(value, Path) else value)
                 for name, value in vars(args).items() if name in OPTION_NAMES)


def read_dicom_tags(files: Any) -> dict[str, str]:
    """The ``DICOM_TAGS`` of the first file of a series ({} when unreadable or absent)."""
    if not files:
        return {}
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(files[0]))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    return {name: reader.GetMetaData(key).strip() for name, key in DICOM_TAGS.items()
            if reader.HasMetaDataKey(key)}


def patient_from(tags: dict[str, str], height_m: Optional[float] = None,
                 sex: Optional[str] = None, weight_kg: Optional[float] = None) -> Patient:
    """Height, sex and weight: the user's values win over the DICOM header's."""
    def number(key: str) -> Optional[float]:
        try:
            value = float(tags.get(key, ""))
        except ValueError:
            return None
        return value if value > 0 else None

    source = ""
    if height_m is not None:
        height, source = checked_height(height_m), "user"
    else:
        height = number("PatientSize")
        source = "DICOM PatientSize" if height else ""
        if height is not None and not 0.5 <= height <= 2.6:
            height, source = None, ""  # not in metres: never guessed
    dicom_sex = tags.get("PatientSex", "").upper()[:1]
    return Patient(height, source, sex or (dicom_sex if dicom_sex in ("M", "F") else None),
                   weight_kg if weight_kg is not None else number("PatientWeight"))


def measure_for_row(volume: Volume, l3: Any, args: argparse.Namespace,
                    tags: Optional[dict[str, str]] = None) -> CompositionResult:
    """The measurement a row reports: on ``--slice`` when given, else on the found L3
    (its vertebral body point places psoas and paraspinal compartments)."""
    s_mm, point = where_to_measure(volume, l3, args.slice)
    tags = tags or {}
    return measure_composition(
        volume, s_mm, body_point_ras=point, preset=args.preset, slab_half_mm=args.slab_mm,
        patient=patient_from(tags, args.height_m, args.sex, args.weight_kg), dicom_tags=tags)


def write_masks(result: CompositionResult, path: Path) -> Path:
    """The four tissue masks of the measured slice as one NIfTI label map (1 muscle,
    2 IMAT, 3 VAT, 4 SAT), one slice in patient axes at its real position (RAS)."""
    slab = result.slab_geometry
    labels = np.zeros(next(iter(result.masks.values())).shape, np.uint8)
    for tissue, value in MASK_LABELS.items():
        labels[result.masks[tissue]] = value
    # voxel i along r (towards patient left), j along a (towards posterior), k along -S
    matrix = np.diag([-slab.spacing_ra[0], -slab.spacing_ra[1], -1.0, 1.0])
    matrix[:3, 3] = [slab.corner_ras[0], slab.corner_ras[1], result.s_mm]
    volume = Volume(labels.T[None], matrix, name="composition")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(volume, path)
    return path


def with_composition(locate_scan: Callable[[Any, Any], Any], args: argparse.Namespace
                     ) -> Callable[[Any, Any], Any]:
    """``locate_scan`` followed by the measurement; its columns go into
    ``L3Result.extra_columns`` (and on into the row)."""
    if not getattr(args, "composition", False):
        return locate_scan

    def locate_and_measure(scan: Any, volume: Any) -> Any:
        try:
            result = locate_scan(scan, volume)
        except L3LocatorError as error:
            if args.slice is None or not isinstance(volume, Volume):
                raise
            # --slice: the user chose the level, so a scan the locator refuses (too short,
            # no model) is still measured; the row keeps the locator's message.
            result = L3Result(status=STATUS_ERROR, message=error_message(error))
        columns: dict[str, Any] = {name: None for name in COLUMNS}
        try:
            tags = read_dicom_tags(getattr(scan, "files", ()))
            measured = measure_for_row(volume, result, args, tags)
            columns.update(measured.to_row())
            stem = _stem(scan)
            if args.qa_dir is not None:
                from .picture import save_composition_picture

                columns["comp_qa_png"] = str(save_composition_picture(
                    measured, Path(args.qa_dir) / f"{stem}_composition.png", scan.title))
            if args.masks_dir is not None:
                columns["comp_masks"] = str(write_masks(
                    measured, Path(args.masks_dir) / f"{stem}_tissues.nii.gz"))
        except (ValueError, OSError) as error:
            columns["comp_error"] = str(error)
        except Exception as error:  # a failed measurement never loses the row
            log.exception("Body composition failed on %s", getattr(scan, "path", scan))
            columns["comp_error"] = f"Body composition failed unexpectedly ({error}); " \
                                    "please report this scan."
        result.extra_columns.update(columns)
        return result

    return locate_and_measure


def _stem(scan: Any) -> str:
    from ..qa import qa_file_name

    return qa_file_name(scan.stem, "\0".join(scan.key)).removesuffix("_l3.png")
