"""Geometry of the projections: markers at known RAS points must be found where they are.

For every volume geometry, a bright blob is put at a known voxel; we find it in
the frontal and sagittal MIPs, map the found rows and columns back to RAS and to
the volume's voxel index, and require the voxel to be recovered within half a
voxel along every axis.
"""

from __future__ import annotations

import numpy as np
import pytest
from geometry_helpers import (
    PERMUTATION_FLIPS,
    marker_volume,
    peak_centroid,
    rotation,
    signed_permutation,
)

from L3LocatorLib.checks import check_ct_like
from L3LocatorLib.errors import InputError, ModelError
from L3LocatorLib.patient_grid import to_patient_grid
from L3LocatorLib.preprocess import PreprocessConfig, window
from L3LocatorLib.projection import network_input, project
from L3LocatorLib.volume import Volume

FINE = PreprocessConfig(pixel_mm=1.0, width_mm=160.0)


def recover_marker(volume: Volume, config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """(voxel index found via the projections, RAS found) for the volume's single marker."""
    projections = project(volume, config)
    row_f, col_f = peak_centroid(projections.frontal_hu)
    row_s, col_s = peak_centroid(projections.sagittal_hu)
    assert abs(row_f - row_s) < 0.5, "both views must put the marker on the same row"
    ras = projections.geometry.to_ras(0.5 * (row_f + row_s), col_f, col_s)
    return projections.geometry.ras_to_ijk(ras), ras


@pytest.mark.parametrize("perm,flips", PERMUTATION_FLIPS)
def test_all_permutations_and_flips(perm, flips):
    direction = signed_permutation(perm, flips)
    marker = (13.0, 22.0, 9.0)
    volume = marker_volume((40, 36, 30), (1.0, 1.25, 1.5), direction, marker)
    found_ijk, found_ras = recover_marker(volume, FINE)
    assert np.all(np.abs(found_ijk - marker) <= 0.5), (found_ijk, marker)
    assert np.allclose(found_ras, volume.ijk_to_ras_points(marker), atol=0.75)
    # Axis-aligned volumes are a view of the caller's array: no copy, no interpolation.
    grid = to_patient_grid(volume, FINE)
    assert not grid.resampled
    assert np.shares_memory(grid.array, volume.array)


@pytest.mark.parametrize("perm,flips", PERMUTATION_FLIPS[::7])
def test_patient_grid_axes_point_inferior_left_posterior(perm, flips):
    """Stepping along each patient-grid axis moves S down, R down (to the left), A down."""
    direction = signed_permutation(perm, flips)
    volume = marker_volume((12, 10, 8), (1.0, 2.0, 3.0), direction, (3, 4, 5))
    grid = to_patient_grid(volume)
    marker_grid = np.unravel_index(int(np.argmax(grid.array)), grid.array.shape)
    expected_ras = volume.ijk_to_ras_points((3, 4, 5))
    ras = grid.corner_ras + np.array(
        [
            -marker_grid[1] * grid.spacing[1],
            -marker_grid[2] * grid.spacing[2],
            -marker_grid[0] * grid.spacing[0],
        ]
    )
    assert np.allclose(ras, expected_ras, atol=1e-6)


@pytest.mark.parametrize(
    "angles", [(12.0, 0.0, 0.0), (0.0, -9.0, 20.0), (25.0, 15.0, -30.0), (3.0, 0.5, 0.0)]
)
def test_oblique_directions_are_resampled_exactly(angles):
    direction = rotation(angles) @ signed_permutation((0, 1, 2), (-1, -1, 1))
    marker = (20.0, 17.0, 14.0)
    volume = marker_volume((44, 40, 34), (1.0, 1.0, 1.2), direction, marker)
    grid = to_patient_grid(volume, FINE)
    assert grid.resampled
    found_ijk, _ = recover_marker(volume, FINE)
    assert np.all(np.abs(found_ijk - marker) <= 0.5), (found_ijk, marker)


def test_tiny_obliquity_within_tolerance_is_not_resampled():
    direction = rotation((0.01, 0.0, 0.0))  # 0.0002 rad: below the tolerance
    volume = marker_volume((10, 10, 10), (1.0, 1.0, 1.0), direction, (5, 5, 5))
    assert not to_patient_grid(volume).resampled


@pytest.mark.parametrize("flip_k", [1, -1])
def test_anisotropic_thick_slices(flip_k):
    """0.6 x 0.6 x 5 mm voxels: rows still land on the right slice, columns within half a voxel."""
    direction = signed_permutation((0, 1, 2), (-1, -1, flip_k))
    marker = (61.0, 75.0, 7.0)
    volume = marker_volume((130, 120, 16), (0.6, 0.6, 5.0), direction, marker, sigma_mm=3.0)
    found_ijk, _ = recover_marker(volume, PreprocessConfig(pixel_mm=1.0, width_mm=120.0))
    assert np.all(np.abs(found_ijk - marker) <= 0.5), (found_ijk, marker)
    assert round(found_ijk[2]) == marker[2]


def test_lps_file_and_ras_volume_agree(tmp_path):
    """A marker written by SimpleITK at an LPS point is found at the negated-x, negated-y RAS."""
    import SimpleITK as sitk

    array = np.full((30, 32, 34), -1000, dtype=np.int16)  # [k, j, i]
    array[12, 20, 9] = 2000
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 2.0))
    image.SetOrigin((-100.0, 40.0, -300.0))  # LPS
    path = tmp_path / "lps.nrrd"
    sitk.WriteImage(image, str(path))
    lps_point = np.array(image.TransformIndexToPhysicalPoint((9, 20, 12)))
    from L3LocatorLib.volume import read_volume

    volume = read_volume(path)
    ras = volume.ijk_to_ras_points((9, 20, 12))
    assert np.allclose(ras, lps_point * [-1, -1, 1])
    projections = project(volume, PreprocessConfig(pixel_mm=1.0, width_mm=100.0))
    row = int(np.argmax(projections.frontal_hu.max(axis=1)))
    assert abs(projections.geometry.row_to_s(row) - ras[2]) <= 1.0


