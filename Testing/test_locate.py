"""``locate`` end to end on phantoms with known truth, with the shipped model.

These tests assert what the model we ship does (its answers are fixed by its weights, the
same on every machine); what training guarantees is tested in ``test_training.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from L3LocatorLib.errors import InputError
from L3LocatorLib.locate import locate
from L3LocatorLib.network import default_model_path, read_metadata
from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.qa import qa_picture
from L3LocatorLib.volume import Volume, read_volume

#: The shipped model lands within a few mm of the landmark on held-out phantoms (model card:
#: median 0.3 mm, max 2.5 mm on 217 of them); an L3 body is about 30 mm tall.
TOLERANCE_MM = 10.0
HELD_OUT = [(777, "abdomen_pelvis"), (778, "abdomen"), (779, "chest_abdomen_pelvis"),
            (780, "abdomen_pelvis"), (781, "abdomen"), (782, "lumbar_only")]


@pytest.fixture(scope="module")
def held_out():
    """An abdomen-pelvis phantom from a seed the test model never saw."""
    return make_phantom(777, preset="abdomen_pelvis", spacing=(1.5, 1.5, 2.0), matrix=256)


def test_finds_l3_within_tolerance():
    """On six phantoms the model never saw: every one found within 10 mm of the truth, the
    point at the vertebral body, and voxel index and slice in agreement."""
    within = 0
    for seed, preset in HELD_OUT:
        volume, truth = make_phantom(seed, preset=preset, spacing=(1.5, 1.5, 2.0), matrix=256)
        result = locate(volume)
        if result.status != "ok":
            continue
        if abs(result.s_mm - truth.l3_landmark_ras[2]) >= TOLERANCE_MM:
            continue
        within += 1
        # The point is placed at the vertebral body: in-plane near its centre.
        offset = np.subtract(result.l3_ras_mm[:2], truth.l3_centre_ras[:2])
        assert np.linalg.norm(offset) < 15.0, (seed, offset)
        i, j, k = result.l3_ijk
        assert result.slice_axis == 2 and result.slice_index == k
        assert np.allclose(volume.ijk_to_ras_points((i, j, k)), result.l3_ras_mm,
                           atol=0.5 * volume.spacing.max() + 1e-6)
        assert set(result.views) == {"fused", "frontal", "sagittal"}
        assert {"validate", "project", "network", "decode"} <= set(result.timings_s)
    assert within == len(HELD_OUT), f"only {within} of {len(HELD_OUT)} found within tolerance"


def test_file_and_memory_give_the_same_answer(phantom_files):
    path, truth = phantom_files["with_l3"]
    volume = read_volume(path)
    from_file = locate(volume)
    again = locate(volume)
    assert from_file.to_dict() | {"timings_s": None} == again.to_dict() | {"timings_s": None}


def restore(volume: Volume, axes: tuple[int, int, int], flips: tuple[bool, ...]) -> Volume:
    """The same voxels stored another way: array axes permuted by ``axes`` then flipped where
    ``flips`` says, with the matrix adjusted so every voxel keeps its RAS position."""
    array = np.transpose(volume.array, axes)
    new_to_old = np.eye(4)
    new_to_old[:3, :3] = 0.0
    for n, a in enumerate(axes):  # new array axis n is old array axis a; ijk order is reversed
        size = array.shape[n]
        new_to_old[2 - a, 2 - n] = -1.0 if flips[n] else 1.0
        new_to_old[2 - a, 3] = size - 1 if flips[n] else 0.0
    flipped = tuple(n for n in range(3) if flips[n])
    array = np.flip(array, axis=flipped) if flipped else array
    return Volume(array, volume.ijk_to_ras @ new_to_old, volume.name)


@pytest.mark.parametrize(
    "axes,flips",
    [((0, 1, 2), (True, True, True)), ((2, 1, 0), (False, True, False)),
     ((1, 0, 2), (True, False, True))],
)
def test_answer_does_not_depend_on_storage_order(held_out, axes, flips):
    """The same anatomy stored with other axis orders and flips gives the same RAS point."""
    volume, _ = held_out
    restored = restore(volume, axes, flips)
    old_ijk = np.array([3.0, 5.0, 7.0])
    new_ijk = np.round(restored.ras_to_ijk_points(volume.ijk_to_ras_points(old_ijk))).astype(int)
    assert restored.array[new_ijk[2], new_ijk[1], new_ijk[0]] == volume.array[7, 5, 3]
    reference = locate(volume)
    result = locate(restored)
    assert result.status == reference.status
    if reference.found:
        assert np.allclose(result.l3_ras_mm, reference.l3_ras_mm, atol=1.0)
        expected_axis = int(np.argmax(np.abs(restored.direction[2])))
        assert result.slice_axis == expected_axis
        assert result.slice_index == result.l3_ijk[expected_axis]
    assert result.confidence == pytest.approx(reference.confidence, abs=1e-3)


def test_chest_scan_is_not_found(phantom_files):
    """A chest-only scan: not_found (the confidence under the model's threshold), and no
    point."""
    path, truth = phantom_files["chest"]
    assert not truth.l3_in_fov
    result = locate(read_volume(path))
    assert result.status == "not_found", result.confidence
    assert result.confidence < read_metadata(default_model_path()).threshold
    assert result.slice_index is None and result.l3_ras_mm is None
    assert "not in the field of view" in result.message
    # Far under the threshold: no candidate slice is offered either.
    assert result.candidate_s_mm is None and result.shown_voxel is None


def test_near_miss_names_a_candidate_slice_but_stays_not_found(held_out, tmp_path):
    """The shipped weights with a threshold above their confidence on a held-out phantom:
    L3 is not found, yet the peak is past half the threshold, so its slice is offered as a
    place to check (``ReviewPolicy.candidate_fraction``), at the true L3, with no point."""
    import json
    import shutil

    volume, truth = held_out
    found = locate(volume)
    meta = json.loads(default_model_path().read_text())
    shutil.copy(default_model_path().with_name(meta["weights"]), tmp_path / meta["weights"])
    meta["threshold"] = min(0.999, found.confidence + 0.03)
    meta["flag_threshold"] = None  # no low-confidence answers (test_presence covers those)
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps(meta))
    result = locate(volume, model=strict)
    assert result.status == "not_found" and result.l3_ras_mm is None
    assert result.confidence == pytest.approx(found.confidence, abs=1e-6)
    assert abs(result.candidate_s_mm - truth.l3_landmark_ras[2]) < TOLERANCE_MM
    i, j, k = result.candidate_ijk
    assert result.shown_voxel == [i, j, k] and result.slice_axis == 2
    assert abs(volume.ijk_to_ras_points((i, j, k))[2] - result.candidate_s_mm) <= volume.spacing[2]
    assert f"slice {k} " in result.message and "check that slice yourself" in result.message
    assert result.to_dict()["candidate_ijk"] == [i, j, k]
    assert "The scan ends" not in result.message  # L3 is far from both edges here
    # The QA picture marks the candidate with a dashed amber line, not the green answer.
    picture = qa_picture(result)
    assert _green_rows(picture) < 50 and _amber_rows(picture) > 150
    # Cut 20 mm below L3: the candidate carries the warning that it was counted from the
    # ribs alone (near an edge the peak is often the last vertebra in view).
    k_l3 = volume.ras_to_ijk_points(np.asarray(truth.l3_landmark_ras, float))[2]
    step = int(round(20.0 / volume.spacing[2]))
    s_up = volume.ijk_to_ras[2, 2] > 0
    k0, k1 = (int(k_l3) - step, volume.array.shape[0]) if s_up else (0, int(k_l3) + step + 1)
    cut = locate(volume.crop_slices(k0, k1), model=strict)
    assert cut.status == "not_found" and cut.candidate_s_mm is not None
    assert abs(cut.candidate_s_mm - truth.l3_landmark_ras[2]) < TOLERANCE_MM
    assert "The scan ends" in cut.message and "counted from the ribs alone" in cut.message


def test_too_short_scan_is_refused():
    volume = Volume.from_geometry(np.zeros((5, 100, 100), np.int16), (1.0, 1.0, 2.0))
    with pytest.raises(InputError, match="at least 30 mm"):
        locate(volume)


def test_input_volume_is_not_modified(held_out):
    volume, _ = held_out
    before = volume.array.copy()
    locate(volume)
    assert np.array_equal(volume.array, before)


def _green_rows(picture: np.ndarray) -> int:
    green = (picture[..., 1] > 200) & (picture[..., 0] < 100) & (picture[..., 2] < 150)
    return int(green.sum(axis=1).max())


def _amber_rows(picture: np.ndarray) -> int:
    """Most amber pixels on one row of the MIPs (below the header's amber text)."""
    from L3LocatorLib.qa import HEADER_HEIGHT

    mips = picture[HEADER_HEIGHT:]
    amber = (mips[..., 0] > 200) & (mips[..., 1] > 150) & (mips[..., 2] < 90)
    return int(amber.sum(axis=1).max())


def test_qa_picture_draws_the_answer(phantom_files):
    found = None
    for seed, preset in HELD_OUT:
        volume, _ = make_phantom(seed, preset=preset, spacing=(1.5, 1.5, 2.0), matrix=256)
        found = locate(volume)
        if found.found:
            break
    assert found is not None and found.found
    picture = qa_picture(found, title="held-out phantom")
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.dtype == np.uint8
    assert _green_rows(picture) > 200  # the green L3 line across both MIPs
    chest = locate(read_volume(phantom_files["chest"][0]))
    assert not chest.found
    chest_picture = qa_picture(chest, title="chest")
    assert _green_rows(chest_picture) < 50  # no line when not found
    assert _amber_rows(chest_picture) < 150  # nor a candidate's
