"""From a CT volume to the two projections the network sees, and back.

The pipeline (``project``):

1. ``to_patient_grid``: bring the voxels to patient axes, an array indexed
   ``[s, r, a]``: axis 0 runs superior -> inferior, axis 1 patient right -> left,
   axis 2 anterior -> posterior. Axis-aligned volumes are only permuted and
   flipped (a view, no interpolation); oblique ones are resampled (linear).
2. ``find_spine``: the spine's left-right and anterior-posterior position per
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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .errors import InputError, refuse_other_version, refuse_unknown_fields
from .volume import Volume


@dataclass(frozen=True)
class PreprocessConfig:
    """Every constant of the preprocessing; recorded in each model's metadata.

    Training and inference build their network inputs from the same instance,
    so a model always sees what it was trained on.
    """

    pixel_mm: float = 2.0  #: working pixel size of both projections (mm)
    hu_min: float = 100.0  #: HU window lower bound (maps to 0)
    hu_max: float = 1500.0  #: HU window upper bound (maps to 1)
    width_mm: float = 512.0  #: width of both projections after centring (mm)
    slab_mm: float = 40.0  #: thickness (right-left) of the restricted sagittal slab (mm)
    sagittal_spine_fraction: float = 0.6  #: spine's place across the sagittal width (0 = anterior)
    bone_hu: float = 200.0  #: threshold for bone when locating the spine (HU)
    body_hu: float = -400.0  #: threshold for the body when locating the spine (HU)
    oblique_tolerance: float = 1e-3  #: largest off-axis direction cosine treated as aligned
    version: int = 1  #: bump when the meaning of any field changes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Build from a model's metadata; refuses fields or versions it does not know."""
        refuse_unknown_fields(cls, data, "The model's preprocessing")
        config = cls(**data)
        refuse_other_version(config.version, cls.version, "The model's preprocessing")
        return config

    @property
    def width_px(self) -> int:
        return int(round(self.width_mm / self.pixel_mm))


# ------------------------------------------------------------ patient grid


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

    from .volume import volume_to_sitk

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


# ------------------------------------------------------------ spine finding


@dataclass(frozen=True)
class SpineTrack:
    """Where the spine is on each patient-grid row (axis 0), in patient-grid voxel units."""

    r_index: np.ndarray  #: continuous index along axis 1 (right->left), one per row
    a_index: float  #: continuous index along axis 2 (anterior->posterior), one for the scan


def _smooth_track(values: np.ndarray, weights: np.ndarray, window: int) -> np.ndarray:
    """Weighted running mean that fills rows without evidence from their neighbours."""
    window = max(3, window | 1)
    num = ndimage.uniform_filter1d(values * weights, window, mode="nearest")
    den = ndimage.uniform_filter1d(weights, window, mode="nearest")
    fallback = np.sum(values * weights) / max(np.sum(weights), 1e-9)
    out = np.where(den > 1e-6, num / np.maximum(den, 1e-9), fallback)
    return out


def _track_lr(bone: np.ndarray, body_centre: np.ndarray, coarse_mm: np.ndarray) -> np.ndarray:
    """Right-left column of the spine per coarse row, from bone thickness ``bone[s, r, a]``."""
    n_rows, n_cols = bone.shape[:2]
    thickness = bone.sum(axis=2, dtype=np.float32) * coarse_mm[2]  # [s, r] mm of bone
    cols = np.arange(n_cols, dtype=np.float32)
    # Vertical continuity: the spine is a column of bone over many rows; ribs are not.
    column_rows = max(1, int(round(60.0 / coarse_mm[0])))
    smooth = ndimage.uniform_filter1d(thickness, column_rows, axis=0, mode="nearest")
    smooth = ndimage.uniform_filter1d(smooth, max(1, int(round(12.0 / coarse_mm[1]))), axis=1)
    sigma_cols = 50.0 / coarse_mm[1]
    prior = np.exp(-0.5 * ((cols[None, :] - body_centre[:, None]) / sigma_cols) ** 2)
    score = smooth * prior
    best = score.argmax(axis=1)
    evidence = score[np.arange(n_rows), best]
    weights = (evidence > 0.25 * max(float(evidence.max()), 1e-6)).astype(np.float32) * evidence
    return _smooth_track(best.astype(np.float32), weights, int(round(80.0 / coarse_mm[0])))


