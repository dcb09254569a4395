"""Phantom data source: generation with 2 processes, truth -> rows, cache reuse."""

from __future__ import annotations

import numpy as np
import pytest

from L3LocatorLib.projection import PreprocessConfig

phantom = pytest.importorskip("L3LocatorLib.phantoms")

from training.sources import parse_sources  # noqa: E402

FAST = "spacing=[2,2,2]:matrix=160"


def test_phantom_source_rows_match_truth_and_cache(tmp_path):
    config = PreprocessConfig()
    spec = f"phantoms:3:10:abdomen_pelvis:{FAST}"
    samples = parse_sources(spec, config, tmp_path, processes=2)
    assert 1 <= len(samples) <= 3
    for s in samples:
        assert s.frontal_hu.shape == s.sagittal_hu.shape and s.frontal_hu.shape[1] == 256
        assert "L3" in s.known_levels and s.l3_row is not None
        assert s.l3_top_row < s.l3_row < s.l3_bottom_row
        seed = int(s.name.rsplit("-", 1)[1])
        _, truth = phantom.make_phantom(seed, preset="abdomen_pelvis", spacing=[2, 2, 2],
                                        matrix=160)
        l3 = truth.vertebra("L3")
        top_s = s.extra["top_s_mm"]
        assert s.l3_row == pytest.approx((top_s - l3.landmark_s_mm) / 2.0, abs=1e-6)
        # Levels run superior -> inferior down the rows.
        rows = [s.level_rows[k] for k in ("L1", "L2", "L3", "L4") if k in s.level_rows]
        assert rows == sorted(rows)
    cached = list(tmp_path.glob("phantoms_*.npz"))
    assert len(cached) == 1
    again = parse_sources(spec, config, tmp_path, processes=2)
    np.testing.assert_array_equal(again[0].frontal_hu, samples[0].frontal_hu)


def test_chest_phantom_is_a_negative(tmp_path):
    samples = parse_sources(f"phantoms:1:3:chest:{FAST}", PreprocessConfig(), tmp_path,
                            processes=1)
    assert samples and samples[0].l3_row is None and "L3" in samples[0].known_levels
