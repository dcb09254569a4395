"""The joint level decoders compared in benchmarks/joint_decoding.py do what they say."""

from __future__ import annotations

import sys

import numpy as np
from conftest import REPO

from L3LocatorLib.decode import decode_levels
from L3LocatorLib.model import LEVELS

sys.path.insert(0, str(REPO / "benchmarks"))
from joint_decoding import joint_rows, l3_row  # noqa: E402

PIXEL_MM = 2.0
THRESHOLD = 0.64
ROWS = np.arange(200)


def peak(row: float, height: float = 0.95) -> np.ndarray:
    return height * np.exp(-0.5 * ((ROWS - row) / 1.5) ** 2)


def spine(**heights: float) -> np.ndarray:
    """Gaussian peaks 17 rows (34 mm) apart from T12 at row 20; ``heights`` overrides."""
    return np.stack([peak(20 + 17 * i, heights.get(name, 0.95))
                     for i, name in enumerate(LEVELS)])


def test_a_normal_spine_keeps_every_peak():
    for gaps in (False, True):
        rows = joint_rows(spine(), THRESHOLD, PIXEL_MM, gaps=gaps)
        assert rows == [20 + 17 * i for i in range(7)]
    assert abs(l3_row(spine(), THRESHOLD, PIXEL_MM, 3, gaps=False) - 71) < 1e-6


def test_l3_channel_firing_on_l2_is_left_out_when_the_scan_ends_at_l2():
    probs = spine(L3=0.0, L4=0.0, L5=0.0, S1=0.0)[:, :66]
    probs[3] = peak(54, 0.8)[:66]  # the L3 channel fires on L2 (row 54)
    assert decode_levels(probs, LEVELS, THRESHOLD, PIXEL_MM).decoded["L3"].row is not None
    for gaps in (False, True):
        rows = joint_rows(probs, THRESHOLD, PIXEL_MM, gaps=gaps)
        assert rows[3] is None and rows[:3] == [20, 37, 54]


def test_an_unsure_level_breaks_the_run_but_not_the_gapped_chain():
    # A child's short spine (20 mm per level) ending in L3; L2 unsure (0.55), L3 just sure
    # (0.66): the run would need L2 to keep L3 and drops both; the gapped chain skips L2.
    probs = np.stack([peak(51 + 10 * i, h) for i, h in
                      enumerate((0.85, 0.85, 0.55, 0.66, 0.0, 0.0, 0.0))])[:, :86]
    assert joint_rows(probs, THRESHOLD, PIXEL_MM, gaps=False)[3] is None
    assert joint_rows(probs, THRESHOLD, PIXEL_MM, gaps=True)[2:4] == [None, 81]


def test_nothing_above_the_threshold_means_every_level_absent():
    probs = spine(**{name: 0.3 for name in LEVELS})
    for gaps in (False, True):
        assert joint_rows(probs, THRESHOLD, PIXEL_MM, gaps=gaps) == [None] * 7
