"""From per-row probabilities to rows: sub-pixel peaks, presence, anatomy check.

A model gives, for each vertebral level, a probability per projection row
(rows run superior -> inferior). ``decode_profile`` finds the peak, refines it
to sub-pixel precision (a parabola through the log-probabilities of the peak
and its two neighbours, exact for a Gaussian-shaped peak) and says "absent"
when the peak is below the model's calibrated threshold. No fixed offset is
added: the trained target is centred on the landmark row, so the peak is too.

``decode_levels`` does this for every level and checks the result against
normal anatomy (levels in order, plausible spacing, L3 between its
neighbours), returning a plain-words message when it looks atypical;
``decode_prediction`` does it for every view of one scan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Typical superior-inferior distance between the landmarks of adjacent lumbar levels
#: (mm): adult vertebral body plus disc is about 30-40 mm; children and the thoracic
#: transition are shorter. Outside ``[min, max]`` the spacing is reported as atypical.
LEVEL_SPACING_MM = (15.0, 55.0)

_EPS = 1e-6


@dataclass(frozen=True)
class DecodedRow:
    """One level's answer from one probability profile.

    Attributes:
        row: sub-pixel row of the landmark (0 = first row; superior -> inferior),
            or None when the peak is below the threshold (level absent).
        confidence: the peak probability (0..1), the model's calibrated presence score.
        peak_index: integer row of the maximum (reported even when absent).
    """

    row: Optional[float]
    confidence: float
    peak_index: int

    @property
    def present(self) -> bool:
        return self.row is not None


def subpixel_peak(profile: np.ndarray, index: int) -> float:
    """Sub-pixel position of the peak at ``index`` of a positive profile ``[H]``.

    Fits a parabola through the logarithms of the values at ``index - 1``,
    ``index``, ``index + 1`` (a Gaussian through three points); the offset is
    limited to +/- 0.5 px. At the image edge, or on a plateau, returns ``index``.
    """
    n = profile.shape[0]
    if index <= 0 or index >= n - 1:
        return float(index)
    y0, y1, y2 = np.log(np.maximum(profile[index - 1 : index + 2].astype(np.float64), _EPS))
    denom = y0 - 2.0 * y1 + y2
    if denom >= -1e-9:  # not a strict maximum (flat or numerically degenerate)
        return float(index)
    offset = 0.5 * (y0 - y2) / denom
    return float(index + np.clip(offset, -0.5, 0.5))


def decode_profile(prob: np.ndarray, threshold: float) -> DecodedRow:
    """Decode one level from its per-row probabilities ``prob`` ``[H]`` (0..1).

    Returns the sub-pixel row of the maximum, or ``row=None`` when the maximum
    is below ``threshold`` (the level is not in the image).
    """
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    if prob.size == 0:
        return DecodedRow(None, 0.0, 0)
    prob = np.nan_to_num(prob, nan=0.0)
    peak = int(np.argmax(prob))
    confidence = float(prob[peak])
    if confidence < threshold:
        return DecodedRow(None, confidence, peak)
    return DecodedRow(subpixel_peak(prob, peak), confidence, peak)


@dataclass
class LevelDecoding:
    """Every level decoded from one ``[n_levels, H]`` probability map.

    Attributes:
        levels: the level names, in channel order (superior -> inferior).
        decoded: level name -> ``DecodedRow``.
        atypical: plain-words description of anything unusual, else None.
    """

    levels: tuple[str, ...]
    decoded: dict[str, DecodedRow] = field(default_factory=dict)
    atypical: Optional[str] = None

    @property
    def rows(self) -> dict[str, float]:
        """Rows of the levels found (name -> sub-pixel row)."""
        return {k: v.row for k, v in self.decoded.items() if v.row is not None}

    @property
    def confidences(self) -> dict[str, float]:
        return {k: v.confidence for k, v in self.decoded.items()}


def decode_levels(
    probs: np.ndarray,
    levels: Sequence[str],
    threshold: float | dict[str, float],
    pixel_mm: float,
    answer: str = "L3",
) -> LevelDecoding:
    """Decode every level of ``probs`` ``[n_levels, H]`` and check the anatomy.

    ``threshold`` is one value for every level or a dict per level (levels not in
    the dict use the ``answer`` level's value, else 0.5). ``pixel_mm`` is the row
    size used to judge the spacing between levels.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] != len(levels):
        raise ValueError(f"probs must be [{len(levels)}, H], got {probs.shape}")
    out = LevelDecoding(levels=tuple(levels))
    for name, profile in zip(levels, probs):
        if isinstance(threshold, dict):
            t = threshold.get(name, threshold.get(answer, 0.5))
        else:
            t = threshold
        out.decoded[name] = decode_profile(profile, t)
    out.atypical = check_anatomy(out.rows, tuple(levels), pixel_mm, answer=answer)
    return out


