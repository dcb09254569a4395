"""Bring a volume's voxels onto patient axes: ``array[s, r, a]`` (axis 0 superior ->
inferior, axis 1 patient right -> left, axis 2 anterior -> posterior).

Axis-aligned volumes (any acquisition order and flips, LPS or RAS) are only
permuted and flipped, a view without interpolation; oblique ones are resampled
(linear) onto an axis-aligned grid with the volume's own spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .preprocess import PreprocessConfig
from .volume import Volume, volume_to_sitk


@dataclass(frozen=True, eq=False)
class PatientGrid:
    """Voxels on patient axes: ``array[s, r, a]``.

    Voxel ``(n0, n1, n2)`` has its centre at RAS
    ``corner_ras + n0 * spacing[0] * (0, 0, -1) + n1 * spacing[1] * (-1, 0, 0)
    + n2 * spacing[2] * (0, -1, 0)``.
    """

    array: np.ndarray
    spacing: np.ndarray  #: mm along axes 0, 1, 2
    corner_ras: np.ndarray  #: RAS mm of voxel (0, 0, 0)
    resampled: bool  #: True when the volume was oblique and had to be interpolated


def _axis_assignment(direction: np.ndarray) -> tuple[list[int], list[int], float]:
    """For each RAS axis (x, y, z): the voxel axis (0=i, 1=j, 2=k) closest to it and the
    sign of that voxel axis along it; plus the largest off-axis direction cosine."""
    absdir = np.abs(direction)
    voxel_for_ras = [-1, -1, -1]
    sign_for_ras = [1, 1, 1]
    # Greedy on the strongest cosines keeps the assignment a permutation even at 45 degrees.
    order = np.dstack(np.unravel_index(np.argsort(-absdir, axis=None), (3, 3)))[0]
    used_voxel: set[int] = set()
    for ras_axis, voxel_axis in order:
        if voxel_for_ras[ras_axis] >= 0 or voxel_axis in used_voxel:
            continue
        voxel_for_ras[ras_axis] = int(voxel_axis)
        sign_for_ras[ras_axis] = 1 if direction[ras_axis, voxel_axis] > 0 else -1
        used_voxel.add(int(voxel_axis))
    off_axis = absdir.copy()
    for ras_axis in range(3):
        off_axis[ras_axis, voxel_for_ras[ras_axis]] = 0.0
    return voxel_for_ras, sign_for_ras, float(off_axis.max())


def to_patient_grid(volume: Volume, config: PreprocessConfig | None = None) -> PatientGrid:
    """Reorient a volume to ``[superior->inferior, right->left, anterior->posterior]``.

    Axis-aligned volumes (every off-axis direction cosine below
    ``config.oblique_tolerance``) give a view of the caller's array: no copy, no
    interpolation. Oblique volumes are resampled with linear interpolation onto a
    patient-aligned grid that keeps each axis' original spacing.
    """
    config = config or PreprocessConfig()
    voxel_for_ras, sign_for_ras, off_axis = _axis_assignment(volume.direction)
    spacing_ijk = volume.spacing
    # Patient axes 0, 1, 2 are RAS z, x, y, each walked in the negative direction.
    ras_of_axis = (2, 0, 1)
    if off_axis <= config.oblique_tolerance:
        array = volume.array
        corner_index = np.zeros(3)
        transpose = []
        flips = []
        for patient_axis, ras_axis in enumerate(ras_of_axis):
            voxel_axis = voxel_for_ras[ras_axis]
            transpose.append(2 - voxel_axis)  # array is [k, j, i]
            if sign_for_ras[ras_axis] > 0:  # index grows towards +RAS; we want -RAS
                flips.append(patient_axis)
                corner_index[voxel_axis] = volume.shape_ijk[voxel_axis] - 1
        array = np.transpose(array, transpose)
        if flips:
            array = np.flip(array, axis=tuple(flips))
        spacing = np.array([spacing_ijk[voxel_for_ras[r]] for r in ras_of_axis])
        corner = volume.ijk_to_ras_points(corner_index)
        return PatientGrid(array, spacing, corner, resampled=False)
    return _resample_oblique(volume, voxel_for_ras, ras_of_axis)


def _resample_oblique(
    volume: Volume, voxel_for_ras: list[int], ras_of_axis: tuple[int, int, int]
) -> PatientGrid:
    import SimpleITK as sitk


    spacing = np.array([volume.spacing[voxel_for_ras[r]] for r in ras_of_axis])
    ni, nj, nk = volume.shape_ijk
    corners_ijk = np.array(
        [[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)]
    )
    corners_ras = volume.ijk_to_ras_points(corners_ijk)
    # Patient coordinates along axes 0, 1, 2 grow as RAS z, x, y shrink.
    coords = -corners_ras[:, list(ras_of_axis)]
    low = coords.min(axis=0)
    size = np.floor((coords.max(axis=0) - low) / spacing + 1e-6).astype(int) + 1
    corner_ras = np.zeros(3)
    corner_ras[list(ras_of_axis)] = -low
    # SimpleITK index (x, y, z) maps to our array [z, y, x] = [s, r, a]: x is axis 2 (A->P),
    # y is axis 1 (R->L), z is axis 0 (S->I). Directions in LPS: A->P = +P, R->L = +L, S->I = -S.
    reference = sitk.Image([int(size[2]), int(size[1]), int(size[0])], sitk.sitkUInt8)
    reference.SetSpacing([float(spacing[2]), float(spacing[1]), float(spacing[0])])
    reference.SetDirection([0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    reference.SetOrigin([float(-corner_ras[0]), float(-corner_ras[1]), float(corner_ras[2])])
    source = volume_to_sitk(volume)
    background = float(np.min(volume.array))
    output = sitk.Resample(
        source, reference, sitk.Transform(), sitk.sitkLinear, background, source.GetPixelID()
    )
    return PatientGrid(sitk.GetArrayFromImage(output), spacing, corner_ras, resampled=True)
