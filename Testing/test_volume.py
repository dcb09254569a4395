"""Reading CTs from files: geometry survives NIfTI, NRRD, MHA and DICOM; bad files say why."""

from __future__ import annotations

import gzip
import itertools

import numpy as np
import pytest
import SimpleITK as sitk
from geometry_helpers import (
    marker_volume,
    peak_centroid,
    rotation,
    signed_permutation,
    write_dicom_series,
)

from L3LocatorLib.errors import InputError
from L3LocatorLib.projection import PreprocessConfig, project
from L3LocatorLib.volume import Volume, closest_axis, read_volume, slice_axis, write_volume

CONFIG = PreprocessConfig(pixel_mm=1.0, width_mm=120.0)


def _marker_ras_from_projections(volume: Volume) -> np.ndarray:
    projections = project(volume, CONFIG)
    row_f, col_f = peak_centroid(projections.frontal_hu)
    row_s, col_s = peak_centroid(projections.sagittal_hu)
    return projections.geometry.to_ras(0.5 * (row_f + row_s), col_f, col_s)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
@pytest.mark.parametrize(
    "direction",
    [
        signed_permutation((0, 1, 2), (-1, -1, 1)),  # the usual axial LPS file
        signed_permutation((0, 2, 1), (1, 1, -1)),  # coronal-like, flipped
        rotation((8.0, -5.0, 12.0)),  # oblique
    ],
    ids=["axial", "coronal-flipped", "oblique"],
)
def test_file_round_trip_keeps_geometry(tmp_path, suffix, direction):
    marker = (14.0, 19.0, 11.0)
    volume = marker_volume((34, 38, 26), (0.8, 0.9, 1.7), direction, marker)
    path = write_volume(volume, tmp_path / f"ct{suffix}")
    loaded = read_volume(path)
    assert loaded.name == path.name
    assert np.array_equal(loaded.array, volume.array)
    assert np.allclose(loaded.ijk_to_ras, volume.ijk_to_ras, atol=1e-4)
    found = _marker_ras_from_projections(loaded)
    truth = volume.ijk_to_ras_points(marker)
    assert np.all(np.abs(loaded.ras_to_ijk_points(found) - marker) <= 0.5), (found, truth)


@pytest.mark.parametrize("flip_k", [1, -1], ids=["head-first", "feet-first"])
def test_dicom_series_round_trip(tmp_path, flip_k):
    marker = (15.0, 12.0, 8.0)
    volume = marker_volume((30, 28, 18), (0.7, 0.7, 2.0), np.diag([-1.0, -1.0, flip_k]), marker)
    write_dicom_series(volume, tmp_path / "series")
    loaded = read_volume(tmp_path / "series")
    assert loaded.array.shape == volume.array.shape
    assert np.allclose(loaded.spacing, volume.spacing, atol=1e-4)
    # GDCM orders slices by position, so k may run the other way: compare in patient space.
    found = _marker_ras_from_projections(loaded)
    truth = volume.ijk_to_ras_points(marker)
    assert np.all(np.abs(found - truth) <= 0.5 * volume.spacing + 1e-6), (found, truth)


def test_dicom_folder_with_two_series_uses_the_largest(tmp_path, caplog):
    big = marker_volume((16, 16, 12), (1.0, 1.0, 1.0), np.diag([-1.0, -1.0, 1.0]), (8, 8, 6))
    small = marker_volume((16, 16, 5), (1.0, 1.0, 1.0), np.diag([-1.0, -1.0, 1.0]), (8, 8, 2))
    folder = tmp_path / "study"
    write_dicom_series(big, folder, series_description="big")
    small_files = write_dicom_series(small, tmp_path / "tmp_small", series_description="small")
    for f in small_files:
        f.rename(folder / f"small_{f.name}")
    with caplog.at_level("WARNING"):
        loaded = read_volume(folder)
    assert loaded.array.shape[0] == 12
    assert "2 DICOM series" in caplog.text


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file") as info:
        read_volume(tmp_path / "nothere.nii.gz")
    assert "nothere.nii.gz" in str(info.value)


