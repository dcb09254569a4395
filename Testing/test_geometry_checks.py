"""Implausible scans are refused, or their geometry corrected, before locating (issue 13.4/5):
DICOM slices missing, duplicated, unevenly spaced or tilted (from the slice positions),
zero or negative voxel sizes, sheared grids, images that are not CT in HU, and headers
that promise more voxels than the memory budget."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import SimpleITK as sitk

from L3LocatorLib.checks import check_grid, check_volume
from L3LocatorLib.errors import InputError
from L3LocatorLib.inputs import find_scans, read_input
from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.volume import LPS_TO_RAS, Volume, read_volume, write_volume

ROW = np.array([1.0, 0.0, 0.0])  # LPS direction of increasing i
COL = np.array([0.0, 1.0, 0.0])  # LPS direction of increasing j
NORMAL = np.cross(ROW, COL)
PIXEL_MM = 2.0
MARKER_LPS = np.array([41.0, 37.0, 52.0])


def _blob(points_lps: np.ndarray) -> np.ndarray:
    """-1000 HU with a 2000 HU Gaussian blob (sigma 4 mm) at ``MARKER_LPS``."""
    d2 = np.sum((points_lps - MARKER_LPS) ** 2, axis=-1)
    return -1000.0 + 3000.0 * np.exp(-0.5 * d2 / 4.0**2)


def _write_series(folder: Path, positions_lps: np.ndarray, size: int = 40,
                  uid: str = "1.2.826.0.1.3680043.2.1125.77") -> list[Path]:
    """One DICOM file per position, each slice sampling the blob where it really lies."""
    folder.mkdir(parents=True, exist_ok=True)
    j, i = np.mgrid[0:size, 0:size]
    files = []
    for n, position in enumerate(positions_lps):
        points = position + (i[..., None] * ROW + j[..., None] * COL) * PIXEL_MM
        image = sitk.GetImageFromArray(_blob(points)[None].astype(np.int16))
        image.SetSpacing([PIXEL_MM, PIXEL_MM, 1.0])
        image.SetOrigin([float(v) for v in position])
        tags = {
            "0008|0060": "CT", "0020|000e": uid, "0020|000d": uid + ".0",
            "0020|0013": str(n + 1),
            "0020|0032": "\\".join(f"{v:.4f}" for v in position),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*ROW, *COL)),
            "0028|0030": f"{PIXEL_MM}\\{PIXEL_MM}", "0028|1052": "0", "0028|1053": "1",
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        path = folder / f"1.2.3.{uid[-2:]}.{n}"  # UID-like names, no suffix
        writer.SetFileName(str(path))
        writer.SetImageIO("GDCMImageIO")
        writer.Execute(image)
        files.append(path)
    return files


def _marker_ras(volume: Volume) -> np.ndarray:
    """Intensity-weighted centre of the blob, in RAS mm."""
    array = volume.array.astype(float)
    weights = np.clip(array - 0.5 * array.max(), 0, None)
    k, j, i = np.nonzero(weights)
    w = weights[k, j, i]
    ijk = np.stack([i, j, k], axis=1)
    return (volume.ijk_to_ras_points(ijk) * w[:, None]).sum(axis=0) / w.sum()


def _true_ras() -> np.ndarray:
    return LPS_TO_RAS[:3, :3] @ MARKER_LPS


def _steps(along_mm: np.ndarray, shift_per_mm: Optional[np.ndarray] = None) -> np.ndarray:
    """Slice positions (LPS mm) at ``along_mm`` on the normal, shifted in-plane by
    ``shift_per_mm`` for every mm along it (a gantry tilt)."""
    shift = np.zeros(3) if shift_per_mm is None else shift_per_mm
    return np.array([a * NORMAL + a * shift for a in along_mm])


def test_even_series_reads_with_its_positions(tmp_path):
    _write_series(tmp_path / "s", _steps(np.arange(40) * 2.5))
    volume = read_volume(tmp_path / "s")
    np.testing.assert_allclose(volume.spacing, [2.0, 2.0, 2.5], atol=1e-6)
    np.testing.assert_allclose(_marker_ras(volume), _true_ras(), atol=0.3)


def test_gantry_tilt_is_undone_so_the_anatomy_stays_in_place(tmp_path):
    """Slices shifted in-plane by 0.35 mm per mm (19 degrees): read as a plain stack, the
    marker would be about 10 mm off."""
    shift = np.array([0.0, np.tan(np.radians(19.0)), 0.0])
    _write_series(tmp_path / "tilt", _steps(np.arange(40) * 2.5, shift))
    volume = read_volume(tmp_path / "tilt")
    np.testing.assert_allclose(_marker_ras(volume), _true_ras(), atol=0.6)
    plain = sitk.ReadImage(sorted(str(p) for p in (tmp_path / "tilt").iterdir()))
    naive = Volume(sitk.GetArrayFromImage(plain), volume.ijk_to_ras)
    assert np.linalg.norm(_marker_ras(naive) - _true_ras()) > 5.0  # what was wrong before


def test_steeper_tilt_is_refused(tmp_path):
    shift = np.array([0.0, np.tan(np.radians(40.0)), 0.0])
    _write_series(tmp_path / "tilt", _steps(np.arange(20) * 2.5, shift))
    with pytest.raises(InputError, match="gantry tilt"):
        read_volume(tmp_path / "tilt")


def test_uneven_spacing_is_resampled_to_an_even_grid(tmp_path):
    along = np.cumsum(np.r_[0.0, np.tile([2.0, 3.0], 20)])
    _write_series(tmp_path / "uneven", _steps(along))
    volume = read_volume(tmp_path / "uneven")
    assert volume.spacing[2] == pytest.approx(2.5)
    np.testing.assert_allclose(_marker_ras(volume), _true_ras(), atol=0.6)


def test_missing_slices_are_refused_and_the_batch_says_where(tmp_path):
    """30 slices lost from the middle of an 80-slice series."""
    along = np.r_[np.arange(25), np.arange(55, 80)] * 2.5
    _write_series(tmp_path / "gap", _steps(along))
    with pytest.raises(InputError, match="about 30 slice.s. are missing"):
        read_volume(tmp_path / "gap")
    [scan] = find_scans([tmp_path / "gap"])
    with pytest.raises(InputError, match="gap of 77.5 mm after slice 25 of 50"):
        read_input(scan)


def test_duplicate_positions_zero_spacing_are_refused(tmp_path):
    """Two reconstructions (other images, same positions) in one series."""
    along = np.arange(20) * 2.5
    _write_series(tmp_path / "dup", _steps(along))
    for path in _write_series(tmp_path / "second", _steps(along[:5])):
        shutil.copy(path, tmp_path / "dup" / (path.name + ".second"))
    with pytest.raises(InputError, match="share a position"):
        read_volume(tmp_path / "dup")


def _nifti_with_pixdim(tmp_path: Path, k_size: float) -> Path:
    volume = Volume.from_geometry(np.zeros((20, 30, 30), np.int16), (1.0, 1.0, 2.5))
    path = write_volume(volume, tmp_path / "v.nii.gz")
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[76 + 12: 76 + 16] = struct.pack("<f", k_size)
    out = tmp_path / f"pixdim_{k_size}.nii"
    out.write_bytes(bytes(raw))
    return out


@pytest.mark.parametrize("k_size", [0.0, -2.5, float("nan")])
def test_zero_or_negative_nifti_voxel_size_is_refused(tmp_path, k_size):
    """ITK would read a 0 as 1 mm (and a negative one as a flip) without a word."""
    with pytest.raises(InputError, match="voxel size"):
        read_volume(_nifti_with_pixdim(tmp_path, k_size))


@pytest.mark.parametrize("spacing,words", [((0.7, 0.7, 25.0), "too far apart"),
                                           ((0.01, 0.01, 0.02), "other units")])
def test_implausible_voxel_sizes_are_refused(spacing, words):
    volume = Volume.from_geometry(np.zeros((4, 4, 4), np.int16), spacing)
    with pytest.raises(InputError, match=words):
        check_grid(volume)


def test_a_sheared_grid_is_refused():
    matrix = np.diag([1.0, 1.0, 2.0, 1.0])
    matrix[1, 2] = 0.5  # k steps 0.5 mm along A per slice: 14 degrees of shear
    with pytest.raises(InputError, match="sheared"):
        check_grid(Volume(np.zeros((4, 4, 4), np.int16), matrix))


@pytest.fixture(scope="module")
def abdomen():
    return make_phantom(3, preset="abdomen", spacing=(2.0, 2.0, 3.0), matrix=160)[0]


def test_a_ct_is_accepted(abdomen):
    check_volume(abdomen)


@pytest.mark.parametrize("kind", ["spine_crop", "bone_only"])
def test_a_ct_without_air_is_still_a_ct(abdomen, kind):
    """A tight reconstruction inside the body, or a bone-only CT on a 0 HU background,
    holds no air but is a CT in HU."""
    hu = abdomen.array
    if kind == "spine_crop":  # 70 mm around the spine: muscle, fat, bone, no air
        bone_j, bone_i = np.nonzero((hu > 300).any(axis=0))
        cj, ci = int(np.median(bone_j)), int(np.median(bone_i))
        half = int(35.0 / 2.0)
        array = hu[:, cj - half : cj + half, ci - half : ci + half]
        matrix = abdomen.ijk_to_ras.copy()
        matrix[:3, 3] = (abdomen.ijk_to_ras @ np.array([ci - half, cj - half, 0, 1.0]))[:3]
        # No bowel gas or lung in this crop: nothing below fat.
        volume = Volume(np.ascontiguousarray(np.maximum(array, -150)), matrix, "crop")
    else:
        volume = Volume(np.where(hu > 150, hu, 0).astype(hu.dtype), abdomen.ijk_to_ras, "bone")
    assert volume.array.min() > -500  # really no air
    check_volume(volume)


@pytest.mark.parametrize("kind", ["lost_intercept", "mr_like"])
def test_not_a_ct_in_hu_is_said_so(abdomen, kind):
    """Not "L3 is not in the field of view": the image is not a CT in HU."""
    hu = abdomen.array.astype(np.float32)
    if kind == "lost_intercept":  # stored values without the -1024 rescale
        array = hu + 1024.0
    else:  # MR-like: positive signal, air dark (0), fat bright, bone dark
        array = np.clip(np.where(hu > 200, 300.0, hu + 1000.0), 0, None) * 1.5
    volume = Volume(array, abdomen.ijk_to_ras, "scan")
    with pytest.raises(InputError, match="not a CT in Hounsfield units"):
        check_volume(volume)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_a_header_promising_1024_cubed_voxels_is_refused_before_reading(tmp_path, suffix):
    """A few kB on disk claiming 1024^3 int16 voxels (6 GB to work with)."""
    path = tmp_path / f"huge{suffix}"
    if suffix == ".nii.gz":
        small = write_volume(Volume.from_geometry(np.zeros((4, 4, 4), np.int16), (1, 1, 1)),
                             tmp_path / "small.nii.gz")
        raw = bytearray(gzip.decompress(small.read_bytes()))
        raw[40:56] = struct.pack("<8h", 3, 1024, 1024, 1024, 1, 1, 1, 1)
        path.write_bytes(gzip.compress(bytes(raw)))
    else:
        path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 1024 1024 1024\n"
                        "ElementType = MET_SHORT\nElementSpacing = 1 1 1\n"
                        "ElementDataFile = LOCAL\n")
    assert path.stat().st_size < 10_000
    with pytest.raises(InputError, match=r"1024 x 1024 x 1024 voxels, which would need about "
                                         r"6\.0 GB"):
        read_volume(path)
    # The same file within a larger budget gets as far as its (missing) voxels.
    with pytest.raises(InputError, match="could not be read|ends early|bytes present"):
        read_volume(path, max_bytes=10 * 1024.0**3)