def check_anatomy(
    rows: dict[str, float],
    levels: Sequence[str],
    pixel_mm: float,
    answer: str = "L3",
    spacing_mm: tuple[float, float] = LEVEL_SPACING_MM,
) -> Optional[str]:
    """Plain-words description of an atypical level pattern, or None when it looks normal.

    ``rows`` maps level names to rows (superior -> inferior); ``levels`` gives the
    expected anatomical order. Checks that the levels found come in that order,
    that adjacent levels are a plausible distance apart, and that the ``answer``
    level lies between its neighbours when they are found.
    """
    found = [(name, rows[name]) for name in levels if name in rows]
    if len(found) < 2:
        return None
    problems: list[str] = []
    order = [name for name, _ in sorted(found, key=lambda item: item[1])]
    expected = [name for name, _ in found]
    if order != expected:
        problems.append(
            "the predicted levels are out of order (top to bottom: " + ", ".join(order) + ")"
        )
    index = {name: i for i, name in enumerate(levels)}
    low, high = spacing_mm
    for (a, ra), (b, rb) in zip(found, found[1:]):
        steps = index[b] - index[a]
        gap_mm = (rb - ra) * pixel_mm / max(steps, 1)
        if gap_mm < low or gap_mm > high:
            problems.append(
                f"{a} to {b} is {abs(rb - ra) * pixel_mm:.0f} mm"
                f" ({'short' if gap_mm < low else 'long'} for {steps} level(s))"
            )
    if problems:
        message = (
            "The spine looks atypical: "
            + "; ".join(problems)
            + f". Check the {answer} level by counting the vertebrae yourself "
            "(transitional vertebra, unusual rib count or a scan the model finds hard)."
        )
        return message
    return None


@dataclass
class RowPrediction:
    """Per-level row probabilities of one scan, fused and per view.

    Attributes:
        levels: output level names (channel order, superior -> inferior).
        probs: view name (``"fused"``, ``"frontal"``, ``"sagittal"``) -> float32
            ``[n_levels, n_rows]`` probabilities. ``"fused"`` is the model run on
            every view it takes; single-view entries have the other view zeroed
            (or are the model's only view).
        decoded: view name -> ``LevelDecoding`` (rows, confidences, anatomy check).
        answer_level: the level reported ("L3").
        threshold: the model's absent threshold.
        pixel_mm: row size (mm).
    """

    levels: tuple[str, ...]
    probs: dict[str, np.ndarray]
    decoded: dict[str, LevelDecoding]
    answer_level: str
    threshold: float
    pixel_mm: float

    @property
    def main_view(self) -> str:
        """The view whose answer is reported: "fused" when available."""
        return "fused" if "fused" in self.probs else next(iter(self.probs))

    def answer(self, view: Optional[str] = None) -> DecodedRow:
        """``DecodedRow`` of the answer level for ``view`` (default: ``main_view``)."""
        return self.decoded[view or self.main_view].decoded[self.answer_level]

    def single_view_peaks(self, view: Optional[str] = None) -> dict[str, float]:
        """Row of each single view's own answer-level peak, when ``view`` (default
        ``main_view``) combines several views; else empty."""
        if (view or self.main_view) != "fused":
            return {}
        return {name: float(self.answer(name).peak_index)
                for name in self.probs if name != "fused"}

    def answer_profile(self, view: Optional[str] = None) -> np.ndarray:
        """Probability profile ``[n_rows]`` of the answer level."""
        return self.probs[view or self.main_view][self.levels.index(self.answer_level)]


def decode_prediction(
    probs: dict[str, np.ndarray],
    levels: Sequence[str],
    *,
    threshold: float,
    pixel_mm: float,
    answer_level: str = "L3",
) -> RowPrediction:
    """Decode every level of every view of one scan.

    ``probs`` maps view names ("fused", "frontal", "sagittal") to ``[n_levels, n_rows]``
    probabilities (``network.predict_views``); ``pixel_mm`` is the row size (mm).
    """
    decoded = {
        name: decode_levels(p, levels, threshold, pixel_mm, answer_level)
        for name, p in probs.items()
    }
    return RowPrediction(
        levels=tuple(levels),
        probs=dict(probs),
        decoded=decoded,
        answer_level=answer_level,
        threshold=float(threshold),
        pixel_mm=float(pixel_mm),
    )
