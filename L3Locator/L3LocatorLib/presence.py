"""Is L3 in the scan? Three answers instead of two.

The network's L3 confidence is calibrated on phantoms, where a threshold (the model's
``threshold``) separates scans with L3 from scans without it. On real CT the same peaks
lie lower on the scale: the peak often lies inside L3 at 0.2-0.6 while real scans without
L3 score lower still (``benchmarks/presence_calibration.py``). So a peak between the
model's ``flag_threshold`` and its ``threshold`` is reported as a *flagged* answer ("L3 is
most likely at slice N; check it") when the evidence points into one vertebra: both single
views put their own L3 peak within half a vertebra of the combined one. Below that, or when
the views disagree, L3 is "not found". ``locate`` adds one condition: an unsure peak within
one vertebra of a scan edge stands only when the second reader's count puts L3 there (a
scan that stops just above L3 shows L2 as its last vertebra, at the same confidences). A
model without ``flag_threshold`` answers in two ways, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .decode import RowPrediction, subpixel_peak
from .review import ReviewPolicy

#: The three answers.
SURE, UNSURE, ABSENT = "sure", "unsure", "absent"


@dataclass(frozen=True)
class PresenceDecision:
    """What the evidence says about the answer level.

    Attributes:
        kind: ``SURE`` (confidence at or above the model's threshold), ``UNSURE`` (a
            flagged answer) or ``ABSENT``.
        row: sub-pixel row of the answer (rows of the projections, superior -> inferior),
            None when absent.
        confidence: the peak probability of the answer level (0..1).
    """

    kind: str
    row: Optional[float]
    confidence: float


def views_agree(prediction: RowPrediction, view: Optional[str] = None,
                policy: Optional[ReviewPolicy] = None) -> bool:
    """Whether every single view's own peak of the answer level lies within
    ``policy.view_disagreement_mm`` of the peak of ``view`` (default: the main view).
    False when ``view`` is a single view (nothing to agree with)."""
    policy = policy or ReviewPolicy()
    peaks = prediction.single_view_peaks(view)
    if not peaks:
        return False
    row = prediction.answer(view).peak_index
    return all(abs(r - row) * prediction.pixel_mm <= policy.view_disagreement_mm
               for r in peaks.values())


def decide(prediction: RowPrediction, flag_threshold: Optional[float],
           view: Optional[str] = None) -> PresenceDecision:
    """Decide for ``view`` (default: the main view) of a decoded prediction.

    ``flag_threshold``: the model's lower cut-off for a flagged answer (None: none)."""
    answer = prediction.answer(view)
    if answer.row is not None:
        return PresenceDecision(SURE, answer.row, answer.confidence)
    if (flag_threshold is not None and answer.confidence >= flag_threshold
            and views_agree(prediction, view)):
        row = subpixel_peak(prediction.answer_profile(view), answer.peak_index)
        return PresenceDecision(UNSURE, row, answer.confidence)
    return PresenceDecision(ABSENT, None, answer.confidence)
