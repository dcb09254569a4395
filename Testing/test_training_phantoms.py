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


@pytest.mark.parametrize("orientation", ["axial_lps", "feet_first", "random_flip"])
def test_spine_crop_keeps_patient_positions_and_levels(orientation):
    """``spine_crop``: an in-plane box 70-200 mm wide near L3, every slice kept, the same
    voxel at the same patient position (the origin moves with the crop), levels unchanged."""
    from training.sources import SPINE_CROP_MM, sample_from_truth, spine_crop

    volume, truth = phantom.make_phantom(3, preset="abdomen_pelvis", spacing=[2, 2, 2.5],
                                         matrix=200, orientation=orientation)
    assert spine_crop(volume, truth, 3, 0.0) is volume
    cropped = spine_crop(volume, truth, 3, 1.0)
    spacing = volume.spacing
    slice_axis = int(np.argmax(np.abs(volume.direction[2])))
    for axis in range(3):
        n_full, n_crop = volume.array.shape[2 - axis], cropped.array.shape[2 - axis]
        if axis == slice_axis:
            assert n_crop == n_full
        else:
            assert SPINE_CROP_MM[0] - 2 * spacing[axis] <= n_crop * spacing[axis]
            assert n_crop * spacing[axis] <= SPINE_CROP_MM[1] + 2 * spacing[axis]
            assert n_crop < n_full
    rng = np.random.default_rng(0)
    ijk = np.stack([rng.integers(0, n, 50) for n in cropped.array.shape[::-1]], axis=1)
    ras = cropped.ijk_to_ras_points(ijk.astype(float))
    back = np.rint(volume.ras_to_ijk_points(ras)).astype(int)
    np.testing.assert_array_equal(cropped.array[ijk[:, 2], ijk[:, 1], ijk[:, 0]],
                                  volume.array[back[:, 2], back[:, 1], back[:, 0]])
    centre = cropped.ras_to_ijk_points(truth.vertebra("L3").centre_ras)
    assert all(-0.5 < c < n - 0.5 for c, n in zip(centre, cropped.array.shape[::-1])), \
        "the crop is centred near L3, so L3's body centre stays inside it"
    config = PreprocessConfig()
    full, crop = (sample_from_truth(v, truth, config, "x") for v in (volume, cropped))
    assert crop.level_rows == pytest.approx(full.level_rows)
    assert crop.frontal_hu.shape == full.frontal_hu.shape
