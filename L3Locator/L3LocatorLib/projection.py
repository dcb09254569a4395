"""From a CT volume to the two projections the network sees, and back.

The pipeline (``project``), each step in its own module:

1. ``patient_grid.to_patient_grid``: bring the voxels to patient axes, an array indexed
   ``[s, r, a]``: axis 0 runs superior -> inferior, axis 1 patient right -> left,
   axis 2 anterior -> posterior. Axis-aligned volumes are only permuted and
   flipped (a view, no interpolation); oblique ones are resampled (linear).
2. ``spine.find_spine``: the spine's left-right and anterior-posterior position per
   axial level, from bone thickness, robust to arms, table and contrast.
3. Frontal MIP (maximum along anterior-posterior) and restricted sagittal MIP
   (maximum along right-left inside a slab that follows the spine).
4. Resampling to the working pixel size using the true spacing, centred on the
   spine, padded or cropped to a fixed width. The height is never cropped: any
   field of view, whole body included, keeps every row.

``ProjectionGeometry`` maps a (sub-pixel) projection row and column back to
RAS mm and to the volume's voxel indices.

All images here are indexed ``[row, column]``; rows run superior -> inferior;
frontal columns run patient right -> left (radiological display), sagittal
columns anterior -> posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .patient_grid import PatientGrid, to_patient_grid
from .preprocess import PreprocessConfig, window
from .spine import find_spine
from .volume import Volume, slice_axis

__all__ = [
    "PreprocessConfig", "ProjectionGeometry", "Projections", "network_input", "project",
    "resample_rows_cols", "window",
]


@dataclass(frozen=True, eq=False)
class ProjectionGeometry:
    """Maps projection pixels to patient space and to the volume's voxels.

    Row ``r`` (both views, sub-pixel allowed) lies at RAS ``S = top_s_mm - r * pixel_mm``.
    Frontal column ``c`` lies at ``R = frontal_r0_mm - c * pixel_mm``; sagittal column
    ``c`` at ``A = sagittal_a0_mm - c * pixel_mm``.
    """

    pixel_mm: float
    top_s_mm: float
    frontal_r0_mm: float
    sagittal_a0_mm: float
    n_rows: int
    n_cols: int
    ijk_to_ras: np.ndarray
    shape_ijk: tuple[int, int, int]

    def row_to_s(self, row: float | np.ndarray) -> float | np.ndarray:
        """Projection row -> superior-inferior position (RAS S, mm)."""
        return self.top_s_mm - np.asarray(row, dtype=float) * self.pixel_mm

    def s_to_row(self, s_mm: float | np.ndarray) -> float | np.ndarray:
        """RAS S (mm) -> continuous projection row."""
        return (self.top_s_mm - np.asarray(s_mm, dtype=float)) / self.pixel_mm

    def frontal_col_to_r(self, col: float | np.ndarray) -> float | np.ndarray:
        """Frontal column -> RAS R (mm)."""
        return self.frontal_r0_mm - np.asarray(col, dtype=float) * self.pixel_mm

    def r_to_frontal_col(self, r_mm: float | np.ndarray) -> float | np.ndarray:
        return (self.frontal_r0_mm - np.asarray(r_mm, dtype=float)) / self.pixel_mm

    def sagittal_col_to_a(self, col: float | np.ndarray) -> float | np.ndarray:
        """Sagittal column -> RAS A (mm)."""
        return self.sagittal_a0_mm - np.asarray(col, dtype=float) * self.pixel_mm

    def a_to_sagittal_col(self, a_mm: float | np.ndarray) -> float | np.ndarray:
        return (self.sagittal_a0_mm - np.asarray(a_mm, dtype=float)) / self.pixel_mm

    def to_ras(self, row: float, frontal_col: float, sagittal_col: float) -> np.ndarray:
        """RAS mm (3,) of the point seen at ``row`` in both views, at the given columns."""
        return np.array(
            [
                float(self.frontal_col_to_r(frontal_col)),
                float(self.sagittal_col_to_a(sagittal_col)),
                float(self.row_to_s(row)),
            ]
        )

    def ras_to_ijk(self, ras: np.ndarray) -> np.ndarray:
        """RAS mm (3,) -> continuous voxel index (i, j, k) of the original volume."""
        inverse = np.linalg.inv(self.ijk_to_ras)
        return inverse[:3, :3] @ np.asarray(ras, dtype=float) + inverse[:3, 3]

    @property
    def slice_axis(self) -> int:
        """The volume's voxel axis (0=i, 1=j, 2=k) closest to superior-inferior."""
        return slice_axis(self.ijk_to_ras)

    def nearest_voxel(self, ras: np.ndarray) -> tuple[int, int, int]:
        """The voxel (i, j, k) whose centre is nearest to ``ras``, clipped into the volume."""
        ijk = np.round(self.ras_to_ijk(ras)).astype(int)
        ijk = np.clip(ijk, 0, np.asarray(self.shape_ijk) - 1)
        return (int(ijk[0]), int(ijk[1]), int(ijk[2]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "pixel_mm": self.pixel_mm,
            "top_s_mm": self.top_s_mm,
            "frontal_r0_mm": self.frontal_r0_mm,
            "sagittal_a0_mm": self.sagittal_a0_mm,
            "n_rows": self.n_rows,
            "n_cols": self.n_cols,
            "ijk_to_ras": np.asarray(self.ijk_to_ras).tolist(),
            "shape_ijk": list(self.shape_ijk),
        }


@dataclass(frozen=True, eq=False)
class Projections:
    """Frontal and restricted sagittal MIPs at the working pixel size, in HU.

    Both are float32 ``[n_rows, n_cols]``; pixels outside the scanned field hold
    ``config.hu_min - 1`` (black after windowing). ``spine_frontal_col`` and
    ``spine_sagittal_col`` give the spine's column in each view, per row.
    """

    frontal_hu: np.ndarray
    sagittal_hu: np.ndarray
    geometry: ProjectionGeometry
    spine_frontal_col: np.ndarray
    spine_sagittal_col: np.ndarray
    config: PreprocessConfig


def _restricted_sagittal(array: np.ndarray, centre: np.ndarray, half: int) -> np.ndarray:
    """Max over axis 1 within ``centre[row] +/- half`` columns, row by row. ``[s, a]``."""
    n_r = array.shape[1]
    centre_i = np.round(centre).astype(int)
    lo = np.clip(centre_i - half, 0, n_r - 1)
    hi = np.clip(centre_i + half + 1, 1, n_r)
    out = np.empty((array.shape[0], array.shape[2]), dtype=array.dtype)
    # Rows sharing a slab are reduced together: the track is smooth, so runs are long.
    change = np.flatnonzero(np.diff(lo) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [array.shape[0]]])
    for start, end in zip(starts, ends):
        out[start:end] = array[start:end, lo[start] : hi[start], :].max(axis=1)
    return out


