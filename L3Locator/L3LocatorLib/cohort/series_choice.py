"""Choose, per study, the DICOM series that suits finding L3, and say why for every series.

A series is *usable* when it is an axial stack of CT images covering enough of the body
without missing or duplicated slices (the reader would refuse those: ``dicom``; blocks of
regular spacing, 4 mm then 7 mm, are complete);
localizers, derived MIP/MPR/3-D reconstructions, dose reports, secondary captures and
other modalities are skipped. Among usable series the preference is, in order:

1. a soft-tissue kernel over a sharp (lung/bone) one;
2. slices at most 5 mm thick;
3. lumbar coverage: a series whose body part/description names the abdomen, pelvis or
   lumbar spine, then the longest coverage head to foot (headers cannot show where L3 is);
4. for the same coverage, slices of at least 2 mm (thinner ones are noisier), then fewer
   images (the same anatomy, read faster); then series number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..dicom import DUPLICATE_MM, find_gaps
from .dicom_tree import SeriesInfo

#: Values of the row field ``series_choice``.
CHOSEN, ELIGIBLE, SKIPPED = "chosen", "eligible", "skipped"

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
DERIVED_WORDS = ("MIP", "MINIP", "MPR", "REFORMATTED", "PROJECTION IMAGE", "VOLUME RENDER",
                 "VR", "3D", "CURVED", "SSD")
_DERIVED_DESCRIPTION = re.compile(r"\b(MIP|MINIP|MPR|3D|VRT?|CPR|REFORMAT\w*|COR|SAG)\b", re.I)
_SHARP_KERNEL = re.compile(
    r"(LUNG|BONE|SHARP|EDGE|DETAIL|HIGH ?RES|\b[BIHQ][rlfsv]?[5-9]\d|\bFC(5[0-9]|8\d)|\bY[BC])",
    re.I,
)
_SHARP_DESCRIPTION = re.compile(r"\b(LUNG|BONE|PULM\w*|HR|HRCT)\b", re.I)
_LUMBAR_WORDS = re.compile(r"(ABD|PELV|LUMB|L-?SPINE|LSPINE|KIDNEY|RENAL|LIVER|PANCREA|"
                           r"COLON|URO|AAA|WHOLE ?BODY|WB|TAP|CAP|TRAUMA)", re.I)


@dataclass(frozen=True)
class SeriesPolicy:
    """Thresholds of the series choice (mm, degrees)."""

    min_coverage_mm: float = 100.0  #: head-to-foot extent needed to show L3 and its neighbours
    max_tilt_deg: float = 30.0  #: image planes at most this far from axial
    preferred_thickness_mm: tuple[float, float] = (2.0, 5.0)
    coverage_step_mm: float = 20.0  #: coverage differences below this count as equal


#: The choice's default thresholds.
DEFAULT_POLICY = SeriesPolicy()


@dataclass
class SeriesDecision:
    """What the choice made of one series: ``choice`` is chosen|eligible|skipped."""

    series: SeriesInfo
    choice: str
    reason: str
    short: str = ""  #: the reason without the series' details (for one-line summaries)


def skip_reason(series: SeriesInfo, policy: SeriesPolicy = DEFAULT_POLICY) -> Optional[str]:
    """Why the series cannot be used to find L3 (plain words), or None when it can."""
    h = series.first
    description = h.series_description
    if h.sop_class_uid == DOSE_SR or h.modality == "SR" or "DOSE" in description.upper():
        return "dose report (no images)" if h.modality == "SR" else "dose report"
    if h.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture (a picture, not CT measurements)"
    if h.modality != "CT":
        return f"not CT (modality {h.modality or 'missing'})"
    if "LOCALIZER" in h.image_type or re.search(r"\b(SCOUT|TOPO\w*|SURVIEW|LOCALI[SZ]ER)\b",
                                                 description, re.I):
        return "localizer (scout)"
    if h.sop_class_uid == ENHANCED_CT_IMAGE_STORAGE or h.n_frames > 1:
        return "multi-frame (enhanced) CT, not supported yet"
    derived = h.image_type[:1] == ("DERIVED",)
    if (derived and any(w in h.image_type for w in DERIVED_WORDS)) or (
        _DERIVED_DESCRIPTION.search(description)
    ):
        return "derived reconstruction (MIP/MPR/3-D)"
    normal = series.normal_lps
    if normal is None:
        return "no image orientation in the headers"
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(normal[2]))))))
    if tilt > policy.max_tilt_deg:
        return f"not axial (image planes {tilt:.0f} degrees from axial)"
    if series.n_images < 2 or not series.positions_mm:
        return "a single image, not a stack of slices"
    steps = np.diff(series.positions_mm)
    if np.any(steps < DUPLICATE_MM):
        return "several images at the same position (phases or echoes mixed in one series)"
    gaps = find_gaps(steps)
    if gaps:
        first, spacing = gaps[0]
        return (f"missing slices (a gap of {float(steps[first]):.1f} mm where slices are "
                f"{spacing:.1f} mm apart)")
    if series.extent_mm < policy.min_coverage_mm - 0.5:  # rounding in the positions
        return (f"covers only {series.extent_mm:.0f} mm head to foot (at least "
                f"{policy.min_coverage_mm:.0f} mm needed)")
    return None


def is_sharp_kernel(series: SeriesInfo) -> bool:
    """True for lung/bone (sharp) reconstruction kernels, from the kernel name or the
    series description."""
    h = series.first
    return bool(_SHARP_KERNEL.search(h.kernel) or _SHARP_DESCRIPTION.search(h.series_description))


def _thickness(series: SeriesInfo) -> Optional[float]:
    if series.first.slice_thickness:
        return series.first.slice_thickness
    steps = np.diff(series.positions_mm)
    return float(np.median(steps)) if len(steps) else None


def _too_thick(series: SeriesInfo, policy: SeriesPolicy) -> int:
    """0 for slices at most the preferred maximum, 1 thicker, 2 unknown."""
    t = _thickness(series)
    return 2 if t is None else int(t > policy.preferred_thickness_mm[1])


def _too_thin(series: SeriesInfo, policy: SeriesPolicy) -> int:
    """1 for slices thinner than the preferred minimum (noisier), else 0."""
    t = _thickness(series)
    return int(t is not None and t < policy.preferred_thickness_mm[0])


def _names_lumbar(series: SeriesInfo) -> bool:
    h = series.first
    return bool(_LUMBAR_WORDS.search(" ".join((h.body_part, h.series_description,
                                              h.study_description))))


def preference_key(series: SeriesInfo, policy: SeriesPolicy = DEFAULT_POLICY) -> tuple:
    """Sort key of usable series: smaller is better (see the module docstring)."""
    coverage_steps = int(series.extent_mm // policy.coverage_step_mm)
    return (
        int(is_sharp_kernel(series)),
        _too_thick(series, policy),
        int(not _names_lumbar(series)),
        -coverage_steps,
        _too_thin(series, policy),
        series.n_images,
        series.series_number or 0,
        series.series_uid,
    )


def describe(series: SeriesInfo) -> str:
    """Kernel, thickness, coverage and size in words, for the reason of a choice."""
    h = series.first
    kernel = "sharp" if is_sharp_kernel(series) else "soft-tissue"
    t = _thickness(series)
    parts = [f"{kernel} kernel" + (f" ({h.kernel})" if h.kernel else ""),
             f"{t:g} mm slices" if t else "slice thickness unknown",
             f"{series.extent_mm:.0f} mm head to foot"]
    if h.body_part:
        parts.append(h.body_part.lower())
    parts.append(f"{series.n_images} images")
    return ", ".join(parts)


_LOSES_BECAUSE = (
    "sharp (lung/bone) kernel",
    "slices too thick",
    "headers do not name the abdomen or pelvis",
    "covers less of the body",
    "slices too thin",
    "more images for the same coverage",
    "higher series number",
    "higher series number",
)


def _why_not(other: tuple, best: tuple, series: SeriesInfo, policy: SeriesPolicy) -> str:
    for position, (a, b) in enumerate(zip(other, best)):
        if a != b:
            why = _LOSES_BECAUSE[position]
            t = _thickness(series)
            low, high = policy.preferred_thickness_mm
            if position == 1:
                why = f"{t:g} mm slices (thicker than {high:g} mm)" if t else (
                    "slice thickness unknown")
            elif position == 4:
                why = f"{t:g} mm slices (thinner than {low:g} mm: noisier)"
            return why
    return "same as the chosen series"


def choose_series(
    study_series: list[SeriesInfo], policy: SeriesPolicy = DEFAULT_POLICY
) -> list[SeriesDecision]:
    """A decision for every series of one study: at most one ``chosen``, the other usable
    ones ``eligible`` (with why they lost), the rest ``skipped`` (with why)."""
    decisions: list[SeriesDecision] = []
    usable: list[tuple[tuple, SeriesDecision]] = []
    for series in study_series:
        reason = skip_reason(series, policy)
        if reason is not None:
            decisions.append(SeriesDecision(series, SKIPPED, reason, reason))
            continue
        decision = SeriesDecision(series, ELIGIBLE, "")
        decisions.append(decision)
        usable.append((preference_key(series, policy), decision))
    if not usable:
        return decisions
    usable.sort(key=lambda item: item[0])
    best_key, best = usable[0]
    best.choice = CHOSEN
    n_usable = len(usable)
    best.reason = (f"best of {n_usable} usable series: {describe(best.series)}" if n_usable > 1
                   else f"the only usable series: {describe(best.series)}")
    for key, decision in usable[1:]:
        decision.short = f"not chosen, {_why_not(key, best_key, decision.series, policy)}"
        decision.reason = f"usable, {decision.short} ({describe(decision.series)})"
    return decisions


def summary_of_others(decisions: list[SeriesDecision]) -> str:
    """One line naming every series not chosen and why: ``'2 Scout: localizer (scout); ...'``."""
    parts = []
    for d in decisions:
        if d.choice == CHOSEN:
            continue
        label = " ".join(filter(None, (str(d.series.series_number or ""), d.series.description)))
        parts.append(f"{label or d.series.series_uid}: {d.short or d.reason}")
    return "; ".join(parts)
