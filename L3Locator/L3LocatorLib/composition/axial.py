"""Axial slices in patient axes, whatever the scan's storage order, flips or obliquity.

The volume is brought to patient axes with ``patient_grid.to_patient_grid`` (the same
reorientation the locator uses: a view for axis-aligned scans, a resampling for oblique
ones). An axial image is then ``image[r, a]``: axis 0 runs patient right -> left, axis 1
anterior -> posterior, with the real in-plane spacing ``(mm along r, mm along a)``, so a
pixel's area is ``spacing[0] * spacing[1]`` mm^2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..patient_grid import PatientGrid, to_patient_grid
from ..volume import Volume


@dataclass(frozen=True, eq=False)
class AxialSlab:
    """Consecutive axial images around one slice, in patient axes.

    Attributes:
        images: HU, float32, ``[n, r, a]`` (n slices superior -> inferior).
        s_mm: RAS S (mm) of each image.
        centre: index into ``images`` of the slice asked for.
        spacing_ra: in-plane pixel size (mm) along r and a.
        corner_ras: RAS (mm) of pixel ``[0, 0]`` of the centre image.
        grid_index: the patient-grid index (axis 0) of each image.
    """

    images: np.ndarray
    s_mm: np.ndarray
    centre: int
    spacing_ra: tuple[float, float]
    corner_ras: np.ndarray
    grid_index: np.ndarray

    @property
    def pixel_mm2(self) -> float:
        return float(self.spacing_ra[0] * self.spacing_ra[1])

    @property
    def image(self) -> np.ndarray:
        """The centre image ``[r, a]`` (HU)."""
        return self.images[self.centre]

    def ras_to_pixel(self, ras: np.ndarray) -> np.ndarray:
        """RAS (mm) -> continuous pixel ``(r index, a index)`` in these images."""
        ras = np.asarray(ras, dtype=float)
        return np.array([(self.corner_ras[0] - ras[0]) / self.spacing_ra[0],
                         (self.corner_ras[1] - ras[1]) / self.spacing_ra[1]])

    def pixel_to_ras(self, pixel: np.ndarray, image: Optional[int] = None) -> np.ndarray:
        """Pixel ``(r index, a index)`` of image ``image`` (default the centre) -> RAS mm."""
        n = self.centre if image is None else image
        return np.array([self.corner_ras[0] - pixel[0] * self.spacing_ra[0],
                         self.corner_ras[1] - pixel[1] * self.spacing_ra[1],
                         float(self.s_mm[n])])


def axial_slab(volume: Volume, s_mm: float, half_mm: float = 0.0,
               grid: Optional[PatientGrid] = None, min_step_mm: float = 0.0) -> AxialSlab:
    """The axial image nearest to RAS S ``s_mm`` and the images within ``+/- half_mm``:
    every one, or on thin-slice scans every n-th so that they lie at least
    ``min_step_mm`` apart (always including the centre).

    ``grid`` (``to_patient_grid(volume)``) may be passed when the caller already has it.
    Raises ``ValueError`` when ``s_mm`` lies outside the scan.
    """
    grid = grid if grid is not None else to_patient_grid(volume)
    n_s = grid.array.shape[0]
    position = (grid.corner_ras[2] - s_mm) / grid.spacing[0]
    index = int(round(position))
    if not -0.5 <= position <= n_s - 0.5:
        raise ValueError(f"S = {s_mm:.1f} mm lies outside the scan.")
    reach = int(np.floor(half_mm / grid.spacing[0] + 1e-6))
    stride = max(1, int(np.ceil(min_step_mm / grid.spacing[0] - 1e-6)))
    offsets = np.arange(-(reach // stride) * stride, reach + 1, stride)
    indices = index + offsets
    indices = indices[(indices >= 0) & (indices < n_s)]
    images = np.asarray(grid.array[indices], dtype=np.float32)
    s_values = grid.corner_ras[2] - indices * grid.spacing[0]
    return AxialSlab(images, s_values, int(np.flatnonzero(indices == index)[0]),
                     (float(grid.spacing[1]), float(grid.spacing[2])),
                     np.asarray(grid.corner_ras, float), indices)


def s_of_slice_index(volume: Volume, slice_index: int) -> float:
    """RAS S (mm) of slice ``slice_index`` along the volume's own slice axis (the voxel
    axis closest to superior-inferior, as ``L3Result.slice_index`` counts)."""
    axis = volume.slice_axis
    n = volume.shape_ijk[axis]
    if not 0 <= slice_index < n:
        raise ValueError(f"Slice {slice_index} does not exist: this scan has slices 0 to "
                         f"{n - 1} along its slice axis.")
    centre = (np.asarray(volume.shape_ijk, float) - 1) / 2
    centre[axis] = slice_index
    return float(volume.ijk_to_ras_points(centre)[2])
