"""Label maps of every convention (TotalSegmentator v1/v2, VerSe) as training sources,
and the completion of vertebra-only maps with synthetic ribs, pelvis and soft tissue.

The core tests build tiny synthetic maps (boxes for vertebral bodies, 2 mm voxels)
so they need no shared data; the last ones read the real VerSe masks in
``../shared/data`` and skip when they are absent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "L3Locator") not in sys.path:
    sys.path.insert(0, str(REPO / "L3Locator"))

from L3LocatorLib.phantoms.label_conventions import (  # noqa: E402
    find_class_map,
    is_spine_only,
    resolve_class_map,
    totalseg_v1_vertebra_map,
    totalseg_v2_vertebra_map,
    verse_class_map,
)
from L3LocatorLib.phantoms.labelmap_ct import (  # noqa: E402
    labelmap_phantom,
    labelmap_to_ct,
    truth_from_labelmap,
)
from L3LocatorLib.phantoms.spine_completion import complete_spine_map  # noqa: E402
from L3LocatorLib.volume import Volume, read_volume, write_volume  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SPINE = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
BODY_MM, DISC_MM, VOXEL = 24.0, 8.0, 2.0


def _tiny_spine(numbers: dict[str, int], sagittal_storage: bool = True) -> Volume:
    """Vertebral bodies (30 x 24 x 24 mm boxes, 8 mm discs) with a posterior element,
    labelled with ``numbers[name]``; T10 on top. Stored like VerSe (i -> -A, j -> -S,
    k -> R) or axially (i -> R, j -> A, k -> S)."""
    n_s = int(len(SPINE) * (BODY_MM + DISC_MM) / VOXEL) + 8
    ras = np.zeros((40, 36, n_s), dtype=np.int16)  # [R, A, S] voxels, S upward
    for rank, name in enumerate(SPINE):
        top = n_s - 4 - int(rank * (BODY_MM + DISC_MM) / VOXEL)
        s0 = top - int(BODY_MM / VOXEL)
        ras[12:28, 18:30, s0:top] = numbers[name]  # body, anterior
        ras[17:23, 8:18, s0 + 3:top] = numbers[name]  # pedicles, lamina, process
    if not sagittal_storage:
        array = np.transpose(ras, (2, 1, 0))  # [k=S, j=A, i=R]
        matrix = np.diag([VOXEL, VOXEL, VOXEL, 1.0])
        return Volume(np.ascontiguousarray(array), matrix, name="tiny_axial")
    # VerSe layout: i -> -A, j -> -S, k -> R; array [k, j, i] = [R, -S, -A]
    array = np.ascontiguousarray(ras[:, ::-1, ::-1].transpose(0, 2, 1))
    matrix = np.zeros((4, 4))
    matrix[0, 2] = VOXEL  # k -> R
    matrix[1, 0] = -VOXEL  # i -> -A
    matrix[2, 1] = -VOXEL  # j -> -S
    matrix[:3, 3] = [0.0, (ras.shape[1] - 1) * VOXEL, (n_s - 1) * VOXEL]
    matrix[3, 3] = 1.0
    return Volume(array, matrix, name="tiny_verse")


def _numbers(class_map: dict[int, str]) -> dict[str, int]:
    by_name = {v: k for k, v in class_map.items()}
    return {n: by_name[f"vertebrae_{n}"] for n in SPINE}


def test_verse_numbers_follow_the_verse_convention():
    names = verse_class_map()
    assert names[8] == "vertebrae_T1" and names[19] == "vertebrae_T12"
    assert names[20] == "vertebrae_L1" and names[22] == "vertebrae_L3"
    assert names[25] == "vertebrae_L6" and names[28] == "vertebrae_T13"
    assert names[26] == "sacrum" and names[1] == "vertebrae_C1"
    v1 = totalseg_v1_vertebra_map()
    assert v1[20] == "vertebrae_L3" and v1[18] == "vertebrae_L5" and v1[92] == "sacrum"


def test_resolve_class_map_by_file(tmp_path):
    verse = tmp_path / "sub-verse123_seg.nii.gz"
    verse.write_bytes(b"")
    assert resolve_class_map(verse)[22] == "vertebrae_L3"
    other = tmp_path / "case_ab12.nrrd"
    other.write_bytes(b"")
    assert resolve_class_map(other)[20] == "vertebrae_L3"  # TotalSegmentator v1 numbers
    (tmp_path / "class_map_ab12.json").write_text(json.dumps({"29": "vertebrae_L3"}))
    assert resolve_class_map(other) == {29: "vertebrae_L3"}
    assert resolve_class_map(other, "verse")[22] == "vertebrae_L3"
    with pytest.raises(ValueError, match="convention"):
        resolve_class_map(other, "itk")


def test_class_map_found_for_a_stem_of_several_parts(tmp_path):
    """``real_labelmap_s0327_gt_bones.nii.gz`` has its names in
    ``class_map_s0327_gt_bones.json``: a tail of the stem longer than its last part."""
    labels = tmp_path / "real_labelmap_s0327_gt_bones.nii.gz"
    labels.write_bytes(b"")
    assert find_class_map(labels) is None
    (tmp_path / "class_map_s0327_gt_bones.json").write_text(json.dumps({"29": "vertebrae_L3"}))
    assert resolve_class_map(labels) == {29: "vertebrae_L3"}
    # the shortest tail wins when two fit
    (tmp_path / "class_map_bones.json").write_text(json.dumps({"7": "vertebrae_L3"}))
    assert find_class_map(labels) == tmp_path / "class_map_bones.json"


def test_totalseg_v2_vertebra_numbers():
    """A v2 vertebra mask without its class map (the TotalSegmentator data set's s0224):
    27 L5 ... 50 C1, 26 S1, 25 sacrum, chosen only by name of the convention."""
    v2 = totalseg_v2_vertebra_map()
    assert (v2[25], v2[26], v2[27], v2[29], v2[32], v2[44], v2[50]) == (
        "sacrum", "vertebrae_S1", "vertebrae_L5", "vertebrae_L3", "vertebrae_T12",
        "vertebrae_C7", "vertebrae_C1")
    assert len(set(v2.values())) == len(v2) == 26
    plain = Path("case_0224.nii.gz")
    assert resolve_class_map(plain, "totalseg_v2") == v2
    assert resolve_class_map(plain)[29] != "vertebrae_L3"  # auto reads v1 numbers


def test_the_three_conventions_give_the_same_truth_by_name():
    """One anatomy labelled with VerSe, TotalSegmentator v1 and v2 numbers (and stored in
    two orientations): the same vertebra landmarks, because levels are read by name."""
    v2 = {25: "sacrum", 26: "vertebrae_S1", 27: "vertebrae_L5", 28: "vertebrae_L4",
          29: "vertebrae_L3", 30: "vertebrae_L2", 31: "vertebrae_L1", 32: "vertebrae_T12",
          33: "vertebrae_T11", 34: "vertebrae_T10", 100: "rib_left_12"}
    results = []
    for cmap, sagittal in ((verse_class_map(), True), (totalseg_v1_vertebra_map(), False),
                           (v2, True)):
        truth = truth_from_labelmap(_tiny_spine(_numbers(cmap), sagittal), cmap)
        results.append({v.name: v.landmark_s_mm for v in truth.vertebrae})
    assert list(results[0]) == SPINE
    for other in results[1:]:
        assert list(other) == SPINE
        for name in SPINE:
            assert other[name] == pytest.approx(results[0][name], abs=VOXEL)
    # landmark 37 % down the 24 mm body: L3's body spans S from its top downwards
    lm = results[0]
    assert lm["L2"] - lm["L3"] == pytest.approx(BODY_MM + DISC_MM, abs=VOXEL)


def test_v2_s1_label_wins_over_the_sacrum():
    cmap = {1: "sacrum", 2: "vertebrae_S1", 3: "vertebrae_L5"}
    arr = np.zeros((60, 20, 20), dtype=np.int16)
    arr[40:52, 5:15, 5:15] = 3
    arr[20:36, 5:15, 5:15] = 2
    arr[2:20, 5:15, 5:15] = 1
    truth = truth_from_labelmap(Volume(arr, np.diag([2.0, 2.0, 2.0, 1.0])), cmap)
    names = [v.name for v in truth.vertebrae]
    assert names.count("S1") == 1
    s1 = truth.vertebra("S1")
    assert 40.0 <= s1.top_s_mm <= 72.0  # the S1 label (k 20-35), not the sacrum below it


def test_spine_only_maps_are_recognised():
    cmap = verse_class_map()
    assert is_spine_only(cmap, {0, 20, 21, 22})
    assert not is_spine_only({1: "vertebrae_L3", 2: "rib_left_12"}, {0, 1, 2})
    assert not is_spine_only(cmap, {0})


def test_completion_adds_ribs_pelvis_and_body_around_the_real_vertebrae():
    cmap = verse_class_map()
    labels = _tiny_spine(_numbers(cmap))
    verts = truth_from_labelmap(labels, cmap).vertebrae
    volume, names = complete_spine_map(labels, cmap, verts, np.random.default_rng(3),
                                       spacing_mm=3.0)
    arr = np.asarray(volume.array)
    counts = {n: int((arr == k).sum()) for k, n in names.items()}
    ribs = {n for n, c in counts.items() if n.startswith("rib_") and c}
    assert {n.split("_")[-1] for n in ribs} <= {"10", "11", "12"}  # thoracic levels only
    assert counts["rib_left_10"] > counts["rib_left_11"]  # the lower ribs are shorter
    assert counts.get("rib_left_12", 0) < counts["rib_left_11"]
    for organ in ("sacrum", "hip_left", "hip_right", "aorta", "subcutaneous_fat", "lung_left"):
        assert counts.get(organ, 0) > 0, organ
    # the pelvis lies below the last lumbar vertebra, the lungs above the lumbar spine
    truth = truth_from_labelmap(volume, names)
    s_of = {v.name: v for v in truth.vertebrae}
    k_hip = np.nonzero(arr == next(k for k, n in names.items() if n == "hip_left"))[0]
    hip_top_s = float(volume.ijk_to_ras[2, 3] + k_hip.max() * 3.0)  # grid k -> S, 3 mm
    assert hip_top_s < s_of["L3"].landmark_s_mm
    # the real vertebrae keep their positions (within a voxel of the new grid)
    before = {v.name: v.landmark_s_mm for v in verts}
    for name in SPINE:
        assert s_of[name].landmark_s_mm == pytest.approx(before[name], abs=3.0)


def test_vertebra_only_map_becomes_a_ct_with_bone_at_l3():
    cmap = verse_class_map()
    labels = _tiny_spine(_numbers(cmap))
    volume, truth = labelmap_phantom(labels, cmap, seed=5, completion_mm=4.0, fov="full",
                                     flip=False)
    assert truth.l3_in_fov and truth.vertebra("T12") is not None
    ijk = np.round(volume.ras_to_ijk_points(truth.l3_landmark_ras[None])[0]).astype(int)
    assert np.asarray(volume.array)[ijk[2], ijk[1], ijk[0]] > 150  # inside the body
    assert np.asarray(volume.array).min() <= -900  # air outside the body
    other, _ = labelmap_phantom(labels, cmap, seed=6, completion_mm=4.0, fov="full",
                                flip=False)
    assert other.array.shape != volume.array.shape or not np.array_equal(other.array,
                                                                         volume.array)


def test_degenerate_spine_narrows_the_disc_gaps():
    cmap = totalseg_v1_vertebra_map()
    labels = _tiny_spine(_numbers(cmap), sagittal_storage=False)
    kwargs = dict(table=False, noise_hu=0.0, kernel="sharp", slice_thickness_mm=2.0)
    young, truth = labelmap_to_ct(labels, cmap, seed=1, degenerate=False, **kwargs)
    old, _ = labelmap_to_ct(labels, cmap, seed=1, degenerate=True, **kwargs)
    # disc rows between L2 and L3 bodies, in the middle of the bodies' columns
    l2, l3 = truth.vertebra("L2"), truth.vertebra("L3")
    s_disc = 0.5 * (l2.bottom_s_mm + l3.top_s_mm)
    k = int(round(s_disc / VOXEL))
    disc_young = np.asarray(young.array)[k - 1:k + 2, 19:29, 13:27]
    disc_old = np.asarray(old.array)[k - 1:k + 2, 19:29, 13:27]
    assert (disc_old > 200).mean() > (disc_young > 200).mean() + 0.2


def test_labelmap_folder_source_uses_every_map(tmp_path):
    from L3LocatorLib.projection import PreprocessConfig
    from training.sources import labelmap_files, load_source

    cmap = verse_class_map()
    folder = tmp_path / "maps"
    folder.mkdir()
    write_volume(_tiny_spine(_numbers(cmap)), folder / "a_verse1.nii.gz")
    write_volume(_tiny_spine(_numbers(cmap)), folder / "b_verse2.nii.gz")
    (folder / "notes.txt").write_text("not a map")
    assert [p.name for p in labelmap_files(folder)] == ["a_verse1.nii.gz", "b_verse2.nii.gz"]
    samples = load_source(f"labelmap:{folder}:2:0:completion_mm=5", PreprocessConfig(),
                          tmp_path / "cache", processes=1)
    assert [s.name for s in samples] == ["labelmap-a_verse1-0", "labelmap-b_verse2-1"]
    assert all("L3" in s.known_levels and "T12" in s.known_levels for s in samples)
    with pytest.raises(ValueError, match="label-map option"):
        load_source(f"labelmap:{folder}:2:0:colour=red", PreprocessConfig(), tmp_path / "c2")


def test_row_bend_is_smooth_zero_mean_and_scaled():
    from training.augment import row_bend

    bend = row_bend(256, np.random.default_rng(0), 8.0, 50.0)
    assert bend.shape == (256,)
    assert abs(bend.mean()) < 1e-6 and bend.std() == pytest.approx(8.0, rel=1e-3)
    assert np.abs(np.diff(bend)).max() < 2.0  # a curve, not noise


VERSE = sorted(SHARED.glob("real_vertebrae_labelmap_verse*.nii.gz")) if SHARED.is_dir() else []


@pytest.mark.skipif(not VERSE or not (SHARED / "truth.json").is_file(),
                    reason="the VerSe masks of ../shared/data are not available")
@pytest.mark.parametrize("path", VERSE, ids=lambda p: p.name.split("_")[-1].split(".")[0])
def test_real_verse_masks_are_read_by_the_verse_convention(path):
    ref = json.loads((SHARED / "truth.json").read_text())[path.name]["vertebrae"]
    labels = read_volume(path)
    cmap = resolve_class_map(path)
    truth = truth_from_labelmap(labels, cmap)
    got = {v.name: v for v in truth.vertebrae}
    for name, item in ref.items():
        if name not in got:
            continue
        lo, hi = sorted(item["s_extent_mm"])
        assert lo <= got[name].landmark_s_mm <= hi, name  # the landmark lies in its vertebra
    assert "L3" in got and got["L3"].landmark_s_mm == pytest.approx(
        ref["L3"]["centroid_ras_mm"][2], abs=12.0)


def test_checkpoint_average_exports_a_loadable_model(tmp_path):
    """Two epoch checkpoints (the shipped weights, shifted) averaged and exported: the model
    loads, and its weights are the mean; integer buffers come from the last epoch."""
    from L3LocatorLib.network import default_model_path, load_model, read_metadata
    from training.checkpoints import _epochs, average_states, export_checkpoints

    template = default_model_path()
    meta = read_metadata(template)
    if not meta.weights.endswith(".npz"):
        pytest.skip("the shipped model's weights are not .npz")
    with np.load(template.parent / meta.weights, allow_pickle=False) as data:
        base = {k: np.asarray(data[k]) for k in data.files}
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for epoch, delta in ((1, -0.5), (2, 0.5)):
        state = {k: (v + delta if np.issubdtype(v.dtype, np.floating) else v + epoch)
                 for k, v in base.items()}
        np.savez(run / "checkpoints" / f"epoch_{epoch:03d}.npz", **state)
    assert _epochs("1-2") == [1, 2] and _epochs("3,5-6") == [3, 5, 6]
    path = export_checkpoints(run, [1, 2], tmp_path / "avg", template)
    model = load_model(path)
    assert model.threshold == pytest.approx(meta.threshold)
    with np.load(path.parent / read_metadata(path).weights, allow_pickle=False) as data:
        for k, v in base.items():
            expected = v if np.issubdtype(v.dtype, np.floating) else v + 2
            np.testing.assert_allclose(data[k], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="different parameters"):
        average_states([{"a": np.zeros(2)}, {"b": np.zeros(2)}])


def test_init_weights_from_the_shipped_npz_reproduce_its_outputs():
    """``--init`` (fine-tuning) starts from exactly the shipped network."""
    from L3LocatorLib.model import import_paddle
    from L3LocatorLib.network import build_model, default_model_path, load_model, read_metadata
    from training.train import load_weights

    path = default_model_path()
    meta = read_metadata(path)
    if not meta.weights.endswith(".npz"):
        pytest.skip("the shipped model's weights are not .npz")
    paddle = import_paddle()
    x = np.random.default_rng(0).uniform(0, 1, (1, meta.model_config.in_channels, 64, 256))
    x = x.astype(np.float32)
    for source in (path.parent / meta.weights, path):  # the .npz, or the model's .json
        net = build_model(meta.model_config)
        net.set_state_dict(load_weights(paddle, str(source)))
        net.eval()
        with paddle.no_grad():
            ours = paddle.nn.functional.sigmoid(net.row_logits(paddle.to_tensor(x))).numpy()
        np.testing.assert_allclose(ours, load_model(path).predict(x), atol=1e-5)


def test_init_refuses_a_pickle_without_opening_it(tmp_path):
    """A ``.pdparams`` given to ``--init`` is refused unread: its payload never runs."""
    import pickle

    from L3LocatorLib.errors import ModelError
    from L3LocatorLib.model import import_paddle
    from training.train import load_weights

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    weights = tmp_path / "evil.pdparams"
    weights.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelError, match="pickle"):
        load_weights(import_paddle(), str(weights))
    assert not marker.exists()
