"""Data augmentation on HU projections, and the per-row targets.

Every function takes a ``numpy.random.Generator`` so a run is reproducible:
the trainer derives one generator per (seed, epoch, sample) and the result
does not depend on batch order or on the number of worker processes.

Images are ``[2, H, W]`` float32 HU (frontal, sagittal), rows superior ->
inferior. One affine resampling does scale (patient size and pixel size),
the vertical crop (which may move L3 anywhere, or remove it: hard negatives
cut just above or below L3) and horizontal shifts. A smooth random stretch
along the rows then makes some vertebrae and discs taller or shorter than their
neighbours, so the network must count vertebrae rather than measure distances
from the ribs or the pelvis (a single real anatomy, the label-map CT, would
otherwise teach it one patient's proportions). Then intensity window jitter,
noise, blur, simulated thick slices, left-right flip of the frontal view and
occlusions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from L3LocatorLib.projection import PreprocessConfig

from .sources import Sample


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of every augmentation (``enabled=False``: crop only)."""

    enabled: bool = True
    scale: tuple[float, float] = (0.82, 1.2)  #: isotropic zoom factor range
    aspect: float = 0.06  #: extra column zoom, +/- fraction
    shift_px: float = 10.0  #: std of the horizontal shift (pixels)
    p_l3_inside: float = 0.5  #: crops placed so L3 is inside
    p_l3_cut: float = 0.2  #: crops cut just above or below L3 (hard negatives)
    #: of those, the share whose edge lies within one vertebra of L3 (L3 just out of view:
    #: the level must be counted from the far end, the way false alarms happen)
    p_cut_near: float = 0.5
    cut_gap_px: tuple[float, float, float] = (4.0, 14.0, 40.0)  #: near / far gap bounds (rows)
    #: blank the crop above or below a window (the scan ends there): short fields of view
    #: such as a liver-phase scan from T10 to L2, where only one end of the spine shows
    p_short_fov: float = 0.15
    short_fov_px: tuple[float, float] = (60.0, 160.0)  #: window height range (rows)
    #: smooth left-right (frontal) or front-back (sagittal) bend of the spine along the rows:
    #: scoliosis, kyphosis and lordosis differ between patients and one real chest CT's
    #: strongly curved thoracic spine in the sagittal view was enough to lose every level
    p_bend: float = 0.0
    bend_px: float = 8.0  #: std of the bend (columns)
    bend_length_px: float = 50.0  #: its correlation length (rows)
    #: sagittal view without visible discs: a grey dilation along the rows bridges the disc
    #: gaps (then a blur), as in older spines with narrowed discs, osteophytes and thick
    #: slices; the levels must then come from the frontal view (the real chest CT's sagittal
    #: view showed a continuous bone column and lost every level)
    p_sag_bridge: float = 0.0
    sag_bridge_px: tuple[int, int] = (3, 7)  #: dilation length range (rows)
    #: a power law on the HU window, per view: mid-tones (cancellous bone, thin vertebral
    #: walls) fade while dense cortex stays bright, as on older patients' real CT, where
    #: vertebral bodies look dim between bright endplates and posterior elements
    p_gamma: float = 0.0
    gamma: tuple[float, float] = (1.3, 2.5)  #: exponent range (> 1 darkens mid-tones)
    p_warp: float = 0.5  #: smooth stretch along the rows
    warp_log_std: float = 0.12  #: std of the log local stretch (0.12: about +/- 12 %)
    warp_length_px: float = 10.0  #: correlation length of the stretch (rows; ~ half a vertebra)
    window_scale: float = 0.08  #: HU gain jitter, +/- fraction
    window_shift: float = 60.0  #: HU offset jitter, +/- HU
    p_noise: float = 0.5
    noise_hu: tuple[float, float] = (5.0, 50.0)
    p_blur: float = 0.3
    blur_px: tuple[float, float] = (0.3, 1.0)
    p_thick: float = 0.3  #: simulate thick slices (blur along rows)
    thick_px: tuple[float, float] = (0.5, 1.5)
    p_flip: float = 0.5  #: left-right flip of the frontal view
    p_occlude: float = 0.25
    view_dropout: float = 0.15  #: zero one view's channel (2-view models)


@dataclass
class Augmented:
    """One training crop: images (HU) and where the levels went (rows may be outside)."""

    images: np.ndarray  #: float32 [2, H, W] HU
    level_rows: dict[str, float]
    l3_extent: Optional[tuple[float, float]]
    #: first and last row showing the scan (the rest is blank, as beyond a scan's end)
    rows_with_data: tuple[int, int] = (0, -1)


