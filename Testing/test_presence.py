"""Three answers: sure, unsure (flagged), absent (``L3LocatorLib.presence``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from L3LocatorLib.decode import decode_prediction
from L3LocatorLib.errors import ModelError
from L3LocatorLib.locate import locate
from L3LocatorLib.model import LEVELS
from L3LocatorLib.network import default_model_path, load_model
from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.presence import ABSENT, SURE, UNSURE, decide, views_agree
from L3LocatorLib.report import result_row

N_ROWS = 200
PIXEL_MM = 2.0


def _profile(row: float, peak: float) -> np.ndarray:
    """A Gaussian row profile (sigma 1.5 rows) of height ``peak`` at ``row``."""
    rows = np.arange(N_ROWS)
    return (peak * np.exp(-0.5 * ((rows - row) / 1.5) ** 2)).astype(np.float32)


def _prediction(fused: tuple[float, float], frontal: tuple[float, float],
                sagittal: tuple[float, float], threshold: float = 0.6):
    """A decoded prediction whose L3 channels peak at the given (row, height) per view."""
    probs = {}
    for name, (row, peak) in (("fused", fused), ("frontal", frontal), ("sagittal", sagittal)):
        p = np.zeros((len(LEVELS), N_ROWS), dtype=np.float32)
        p[LEVELS.index("L3")] = _profile(row, peak)
        probs[name] = p
    return decode_prediction(probs, LEVELS, threshold=threshold, pixel_mm=PIXEL_MM)


def test_sure_above_the_threshold_whatever_the_views():
    decision = decide(_prediction((100, 0.8), (160, 0.3), (40, 0.3)), flag_threshold=0.3)
    assert decision.kind == SURE and decision.row == pytest.approx(100, abs=0.01)


def test_unsure_needs_the_flag_threshold_and_agreeing_views():
    agreeing = _prediction((100, 0.4), (103, 0.3), (98, 0.2))
    assert views_agree(agreeing)
    decision = decide(agreeing, flag_threshold=0.35)
    assert decision.kind == UNSURE and decision.row == pytest.approx(100, abs=0.01)
    assert decision.confidence == pytest.approx(0.4, abs=1e-3)
    # below the flag threshold, or without one: absent
    assert decide(agreeing, flag_threshold=0.45).kind == ABSENT
    assert decide(agreeing, flag_threshold=None).kind == ABSENT
    # a single view 8 rows (16 mm, more than half a vertebra) away: absent
    apart = _prediction((100, 0.4), (108, 0.3), (98, 0.2))
    assert not views_agree(apart) and decide(apart, flag_threshold=0.35).kind == ABSENT
    # 7 rows (14 mm) still agree
    assert decide(_prediction((100, 0.4), (107, 0.3), (98, 0.2)), 0.35).kind == UNSURE


def test_a_single_view_answer_is_never_unsure():
    """Asked for one view alone there is nothing to agree with: sure or absent only."""
    prediction = _prediction((100, 0.4), (100, 0.4), (100, 0.4))
    assert decide(prediction, 0.3, view="frontal").kind == ABSENT
    assert decide(prediction, 0.3, view="fused").kind == UNSURE


def _model_with(tmp_path, **fields) -> str:
    meta = json.loads(default_model_path().read_text())
    shutil.copy(default_model_path().with_name(meta["weights"]), tmp_path / meta["weights"])
    meta.update(fields)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(meta))
    return str(path)


def test_locate_answers_unsure_with_the_slice_and_a_flag(tmp_path):
    """The shipped weights with the sure threshold raised above their confidence on a
    held-out phantom and a flag threshold below it: L3 is answered, at the truth, flagged,
    and the message names the slice; the row says "unsure"."""
    volume, truth = make_phantom(777, preset="abdomen_pelvis", spacing=(1.5, 1.5, 2.0),
                                 matrix=256)
    sure = locate(volume)
    assert sure.presence == SURE and not any("unsure" in r for r in sure.review)
    threshold = min(0.999, sure.confidence + 0.02)
    model = _model_with(tmp_path, threshold=threshold, flag_threshold=sure.confidence - 0.1)
    result = locate(volume, model=model)
    assert result.status == "ok" and result.presence == UNSURE and result.needs_review
    assert abs(result.s_mm - truth.l3_landmark_ras[2]) < 10.0
    assert result.slice_index == sure.slice_index and result.l3_ijk == sure.l3_ijk
    assert f"most likely at slice {result.slice_index} " in result.message
    assert "unsure" in result.review[0] and f"{threshold:.2f}" in result.review[0]
    row = result_row("scan.nii.gz", result)
    assert row["presence"] == UNSURE and row["slice_index"] == result.slice_index
    # With the flag threshold above the confidence it is a near miss again: not found, and
    # the candidate's slice is a column of the row.
    strict = _model_with(tmp_path, threshold=threshold, flag_threshold=threshold - 0.005)
    missed = locate(volume, model=strict)
    assert missed.status == "not_found" and missed.presence == ABSENT
    row = result_row("scan.nii.gz", missed)
    assert row["candidate_slice_index"] == missed.candidate_ijk[2] == result.slice_index
    assert row["candidate_s_mm"] == pytest.approx(missed.candidate_s_mm, abs=1e-3)


def test_flag_threshold_above_the_threshold_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="flag_threshold"):
        load_model(_model_with(tmp_path, threshold=0.5, flag_threshold=0.6), device="cpu")
    with pytest.raises(ModelError, match="flag_threshold"):
        load_model(_model_with(tmp_path, flag_threshold=1.5), device="cpu")


def _cut_below_l3(volume, truth, mm: float):
    """``volume`` cut ``mm`` below the L3 landmark (the scan then ends inside L3/L4)."""
    k_l3 = volume.ras_to_ijk_points(np.asarray(truth.l3_landmark_ras, float))[2]
    step = int(round(mm / volume.spacing[2]))
    s_up = volume.ijk_to_ras[2, 2] > 0
    k0, k1 = (int(k_l3) - step, volume.array.shape[0]) if s_up else (0, int(k_l3) + step + 1)
    return volume.crop_slices(k0, k1)


def test_an_unsure_answer_near_a_scan_edge_stands_only_with_the_second_readers_count(
        tmp_path, monkeypatch):
    """A scan cut 20 mm below L3: the weak peak lies within one vertebra of the edge, where
    it is as often the last vertebra in view as L3. Without an independent count it is not
    an answer; with the second reader's count from the ribs putting L3 there, it is, and the
    scan-edge flag (counted from the ribs alone) is lifted since the ribs were counted."""
    import L3LocatorLib.locate as locate_module
    from L3LocatorLib.second_reader import CANNOT_COUNT, COUNTED, SecondReading

    volume, truth = make_phantom(777, preset="abdomen_pelvis", spacing=(1.5, 1.5, 2.0),
                                 matrix=256)
    cut = _cut_below_l3(volume, truth, 20.0)
    sure = locate(cut)
    threshold = min(0.999, sure.confidence + 0.02)
    model = _model_with(tmp_path, threshold=threshold, flag_threshold=0.05)
    l3_s = truth.l3_landmark_ras[2]

    monkeypatch.setattr(locate_module, "safe_read", lambda v, p, g: SecondReading(
        CANNOT_COUNT, "The vertebrae could not be counted."))
    lone = locate(cut, model=model)
    assert lone.status == "not_found" and lone.presence == ABSENT
    assert lone.candidate_s_mm is not None  # still offered as a place to look

    monkeypatch.setattr(locate_module, "safe_read", lambda v, p, g: SecondReading(
        COUNTED, "Counted down from the last rib.", anchors=["last rib"],
        l3_from_ribs_s_mm=[l3_s - 20.0, l3_s + 12.0]))
    counted = locate(cut, model=model)
    assert counted.status == "ok" and counted.presence == UNSURE
    assert abs(counted.s_mm - l3_s) < 10.0
    assert not any("The scan ends" in r for r in counted.review)
    assert "second reader agrees" in counted.message

    # A count that puts L3 one vertebra higher does not confirm it (and is said)
    monkeypatch.setattr(locate_module, "safe_read", lambda v, p, g: SecondReading(
        COUNTED, "Counted down from the last rib.", anchors=["last rib"],
        l3_from_ribs_s_mm=[l3_s + 20.0, l3_s + 52.0]))
    other = locate(cut, model=model)
    assert other.status == "not_found"
    assert "disagrees" in other.second_reading.verdict
    assert "counting down from the last rib gives L3 at" in other.second_reading.verdict


def test_a_level_confirmed_from_the_anchor_beyond_an_edge_is_not_flagged_for_it():
    """L3 10 rows (20 mm) above the scan's lower edge: counted from the ribs alone, so
    flagged, unless the second reader counted the same L3 down from the last rib; a count
    up from the sacrum (not in view below) does not lift that flag. Near the cut-off the
    margin flag goes with any confirmation."""
    from L3LocatorLib.review import review_reasons

    prediction = _prediction((N_ROWS - 11, 0.7), (N_ROWS - 11, 0.7), (N_ROWS - 11, 0.7),
                             threshold=0.6)
    fused = prediction.decoded["fused"]

    def reasons(confirmed):
        return review_reasons(fused, 0.6, N_ROWS, PIXEL_MM, confirmed=confirmed)

    assert any("The scan ends" in r for r in reasons(()))
    assert any("not sure" in r for r in reasons(()))
    assert reasons({"ribs"}) == []
    assert any("The scan ends" in r for r in reasons({"sacrum"}))
    assert not any("not sure" in r for r in reasons({"sacrum"}))


def test_views_disagreeing_on_the_count_need_no_check_when_the_sacrum_count_agrees():
    """The frontal view alone 20 rows (40 mm) lower than the combined answer asks for a
    count; the second reader's count up from the sacrum landing on the combined answer is
    one; its count down from the ribs alone (less reliable) is not taken as one."""
    from L3LocatorLib.review import review_reasons

    prediction = _prediction((100, 0.9), (120, 0.9), (100, 0.9), threshold=0.6)
    fused = prediction.decoded["fused"]
    view_rows = prediction.single_view_peaks("fused")

    def reasons(confirmed):
        return review_reasons(fused, 0.6, N_ROWS, PIXEL_MM, view_rows=view_rows,
                              confirmed=confirmed)

    assert any("views disagree" in r for r in reasons(()))
    assert any("views disagree" in r for r in reasons({"ribs"}))
    assert reasons({"sacrum"}) == [] and reasons({"ribs", "sacrum"}) == []