def _spine_ap(bone: np.ndarray, track: np.ndarray, coarse_mm: np.ndarray,
              slab_mm: float) -> float:
    """Anterior-posterior index (coarse) where the slab around ``track`` holds most bone."""
    n_rows, n_cols, n_ap = bone.shape
    half = max(1, int(round(0.5 * slab_mm / coarse_mm[1])))
    centre_cols = np.clip(np.round(track).astype(int), 0, n_cols - 1)
    lo = np.clip(centre_cols - half, 0, n_cols)
    hi = np.clip(centre_cols + half + 1, 0, n_cols)
    profile = np.zeros(n_ap, dtype=np.float32)
    for row in range(n_rows):
        profile += bone[row, lo[row] : hi[row], :].sum(axis=0)
    profile = ndimage.uniform_filter1d(profile, max(1, int(round(40.0 / coarse_mm[2]))))
    return float(np.argmax(profile)) if profile.max() > 0 else (n_ap - 1) / 2.0


def find_spine(grid: PatientGrid, config: PreprocessConfig) -> SpineTrack:
    """Locate the spine's right-left position per row and its anterior-posterior position.

    Works on a coarse sub-sample (about 4 mm) of the patient grid. Bone thickness
    along anterior-posterior peaks at the spine (vertebral body plus posterior
    elements); arms are discounted by a prior centred on the body and the table
    by its thinness. A first pass finds the spine roughly and its front-back
    position; the second counts only bone behind the front of the vertebral
    bodies, which leaves out contrast-filled vessels (the aorta lies in front of
    the spine) while keeping the symmetric posterior elements.
    """
    step = np.maximum(1, np.round(4.0 / grid.spacing).astype(int))
    coarse = grid.array[:: step[0], :: step[1], :: step[2]]
    coarse_mm = grid.spacing * step
    bone = coarse > config.bone_hu
    body_width = (coarse > config.body_hu).any(axis=2)  # [s, r]
    n_rows, n_cols = body_width.shape
    # Body centre per row: the middle of the body's right-left extent, else the FOV centre.
    has_body = body_width.any(axis=1)
    body_centre = np.full(n_rows, (n_cols - 1) / 2.0, dtype=np.float32)
    if has_body.any():
        weights = body_width.astype(np.float32)
        cols = np.arange(n_cols, dtype=np.float32)
        body_centre[has_body] = (weights[has_body] @ cols) / weights[has_body].sum(axis=1)
    rough = _track_lr(bone, body_centre, coarse_mm)
    a_coarse = _spine_ap(bone, rough, coarse_mm, config.slab_mm)
    # Behind a line 15 mm in front of the bone's centre: the bodies' back half and everything
    # posterior of them.
    a_cut = int(max(0, round(a_coarse - 15.0 / coarse_mm[2])))
    track = _track_lr(bone[:, :, a_cut:], body_centre, coarse_mm)
    a_coarse = _spine_ap(bone, track, coarse_mm, config.slab_mm)
    full_rows = np.arange(grid.array.shape[0]) / step[0]
    r_index = np.interp(full_rows, np.arange(n_rows), track) * step[1]
    return SpineTrack(r_index=r_index, a_index=a_coarse * step[2])


# ------------------------------------------------------------ projections


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
        direction = self.ijk_to_ras[:3, :3] / np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)
        return int(np.argmax(np.abs(direction[2])))

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