def test_truncated_gzip(tmp_path):
    volume = marker_volume((20, 20, 20), (1, 1, 1), np.eye(3), (5, 5, 5))
    path = write_volume(volume, tmp_path / "ct.nii.gz")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="could not be read") as info:
        read_volume(truncated)
    assert "truncated.nii.gz" in str(info.value)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.nrrd"
    path.write_text("this is not an image\n")
    with pytest.raises(InputError, match="could not be read"):
        read_volume(path)
    gz = tmp_path / "garbage.nii.gz"
    gz.write_bytes(gzip.compress(b"\x00" * 100))
    with pytest.raises(InputError, match="garbage.nii.gz"):
        read_volume(gz)


def test_two_dimensional_image(tmp_path):
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20), np.int16)), str(path))
    with pytest.raises(InputError, match="2-D image"):
        read_volume(path)


def test_vector_image(tmp_path):
    path = tmp_path / "rgb.nrrd"
    image = sitk.GetImageFromArray(np.zeros((4, 20, 20, 3), np.uint8), isVector=True)
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match="values per voxel"):
        read_volume(path)


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no DICOM series"):
        read_volume(tmp_path)


def test_reading_never_changes_the_file(tmp_path):
    volume = marker_volume((20, 20, 20), (1, 1, 1), np.eye(3), (5, 5, 5))
    path = write_volume(volume, tmp_path / "ct.nrrd")
    before = path.read_bytes()
    project(read_volume(path))
    assert path.read_bytes() == before


def test_volume_properties():
    direction = rotation((0.0, 0.0, 30.0))
    volume = Volume.from_geometry(np.zeros((4, 5, 6)), (0.5, 0.7, 3.0), direction, (1, 2, 3))
    assert volume.shape_ijk == (6, 5, 4)
    assert np.allclose(volume.spacing, (0.5, 0.7, 3.0))
    assert np.allclose(volume.direction, direction)
    assert np.allclose(volume.origin, (1, 2, 3))
    points = np.array([[0, 0, 0], [5, 4, 3], [1.5, 2.5, 0.5]])
    assert np.allclose(volume.ras_to_ijk_points(volume.ijk_to_ras_points(points)), points)
    with pytest.raises(InputError, match="dimension"):
        Volume(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(InputError, match="invalid geometry"):
        Volume(np.zeros((4, 4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]))


def test_crop_slices_keeps_patient_positions():
    direction = rotation((5.0, 0.0, 10.0))
    volume = marker_volume((10, 12, 20), (1.0, 1.0, 2.0), direction, (4, 5, 13))
    cropped = volume.crop_slices(8, 16)
    assert cropped.array.shape[0] == 8
    assert np.array_equal(cropped.array, volume.array[8:16])
    assert np.allclose(cropped.ijk_to_ras_points((4, 5, 5)), volume.ijk_to_ras_points((4, 5, 13)))


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("flips", list(itertools.product((-1, 1), repeat=3)))
@pytest.mark.parametrize("tilt", [(0.0, 0.0, 0.0), (20.0, -15.0, 25.0)], ids=["exact", "oblique"])
def test_closest_axis_finds_each_ras_axis_whatever_the_storage(perm, flips, tilt):
    # very anisotropic voxels: the answer must come from directions, not from voxel sizes
    spacing = np.array([0.4, 5.0, 1.3])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation(tilt) @ signed_permutation(perm, flips) * spacing
    for voxel_axis, ras_axis in enumerate(perm):
        assert closest_axis(matrix, ras_axis) == voxel_axis
    assert slice_axis(matrix) == Volume(np.zeros((2, 2, 2)), matrix).slice_axis == perm.index(2)


# ------------------------------------------------------------ item 10 (issue 24)


def _detached_scan(folder, suffix: str):
    """A small scan written as a header (.nhdr or .mhd) with its voxels in a .raw beside
    it; returns (header path, the volume)."""
    folder.mkdir(parents=True, exist_ok=True)
    volume = Volume.from_geometry(
        np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), (1.0, 1.0, 2.0))
    header = write_volume(volume, folder / f"scan{suffix}", compress=False)
    return header, volume


