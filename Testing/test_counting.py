"""What the result says it counted, and the variants the level rows can show."""

from __future__ import annotations

import sys

import numpy as np
from conftest import REPO

from L3LocatorLib.counting import count_levels
from L3LocatorLib.model import LEVELS

sys.path.insert(0, str(REPO / "benchmarks"))
from reliability import reliability_table  # noqa: E402

PIXEL_MM = 2.0
#: Rows of a normal spine, 2 mm rows: about 34 mm between adjacent levels.
NORMAL = {"T12": 10.0, "L1": 26.0, "L2": 43.0, "L3": 60.0, "L4": 77.0, "L5": 94.0,
          "S1": 111.0}


def test_normal_spine_counted_from_both_ends_without_flags():
    report = count_levels(NORMAL, LEVELS, PIXEL_MM)
    assert report.levels == LEVELS and report.lumbar == 5
    assert report.from_sacrum and report.from_ribs
    assert report.variants == ()
    assert "T12, L1-L5, S1" in report.summary and "counted up from the sacrum" in report.summary
    assert "does not count ribs" in report.summary


def test_anchor_words_follow_the_levels_found():
    no_sacrum = {k: v for k, v in NORMAL.items() if k not in ("L5", "S1")}
    report = count_levels(no_sacrum, LEVELS, PIXEL_MM)
    assert not report.from_sacrum and report.from_ribs and report.lumbar == 4
    assert "counted down from T12" in report.summary
    neither = {k: NORMAL[k] for k in ("L2", "L3", "L4")}
    report = count_levels(neither, LEVELS, PIXEL_MM)
    assert "shape alone" in report.summary
    assert count_levels({}, LEVELS, PIXEL_MM).summary.startswith("No vertebral level")


def test_room_for_an_unlabelled_vertebra_is_flagged():
    rows = dict(NORMAL)
    for name in ("L2", "L3", "L4", "L5", "S1"):
        rows[name] += 17.0  # one vertebra's height inserted between L1 and L2
    report = count_levels(rows, LEVELS, PIXEL_MM)
    assert len(report.variants) == 1
    assert "Between L1 and L2" in report.variants[0] and "L6" in report.variants[0]


def test_short_l5_s1_step_is_flagged_as_possibly_transitional():
    rows = dict(NORMAL, S1=NORMAL["L5"] + 9.0)
    report = count_levels(rows, LEVELS, PIXEL_MM)
    assert any("transitional" in v for v in report.variants)
    assert not any("transitional" in v for v in count_levels(NORMAL, LEVELS, PIXEL_MM).variants)


def test_a_real_normal_l5_s1_step_is_not_called_transitional():
    """Real spines step less from L5 to S1 than between lumbar levels (0.70 and 0.78 of the
    usual step on the two real patients labelled down to S1; 0.81 in the model's rows on
    the ACRIN CT): such a step is normal anatomy, not a transitional vertebra."""
    for ratio in (0.70, 0.78, 0.81):
        rows = dict(NORMAL, S1=NORMAL["L5"] + ratio * 17.0)
        assert count_levels(rows, LEVELS, PIXEL_MM).variants == (), ratio


def test_reliability_table_bins_and_calibration_error():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 4000)
    calibrated = [(c, bool(rng.uniform() < c)) for c in conf]
    table = reliability_table(calibrated, threshold=0.5)
    assert table["n"] == 4000 and sum(b["n"] for b in table["bins"]) == 4000
    assert table["ece"] < 0.05
    overconfident = [(c, bool(rng.uniform() < 0.5 * c)) for c in conf]
    assert reliability_table(overconfident, threshold=0.5)["ece"] > 0.2
    table = reliability_table([(0.9, False), (0.2, True), (0.7, True)], threshold=0.5)
    assert table["absent_called_present"] == 1 and table["present_called_absent"] == 1