def augment(
    sample: Sample,
    rng: np.random.Generator,
    crop_rows: int,
    preprocess: PreprocessConfig,
    config: AugmentConfig = AugmentConfig(),
) -> Augmented:
    """A random crop of ``crop_rows`` rows (full width) of ``sample`` with augmentations."""
    fill = preprocess.hu_min - 1.0
    h, w = sample.frontal_hu.shape
    if config.enabled:
        f_r = float(np.exp(rng.uniform(np.log(config.scale[0]), np.log(config.scale[1]))))
        f_c = f_r * float(np.exp(rng.uniform(-config.aspect, config.aspect)))
    else:
        f_r = f_c = 1.0
    span = crop_rows / f_r  # input rows covered by the crop
    l3 = sample.l3_row
    u = rng.random()
    margin = 6.0
    if l3 is not None and u < config.p_l3_inside:
        y = rng.uniform(margin, crop_rows - 1 - margin)
        r0 = l3 - y / f_r
    elif l3 is not None and u < config.p_l3_inside + config.p_l3_cut:
        near, mid, far = config.cut_gap_px
        gap = rng.uniform(near, mid) if rng.random() < config.p_cut_near else rng.uniform(mid, far)
        y = -gap if rng.random() < 0.5 else crop_rows - 1 + gap
        r0 = l3 - y / f_r
    elif h > span:
        r0 = rng.uniform(-0.15 * span, h - 0.85 * span)
    else:
        r0 = rng.uniform(h - span, 0.0) if config.enabled else 0.0
    shifts = rng.normal(0.0, config.shift_px, size=2) if config.enabled else np.zeros(2)
    # Input row of every output row: affine, or a smooth monotonic stretch of it.
    stretch = np.arange(crop_rows, dtype=np.float64)
    if config.enabled and rng.random() < config.p_warp:
        stretch = row_stretch(crop_rows, rng, config.warp_log_std, config.warp_length_px)
    in_rows = r0 + stretch / f_r
    out = np.empty((2, crop_rows, w), dtype=np.float32)
    cols = np.arange(w, dtype=np.float64)
    for v, image in enumerate((sample.frontal_hu, sample.sagittal_hu)):
        col_offset = (w - 1) / 2.0 - (w - 1) / 2.0 / f_c + shifts[v]
        grid_r, grid_c = np.meshgrid(in_rows, col_offset + cols / f_c, indexing="ij")
        if config.enabled and config.p_bend > 0 and rng.random() < config.p_bend:
            grid_c = grid_c + row_bend(crop_rows, rng, config.bend_px,
                                       config.bend_length_px)[:, None]
        ndimage.map_coordinates(image, [grid_r, grid_c], output=out[v], order=1,
                                mode="constant", cval=fill)

    def out_row(r: float) -> float:
        """Output row of input row ``r`` (inverse of ``in_rows``; affine outside the crop)."""
        if r < in_rows[0]:
            return (r - in_rows[0]) * f_r
        if r > in_rows[-1]:
            return crop_rows - 1 + (r - in_rows[-1]) * f_r
        return float(np.interp(r, in_rows, np.arange(crop_rows)))

    rows = {k: out_row(r) for k, r in sample.level_rows.items()}
    extent = None
    if sample.l3_top_row is not None and sample.l3_bottom_row is not None:
        extent = (out_row(sample.l3_top_row), out_row(sample.l3_bottom_row))
    first, last = 0, crop_rows - 1
    if config.enabled and rng.random() < config.p_short_fov:
        height = int(rng.uniform(*config.short_fov_px))
        if rng.random() < 0.5:
            first = crop_rows - height
        else:
            last = height - 1
        out[:, :first] = fill
        out[:, last + 1 :] = fill
    if config.enabled and config.p_sag_bridge > 0 and rng.random() < config.p_sag_bridge:
        size = int(rng.integers(config.sag_bridge_px[0], config.sag_bridge_px[1] + 1))
        out[1] = ndimage.grey_dilation(out[1], size=(size, 1))
        ndimage.gaussian_filter1d(out[1], rng.uniform(0.5, 1.5), axis=0, output=out[1])
    if config.enabled and config.p_gamma > 0:
        for view in range(out.shape[0]):
            if rng.random() < config.p_gamma:
                gamma_window(out[view], preprocess.hu_min, preprocess.hu_max,
                             rng.uniform(*config.gamma))
    if config.enabled:
        _intensity(out, rng, config, fill)
    return Augmented(out, rows, extent, (first, last))


def gamma_window(image: np.ndarray, lo: float, hi: float, gamma: float) -> None:
    """In place: HU strictly inside the window ``[lo, hi]`` mapped by the power law
    ``lo + (hi - lo) * t ** gamma`` (``t`` the position in the window, 0..1); values
    outside it are unchanged, so the map is monotonic and continuous."""
    inside = (image > lo) & (image < hi)
    t = (image[inside] - lo) / (hi - lo)
    image[inside] = lo + (hi - lo) * t ** gamma


def row_bend(n: int, rng: np.random.Generator, std_px: float, length_px: float) -> np.ndarray:
    """A smooth column offset per row (``n`` values, columns, zero mean): a spine curve."""
    z = ndimage.gaussian_filter1d(rng.normal(0.0, 1.0, n), length_px, mode="reflect")
    z -= z.mean()
    return z * (std_px / max(float(z.std()), 1e-9))


