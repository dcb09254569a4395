"""Decoding row profiles: sub-pixel peaks, absence, anatomy checks."""

from __future__ import annotations

import numpy as np
import pytest

from L3LocatorLib.decode import check_anatomy, decode_levels, decode_profile, subpixel_peak


def gaussian(n: int, centre: float, sigma: float = 1.5, peak: float = 0.9) -> np.ndarray:
    rows = np.arange(n)
    return peak * np.exp(-0.5 * ((rows - centre) / sigma) ** 2)


@pytest.mark.parametrize("centre", [40.0, 40.25, 40.5, 40.8, 12.3])
def test_subpixel_recovers_gaussian_centre(centre):
    decoded = decode_profile(gaussian(100, centre), threshold=0.5)
    assert decoded.row == pytest.approx(centre, abs=0.02)
    assert decoded.peak_index == int(round(centre))
    assert decoded.confidence > 0.8


def test_no_fudge_offset_on_symmetric_peak():
    prob = gaussian(64, 20.0)
    assert decode_profile(prob, 0.1).row == pytest.approx(20.0, abs=1e-9)


def test_absent_below_threshold():
    decoded = decode_profile(gaussian(50, 25, peak=0.3), threshold=0.5)
    assert decoded.row is None and not decoded.present
    assert decoded.confidence == pytest.approx(0.3, abs=1e-6)
    assert decoded.peak_index == 25


def test_edges_flat_and_empty():
    prob = np.linspace(0.0, 0.9, 30)
    assert decode_profile(prob, 0.5).row == 29.0
    assert decode_profile(np.full(10, 0.7), 0.5).row == 0.0
    assert decode_profile(np.zeros(0), 0.5).row is None
    assert subpixel_peak(np.array([0.2, 0.9, 0.9, 0.2]), 1) == pytest.approx(1.5)


def test_decode_levels_normal_spine_is_not_atypical():
    levels = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
    # 2 mm pixels, 17 rows (34 mm) per level, T12 at row 30.
    centres = [30 + 17 * i for i in range(len(levels))]
    probs = np.stack([gaussian(200, c) for c in centres])
    out = decode_levels(probs, levels, 0.5, pixel_mm=2.0)
    assert out.atypical is None
    assert out.rows["L3"] == pytest.approx(centres[3], abs=0.01)
    assert set(out.confidences) == set(levels)


def test_decode_levels_reports_order_and_spacing_problems():
    levels = ("L2", "L3", "L4")
    swapped = np.stack([gaussian(200, 60), gaussian(200, 40), gaussian(200, 77)])
    out = decode_levels(swapped, levels, 0.5, pixel_mm=2.0)
    assert out.atypical is not None and "out of order" in out.atypical
    squeezed = np.stack([gaussian(200, 60), gaussian(200, 63), gaussian(200, 80)])
    out = decode_levels(squeezed, levels, {"L3": 0.5}, pixel_mm=2.0)
    assert out.atypical is not None and "short" in out.atypical


def test_check_anatomy_skips_missing_levels():
    levels = ("L1", "L2", "L3", "L4")
    # L1 and L3 found two levels apart (70 mm): 35 mm per level is normal.
    assert check_anatomy({"L1": 10.0, "L3": 45.0}, levels, pixel_mm=2.0) is None
    assert check_anatomy({"L3": 45.0}, levels, pixel_mm=2.0) is None
    with pytest.raises(ValueError):
        decode_levels(np.zeros((2, 10)), levels, 0.5, pixel_mm=2.0)
