"""The shipped model on real CT (``../shared/data``, never trained on): skipped when absent.

``real_skeleton_ct328.nrrd`` is a real patient's skeleton (TotalSegmentator data
set, CC BY 4.0). The chosen slice must lie inside its L3 extent from
``truth.json``; cut above L3 or below it, L3 must not be reported; and with one
edge of the field of view moved through L2..L4 in 4 mm steps, L3 never missed
and every wrong answer flagged for review.
"""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO, SHARED_DATA

from L3LocatorLib.inference import default_model_path
from L3LocatorLib.locate import locate
from L3LocatorLib.volume import read_volume

SCAN = SHARED_DATA / "real_skeleton_ct328.nrrd"

pytestmark = [
    pytest.mark.skipif(not SCAN.exists(), reason=f"shared real CT not present ({SCAN})"),
    pytest.mark.skipif(not default_model_path().exists(), reason="no shipped default model"),
]

sys.path.insert(0, str(REPO / "benchmarks"))
from real_ct import cases_for, crop_s, sweep  # noqa: E402


@pytest.fixture(scope="module")
def scan_and_truth():
    truth = json.loads((SHARED_DATA / "truth.json").read_text())[SCAN.name]["vertebrae"]
    return read_volume(SCAN), truth


def test_whole_scan_slice_inside_l3(scan_and_truth):
    volume, truth = scan_and_truth
    low, high = truth["L3"]["s_extent_mm"]
    k_low, k_high = truth["L3"]["slice_range_k"]
    result = locate(volume)
    assert result.status == "ok", result.message
    assert low <= result.s_mm <= high
    assert k_low <= result.slice_index <= k_high
    # The point sits in the vertebral body, near the L3 centroid in-plane.
    centroid = truth["L3"]["centroid_ras_mm"]
    assert abs(result.l3_ras_mm[0] - centroid[0]) < 10.0
    assert abs(result.l3_ras_mm[1] - centroid[1]) < 15.0


def test_scans_without_l3_are_not_found(scan_and_truth):
    volume, truth = scan_and_truth
    for case in cases_for(truth):
        if case.l3_expected:
            continue
        result = locate(crop_s(volume, case.s_min, case.s_max))
        assert result.status == "not_found", (case.name, result.s_mm, result.confidence)


def test_field_of_view_sweep_misses_nothing_and_flags_what_it_gets_wrong(scan_and_truth):
    volume, truth = scan_and_truth
    tally = sweep(volume, truth, None)
    assert tally["cases"] >= 40
    assert tally["missed"] == 0, tally["wrong"]
    # Cut in the lumbar spine, the level can be off by one; such answers must be flagged.
    assert tally["confident_wrong"] == 0, tally["wrong"]
