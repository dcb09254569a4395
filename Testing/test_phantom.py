"""Synthetic CT phantoms: truth agrees with the image, options do what they say, files.

Phantoms here are coarse (2-3 mm voxels, small matrices) so the file runs in well
under a minute on two cores. Tests that read ``../shared/data`` skip when it is absent.
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

from L3LocatorLib.phantoms import (  # noqa: E402
    PRESETS,
    Truth,
    make_phantom,
    sidecar_path,
    write_phantom,
)
from L3LocatorLib.volume import read_volume  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
FAST = {"spacing": (2.0, 2.0, 2.0), "matrix": 200}
LUMBAR = ("L5", "L4", "L3", "L2", "L1")


def hu_at(volume, ras, radius: int = 1) -> float:
    """Mean HU within +-radius voxels of a RAS point (cancellous bone: > 120 HU; soft
    tissue, even enhanced, stays below)."""
    ijk = np.rint(volume.ras_to_ijk_points(np.asarray(ras))).astype(int)
    i, j, k = ijk
    nk, nj, ni = volume.array.shape
    blk = volume.array[max(k - radius, 0):k + radius + 1, max(j - radius, 0):j + radius + 1,
                       max(i - radius, 0):i + radius + 1]
    return float(blk.mean()) if blk.size else float("nan")


def inside(volume, ras) -> bool:
    ijk = volume.ras_to_ijk_points(np.asarray(ras))
    return bool(np.all(ijk >= -0.5) and np.all(ijk <= np.array(volume.shape_ijk) - 0.5))


def check_truth(volume, truth: Truth) -> None:
    names = [v.name for v in truth.vertebrae]
    assert len(set(names)) == len(names)
    by = {v.name: v for v in truth.vertebrae}
    # levels run down the body in order and their body extents do not overlap
    chain = [by[n] for n in ["S1", *LUMBAR, "T12", "T11", "T10"] if n in by]
    for lower, upper in zip(chain, chain[1:]):
        assert upper.bottom_s_mm > lower.top_s_mm - 1.0, (upper.name, lower.name)
        assert upper.landmark_s_mm > lower.landmark_s_mm
    for v in truth.vertebrae:
        assert v.bottom_s_mm < v.landmark_s_mm < v.top_s_mm
        assert v.in_fov == inside(volume, v.centre_ras)
    l3 = by["L3"]
    assert by["L4"].landmark_s_mm < l3.landmark_s_mm < by["L2"].landmark_s_mm
    assert truth.l3_in_fov == inside(volume, truth.extras["l3_landmark_ras_always"])
    if truth.l3_in_fov:
        assert truth.l3_landmark_ras is not None
        assert truth.l3_landmark_ras[2] == pytest.approx(l3.landmark_s_mm, abs=1e-6)
        assert truth.l3_top_s_mm == l3.top_s_mm and truth.l3_bottom_s_mm == l3.bottom_s_mm
        assert hu_at(volume, truth.l3_landmark_ras) > 120, "L3 landmark must lie in bone"
        if inside(volume, by["L4"].centre_ras):
            assert hu_at(volume, by["L4"].centre_ras) > 120
    else:
        assert truth.l3_landmark_ras is None and truth.l3_centre_ras is None


@pytest.mark.parametrize("preset,seed", [
    ("abdomen", 1), ("abdomen_pelvis", 2), ("lumbar_only", 3), ("chest_abdomen_pelvis", 4),
    ("cut_through_l3", 5), ("cut_through_l3", 6), ("random", 7), ("random", 8),
])
def test_truth_agrees_with_image(preset, seed):
    volume, truth = make_phantom(seed, preset=preset, **FAST)
    assert volume.array.dtype == np.int16 and volume.array.ndim == 3
    assert -1024 <= volume.array.min() and volume.array.max() <= 3071
    check_truth(volume, truth)
    if preset in ("abdomen", "abdomen_pelvis", "lumbar_only", "chest_abdomen_pelvis"):
        assert truth.l3_in_fov


def test_same_seed_same_volume_other_seed_differs():
    a, ta = make_phantom(11, preset="random", spacing=(3, 3, 3), matrix=120)
    b, tb = make_phantom(11, preset="random", spacing=(3, 3, 3), matrix=120)
    c, _ = make_phantom(12, preset="random", spacing=(3, 3, 3), matrix=120)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.ijk_to_ras, b.ijk_to_ras)
    assert ta.to_dict() == tb.to_dict()
    assert a.array.shape != c.array.shape or not np.array_equal(a.array, c.array)


@pytest.mark.parametrize("n_lumbar", [4, 6])
def test_lumbar_count_option(n_lumbar):
    volume, truth = make_phantom(3, preset="abdomen_pelvis", n_lumbar=n_lumbar, **FAST)
    assert truth.n_lumbar == n_lumbar
    kinds = [v.kind for v in truth.vertebrae]
    assert kinds.count("lumbar") == n_lumbar
    # names count up from the sacrum: the first vertebra above S1 is L5, the third L3
    presacral = [v for v in truth.vertebrae if v.kind in ("lumbar", "thoracic")]
    assert [v.name for v in presacral[:5]] == list(LUMBAR)
    check_truth(volume, truth)


def test_rib_count_and_lstv_options():
    _, truth = make_phantom(4, preset="abdomen", n_rib_pairs=13, n_lumbar=4,
                            lstv="sacralised_L5", **FAST)
    assert truth.n_rib_pairs == 13 and truth.lstv == "sacralised_L5"
    assert [v.kind for v in truth.vertebrae].count("thoracic") == 13
    assert truth.vertebra("L1").kind == "thoracic"  # the 13th rib pair sits on "L1"
    volume, truth = make_phantom(4, preset="abdomen", n_rib_pairs=11, lstv="lumbarised_S1",
                                 **FAST)
    assert truth.n_rib_pairs == 11 and truth.lstv == "lumbarised_S1"
    check_truth(volume, truth)


def lateral_bone_at_l3(volume, truth) -> int:
    """Bone voxels (> 400 HU) more than 170 mm left or right of the spine at L3 +-40 mm."""
    l3 = truth.vertebra("L3")
    nk, nj, ni = volume.array.shape
    kk, jj, ii = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    ras = volume.ijk_to_ras_points(np.stack([ii, jj, kk], axis=-1))
    near = np.abs(ras[..., 2] - l3.landmark_s_mm) < 40
    lateral = np.abs(ras[..., 0] - l3.centre_ras[0]) > 170
    return int(np.count_nonzero((volume.array > 400) & near & lateral))


def test_arms_up_leaves_no_bone_beside_the_lumbar_spine():
    opts = {"spacing": (3.0, 3.0, 3.0), "matrix": 180, "table": False, "metal": ()}
    up, tu = make_phantom(5, preset="abdomen", arms="up", **opts)
    side, ts = make_phantom(5, preset="abdomen", arms="side", **opts)
    assert tu.extras["arms"] == "up" and ts.extras["arms"] == "side"
    assert lateral_bone_at_l3(up, tu) == 0
    assert lateral_bone_at_l3(side, ts) > 50


def test_chest_has_no_l3():
    volume, truth = make_phantom(6, preset="chest", **FAST)
    assert not truth.l3_in_fov and truth.l3_landmark_ras is None
    assert truth.vertebra("L3") is not None and not truth.vertebra("L3").in_fov
    check_truth(volume, truth)


@pytest.mark.parametrize("z_range,expect", [((-25, 250), True), ((-300, -30), False),
                                            ((15, 300), False), ((-300, 10), True)])
def test_fov_cut_relative_to_l3(z_range, expect):
    volume, truth = make_phantom(7, preset="abdomen", z_range_mm=z_range, **FAST)
    assert truth.l3_in_fov is expect
    check_truth(volume, truth)


@pytest.mark.parametrize("orientation", [
    "feet_first", "random_flip",
    np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),  # sagittal slices
    np.array([[-np.cos(0.2), 0, np.sin(0.2)], [0, -1.0, 0], [np.sin(0.2), 0, np.cos(0.2)]]),
])
def test_orientation_changes_direction_but_truth_lands_in_bone(orientation):
    ref, rt = make_phantom(8, preset="abdomen", **FAST)
    volume, truth = make_phantom(8, preset="abdomen", orientation=orientation, **FAST)
    assert not np.allclose(volume.direction, ref.direction)
    if not isinstance(orientation, str):
        np.testing.assert_allclose(volume.direction, orientation, atol=1e-9)
    assert truth.l3_in_fov
    check_truth(volume, truth)


def test_tilt_and_sizes_keep_truth_consistent():
    for seed, opts in ((9, {"tilt_deg": 8.0, "patient_scale": 0.65, "habitus": 0.8}),
                       (10, {"tilt_deg": 5.0, "patient_scale": 1.1, "habitus": 1.6})):
        volume, truth = make_phantom(seed, preset="abdomen_pelvis", **opts, **FAST)
        check_truth(volume, truth)


def test_adult_lumbar_spacing_is_realistic():
    """Adult lumbar levels ~30-42 mm apart (ct328: 32-36 mm); bodies 22-32 mm tall,
    discs 6-14 mm; iliac crest between L3/L4 and S1."""
    for seed in range(5):
        _, truth = make_phantom(seed, preset="abdomen_pelvis", patient_scale=1.0,
                                spacing=(4, 4, 4), matrix=100)
        by = {v.name: v for v in truth.vertebrae}
        for a, b in zip(LUMBAR, LUMBAR[1:]):
            pitch = by[b].landmark_s_mm - by[a].landmark_s_mm
            assert 28 < pitch < 44, (seed, a, b, pitch)
            disc = by[b].bottom_s_mm - by[a].top_s_mm
            assert 5 < disc < 15, (seed, a, b, disc)
        for n in LUMBAR:
            assert 21 < by[n].top_s_mm - by[n].bottom_s_mm < 33
        assert by["S1"].top_s_mm - 10 < truth.extras["crest_s_mm"] < by["L3"].bottom_s_mm + 5


def test_presets_and_errors():
    assert {"chest", "abdomen", "abdomen_pelvis", "chest_abdomen_pelvis", "whole_body",
            "cut_through_l3", "lumbar_only", "random"} <= set(PRESETS)
    with pytest.raises(ValueError):
        make_phantom(0, preset="nonsense")
    with pytest.raises(ValueError):
        make_phantom(0, preset="abdomen", no_such_option=1)
    with pytest.raises(ValueError):
        make_phantom(0, preset="abdomen", n_lumbar=7)


def test_whole_body_and_metal_run():
    volume, truth = make_phantom(12, preset="whole_body", spacing=(4, 4, 4), matrix=130,
                                 metal=("hip", "spine", "stent", "clips"), contrast="delayed",
                                 oral_contrast=True, calcification=1.0)
    assert truth.l3_in_fov and volume.array.max() >= 2500  # metal
    check_truth(volume, truth)


def test_write_phantom_files_and_truth_round_trip(tmp_path):
    out = tmp_path / "case.nii.gz"
    vol_path, js = write_phantom(out, seed=3, preset="lumbar_only", spacing=(3, 3, 3),
                                 matrix=100)
    assert vol_path == out and js == tmp_path / "case.json" == sidecar_path(out)
    volume = read_volume(vol_path)
    truth = Truth.from_dict(json.loads(js.read_text()))
    assert truth.preset == "lumbar_only" and truth.seed == 3
    _, again = make_phantom(3, preset="lumbar_only", spacing=(3, 3, 3), matrix=100)
    assert truth.to_dict() == json.loads(json.dumps(again.to_dict()))
    check_truth(volume, truth)
    assert sidecar_path("a/b.nrrd") == Path("a/b.json")


# ---------------------------------------------------------------- label-map CTs


def _labelmap():
    path = SHARED / "real_labelmap_ct327.nrrd"
    cmap = SHARED / "class_map_ct327.json"
    if not (path.is_file() and cmap.is_file()):
        pytest.skip(f"{path} (shared real data) is not available")
    return read_volume(path), json.loads(cmap.read_text())


def test_truth_from_labelmap_matches_shared_truth():
    from L3LocatorLib.phantoms.labelmap_ct import truth_from_labelmap

    labels, cmap = _labelmap()
    ref = json.loads((SHARED / "truth.json").read_text())["real_labelmap_ct327.nrrd"]
    truth = truth_from_labelmap(labels, cmap)
    for name in ("L1", "L2", "L3", "L4", "L5"):
        v = truth.vertebra(name)
        r = ref["vertebrae"][name]
        assert v is not None and v.kind == "lumbar"
        # body centre vs whole-mask centroid: same level, same side, body a bit anterior
        assert abs(v.centre_ras[2] - r["centroid_ras_mm"][2]) < 12
        assert abs(v.centre_ras[0] - r["centroid_ras_mm"][0]) < 10
        assert r["s_extent_mm"][0] - 3 < v.bottom_s_mm < v.top_s_mm < r["s_extent_mm"][1] + 3
    assert truth.l3_in_fov and truth.vertebra("S1") is not None


def test_labelmap_ct_has_bone_at_landmark_and_crops():
    from L3LocatorLib.phantoms.labelmap_ct import labelmap_to_ct

    labels, cmap = _labelmap()
    volume, truth = labelmap_to_ct(labels, cmap, seed=2, z_range_mm=(-60, 120))
    assert volume.array.dtype == np.int16
    assert truth.l3_in_fov and hu_at(volume, truth.l3_landmark_ras) > 120
    s = volume.ijk_to_ras_points(np.array([[0, 0, 0], [0, 0, volume.shape_ijk[2] - 1]]))[:, 2]
    assert s.max() - s.min() < 190  # cropped
    cut, tcut = labelmap_to_ct(labels, cmap, seed=3, z_range_mm=(25, 400), flip=True)
    assert not tcut.l3_in_fov and tcut.l3_landmark_ras is None
    assert tcut.vertebra("L1").in_fov
    check_truth(cut, tcut)


@pytest.fixture(scope="module")
def ct327_render():
    """ct327's label map, its L3 and liver masks, noise-free render options, and the
    default render of seed 4 with them."""
    from L3LocatorLib.phantoms.labelmap_ct import labelmap_to_ct

    labels, cmap = _labelmap()
    lab = np.asarray(labels.array)
    l3 = lab == 20  # TotalSegmentator v1: vertebrae_L3
    liver = lab == next(int(k) for k, name in cmap.items() if name == "liver")
    common = dict(noise_hu=0.0, kernel="standard", slice_thickness_mm=1.5, table=False,
                  degenerate=False)
    normal, _ = labelmap_to_ct(labels, cmap, seed=4, **common)
    return labels, cmap, l3, liver, common, normal


def test_labelmap_ct_bone_density_thins_bone_only(ct327_render):
    """``bone_density`` scales bone (core and shell) and nothing else; same seed, same CT
    otherwise, so the default renders stay as they were."""
    from L3LocatorLib.phantoms.labelmap_ct import labelmap_to_ct

    labels, cmap, l3, liver, common, normal = ct327_render
    thin, _ = labelmap_to_ct(labels, cmap, seed=4, bone_density=0.5, **common)
    dense_hu = float(np.median(normal.array[l3]))
    thin_hu = float(np.median(thin.array[l3]))
    assert 0.4 < thin_hu / dense_hu < 0.6, (dense_hu, thin_hu)
    assert float(np.median(thin.array[liver])) == pytest.approx(
        float(np.median(normal.array[liver])), abs=2)
    assert labelmap_to_ct(labels, cmap, seed=4, bone_density=1.0, **common)[0].array.tobytes() \
        == normal.array.tobytes()


def test_labelmap_ct_thin_walls_dim_the_bodies_not_the_posterior_elements(ct327_render):
    """``wall_fraction`` < 1 dims the vertebral bodies' side walls, so a side view (max
    right-left) of L3's body drops, while the compact posterior elements and everything
    outside the vertebrae keep their HU; 1.0 is the default render, byte for byte."""
    from L3LocatorLib.phantoms.labelmap_ct import labelmap_to_ct

    labels, cmap, l3, liver, common, normal = ct327_render
    lab = np.asarray(labels.array)
    thin, _ = labelmap_to_ct(labels, cmap, seed=4, wall_fraction=0.2, **common)
    assert labelmap_to_ct(labels, cmap, seed=4, wall_fraction=1.0, **common)[0].array.tobytes() \
        == normal.array.tobytes()
    # The array axis closest to right-left, and L3's body: its front half along A-P.
    lr_axis = 2 - int(np.argmax(np.abs(labels.direction[0])))
    ap_axis = 2 - int(np.argmax(np.abs(labels.direction[1])))
    ap = np.indices(lab.shape)[ap_axis]
    ap_sign = np.sign(labels.direction[1][2 - ap_axis])
    ap_mm = ap * ap_sign  # grows anteriorly
    front = l3 & (ap_mm > np.median(ap_mm[l3]))

    def side_view(volume):
        return np.where(front, volume.array, -1000).max(axis=lr_axis)[front.any(axis=lr_axis)]

    assert np.median(side_view(thin)) < 0.75 * np.median(side_view(normal))
    back = l3 & ~front
    assert np.percentile(thin.array[back], 99) == pytest.approx(
        np.percentile(normal.array[back], 99), rel=0.1)
    assert float(np.median(thin.array[liver])) == float(np.median(normal.array[liver]))


def test_thin_walls_share_is_chosen_by_seed():
    from training.sources import THIN_WALL_FRACTION, wall_fraction

    fractions = [wall_fraction(seed, 0.5) for seed in range(200)]
    thin = [f for f in fractions if f != 1.0]
    assert 70 < len(thin) < 130
    assert all(THIN_WALL_FRACTION[0] <= f <= THIN_WALL_FRACTION[1] for f in thin)
    assert fractions == [wall_fraction(seed, 0.5) for seed in range(200)]
    assert all(wall_fraction(seed, 0.0) == 1.0 for seed in range(50))
    assert all(wall_fraction(seed, 1.0) != 1.0 for seed in range(50))


def test_contact_sheet_command_writes_png(tmp_path):
    pytest.importorskip("PIL")
    from training.contact_sheet import main

    out = tmp_path / "sheet.png"
    assert main(["--out", str(out), "--n", "2", "--spacing", "3", "3", "3", "--no-real"]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 500 and im.size[1] > 300  # two panels of frontal | sagittal


def test_many_random_phantoms_are_consistent():
    """A small sweep of the "random" preset (every preset, variants, flips, sizes)."""
    seen = set()
    for seed in range(100, 118):
        volume, truth = make_phantom(seed, preset="random", spacing=(4, 4, 4), matrix=100)
        check_truth(volume, truth)
        seen.add(truth.preset)
        if truth.preset in ("abdomen", "abdomen_pelvis", "chest_abdomen_pelvis",
                            "whole_body", "lumbar_only"):
            assert truth.l3_in_fov, (seed, truth.preset)
        if truth.preset == "chest":
            assert not truth.l3_in_fov
    assert len(seen) >= 4


def _thinned(seed: int, preset: str, option: str):
    """A noise-free phantom with and without ``option`` = 0.2 (``body_wall``, ``rib_wall``):
    both volumes' int arrays, the RAS points (N, 3) of the voxels that changed, and the
    truth. Also checks that 1.0 is the default phantom, byte for byte (the training
    caches stay valid), and that every changed voxel got dimmer."""
    options = dict(preset=preset, noise_hu=0.0, **FAST)
    normal, truth = make_phantom(seed, **options)
    same = make_phantom(seed, **{option: 1.0}, **options)[0]
    assert same.array.tobytes() == normal.array.tobytes()
    thin, _ = make_phantom(seed, **{option: 0.2}, **options)
    a, b = normal.array.astype(int), thin.array.astype(int)
    changed = a != b
    assert changed.any() and np.all(b[changed] < a[changed])
    k, j, i = np.nonzero(changed)
    return a, b, normal.ijk_to_ras_points(np.stack([i, j, k], axis=1)), normal, truth


def test_phantom_body_wall_dims_only_the_vertebral_bodies():
    """``body_wall`` < 1 draws the vertebral bodies' cortex dimmer: L3's body loses its
    bright rim while ribs, pelvis and soft tissue keep every voxel."""
    a, b, ras, normal, truth = _thinned(3, "abdomen_pelvis", "body_wall")
    # every changed voxel lies near the spine's midline (right-left), none in ribs or hips
    l3 = next(v for v in truth.vertebrae if v.name == "L3")
    assert np.abs(ras[:, 0] - l3.centre_ras[0]).max() < 35.0
    # the front half of L3's body (no posterior elements there): its rim fades
    kk, jj, ii = np.indices(a.shape)
    rel = normal.ijk_to_ras_points(np.stack([ii, jj, kk], axis=-1)) - l3.centre_ras
    front = (np.abs(rel[..., 0]) < 15) & (rel[..., 1] > 0) & (rel[..., 1] < 25) \
        & (np.abs(rel[..., 2]) < 10)
    assert np.percentile(b[front], 95) < 0.7 * np.percentile(a[front], 95)


def test_phantom_rib_wall_dims_the_ribs_not_the_spine():
    _, _, ras, _, truth = _thinned(5, "chest_abdomen_pelvis", "rib_wall")
    lumbar = [v for v in truth.vertebrae if v.name in ("L2", "L3", "L4")]
    assert lumbar and ras[:, 2].max() > max(v.top_s_mm for v in lumbar)  # the rib cage
    for v in lumbar:  # no rib at the lower lumbar bodies' centres
        near = np.linalg.norm(ras - v.centre_ras, axis=1) < 15.0
        assert not near.any(), v.name
    assert np.abs(ras[:, 0] - truth.vertebrae[0].centre_ras[0]).max() > 80  # lateral ribs


def test_phantom_source_thin_walls_share_sets_body_wall_by_seed(monkeypatch):
    import training.sources as sources

    seen = {}

    def fake_make_phantom(seed, preset, **options):  # records what the worker asks for
        seen[seed] = (options.get("body_wall", 1.0), options.get("rib_wall", 1.0))
        return None, None

    def fake_spine_crop(volume, truth, seed, share):
        seen[seed] += (share,)
        raise RuntimeError("stop here")

    monkeypatch.setattr("L3LocatorLib.phantoms.make_phantom", fake_make_phantom)
    monkeypatch.setattr(sources, "spine_crop", fake_spine_crop)
    for seed in range(40):
        job = (seed, "random", {"thin_walls": 0.5, "thin_ribs": 0.5, "spine_crop": 0.25}, {})
        assert sources._phantom_worker(job) is None
    expected = {seed: (sources.wall_fraction(seed, 0.5),) * 2 + (0.25,) for seed in range(40)}
    assert seen == expected
    assert 5 < sum(f[:2] != (1.0, 1.0) for f in seen.values()) < 35