def row_stretch(n: int, rng: np.random.Generator, log_std: float,
                length_px: float) -> np.ndarray:
    """A smooth, strictly increasing map of ``n`` output rows to input rows (in rows).

    The local stretch ``exp(z)`` has ``z`` Gaussian-correlated over ``length_px`` rows
    with standard deviation ``log_std``; the map starts at 0 and ends at ``n - 1``, so
    the crop's overall scale is unchanged and only the proportions within it vary.
    """
    z = ndimage.gaussian_filter1d(rng.normal(0.0, 1.0, n + 1), length_px, mode="wrap")
    z *= log_std / max(float(z.std()), 1e-9)
    step = np.exp(z[:-1])
    mapped = np.concatenate([[0.0], np.cumsum(step[:-1])])
    return mapped * (n - 1) / mapped[-1]


def _intensity(images: np.ndarray, rng: np.random.Generator, c: AugmentConfig,
               fill: float) -> None:
    """In-place intensity and appearance augmentations of ``[2, H, W]`` HU images."""
    gain = 1.0 + rng.uniform(-c.window_scale, c.window_scale)
    offset = rng.uniform(-c.window_shift, c.window_shift)
    images *= gain
    images += offset
    if rng.random() < c.p_thick:
        sigma = rng.uniform(*c.thick_px)
        ndimage.gaussian_filter1d(images, sigma, axis=1, output=images, mode="nearest")
    if rng.random() < c.p_blur:
        sigma = rng.uniform(*c.blur_px)
        for v in range(images.shape[0]):
            ndimage.gaussian_filter(images[v], sigma, output=images[v], mode="nearest")
    if rng.random() < c.p_noise:
        images += rng.normal(0.0, rng.uniform(*c.noise_hu), size=images.shape).astype(np.float32)
    if rng.random() < c.p_flip:
        images[0] = images[0, :, ::-1].copy()
    if rng.random() < c.p_occlude:
        _, h, w = images.shape
        for _ in range(int(rng.integers(1, 3))):
            v = int(rng.integers(0, 2))
            rh, rw = int(rng.integers(4, max(5, h // 6))), int(rng.integers(8, max(9, w // 4)))
            r, col = int(rng.integers(0, max(1, h - rh))), int(rng.integers(0, max(1, w - rw)))
            value = (fill, 0.0, 3000.0)[int(rng.integers(0, 3))]
            images[v, r : r + rh, col : col + rw] = value


def row_targets(
    level_rows: dict[str, float],
    known_levels: tuple[str, ...] | list[str],
    levels: tuple[str, ...],
    n_rows: int,
    kind: str = "gaussian",
    sigma: float = 1.5,
    band: int = 3,
    edge_margin: float = 3.0,
    rows_with_data: tuple[int, int] = (0, -1),
) -> tuple[np.ndarray, np.ndarray]:
    """Targets ``[n_levels, n_rows]`` (0..1) and loss mask ``[n_levels]`` (0 or 1).

    ``gaussian``: ``exp(-(r - row)^2 / 2 sigma^2)`` around the landmark row;
    ``band``: 1 on rows ``int(row) - band .. int(row) + band - 1`` (the seed's label).
    A level outside the image (or absent from the scan) has an all-zero target;
    a level the source does not know is masked out, and so is one whose landmark
    lies just outside the image (within ``edge_margin`` rows), where "present" and
    "absent" cannot be told apart. ``rows_with_data`` (first, last; negative counts
    from the end) limits "the image" to the rows that show the scan.
    """
    target = np.zeros((len(levels), n_rows), dtype=np.float32)
    mask = np.zeros(len(levels), dtype=np.float32)
    first, last = (r % n_rows for r in rows_with_data)
    rows = np.arange(n_rows, dtype=np.float32)
    for i, level in enumerate(levels):
        if level not in known_levels:
            continue
        mask[i] = 1.0
        row = level_rows.get(level)
        if row is None:
            continue
        if row < first - 0.5 or row > last + 0.5:
            if row > first - 0.5 - edge_margin and row < last + 0.5 + edge_margin:
                mask[i] = 0.0
            continue
        if kind == "gaussian":
            target[i] = np.exp(-0.5 * ((rows - row) / sigma) ** 2)
        elif kind == "band":
            centre = int(row)
            target[i, max(0, centre - band) : max(0, centre + band)] = 1.0
        else:
            raise ValueError(f"unknown target kind {kind!r}")
    return target, mask


def band_target_2d(row_target: np.ndarray, width: int, lo: float = 0.35,
                   hi: float = 0.7) -> np.ndarray:
    """The seed's 2-D label: a row target ``[n, H]`` painted on columns ``lo..hi`` of the
    width -> ``[n, H, W]``."""
    out = np.zeros(row_target.shape + (width,), dtype=np.float32)
    out[..., int(width * lo) : int(width * hi)] = row_target[..., None]
    return out