def test_geometry_maps_rows_to_slices_and_back():
    direction = signed_permutation((0, 1, 2), (-1, -1, -1))  # feet-first storage
    volume = marker_volume((20, 20, 50), (1.0, 1.0, 2.5), direction, (10, 10, 25))
    projections = project(volume, PreprocessConfig(pixel_mm=2.0, width_mm=64.0))
    geometry = projections.geometry
    rows = np.linspace(0, geometry.n_rows - 1, 13)
    assert np.allclose(geometry.s_to_row(geometry.row_to_s(rows)), rows)
    assert geometry.slice_axis == 2
    for row in rows:
        ras = geometry.to_ras(row, geometry.n_cols / 2, geometry.n_cols / 2)
        i, j, k = geometry.nearest_voxel(ras)
        centre = volume.ijk_to_ras_points((i, j, k))
        assert abs(centre[2] - ras[2]) <= 2.5 / 2 + 1e-6
    # Rows span the whole scan: first row = most superior slice, last = most inferior.
    s_values = volume.ijk_to_ras_points([[0, 0, 0], [0, 0, 49]])[:, 2]
    assert geometry.row_to_s(0) == pytest.approx(s_values.max())
    assert 0 <= geometry.row_to_s(geometry.n_rows - 1) - s_values.min() < geometry.pixel_mm


def test_height_is_never_cropped_for_long_scans():
    volume = marker_volume((8, 8, 900), (2.0, 2.0, 2.0), np.diag([-1.0, -1.0, 1.0]), (4, 4, 10))
    projections = project(volume, PreprocessConfig(pixel_mm=2.0))
    assert projections.frontal_hu.shape == (900, 256)
    assert projections.sagittal_hu.shape == (900, 256)


def _body_with_spine(spine_x: np.ndarray, arms: bool, table: bool, aorta: bool = False) -> Volume:
    """A crude torso: soft-tissue ellipse, a bone column at x = spine_x[k] (mm) with a spinous
    process behind it, optional arms (bone columns far to the sides), a dense table plate under
    the back, and a contrast-filled aorta (400 HU) in front of the spine, to its left."""
    nk, nj, ni = len(spine_x), 120, 160
    spacing = 2.0
    x = (np.arange(ni) - ni / 2) * spacing  # RAS R of column i (direction +x)
    y = (np.arange(nj) - nj / 2) * spacing  # RAS A of row j (direction +y)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    body = (xx / 140) ** 2 + (yy / 100) ** 2 < 1
    array = np.full((nk, nj, ni), -1000, dtype=np.int16)
    for k in range(nk):
        slab = np.where(body, 40, -1000).astype(np.int16)
        spine = ((xx - spine_x[k]) / 18) ** 2 + ((yy + 50) / 18) ** 2 < 1
        slab[spine] = 700
        spinous = (np.abs(xx - spine_x[k]) < 4) & (yy < -65) & (yy > -95)
        slab[spinous] = 700
        if aorta:
            slab[((xx - spine_x[k] + 24) / 16) ** 2 + ((yy + 14) / 16) ** 2 < 1] = 400
        if arms:
            for side in (-1, 1):
                slab[((xx - side * 170) / 20) ** 2 + (yy / 20) ** 2 < 1] = 900
        if table:
            slab[(yy < -110) & (yy > -116) & (np.abs(xx) < 200)] = 600
        array[k] = slab
    return Volume.from_geometry(array, (spacing,) * 3, np.eye(3), (x[0], y[0], 0.0))


