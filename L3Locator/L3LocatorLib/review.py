"""When an answer should be checked by a person, and why, in plain words.

A found L3 is flagged for review when:

* it was answered below the model's threshold (``presence.UNSURE``: both views point to
  one vertebra, but with a confidence real CT often has);
* the confidence is only just above the model's absent threshold (within
  ``ReviewPolicy.margin``): the model barely told "L3 here" from "no L3";
* the scan ends less than one vertebra below the answer, so the level could be
  counted from the ribs only, or begins less than one vertebra above it, so it
  could be counted from the pelvis only (unless the second reader counted the same L3
  from that anchor). This is where models and readers
  alike are off by one: a chest CT that stops just above L3 shows L2 as the
  lowest vertebra and invites calling it L3;
* the predicted levels do not look like a normal spine (``decode.check_anatomy``);
* the frontal or the sagittal view alone puts the level more than half a vertebra
  away from the combined answer (unless the second reader counted the same L3 up from the
  sacrum). On anatomy unlike anything in training (a real chest
  CT's own label map rendered 80 times, ``benchmarks/heldout_anatomy.py``) the combined
  views were often one level off where each view alone counted right, and this
  disagreement flags 33 of the 37 wrong T12-L2 answers; on held-out phantoms it fires
  on 1-2 % of answers, all of them right.

The confidence itself is left as the model gave it (it is calibrated against
the threshold); the flag says how far to trust the level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Optional, Sequence

from .decode import LEVEL_SPACING_MM, LevelDecoding


@dataclass(frozen=True)
class ReviewPolicy:
    """Settings of :func:`review_reasons`."""

    #: Flag answers whose confidence is below ``threshold + margin`` (0..1).
    margin: float = 0.15
    #: Flag answers closer than this many level spacings to the top or bottom of the scan.
    edge_levels: float = 1.0
    #: Level spacing (mm) assumed when no neighbouring level is found: adult lumbar
    #: vertebral body plus disc.
    default_spacing_mm: float = 35.0
    #: Flag answers that a single view places farther than this (mm) from the combined
    #: answer: about half an adult vertebra, so a one-level disagreement always shows.
    view_disagreement_mm: float = 15.0
    #: When L3 is not found, its most likely position is still reported (as a candidate
    #: to check, never as the answer) if the peak reaches this fraction of the threshold.
    #: On held-out phantoms (v2) this names 1 of 82 scans without L3 and 2 of the 3
    #: missed L3s (both inside L3); on spine crops 3 of 31 and 6 of 8 (all inside L3).
    candidate_fraction: float = 0.5


def level_spacing_mm(rows: dict[str, float], levels: Sequence[str], answer: str,
                     pixel_mm: float, default_mm: float) -> float:
    """Distance (mm) between the ``answer`` level and its nearest found neighbour, per level;
    ``default_mm`` when no neighbour is found or the distance is implausible."""
    if answer not in rows:
        return default_mm
    i = list(levels).index(answer)
    gaps = []
    for j in (i - 1, i + 1):
        if 0 <= j < len(levels) and levels[j] in rows:
            gaps.append(abs(rows[levels[j]] - rows[answer]) * pixel_mm)
    low, high = LEVEL_SPACING_MM
    gaps = [g for g in gaps if low <= g <= high]
    return min(gaps) if gaps else default_mm


def edge_limit_mm(decoding: LevelDecoding, answer: str, pixel_mm: float,
                  policy: Optional[ReviewPolicy] = None) -> float:
    """How close (mm) the ``answer`` level of ``decoding`` may come to a scan edge before it
    could only be counted from one end of the spine: ``policy.edge_levels`` times the
    distance to its found neighbours (``level_spacing_mm``)."""
    policy = policy or ReviewPolicy()
    return policy.edge_levels * level_spacing_mm(decoding.rows, decoding.levels, answer,
                                                 pixel_mm, policy.default_spacing_mm)


def views_apart_mm(row: float, view_rows: dict[str, float], pixel_mm: float,
                   policy: ReviewPolicy = ReviewPolicy()) -> dict[str, float]:
    """The single views whose own peak row lies farther than
    ``policy.view_disagreement_mm`` from the combined answer's ``row`` (rows of
    ``pixel_mm``): view name -> signed distance in mm (positive: the view is lower)."""
    apart = {view: (view_row - row) * pixel_mm for view, view_row in view_rows.items()}
    return {view: mm for view, mm in apart.items() if abs(mm) > policy.view_disagreement_mm}


def edge_reasons(row: float, n_rows: int, pixel_mm: float, edge_mm: float,
                 answer: str = "L3", confirmed: Collection[str] = ()) -> list[str]:
    """Why a level at ``row`` (of ``n_rows`` rows of ``pixel_mm``, superior -> inferior)
    needs checking when it lies closer than ``edge_mm`` to the end or the start of the
    scan: it could only be counted from one end of the spine. ``confirmed``: the anchors
    ("ribs", "sacrum") from which the second reader counted the same level; a level
    confirmed from the one end it could be counted from needs no check for that edge."""
    reasons = []
    below_mm = (n_rows - 1 - row) * pixel_mm
    above_mm = row * pixel_mm
    if below_mm < edge_mm and "ribs" not in confirmed:
        reasons.append(
            f"The scan ends {below_mm:.0f} mm below this level, so it was counted from the "
            f"ribs alone: confirm it by counting down from the last rib-bearing vertebra "
            f"(if the scan stops above {answer}, the lowest vertebra is easily mistaken "
            f"for it)."
        )
    if above_mm < edge_mm and "sacrum" not in confirmed:
        reasons.append(
            f"The scan begins {above_mm:.0f} mm above this level, so it was counted from "
            f"the pelvis alone: confirm it by counting up from the sacrum."
        )
    return reasons


def review_reasons(
    decoding: LevelDecoding,
    threshold: float,
    n_rows: int,
    pixel_mm: float,
    answer: str = "L3",
    policy: ReviewPolicy = ReviewPolicy(),
    view_rows: Optional[dict[str, float]] = None,
    unsure_row: Optional[float] = None,
    confirmed: Collection[str] = (),
) -> list[str]:
    """Plain-words reasons to check the ``answer`` level of ``decoding`` (one profile's
    levels, found with ``threshold``); empty when there are none or it was not found.

    The profile has ``n_rows`` rows (superior -> inferior) of ``pixel_mm`` each.
    ``view_rows`` maps single views ("frontal", "sagittal") to the row of their own
    peak for the ``answer`` level, whatever its confidence, when ``decoding`` is the
    combined answer of several views. ``unsure_row``: the row of an answer given below
    the threshold (``presence.UNSURE``), reviewed like a found one. ``confirmed``: the
    anchors ("ribs", "sacrum") from which the second reader (``second_reader``) counted
    L3 at this row: such an answer is not flagged for being near the cut-off or near the
    edge of the scan that anchor lies beyond, nor, when counted up from the sacrum, for a
    single view that disagrees on the count.
    """
    found = decoding.decoded.get(answer)
    if found is None:
        return []
    row = found.row if found.row is not None else unsure_row
    if row is None:
        return []
    confidence = found.confidence
    reasons = []
    if confidence < threshold:
        reasons.append(
            f"The model is unsure ({confidence:.2f}, under its cut-off of {threshold:.2f} "
            f"for a sure answer), but both views point to this vertebra: check the level."
        )
    elif confidence < threshold + policy.margin and not confirmed:
        reasons.append(
            f"The model is not sure ({confidence:.2f}, just above its cut-off of "
            f"{threshold:.2f})."
        )
    reasons += edge_reasons(row, n_rows, pixel_mm,
                            edge_limit_mm(decoding, answer, pixel_mm, policy), answer, confirmed)
    if decoding.atypical:
        reasons.append(decoding.atypical)
    # The views disagreeing on the count asks for a count; a count up from the sacrum (the
    # second reader's more reliable anchor: 19 of 20 right on variant phantoms, against 27
    # of 35 from the ribs) that lands on the combined answer is that count.
    counted = "sacrum" in confirmed
    for view, apart_mm in views_apart_mm(row, view_rows or {}, pixel_mm, policy).items():
        if counted:
            break
        reasons.append(
            f"The {view} view alone puts {answer} {abs(apart_mm):.0f} mm "
            f"{'lower' if apart_mm > 0 else 'higher'}: the views disagree on the count, "
            f"so count the vertebrae yourself."
        )
    return reasons
