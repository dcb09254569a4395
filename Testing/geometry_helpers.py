"""Synthetic volumes with bright markers at known places, and a DICOM series writer."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from L3LocatorLib.volume import LPS_TO_RAS, Volume

#: Every axis permutation combined with every flip: 6 x 8 = 48 direction matrices.
PERMUTATION_FLIPS = [
    (perm, flips)
    for perm in itertools.permutations(range(3))
    for flips in itertools.product((1, -1), repeat=3)
]


def signed_permutation(perm: tuple[int, ...], flips: tuple[int, ...]) -> np.ndarray:
    """3x3 direction matrix: voxel axis n points along RAS axis perm[n] with sign flips[n]."""
    direction = np.zeros((3, 3))
    for voxel_axis, (ras_axis, sign) in enumerate(zip(perm, flips)):
        direction[ras_axis, voxel_axis] = sign
    return direction


def rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation matrix from angles about x, then y, then z (degrees)."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def marker_volume(
    shape_ijk: tuple[int, int, int],
    spacing: tuple[float, float, float],
    direction: np.ndarray,
    marker_ijk: tuple[float, float, float],
    origin: tuple[float, float, float] = (12.0, -30.0, 55.0),
    sigma_mm: float = 2.5,
    dtype: type = np.int16,
) -> Volume:
    """A -1000 HU volume with one Gaussian blob (peak 2000 HU) centred on ``marker_ijk``.

    The blob is defined in millimetres, so it is round in patient space whatever
    the spacing; its centre is exactly the given voxel position.
    """
    ni, nj, nk = shape_ijk
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    offset_ijk = np.stack([i - marker_ijk[0], j - marker_ijk[1], k - marker_ijk[2]], axis=-1)
    matrix = np.asarray(direction) @ np.diag(spacing)
    offset_mm = offset_ijk @ matrix.T
    dist2 = np.sum(offset_mm**2, axis=-1)
    array = -1000.0 + 3000.0 * np.exp(-0.5 * dist2 / sigma_mm**2)
    return Volume.from_geometry(array.astype(dtype), spacing, direction, origin, name="markers")


def peak_centroid(image: np.ndarray, radius: int = 3) -> tuple[float, float]:
    """Sub-pixel (row, col) of the brightest blob: intensity centroid around the maximum."""
    row, col = np.unravel_index(int(np.argmax(image)), image.shape)
    r0, r1 = max(0, row - radius), min(image.shape[0], row + radius + 1)
    c0, c1 = max(0, col - radius), min(image.shape[1], col + radius + 1)
    patch = image[r0:r1, c0:c1].astype(float)
    patch = np.clip(patch - np.percentile(image, 50), 0, None)
    rows, cols = np.mgrid[r0:r1, c0:c1]
    total = patch.sum()
    return float((rows * patch).sum() / total), float((cols * patch).sum() / total)


def write_dicom_series(volume: Volume, folder: Path, series_description: str = "CT") -> list[Path]:
    """Write a volume as an axial-style DICOM series (one file per k slice), LPS geometry."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ volume.ijk_to_ras
    direction = lps[:3, :3] / volume.spacing
    uid_root = "1.2.826.0.1.3680043.2.1125"
    series_uid = f"{uid_root}.{sum(map(ord, series_description + folder.name)) % 10**8}"
    files = []
    for k in range(volume.array.shape[0]):
        pixels = np.ascontiguousarray(volume.array[k : k + 1]).astype(np.int16)
        image = sitk.GetImageFromArray(pixels)
        position = lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3]
        image.SetSpacing([float(s) for s in volume.spacing])
        image.SetOrigin([float(v) for v in position])
        image.SetDirection([float(v) for v in direction.ravel()])
        tags = {
            "0008|0060": "CT",
            "0008|103e": series_description,
            "0020|000e": series_uid,
            "0020|000d": f"{uid_root}.1",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "\\".join(f"{v:.6f}" for v in direction[:, :2].T.ravel()),
            "0028|0030": f"{volume.spacing[1]:.6f}\\{volume.spacing[0]:.6f}",
            "0018|0050": f"{volume.spacing[2]:.6f}",
            "0028|1052": "0",
            "0028|1053": "1",
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        path = folder / f"slice{k:04d}.dcm"
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(path))
        writer.Execute(image)
        files.append(path)
    return files