@pytest.mark.parametrize(
    "arms,table,aorta", [(False, False, False), (True, False, False), (True, True, True)]
)
def test_restricted_sagittal_follows_a_curved_spine(arms, table, aorta):
    spine_x = 30.0 * np.sin(np.linspace(0, np.pi, 90))  # scoliosis up to 30 mm off centre
    volume = _body_with_spine(spine_x, arms, table, aorta)
    config = PreprocessConfig(pixel_mm=2.0)
    projections = project(volume, config)
    geometry = projections.geometry
    rows = np.arange(5, geometry.n_rows - 5)
    found_r = geometry.frontal_col_to_r(projections.spine_frontal_col[rows])
    k = np.round(volume.ras_to_ijk_points(
        np.stack([np.zeros(rows.size), np.zeros(rows.size), geometry.row_to_s(rows)], 1)
    )[:, 2]).astype(int)
    assert np.max(np.abs(found_r - spine_x[k])) < 6.0
    # The spine shows in the sagittal MIP on every row: the slab never slides off it.
    assert np.all(projections.sagittal_hu[rows].max(axis=1) >= 600)
    # Arms (900 HU) stay out of the restricted sagittal MIP.
    assert projections.sagittal_hu.max() < 800


def test_window_is_fixed_and_clipped():
    config = PreprocessConfig()
    values = np.array([-1000.0, 100.0, 800.0, 1500.0, 3000.0])
    assert np.allclose(window(values, config), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_network_input_stacks_requested_views():
    volume = marker_volume((20, 20, 30), (2.0, 2.0, 2.0), np.eye(3), (10, 10, 15))
    projections = project(volume)
    both = network_input(projections, ("frontal", "sagittal"))
    assert both.shape == (2, projections.geometry.n_rows, 256) and both.dtype == np.float32
    sagittal = network_input(projections, ("sagittal",))
    assert np.array_equal(sagittal[0], both[1])


def test_project_does_not_modify_the_input():
    direction = rotation((10.0, 5.0, 0.0))
    volume = marker_volume((20, 20, 20), (1.0, 1.0, 1.0), direction, (10, 10, 10))
    before = volume.array.copy()
    project(volume)
    assert np.array_equal(volume.array, before)
    with pytest.raises(ValueError):
        volume.array[0, 0, 0] = 1  # the Volume's view is read-only


def test_caller_array_stays_writable_and_untouched():
    array = np.zeros((10, 10, 10), dtype=np.int16)
    volume = Volume.from_geometry(array, (1, 1, 1))
    assert array.flags.writeable and not volume.array.flags.writeable


@pytest.mark.parametrize(
    "array,problem",
    [
        (np.full((10, 10, 10), np.nan, dtype=np.float32), "no valid numbers"),
        (np.full((10, 10, 10), 40, dtype=np.int16), "constant"),
        (np.random.default_rng(0).uniform(0, 1, (10, 10, 10)), "does not look like a CT"),
        (np.random.default_rng(0).uniform(0, 4000, (10, 10, 10)) * 100, "does not look like a CT"),
    ],
)
def test_non_ct_data_is_refused_with_a_reason(array, problem):
    volume = Volume.from_geometry(array, (1, 1, 1), name="scan.nii.gz")
    with pytest.raises(InputError, match=problem) as info:
        check_ct_like(volume)
    assert "scan.nii.gz" in str(info.value)


def test_preprocess_config_round_trip_and_refusals():
    config = PreprocessConfig(pixel_mm=1.5)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ModelError, match="does not know"):
        PreprocessConfig.from_dict({**config.to_dict(), "new_setting": 1})
    with pytest.raises(ModelError, match="version"):
        PreprocessConfig.from_dict({**config.to_dict(), "version": 99})