def _point_header_at(header, value: str, extra_lines: tuple = ()) -> None:
    """Rewrite the header's data file field (the last line of both formats)."""
    key = "data file: " if header.suffix == ".nhdr" else "ElementDataFile = "
    lines = [line for line in header.read_text().splitlines()
             if not line.startswith(key.split(" ")[0])]
    header.write_text("\n".join([*lines, key + value, *extra_lines]) + "\n")


def _outside_copy(tmp_path, header):
    """The header's voxels copied outside its folder (what a hostile header would name)."""
    raw = header.with_suffix(".raw")
    secret = tmp_path / "elsewhere" / "secret.raw"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(raw.read_bytes())
    return secret


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_item10_a_detached_data_file_beside_the_header_is_read(tmp_path, suffix):
    header, volume = _detached_scan(tmp_path / "scan", suffix)
    np.testing.assert_array_equal(read_volume(header).array, volume.array)


@pytest.mark.parametrize("suffix,how", [
    *itertools.product([".nhdr", ".mhd"], ["relative", "absolute", "list", "pattern", "link"]),
    (".nhdr", "datafile"),  # the other spelling of the NRRD field
])
def test_item10_a_data_file_outside_the_headers_folder_is_refused(tmp_path, suffix, how):
    header, _ = _detached_scan(tmp_path / "scans" / "p1", suffix)
    secret = _outside_copy(tmp_path, header)
    if how == "relative":
        _point_header_at(header, "../../elsewhere/secret.raw")
    elif how == "absolute":
        _point_header_at(header, str(secret))
    elif how == "list":
        _point_header_at(header, "LIST 3", ("../../elsewhere/secret.raw",))
    elif how == "pattern":
        (tmp_path / "elsewhere" / "s1.raw").write_bytes(secret.read_bytes())
        _point_header_at(header, "../../elsewhere/s%d.raw 1 1 1 3")
    elif how == "link":
        (header.parent / "link.raw").symlink_to(secret)
        _point_header_at(header, "link.raw")
    else:
        text = header.read_text().replace("data file: scan.raw", f"datafile: {secret}")
        header.write_text(text)
    with pytest.raises(InputError, match="outside the header's folder") as info:
        read_volume(header)
    assert header.name in str(info.value)


def test_item10_an_attached_nrrd_naming_a_data_file_elsewhere_is_refused(tmp_path):
    """A .nrrd may name a detached file too (its header ends at the first blank line)."""
    header, _ = _detached_scan(tmp_path / "scan", ".nhdr")
    secret = _outside_copy(tmp_path, header)
    nrrd = header.with_suffix(".nrrd")
    nrrd.write_text(header.read_text().replace("data file: scan.raw", f"data file: {secret}"))
    with pytest.raises(InputError, match="outside the header's folder"):
        read_volume(nrrd)


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_item10_a_list_of_files_beside_the_header_is_read(tmp_path, suffix):
    header, volume = _detached_scan(tmp_path / "scan", suffix)
    raw = header.with_suffix(".raw").read_bytes()
    per_slice = len(raw) // 4
    names = [f"slice{k}.raw" for k in range(4)]
    for k, name in enumerate(names):
        (header.parent / name).write_bytes(raw[k * per_slice:(k + 1) * per_slice])
    _point_header_at(header, "LIST 2", tuple(names))
    np.testing.assert_array_equal(read_volume(header).array, volume.array)


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_item10_a_file_name_pattern_beside_the_header_is_read_an_unknown_one_refused(
        tmp_path, suffix):
    header, volume = _detached_scan(tmp_path / "scan", suffix)
    raw = header.with_suffix(".raw").read_bytes()
    for k in range(4):  # one file per slice: part001.raw ... part004.raw
        (header.parent / f"part{k + 1:03d}.raw").write_bytes(raw[k * 60:(k + 1) * 60])
    dim = " 2" if suffix == ".nhdr" else ""
    _point_header_at(header, f"part%03d.raw 1 4 1{dim}")
    np.testing.assert_array_equal(read_volume(header).array, volume.array)
    _point_header_at(header, f"part%s.raw 1 4 1{dim}")
    with pytest.raises(InputError, match="pattern"):
        read_volume(header)