def window(image_hu: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Clip HU to ``[hu_min, hu_max]`` and scale to float32 0..1 (a fixed window, the same
    for every scan, unlike the seed's per-image min-max)."""
    scale = 1.0 / (config.hu_max - config.hu_min)
    out = (np.asarray(image_hu, dtype=np.float32) - config.hu_min) * scale
    return np.clip(out, 0.0, 1.0, out=out)


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


def check_ct_like(volume: Volume) -> None:
    """Refuse data that cannot be a CT in HU: NaN-only, constant, or far off the HU scale."""
    array = volume.array
    label = volume.name or "The image"
    step = max(1, int(round((array.size / 2e6) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float32)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise InputError(f"{label} holds no valid numbers (all NaN or infinite).")
    low, high = float(finite.min()), float(finite.max())
    if high - low < 1e-3:
        raise InputError(f"{label} is constant ({low:g} everywhere): there is nothing to analyse.")
    p99 = float(np.percentile(finite, 99.5))
    if high < 150.0 or p99 < 100.0 or low < -5000.0 or p99 > 20000.0:
        raise InputError(
            f"{label} does not look like a CT in Hounsfield units (values {low:g} to {high:g}; "
            "no bone-like values). L3 Locator needs a CT; MR, PET or rescaled images will not work."
        )


def project(volume: Volume, config: PreprocessConfig | None = None) -> Projections:
    """Frontal and restricted sagittal MIPs (HU) of a CT at ``config.pixel_mm``.

    Rows cover the whole superior-inferior extent of the scan (never cropped);
    columns are ``config.width_px`` wide, centred on the spine (frontal) or with
    the spine at ``config.sagittal_spine_fraction`` of the width (sagittal).
    """
    config = config or PreprocessConfig()
    grid = to_patient_grid(volume, config)
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


# ------------------------------------------------------------ the seed's preprocessing


@dataclass(frozen=True)
class SeedSample:
    """One scan of the paper's npz after the seed's preprocessing (1 mm pixels)."""

    frontal: np.ndarray  #: float32 [512, 512], 0..1, outer 35% of columns zeroed
    sagittal: np.ndarray  #: float32 [512, 512], 0..1
    l3_row: int  #: L3 row at 1 mm (the seed truncates, it does not round)


SEED_SIZE = 512  #: the seed's fixed height and width (pixels of 1 mm)
SEED_MASK_FRACTION = 0.35  #: columns zeroed on each side of the frontal MIP


def seed_preprocess(
    image_f: np.ndarray, image_s: np.ndarray, l3_row: float, spacing: np.ndarray
) -> SeedSample | None:
    """Reproduce the seed's preprocessing of one npz scan exactly; None when the seed drops it.

    ``image_f``/``image_s`` are the npz's frontal and sagittal MIPs in HU, rows
    along the scan's z axis and columns in-plane; ``spacing`` is the npz's
    ``(s0, s1, s2)`` in mm where ``s2`` is the slice spacing and ``s0`` the
    in-plane one; ``l3_row`` is the annotators' mean L3 row in the original rows.

    Steps (the seed's ``normalise_spacing_and_preprocess`` and ``resize_img``):
    zoom by ``[s2, s0]`` (cubic spline, scipy's default) to 1 mm; clip to
    100..1500 HU and min-max scale *each image* to 0..255 (here divided by 255,
    as the seed's dataset does); L3 row ``int(row * s2)``; drop the scan when that
    row is beyond 512; keep the top 512 rows (or pad below with zeros); centre-crop
    or zero-pad the width to 512; zero the outer 35% of the frontal's columns.

    Our main path (``project``) deliberately differs: a fixed HU window instead
    of per-image min-max (so intensities mean the same in every scan); 2 mm pixels;
    every row kept, so scans whose L3 lies low are not thrown away; width centred
    on the spine, not the image; no column mask (ribs help count vertebrae; arms
    are handled by training); a sub-pixel row instead of a truncated one.
    """
    s = np.asarray(spacing, dtype=float)
    factors = [s[2], s[0]]
    images = []
    for image in (image_f, image_s):
        zoomed = ndimage.zoom(np.asarray(image), factors)
        clipped = np.clip(zoomed, 100, 1500).astype(np.float32)
        scaled = (clipped - np.min(clipped)) / (np.max(clipped) - np.min(clipped) + 1e-8)
        images.append(255.0 * scaled)
    row = int(l3_row * s[2])
    if row > SEED_SIZE:
        return None
    out = []
    for image in images:
        h, w = image.shape
        canvas = np.zeros((SEED_SIZE, w), dtype=np.float32)
        canvas[: min(h, SEED_SIZE)] = image[:SEED_SIZE]
        if w > SEED_SIZE:
            mid = int(w * 0.5)
            canvas = canvas[:, mid - SEED_SIZE // 2 : mid + SEED_SIZE // 2]
        else:
            padded = np.zeros((SEED_SIZE, SEED_SIZE), dtype=np.float32)
            start = int(0.5 * (SEED_SIZE - w))
            padded[:, start : start + w] = canvas
            canvas = padded
        out.append(canvas / 255.0)
    frontal, sagittal = out
    frontal[:, : int(SEED_MASK_FRACTION * SEED_SIZE)] = 0.0
    frontal[:, int((1 - SEED_MASK_FRACTION) * SEED_SIZE) :] = 0.0
    return SeedSample(frontal=frontal, sagittal=sagittal, l3_row=row)
