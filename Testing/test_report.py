"""Result rows: JSON-ready values, errors in plain words. (Finding scans: test_inputs.py;
the results file: test_results.py; the loop: test_batch.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from L3LocatorLib.errors import InputError
from L3LocatorLib.report import ROW_FIELDS, error_message, result_row
from L3LocatorLib.result import L3Result, ViewResult


def _ok_result() -> L3Result:
    return L3Result(
        status="ok", message="L3 found.", slice_index=np.int64(41), slice_axis=2,
        l3_ijk=[np.int64(10), 20, 41], l3_ras_mm=[1.5, -2.25, np.float64(100.125)], s_mm=100.125,
        confidence=np.float32(0.93), views={"both": ViewResult(row=12.5, confidence=0.93)},
        model_name="default", model_version="1", timings_s={"project": 0.1, "network": 0.2},
    )


def test_result_row_from_result_is_json_ready():
    row = result_row("scan.nii.gz", _ok_result())
    assert set(ROW_FIELDS) <= set(row)
    text = json.dumps(row)  # plain Python types only
    back = json.loads(text)
    assert back["status"] == "ok" and back["slice_index"] == 41
    assert back["l3_ijk"] == [10, 20, 41] and back["confidence"] == pytest.approx(0.93, abs=1e-4)
    assert back["seconds"] == pytest.approx(0.3)


def test_result_row_from_errors():
    row = result_row("bad.nii.gz", error=InputError("bad.nii.gz: no such file or folder."))
    assert row["status"] == "error" and row["message"].startswith("bad.nii.gz")
    assert row["slice_index"] is None
    unexpected = error_message(ZeroDivisionError("x"))
    assert "bug" in unexpected and "ZeroDivisionError" in unexpected
