"""What the model counted, in plain words, and the spine variants its output can support.

The network labels the levels T12, L1-L5 and S1 (``model.LEVELS``). It was trained
with vertebrae named by counting up from the sacrum (L5 is the first mobile vertebra
above it), and it does not count ribs: on phantoms with 4 or 6 lumbar vertebrae or 11
or 13 rib pairs its rows are evenly spaced and L3 is always the third vertebra above
the sacrum (``benchmarks/variants.py``). So the report says which anchors the count
rests on (the sacrum, the vertebra the model takes as the last rib-bearing one, or
neither) and flags only what the rows themselves show:

* room for one more vertebra between two adjacent labelled levels (a gap at least
  ``CountPolicy.skip_ratio`` times the usual step): an unlabelled vertebra, as with
  a sixth lumbar vertebra (L6) or a 13th rib-bearing vertebra (T13) when the model
  counted from both ends;
* an L5-S1 step much shorter than the other steps: a possible transitional
  vertebra (sacralised L5 or lumbarised S1).

It cannot say whether a vertebra bears ribs; the summary says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

LUMBAR = ("L1", "L2", "L3", "L4", "L5")


@dataclass(frozen=True)
class CountPolicy:
    """Thresholds of :func:`count_levels` (ratios of the median step between levels)."""

    #: A step this many times the median leaves room for an unlabelled vertebra.
    skip_ratio: float = 1.6
    #: An L5-S1 step below this fraction of the median of the other steps is short. Real
    #: spines are shorter there than phantoms: the labelled centroids of the two real
    #: patients with S1 (ct328, s0327; ``../shared/data/truth.json``) give 0.70 and 0.78,
    #: and the model's own rows on the ACRIN CT (five lumbar vertebrae, counted by eye)
    #: 0.81, so the 0.9 chosen on phantoms (9 of 16 sacralised L5 flagged) flagged every
    #: normal real patient. 0.6 stays clear of them; it flags few phantom transitional
    #: vertebrae, which the 3-D count of ``second_reader`` is the better judge of.
    short_l5_s1_ratio: float = 0.6


@dataclass(frozen=True)
class CountReport:
    """What one decoding counted.

    Attributes:
        levels: the levels found, superior -> inferior.
        lumbar: how many of L1-L5 were found.
        from_sacrum: S1 found, so L3 was counted up from the sacrum.
        from_ribs: T12 (the vertebra the model takes as the last rib-bearing one) found.
        summary: plain words for the user.
        variants: plain-words flags of a possible spine variant; empty when none is seen
            (which does not rule one out: see ``summary``).
    """

    levels: tuple[str, ...]
    lumbar: int
    from_sacrum: bool
    from_ribs: bool
    summary: str
    variants: tuple[str, ...] = ()


def count_levels(rows: dict[str, float], levels: Sequence[str], pixel_mm: float,
                 answer: str = "L3", policy: CountPolicy = CountPolicy()) -> CountReport:
    """The count behind one answer: ``rows`` maps the levels found to their rows
    (superior -> inferior, ``pixel_mm`` each); ``levels`` is the model's level order."""
    found = tuple(name for name in levels if name in rows)
    lumbar = sum(name in rows for name in LUMBAR)
    from_sacrum, from_ribs = "S1" in rows, "T12" in rows
    summary = _summary(found, lumbar, from_sacrum, from_ribs, answer)
    variants = []
    steps = _steps(rows, levels, pixel_mm)
    if len(steps) >= 3:
        usual = float(np.median([mm for _, _, mm in steps]))
        for upper, lower, mm in steps:
            if mm >= policy.skip_ratio * usual:
                variants.append(
                    f"Between {upper} and {lower} there is room for one vertebra more than the "
                    f"model labelled ({mm:.0f} mm against {usual:.0f} mm between the other "
                    "levels): possibly a sixth lumbar vertebra (L6) or a 13th rib-bearing "
                    f"vertebra (T13). Count the vertebrae yourself before relying on {answer}.")
        others = [mm for upper, _, mm in steps if upper != "L5"]
        last = [mm for upper, lower, mm in steps if (upper, lower) == ("L5", "S1")]
        if last and len(others) >= 2:
            usual_other = float(np.median(others))
            if last[0] < policy.short_l5_s1_ratio * usual_other:
                variants.append(
                    f"The step from L5 to S1 is short ({last[0]:.0f} mm against "
                    f"{usual_other:.0f} mm between the other levels): possibly a transitional "
                    "vertebra (sacralised L5 or lumbarised S1), which changes the count from "
                    "the sacrum. Count the vertebrae yourself from the ribs down.")
    return CountReport(found, lumbar, from_sacrum, from_ribs, summary, tuple(variants))


def _steps(rows: dict[str, float], levels: Sequence[str], pixel_mm: float
           ) -> list[tuple[str, str, float]]:
    """(upper, lower, mm) of every pair of found levels adjacent in ``levels``."""
    out = []
    for upper, lower in zip(levels, levels[1:]):
        if upper in rows and lower in rows:
            out.append((upper, lower, abs(rows[lower] - rows[upper]) * pixel_mm))
    return out


def _summary(found: tuple[str, ...], lumbar: int, from_sacrum: bool, from_ribs: bool,
             answer: str) -> str:
    if not found:
        return "No vertebral level was recognised."
    if from_sacrum and from_ribs:
        basis = (f"{lumbar} lumbar vertebrae between the vertebra it takes as the last "
                 f"rib-bearing one (T12) and the sacrum (S1); {answer} is counted up from "
                 "the sacrum")
    elif from_sacrum:
        basis = f"{lumbar} lumbar vertebrae above the sacrum (S1); {answer} is counted up from it"
    elif from_ribs:
        basis = (f"{lumbar} lumbar vertebrae below the vertebra it takes as the last "
                 f"rib-bearing one (T12), no sacrum; {answer} is counted down from T12")
    else:
        basis = (f"{lumbar} lumbar vertebrae, with neither the last rib-bearing vertebra "
                 "nor the sacrum recognised: the count rests on the vertebrae's shape alone")
    return (f"Counted {_span(found)}: {basis}. The model does not count ribs, so 11 or 13 "
            "rib pairs or a sixth lumbar vertebra are not recognised by it.")


def _span(found: tuple[str, ...]) -> str:
    """"T12, L1-L5, S1" for the found levels."""
    lumbar = [name for name in found if name in LUMBAR]
    parts = [name for name in found if name == "T12"]
    contiguous = "".join(lumbar) in "".join(LUMBAR)
    if len(lumbar) > 2 and contiguous:
        parts.append(f"{lumbar[0]}-{lumbar[-1]}")
    else:
        parts += lumbar
    parts += [name for name in found if name not in LUMBAR and name != "T12"]
    return ", ".join(parts)