def resample_rows_cols(
    image: np.ndarray,
    src_spacing: tuple[float, float],
    pixel_mm: float,
    n_rows: int,
    col_start: float,
    n_cols: int,
    fill: float,
) -> np.ndarray:
    """Sample ``image[row, col]`` (spacing ``src_spacing`` mm) on a grid of ``pixel_mm``.

    Output row ``r`` is source row ``r * pixel_mm / src_spacing[0]``; output column
    ``c`` is source column ``col_start + c * pixel_mm / src_spacing[1]``. Down-sampling
    is preceded by a Gaussian low-pass so thin slices and fine pixels do not alias.
    """
    image = image.astype(np.float32, copy=False)
    ratios = (pixel_mm / src_spacing[0], pixel_mm / src_spacing[1])
    sigma = [0.4 * r if r > 1.2 else 0.0 for r in ratios]
    if any(s > 0 for s in sigma):
        image = ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=2.5)
    rows = np.arange(n_rows, dtype=np.float32) * ratios[0]
    cols = col_start + np.arange(n_cols, dtype=np.float32) * ratios[1]
    # Separable linear interpolation: rows first, then columns (cheap on 2-D images).
    tmp = ndimage.map_coordinates(
        image,
        np.meshgrid(rows, np.arange(image.shape[1], dtype=np.float32), indexing="ij"),
        order=1,
        mode="nearest",
    )
    out = ndimage.map_coordinates(
        tmp,
        np.meshgrid(np.arange(n_rows, dtype=np.float32), cols, indexing="ij"),
        order=1,
        mode="constant",
        cval=fill,
    )
    # Columns falling outside the scanned field are "no data", not an edge copy.
    outside = (cols < -0.5) | (cols > image.shape[1] - 0.5)
    out[:, outside] = fill
    return out


