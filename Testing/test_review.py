"""When a found L3 is flagged for a person to check (``L3LocatorLib.review``)."""

from __future__ import annotations

import numpy as np
import pytest

from L3LocatorLib.decode import DecodedRow, LevelDecoding
from L3LocatorLib.review import ReviewPolicy, level_spacing_mm, review_reasons

LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
PIXEL_MM = 2.0


def _spine(l3_row: float, spacing_rows: float = 17.5) -> dict[str, float]:
    """Level rows of a normal spine with L3 at ``l3_row`` (rows, superior -> inferior)."""
    i3 = LEVELS.index("L3")
    return {name: l3_row + (i - i3) * spacing_rows for i, name in enumerate(LEVELS)}


def _decoding(rows: dict[str, float], confidence: float = 0.95,
              atypical: str | None = None) -> LevelDecoding:
    """A decoding in which the levels at ``rows`` were found (L3 with ``confidence``)."""
    decoded = {name: DecodedRow(None, 0.0, 0) for name in LEVELS}
    for name, row in rows.items():
        decoded[name] = DecodedRow(row, confidence if name == "L3" else 0.9, int(row))
    return LevelDecoding(levels=LEVELS, decoded=decoded, atypical=atypical)


def _reasons(row, n_rows, confidence=0.95, threshold=0.5, rows=None, atypical=None):
    rows = _spine(row) if rows is None else rows
    inside = {k: r for k, r in rows.items() if 0 <= r <= n_rows - 1}
    return review_reasons(_decoding(inside, confidence, atypical), threshold, n_rows, PIXEL_MM)


def test_confident_answer_mid_scan_needs_no_review():
    assert _reasons(100.0, 200) == []


def test_not_found_has_no_reasons():
    assert review_reasons(_decoding({}, confidence=0.3), 0.5, 200, PIXEL_MM) == []


def test_confidence_just_above_threshold_is_flagged():
    margin = ReviewPolicy().margin
    assert _reasons(100.0, 200, confidence=0.5 + margin + 0.01) == []
    (reason,) = _reasons(100.0, 200, confidence=0.5 + margin - 0.01)
    assert "not sure" in reason and "0.50" in reason


@pytest.mark.parametrize("rows_below", [0.0, 5.0, 17.0])
def test_scan_ending_within_one_vertebra_below_is_flagged(rows_below):
    n_rows = 200
    (reason,) = _reasons(n_rows - 1 - rows_below, n_rows)
    assert "ends" in reason and "ribs" in reason
    assert f"{rows_below * PIXEL_MM:.0f} mm" in reason


@pytest.mark.parametrize("row", [0.0, 8.0, 17.0])
def test_scan_beginning_within_one_vertebra_above_is_flagged(row):
    (reason,) = _reasons(row, 200)
    assert "begins" in reason and "sacrum" in reason


def test_one_vertebra_is_measured_on_the_neighbours():
    # A small spine (levels 20 mm apart): 24 mm of scan below L3 is more than a vertebra.
    small = _spine(100.0, spacing_rows=10.0)
    assert level_spacing_mm(small, LEVELS, "L3", PIXEL_MM, 35.0) == pytest.approx(20.0)
    assert _reasons(100.0, 113, rows=small) == []
    # Without neighbours the adult default applies, and the same scan is flagged.
    assert level_spacing_mm({"L3": 100.0}, LEVELS, "L3", PIXEL_MM, 35.0) == 35.0
    assert len(_reasons(100.0, 113, rows={"L3": 100.0})) == 1
    # An implausible neighbour distance (a misplaced L2) is not trusted.
    odd = {"L2": 99.0, "L3": 100.0}
    assert level_spacing_mm(odd, LEVELS, "L3", PIXEL_MM, 35.0) == 35.0


def test_atypical_anatomy_is_a_reason_and_reasons_add_up():
    note = "The spine looks atypical: L2 to L3 is 80 mm."
    assert _reasons(100.0, 200, atypical=note) == [note]
    reasons = _reasons(190.0, 200, confidence=0.55, atypical=note)
    assert len(reasons) == 3 and reasons[-1] == note


@pytest.mark.parametrize("view", ["frontal", "sagittal"])
@pytest.mark.parametrize("apart_rows", [-17.5, -8.0, 7.0, 17.5])
def test_a_single_view_a_level_away_is_flagged(view, apart_rows):
    limit_rows = ReviewPolicy().view_disagreement_mm / PIXEL_MM
    decoding = _decoding(_spine(100.0))
    other = "sagittal" if view == "frontal" else "frontal"
    reasons = review_reasons(decoding, 0.5, 200, PIXEL_MM,
                             view_rows={view: 100.0 + apart_rows, other: 100.0})
    if abs(apart_rows) <= limit_rows:
        assert reasons == []
    else:
        (reason,) = reasons
        assert view in reason and other not in reason
        assert f"{abs(apart_rows) * PIXEL_MM:.0f} mm" in reason
        assert ("lower" if apart_rows > 0 else "higher") in reason
    # a single-view answer has nothing to disagree with
    assert review_reasons(decoding, 0.5, 200, PIXEL_MM) == []


def test_view_peaks_come_from_each_single_view():
    from L3LocatorLib.decode import decode_prediction

    rows = np.arange(200)
    profile = lambda r: np.stack([np.exp(-0.5 * ((rows - r - 17.5 * (i - 3)) / 1.5) ** 2)  # noqa: E731
                                  for i in range(len(LEVELS))])
    prediction = decode_prediction(
        {"fused": profile(100), "frontal": profile(118), "sagittal": profile(99)}, LEVELS,
        threshold=0.5, pixel_mm=PIXEL_MM)
    assert prediction.single_view_peaks() == {"frontal": 118.0, "sagittal": 99.0}
    assert prediction.single_view_peaks("frontal") == {}


def test_locate_flags_a_scan_that_stops_just_below_l3(phantom_files):
    """The shipped model on a phantom cut 12 mm below its L3 landmark: found and flagged;
    the same phantom whole: found and not flagged."""
    from L3LocatorLib.locate import locate
    from L3LocatorLib.network import default_model_path
    from L3LocatorLib.volume import read_volume

    if not default_model_path().exists():
        pytest.skip("no shipped default model")
    path, truth = phantom_files["with_l3"]
    volume = read_volume(path)
    whole = locate(volume, device="cpu")
    assert whole.found and not whole.needs_review, whole.review
    # Keep the slices whose centre lies at most 12 mm below the L3 landmark.
    k = np.arange(volume.shape_ijk[2])
    s_mm = volume.ijk_to_ras_points(np.stack([0 * k, 0 * k, k], 1))[:, 2]
    kept = np.flatnonzero(s_mm >= truth.l3_landmark_ras[2] - 12.0)
    cut = locate(volume.crop_slices(int(kept.min()), int(kept.max()) + 1), device="cpu")
    assert cut.found and cut.needs_review, cut.to_dict()
    assert any("ends" in reason for reason in cut.review)
    assert cut.to_dict()["needs_review"] is True