def project(volume: Volume, config: PreprocessConfig | None = None,
            grid: PatientGrid | None = None) -> Projections:
    """Frontal and restricted sagittal MIPs (HU) of a CT at ``config.pixel_mm``.

    Rows cover the whole superior-inferior extent of the scan (never cropped);
    columns are ``config.width_px`` wide, centred on the spine (frontal) or with
    the spine at ``config.sagittal_spine_fraction`` of the width (sagittal).
    ``grid``: the volume already on patient axes (``to_patient_grid(volume, config)``),
    when the caller needs it too; else it is made here.
    """
    config = config or PreprocessConfig()
    grid = grid if grid is not None else to_patient_grid(volume, config)
    array = grid.array
    if not np.issubdtype(array.dtype, np.floating) or np.isfinite(array).all():
        clean = array
    else:
        clean = np.nan_to_num(array, nan=-1024.0, posinf=-1024.0, neginf=-1024.0)
    d0, d1, d2 = (float(s) for s in grid.spacing)
    spine = find_spine(PatientGrid(clean, grid.spacing, grid.corner_ras, grid.resampled), config)
    frontal_full = clean.max(axis=2)  # [s, r]
    half = max(0, int(round(0.5 * config.slab_mm / d1)))
    sagittal_full = _restricted_sagittal(clean, spine.r_index, half)  # [s, a]

    pixel = config.pixel_mm
    n_rows = int(np.floor((array.shape[0] - 1) * d0 / pixel + 1e-6)) + 1
    width = config.width_px
    fill = config.hu_min - 1.0
    # Frontal: centre column on the spine's median right-left position.
    r_centre = float(np.median(spine.r_index))
    r_start = r_centre - (width - 1) / 2.0 * pixel / d1
    a_start = spine.a_index - (config.sagittal_spine_fraction * (width - 1)) * pixel / d2
    frontal = resample_rows_cols(frontal_full, (d0, d1), pixel, n_rows, r_start, width, fill)
    sagittal = resample_rows_cols(sagittal_full, (d0, d2), pixel, n_rows, a_start, width, fill)

    corner = grid.corner_ras
    geometry = ProjectionGeometry(
        pixel_mm=pixel,
        top_s_mm=float(corner[2]),
        frontal_r0_mm=float(corner[0] - r_start * d1),
        sagittal_a0_mm=float(corner[1] - a_start * d2),
        n_rows=n_rows,
        n_cols=width,
        ijk_to_ras=np.array(volume.ijk_to_ras),
        shape_ijk=volume.shape_ijk,
    )
    rows_src = np.arange(n_rows) * pixel / d0
    spine_r = np.interp(rows_src, np.arange(array.shape[0]), spine.r_index)
    spine_frontal_col = (spine_r - r_start) * d1 / pixel
    spine_sagittal_col = np.full(n_rows, (spine.a_index - a_start) * d2 / pixel)
    return Projections(
        frontal_hu=frontal,
        sagittal_hu=sagittal,
        geometry=geometry,
        spine_frontal_col=spine_frontal_col,
        spine_sagittal_col=spine_sagittal_col,
        config=config,
    )


def network_input(projections: Projections, views: tuple[str, ...]) -> np.ndarray:
    """Stack the windowed views named in ``views`` ("frontal", "sagittal") as
    float32 channels ``[C, n_rows, n_cols]``."""
    images = {"frontal": projections.frontal_hu, "sagittal": projections.sagittal_hu}
    return np.stack([window(images[v], projections.config) for v in views]).astype(np.float32)
