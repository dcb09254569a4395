"""A second reader: count the vertebrae like a radiologist, without a network.

Works in 3-D on the CT brought to patient axes (``patient_grid``: array ``[s, r, a]``,
superior -> inferior, right -> left, anterior -> posterior), on a grid of about 2 mm
(block mean and block max of the voxels) inside a box around the spine track that
``projection.project`` already found. Every step is numpy / scipy.ndimage:

1. **Body track.** On a thin mid-sagittal slab (right-left mean within
   ``SecondReaderConfig.slab_half_mm`` of the track) the posterior wall of the vertebral
   bodies is where bright bone in front meets the dark spinal canal behind, with the
   bright vertebral arch behind that. A Viterbi path follows the wall superior ->
   inferior; rows where that pattern is absent end the track.
2. **Discs.** Along the body column just in front of the wall, a disc is a narrow dark
   gap between two bright endplates (narrow: the dim middle of an osteoporotic body is
   a wider dip). A chain of gaps with plausible spacing (dynamic programming) splits the
   column into vertebral bodies.
3. **Ribs.** Bone lateral to the bodies, connected in 3-D, whose medial end lies beside
   one body behind its posterior wall (the costovertebral and costotransverse joints)
   and which reaches farther out than any transverse process: a rib. The lowest body
   with such a rib on either side is the last rib-bearing vertebra.
4. **Sacrum and iliac crests.** The sacrum begins where bone in front of the canal
   spreads sideways from the midline beyond any lumbar body (the sacral alae) and
   stays that wide; the disc just above it is L5-S1. The iliac crests are the top of
   the bone far lateral in the pelvis (reported, not counted with).
5. **Count.** Bodies below the last rib-bearing one are L1, L2, ...; bodies above the
   sacrum are L5, L4, ... upwards. A count is only made from an anchor that is in view
   and joined to L3 by an unbroken chain of discs; otherwise the reading says it
   cannot count, never a guess.

S positions are RAS S in mm (superior positive), like ``L3Result.s_mm``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
from scipy import ndimage

from .patient_grid import PatientGrid, to_patient_grid
from .projection import Projections
from .volume import Volume

log = logging.getLogger(__name__)

#: ``SecondReading.status`` values.
COUNTED = "counted"
CANNOT_COUNT = "cannot_count"

#: How far (mm) the lowest ribs drop per mm away from the spine, near their neck.
RIB_SLOPE = 0.7


@dataclass(frozen=True)
class SecondReaderConfig:
    """Settings of :func:`read_spine` (mm and HU)."""

    #: Working grid (mm): the voxels are pooled in blocks of about this size.
    grid_mm: float = 2.0
    #: Half-size of the box around the spine track, right-left, and its reach in front of
    #: and behind the back of the spine (mm).
    box_half_r_mm: float = 90.0
    box_front_mm: float = 170.0
    box_back_mm: float = 15.0
    #: Right-left half-width of the mid-sagittal slab that shows bodies, canal and arch.
    slab_half_mm: float = 6.0
    #: Posterior-wall detector: depth of body in front, canal behind, arch behind that.
    wall_body_mm: float = 6.0
    wall_canal_mm: tuple[float, float] = (2.0, 8.0)
    wall_arch_mm: tuple[float, float] = (8.0, 40.0)
    #: Body and arch must be brighter than this (HU, slab mean) to be bone.
    wall_bone_hu: float = 100.0
    #: Largest wall contrast (HU) that counts, and the preference (HU per mm) for a wall
    #: farther back.
    wall_clip_hu: float = 150.0
    wall_back_bias: float = 0.5
    #: Smallest wall contrast (HU) for a row to be on the spine.
    wall_min_hu: float = 35.0
    #: The track may lose the pattern for at most this long (mm) and still be one spine.
    track_gap_mm: float = 12.0
    #: Disc profile: right-left half-width and front-back range in front of the wall.
    column_half_r_mm: float = 8.0
    column_a_mm: tuple[float, float] = (-24.0, -4.0)
    #: A disc: dip this far (mm) on either side to the endplates' peak.
    disc_window_mm: float = 8.0
    #: Smallest dip (HU) and fraction of the column's bone contrast for a disc.
    disc_min_hu: float = 20.0
    disc_min_fraction: float = 0.18
    #: Plausible distance (mm) between neighbouring discs (one vertebral level), and the
    #: largest ratio between two neighbouring levels' heights.
    level_mm: tuple[float, float] = (14.0, 55.0)
    level_ratio: float = 1.5
    #: Bone threshold (HU) of the block maximum, for ribs.
    bone_hu: float = 200.0
    #: ... and for the iliac bones, which confirm a sacrum: higher, as kidneys with contrast
    #: lie beside the lumbar bodies and would pass for sacral alae joined to iliac wings.
    pelvis_hu: float = 300.0
    #: Ribs: medial end within this distance (mm) of the midline, reach at least this far.
    rib_medial_mm: float = 42.0
    rib_reach_mm: float = 62.0
    #: Ribs: largest mean cross-section (mm^2 of axial slice per slice): ribs show 70-150
    #: on real and synthetic CT, a kidney or vessel with contrast 500 and more.
    rib_max_section_mm2: float = 250.0
    #: Ribs: the medial end lies between these distances (mm) behind the body's wall.
    rib_behind_wall_mm: tuple[float, float] = (-15.0, 35.0)
    #: Sacrum: bone in front of the canal wider than this (mm) from the midline on both
    #: sides, for at least ``sacrum_rows_mm``.
    sacrum_half_width_mm: float = 38.0
    sacrum_rows_mm: float = 16.0
    #: ... and joined to the iliac bones, this far (mm) from the midline on both sides.
    ilium_reach_mm: float = 70.0
    #: The field of view must reach this far (mm) sideways for ribs to be judged.
    rib_fov_mm: float = 70.0


@dataclass
class CountedVertebra:
    """One vertebral body found on the track.

    Attributes:
        top_s_mm, bottom_s_mm: S (mm) of the disc centres above and below it.
        rib_bearing: a rib meets it on the right or left (False also when the
            field of view is too narrow to tell: see ``SecondReading.anchors``).
        from_ribs: its name counted down from the last rib-bearing vertebra (that one
            is "T12"), or None when that count is not possible.
        from_sacrum: its name counted up from the sacrum ("L5" is the body on it).
    """

    top_s_mm: float
    bottom_s_mm: float
    rib_bearing: bool = False
    from_ribs: Optional[str] = None
    from_sacrum: Optional[str] = None

    @property
    def s_mm(self) -> float:
        return 0.5 * (self.top_s_mm + self.bottom_s_mm)


@dataclass
class SecondReading:
    """What the second reader counted.

    Attributes:
        status: "counted" (at least one anchor gives L3) or "cannot_count".
        message: plain words for the user (what was counted from what, or why not).
        vertebrae: bodies found, superior -> inferior.
        anchors: which anchors were seen: "last rib", "sacrum", "iliac crests".
        l3_from_ribs_s_mm, l3_from_sacrum_s_mm: [bottom, top] S (mm) of L3 by each count,
            None when that count is not possible.
        rib_bearing_seen: rib-bearing vertebrae in view (None when ribs cannot be judged).
        lumbar_between: rib-free vertebrae between the last rib-bearing vertebra and the
            sacrum (None unless both anchors are seen and joined by discs).
        last_rib_s_mm, sacrum_top_s_mm, iliac_crest_s_mm: where the anchors are (S, mm).
        variants: plain-words variant findings (T13, L6, 4 or 6 lumbar, transitional).
        verdict: where the count agrees or disagrees with the network's L3, in words.
    """

    status: str
    message: str
    vertebrae: list[CountedVertebra] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    l3_from_ribs_s_mm: Optional[list[float]] = None
    l3_from_sacrum_s_mm: Optional[list[float]] = None
    rib_bearing_seen: Optional[int] = None
    lumbar_between: Optional[int] = None
    last_rib_s_mm: Optional[float] = None
    sacrum_top_s_mm: Optional[float] = None
    iliac_crest_s_mm: Optional[float] = None
    variants: list[str] = field(default_factory=list)
    #: The reading against the network's L3, in words (set by :func:`second_read`).
    verdict: str = ""

    @property
    def counted(self) -> bool:
        return self.status == COUNTED

    def l3_ranges(self) -> dict[str, list[float]]:
        """Anchor ("ribs", "sacrum") -> [bottom, top] S (mm) of L3 by that count."""
        out = {}
        if self.l3_from_ribs_s_mm is not None:
            out["ribs"] = self.l3_from_ribs_s_mm
        if self.l3_from_sacrum_s_mm is not None:
            out["sacrum"] = self.l3_from_sacrum_s_mm
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for v, d in zip(self.vertebrae, out["vertebrae"]):
            d["s_mm"] = v.s_mm
        return out


# ----------------------------------------------------------------------------- the box


@dataclass(frozen=True)
class _Box:
    """Block mean and block max of the grid around the spine, ``[s, r, a]`` (HU, float32),
    with the S, R and A (mm) of each block centre."""

    mean: np.ndarray
    high: np.ndarray
    s_mm: np.ndarray
    r_mm: np.ndarray
    a_mm: np.ndarray
    step_mm: np.ndarray  #: block size along s, r, a (mm)
    track_r: np.ndarray  #: continuous r index of the spine per row
    spine_back: float  #: continuous a index of the back of the spine (whole scan)
    fov_r_mm: tuple[float, float]  #: lateral reach (mm) of the scanned field, right / left


def _pool(array: np.ndarray, steps: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Block mean and block max (float32) of ``array`` over ``steps`` voxels per axis.

    One axis at a time, each as elementwise operations on strided views, the first pass in
    the voxels' own type (numpy reduces short inner axes slowly: as one 6-D reduction a
    512x512x400 CT's box took seconds).
    """
    n = [s // k for s, k in zip(array.shape, steps)]
    high = mean = array[: n[0] * steps[0], : n[1] * steps[1], : n[2] * steps[2]]
    for axis, step in enumerate(steps):
        if step == 1:
            continue

        def part(x: np.ndarray, offset: int, step: int = step, axis: int = axis) -> np.ndarray:
            return x[(slice(None),) * axis + (slice(offset, None, step),)]

        new_high = np.maximum(part(high, 0), part(high, 1))
        new_mean = np.add(part(mean, 0), part(mean, 1), dtype=np.float32)
        for offset in range(2, step):
            np.maximum(new_high, part(high, offset), out=new_high)
            new_mean += part(mean, offset)
        new_mean /= np.float32(step)
        high, mean = new_high, new_mean
    return np.asarray(mean, dtype=np.float32), np.asarray(high, dtype=np.float32)


def _box(grid: PatientGrid, projections: Projections, config: SecondReaderConfig) -> _Box:
    spacing = np.asarray(grid.spacing, dtype=float)
    steps = tuple(int(max(1, np.floor(config.grid_mm / s + 0.5))) for s in spacing)
    step_mm = spacing * steps
    geometry = projections.geometry
    n0 = grid.array.shape[0]
    corner = np.asarray(grid.corner_ras, dtype=float)
    rows_s = corner[2] - np.arange(n0) * spacing[0]
    frontal_col = np.interp(geometry.s_to_row(rows_s), np.arange(geometry.n_rows),
                            projections.spine_frontal_col)
    track_r_full = (corner[0] - geometry.frontal_col_to_r(frontal_col)) / spacing[1]
    back_full = (corner[1] - _spine_back_mm(projections)) / spacing[2]
    half_r = config.box_half_r_mm / spacing[1]
    r0 = int(max(0, np.floor(track_r_full.min() - half_r)))
    r1 = int(min(grid.array.shape[1], np.ceil(track_r_full.max() + half_r)))
    a0 = int(max(0, np.floor(back_full - config.box_front_mm / spacing[2])))
    a1 = int(min(grid.array.shape[2], np.ceil(back_full + config.box_back_mm / spacing[2])))
    sub = grid.array[:, r0:r1, a0:a1]
    if not np.issubdtype(sub.dtype, np.floating) or np.isfinite(sub).all():
        clean = sub
    else:
        clean = np.nan_to_num(sub, nan=-1024.0, posinf=-1024.0, neginf=-1024.0)
    # Pool in the array's memory order (the grid is a transposed, flipped view of the
    # volume): reading the voxels against their layout costs ten times more.
    order = [int(i) for i in np.argsort([-abs(st) for st in clean.strides])]
    back = [int(i) for i in np.argsort(order)]
    mean, high = _pool(clean.transpose(order), tuple(steps[i] for i in order))
    mean = np.ascontiguousarray(mean.transpose(back))
    high = np.ascontiguousarray(high.transpose(back))
    centre = (np.asarray(steps) - 1) / 2.0
    s_idx = np.arange(mean.shape[0]) * steps[0] + centre[0]
    r_idx = r0 + np.arange(mean.shape[1]) * steps[1] + centre[1]
    a_idx = a0 + np.arange(mean.shape[2]) * steps[2] + centre[2]
    track_r = (np.interp(s_idx, np.arange(n0), track_r_full) - r0 - centre[1]) / steps[1]
    spine_back = (back_full - a0 - centre[2]) / steps[2]
    track_r = _midline(mean, track_r, spine_back, step_mm)
    mid_r = float(np.median(track_r_full))
    fov = ((mid_r - 0) * spacing[1], (grid.array.shape[1] - 1 - mid_r) * spacing[1])
    return _Box(mean, high, corner[2] - s_idx * spacing[0], corner[0] - r_idx * spacing[1],
                corner[1] - a_idx * spacing[2], step_mm, track_r, spine_back, fov)


def _spine_back_mm(projections: Projections) -> float:
    """RAS A (mm) of the back of the spine (the tips of the spinous processes), from the
    restricted sagittal MIP: walking back from the projections' spine position through
    bone (above 250 HU in most rows' maximum) with gaps shorter than 25 mm (the canal, the
    spaces between the processes). The projections' position is where bone is thickest,
    which in a kyphotic chest with a contrast-filled aorta lies in front of the bodies;
    the back of the spine does not move with that."""
    geometry = projections.geometry
    profile = np.percentile(projections.sagittal_hu, 75, axis=0)  # per column (A)
    col = int(np.clip(round(float(projections.spine_sagittal_col[0])), 0, len(profile) - 1))
    gap_cols = int(round(25.0 / geometry.pixel_mm))
    last_bone, gap = col, 0
    for c in range(col, len(profile)):  # columns run anterior -> posterior
        if profile[c] > 250.0:
            last_bone, gap = c, 0
        else:
            gap += 1
            if gap > gap_cols:
                break
    return float(geometry.sagittal_col_to_a(last_bone))


def _midline(mean: np.ndarray, track_r: np.ndarray, spine_back: float, step_mm: np.ndarray
             ) -> np.ndarray:
    """The spine's right-left midline per row (continuous r index of the box): the
    centre of the bone within 30 mm of the projections' track, in the 70 mm in front of
    the back of the spine (``spine_back``, an a index: the bodies' back, the canal, the
    arch and the processes). The projections' track follows bone thickness, which can sit
    on one side's pedicles; these symmetric parts centre it. The aorta lies in front."""
    n_s, n_r, n_a = mean.shape
    a_lo = int(max(0, round(spine_back - 70.0 / step_mm[2])))
    a_hi = int(min(n_a, round(spine_back) + 1))
    weight = np.clip(mean[:, :, a_lo:a_hi] - 150.0, 0.0, None).sum(axis=2)  # [s, r]
    cols = np.arange(n_r, dtype=np.float32)[None, :]
    track = track_r.astype(np.float32)
    sigma = max(1.0, 8.0 / step_mm[0])
    for _ in range(2):
        w = weight * (np.abs(cols - track[:, None]) * step_mm[1] <= 30.0)
        total = w.sum(axis=1)
        centre = (w * cols).sum(axis=1) / np.maximum(total, 1e-6)
        known = (total > 0).astype(np.float32)
        num = ndimage.gaussian_filter1d(centre * known, sigma, mode="nearest")
        den = ndimage.gaussian_filter1d(known, sigma, mode="nearest")
        track = np.where(den > 1e-3, num / np.maximum(den, 1e-6), track)
    return track


# --------------------------------------------------------------------------- helpers


def _shift(x: np.ndarray, k: int, axis: int = -1) -> np.ndarray:
    """``y[..., i] = x[..., i + k]`` along ``axis``; NaN where ``i + k`` is outside."""
    y = np.full_like(x, np.nan, dtype=np.float32)
    n = x.shape[axis]
    if abs(k) >= n:
        return y
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    src[axis] = slice(max(0, k), n + min(0, k))
    dst[axis] = slice(max(0, -k), n - max(0, k))
    y[tuple(dst)] = x[tuple(src)]
    return y


def _window(x: np.ndarray, lo: int, hi: int, reduce: str, axis: int = -1) -> np.ndarray:
    """For every index i along ``axis``: the mean or max of ``x[i + lo .. i + hi]``
    (NaN-aware; NaN when the window lies wholly outside)."""
    stack = np.stack([_shift(x, k, axis) for k in range(lo, hi + 1)])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(stack, axis=0) if reduce == "mean" else np.nanmax(stack, axis=0)


def _slab_along_track(values: np.ndarray, track: np.ndarray, half: int) -> np.ndarray:
    """Mean of ``values[s, r, a]`` over ``r`` within ``track[s] +/- half``: ``[s, a]``."""
    n_s, n_r = values.shape[:2]
    cols = np.clip(np.round(track).astype(int)[:, None] + np.arange(-half, half + 1), 0, n_r - 1)
    return values[np.arange(n_s)[:, None], cols].mean(axis=1)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of every run of True in a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


# --------------------------------------------------------------------------- 1. track


@dataclass(frozen=True)
class _Track:
    wall: np.ndarray  #: a index (box grid) of the bodies' posterior wall, per row
    score: np.ndarray  #: wall contrast (HU) per row
    rows: tuple[int, int]  #: (start, stop) rows of the spine run


def _track(box: _Box, config: SecondReaderConfig) -> Optional[_Track]:
    ds, dr, da = box.step_mm
    sagittal = _slab_along_track(box.mean, box.track_r,
                                 max(1, int(round(config.slab_half_mm / dr))))
    smooth = ndimage.gaussian_filter1d(sagittal, max(0.5, 5.0 / ds), axis=0, mode="nearest")

    def idx(mm: float) -> int:
        return int(round(mm / da))

    body = _window(smooth, -max(1, idx(config.wall_body_mm)) + 1, 0, "mean")
    canal = _window(smooth, idx(config.wall_canal_mm[0]), idx(config.wall_canal_mm[1]), "mean")
    arch = _window(smooth, idx(config.wall_arch_mm[0]), idx(config.wall_arch_mm[1]), "max")
    # Both the body in front and the arch behind must be bone (above ``wall_bone_hu``): soft
    # tissue in front of fat (the back muscles before the subcutaneous fat) is not a wall.
    # The contrast counts only up to ``wall_clip_hu``, and the wall is preferred farther
    # back (``wall_back_bias``): a contrast-filled aorta in front of a dim osteoporotic
    # body has the stronger edge, but the bodies' wall always lies behind it.
    bone = (body > config.wall_bone_hu) & (arch > config.wall_bone_hu)
    score = np.minimum(np.minimum(body - canal, arch - canal), config.wall_clip_hu)
    contrast = np.nan_to_num(np.where(bone, score, score - 2.0 * config.wall_clip_hu),
                             nan=-1e3).astype(np.float32)
    score = contrast + np.float32(config.wall_back_bias * da) * np.arange(score.shape[1])
    # Viterbi: the wall moves at most about 1 mm front-back per mm along S.
    jump = max(1, int(round(ds / da)))
    penalty = 2.0  # HU per grid step of movement: prefers a straight wall
    n_s, n_a = score.shape
    total = score[0].copy()
    back = np.zeros((n_s, n_a), dtype=np.int16)
    for s in range(1, n_s):
        options = np.stack([_shift(total, d) - penalty * abs(d) for d in range(-jump, jump + 1)])
        options = np.nan_to_num(options, nan=-1e9)
        best = options.argmax(axis=0)
        back[s] = best - jump
        total = score[s] + options[best, np.arange(n_a)]
    wall = np.zeros(n_s, dtype=int)
    wall[-1] = int(total.argmax())
    for s in range(n_s - 1, 0, -1):
        wall[s - 1] = wall[s] + back[s, wall[s]]
    along = contrast[np.arange(n_s), wall]
    good = along >= config.wall_min_hu
    gap = int(round(config.track_gap_mm / ds))
    good = ndimage.binary_closing(np.pad(good, gap), np.ones(2 * gap + 1, bool))[gap:-gap] \
        if gap else good
    runs = _runs(good)
    if not runs:
        return None
    start, stop = max(runs, key=lambda r: r[1] - r[0])
    return _Track(wall, along, (int(start), int(stop)))


# --------------------------------------------------------------------------- 2. discs


@dataclass(frozen=True)
class _Discs:
    """One unbroken chain of discs."""

    rows: list[float]  #: disc centres (box rows, sub-row), superior -> inferior
    depth: list[float]  #: dip (HU) of each disc


def _column_band(box: _Box, track: _Track, config: SecondReaderConfig) -> np.ndarray:
    """HU of the body column ``[s, c]``: the mid-sagittal slab (``column_half_r_mm`` each
    side of the track) at the front-back offsets ``column_a_mm`` from the wall."""
    ds, dr, da = box.step_mm
    half = max(1, int(round(config.column_half_r_mm / dr)))
    slab = _slab_along_track(box.mean, box.track_r, half)  # [s, a]
    lo, hi = (int(round(v / da)) for v in config.column_a_mm)
    cols = np.clip(track.wall[:, None] + np.arange(lo, hi + 1), 0, slab.shape[1] - 1)
    return slab[np.arange(slab.shape[0])[:, None], cols]


def _discs(box: _Box, track: _Track, config: SecondReaderConfig) -> list[_Discs]:
    """Discs along the body column. Each front-back column of the band gets its own dip
    (darker than the brightest row within ``disc_window_mm`` above and below); a disc
    darkens the whole depth of the body, so the median over the columns is taken: the
    basivertebral vein's notch in the back of a body's middle, or a dim middle seen only
    in part of the depth, does not count. Returns the chains superior -> inferior: where
    the spacing breaks (a missed or extra disc), a new chain starts, and no count crosses
    the break."""
    ds = box.step_mm[0]
    band = _column_band(box, track, config)
    start, stop = track.rows
    band = ndimage.gaussian_filter1d(band, max(0.4, 1.0 / ds), axis=0)
    band[:start] = np.nan
    band[stop:] = np.nan
    w = max(2, int(round(config.disc_window_mm / ds)))
    above = _window(band, -w, -1, "max", axis=0)
    below = _window(band, 1, w, "max", axis=0)
    dip = np.nan_to_num(np.median(np.fmin(above, below) - band, axis=1), nan=0.0)
    f = band.mean(axis=1)
    inside = f[start:stop]
    contrast = float(np.percentile(inside, 90) - np.percentile(inside, 10)) if inside.size else 0.0
    threshold = max(config.disc_min_hu, config.disc_min_fraction * contrast)
    peak = dip == ndimage.maximum_filter1d(dip, max(3, 2 * int(round(6.0 / ds)) + 1))
    candidates = np.flatnonzero(peak & (dip >= threshold))
    chains = []
    pending = [candidates]
    while pending:
        part = pending.pop()
        chain = _best_chain(part, dip, ds, config) if len(part) >= 2 else []
        if len(chain) < 2:
            continue
        chains.append(_Discs([_subrow(f, c) for c in chain], [float(dip[c]) for c in chain]))
        pending += [part[part < chain[0]], part[part > chain[-1]]]
    return sorted(chains, key=lambda c: c.rows[0])


def _subrow(f: np.ndarray, i: int) -> float:
    """Sub-row position of the minimum of ``f`` near ``i`` (parabola through 3 rows)."""
    if 0 < i < len(f) - 1 and np.isfinite(f[i - 1 : i + 2]).all():
        a, b, c = f[i - 1], f[i], f[i + 1]
        denom = a - 2 * b + c
        if denom > 1e-6:
            return i + float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    return float(i)


def _best_chain(candidates: np.ndarray, dip: np.ndarray, ds: float,
                config: SecondReaderConfig) -> list[int]:
    """The chain of candidate rows with plausible level spacing and the largest summed dip.

    Neighbouring discs lie ``config.level_mm`` apart and two neighbouring levels differ in
    height by at most ``config.level_ratio``: a dip in the middle of a body halves a level
    and breaks the ratio, so it loses against the true discs.
    """
    m = len(candidates)
    if m == 0:
        return []
    pos = candidates * ds
    weight = dip[candidates]
    lo, hi = config.level_mm
    # best[j][i]: best chain ending ... -> i -> j (i < j), as (score, previous index or -1).
    best: dict[tuple[int, int], tuple[float, int]] = {}
    single = {j: float(weight[j]) for j in range(m)}
    top_score, top_end = max((single[j], (-1, j)) for j in range(m))
    for j in range(m):
        for i in range(j - 1, -1, -1):
            gap = pos[j] - pos[i]
            if gap > hi:
                break
            if gap < lo:
                continue
            score, prev = single[i] + weight[j], -1
            for h in range(i - 1, -1, -1):
                if (h, i) not in best:
                    continue
                before = pos[i] - pos[h]
                if before > hi:
                    break
                ratio = gap / before
                if 1.0 / config.level_ratio <= ratio <= config.level_ratio:
                    cand = best[(h, i)][0] + weight[j]
                    if cand > score:
                        score, prev = cand, h
            best[(i, j)] = (score, prev)
            if score > top_score:
                top_score, top_end = score, (i, j)
    chain = [top_end[1]]
    i, j = top_end
    while i >= 0:
        chain.append(i)
        prev = best[(i, j)][1]
        i, j = prev, i
    return [int(candidates[c]) for c in reversed(chain)]


# ------------------------------------------------------------------- 3. ribs, 4. pelvis


def _lateral_mm(box: _Box) -> np.ndarray:
    """Signed right-left distance (mm) of each box column from the spine, per row
    ``[s, r]`` (positive: patient left)."""
    return (np.arange(box.mean.shape[1])[None, :] - box.track_r[:, None]) * box.step_mm[1]


def _rib_heads(box: _Box, track: _Track, config: SecondReaderConfig
               ) -> list[tuple[float, int]]:
    """(row of the medial end, side -1 right / +1 left) of every rib in the box."""
    ds, dr, da = box.step_mm
    start, stop = track.rows
    # Only what can hold a rib's medial end or tell its reach: up to a little beyond
    # ``rib_reach_mm`` sideways, from in front of the bodies' wall to behind the arch
    # (labelling is the costly step). Every row: the ilium must show its full height to be
    # told from a rib.
    rows = slice(0, box.high.shape[0])
    lateral = _lateral_mm(box)[rows]
    reach_cols = np.flatnonzero((np.abs(lateral) <= config.rib_reach_mm + 6.0).any(axis=0))
    cols = slice(int(reach_cols[0]), int(reach_cols[-1]) + 1)
    wall = track.wall[rows]
    a_lo = max(0, int(wall.min() + round(-40.0 / da)))
    a_hi = min(box.high.shape[2], int(wall.max() + round(60.0 / da)) + 1)
    lateral = lateral[:, cols]
    bone = box.high[rows, cols, a_lo:a_hi] > config.bone_hu
    # Leave out the vertebral bodies, pedicles and rib heads next to them, so that each rib
    # (with the transverse process it touches) is its own component.
    bone &= (np.abs(lateral) > 20.0)[:, :, None]
    labels, n = ndimage.label(bone, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    heads = []
    behind = (np.arange(a_lo, a_hi)[None, :] - wall[:, None]) * da  # [s, a]
    for index, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl is None or (sl[0].stop - sl[0].start) * ds > 150.0:
            continue  # the ilium or a scapula, not a rib
        if sl[0].start == 0:
            continue  # cut by the top of the scan: its vertebra may be out of view
        s_i, r_i, a_i = np.nonzero(labels[sl] == index)
        if s_i.size * dr * da / (sl[0].stop - sl[0].start) > config.rib_max_section_mm2:
            continue  # solid: a kidney or vessel with contrast, not a rib
        s_i, r_i, a_i = s_i + sl[0].start, r_i + sl[1].start, a_i + sl[2].start
        lat = lateral[s_i, r_i]
        side = 1 if np.median(lat) > 0 else -1
        reach = float(np.max(side * lat))
        if reach < config.rib_reach_mm:
            continue
        near = (side * lat <= config.rib_medial_mm) & (s_i >= start) & (s_i < stop)
        b = behind[s_i, a_i]
        near &= (b >= config.rib_behind_wall_mm[0]) & (b <= config.rib_behind_wall_mm[1])
        if not near.any():
            continue
        inner = float(np.min(side * lat[near]))
        medial = near & (side * lat <= inner + 15.0)
        # The top of the medial end: the neck of a rib rises to its own vertebra, while a
        # transverse process below that touches the descending rib joins it lower down.
        # Where the neck is not seen (thin, dim), the rib is followed back up to the spine
        # at the slope of the lowest ribs (about 0.7 mm down per mm out).
        top = float(np.min(s_i[medial])) - RIB_SLOPE * max(0.0, inner - 20.0) / ds
        heads.append((top, side))
    return heads


def _sacrum_top(box: _Box, track: _Track, config: SecondReaderConfig) -> Optional[int]:
    """First row (box grid) of the sacrum: bone in front of the canal reaches beyond any
    lumbar body on both sides for ``config.sacrum_rows_mm`` and, within 40 mm of its top,
    out to the iliac bones; None when not in view."""
    ds, dr, da = box.step_mm
    n_s, n_r, n_a = box.high.shape
    lateral = _lateral_mm(box)
    start, stop = track.rows
    # Below the track's end the wall is held at its last position: the sacrum curves back
    # and loses the body/canal/arch pattern of the mobile spine.
    wall = track.wall.copy()
    wall[stop:] = wall[max(start, stop - 1)]
    a = np.arange(n_a)[None, :]
    band = (a >= wall[:, None] + int(round(-30.0 / da))) & (a <= wall[:, None] + 1)  # [s, a]
    bone = ((box.high > config.bone_hu) & band[:, None, :]).any(axis=2)  # [s, r]
    close = max(1, int(round(8.0 / dr)))  # bridges sacroiliac joints and sacral foramina
    bone = ndimage.binary_closing(bone, np.ones((1, 2 * close + 1), bool))
    half_width = np.zeros(n_s)  # bone joined to the midline: the smaller of its two sides
    for s in range(start, n_s):
        mid = int(np.clip(round(box.track_r[s]), 0, n_r - 1))
        if not bone[s, mid]:
            continue
        for lo, hi in _runs(bone[s]):
            if lo <= mid < hi:
                half_width[s] = min(lateral[s, hi - 1], -lateral[s, lo])
                break
    need = max(1, int(round(config.sacrum_rows_mm / ds)))
    pelvis = int(round(40.0 / ds))
    found = None
    for lo, hi in _runs(half_width >= config.sacrum_half_width_mm):
        # The sacrum's alae are joined to the iliac bones (across the sacroiliac joints)
        # within a few centimetres below its top; the rib heads beside a thoracic body
        # are not. The lowest such run: kidneys with contrast beside L1-L2, bridged to
        # the transverse processes, can make a short one higher up.
        if hi - lo >= need and lo > start \
                and half_width[lo : lo + pelvis].max() >= config.ilium_reach_mm:
            found = int(lo)
    return found


def _iliac_crest(box: _Box, sacrum_row: int, config: SecondReaderConfig) -> Optional[int]:
    """Top row of the iliac wings: the first row where bone far lateral (beyond 50 mm),
    belonging to a structure that reaches from above the sacrum's top to far below it, is
    as wide as a wing on both sides (a low rib touching the crest is only a few voxels
    across). None when the pelvis is not in view."""
    # From 100 mm above the sacrum's top down: the crests lie at most one or two levels up.
    first = max(0, sacrum_row - int(round(100.0 / box.step_mm[0])))
    sacrum_row -= first
    lateral = _lateral_mm(box)[first:]
    bone = (box.high[first:] > config.pelvis_hu) & (np.abs(lateral) > 50.0)[:, :, None]
    labels, _ = ndimage.label(bone, structure=np.ones((3, 3, 3), bool))
    keep = []
    for index, sl in enumerate(ndimage.find_objects(labels), 1):
        # The iliac bones reach from above the sacrum's top to far below it.
        if sl is not None and sl[0].start < sacrum_row \
                and (sl[0].stop - sacrum_row) * box.step_mm[0] >= 50.0:
            keep.append(index)
    if not keep:
        return None
    ilium = np.isin(labels, keep)
    wing = max(3, int(round(80.0 / (box.step_mm[1] * box.step_mm[2]))))  # 80 mm^2
    left = (ilium & (lateral > 0)[:, :, None]).sum(axis=(1, 2))
    right = (ilium & (lateral < 0)[:, :, None]).sum(axis=(1, 2))
    rows = np.flatnonzero((left >= wing) & (right >= wing))
    return int(rows[0]) + first if rows.size else None


# -------------------------------------------------------------------------- 5. count


def _cannot(reason: str, **found: Any) -> SecondReading:
    return SecondReading(CANNOT_COUNT, f"The vertebrae could not be counted: {reason}.",
                         **found)


def _rib_body(head_row: float, discs: list[float]) -> Optional[int]:
    """Body index (between ``discs[i]`` and ``discs[i + 1]``; -1: the body just above the
    first disc) a rib belongs to, from the row of its medial end (``head_row``): the body
    whose upper third (where the rib's head and neck meet it) is nearest; None when that is
    more than half a body away (beyond the chain)."""
    heights = np.diff(discs)
    ideal = np.asarray(discs[:-1]) + 0.3 * heights
    ideal = np.concatenate([[discs[0] - 0.7 * heights[0]], ideal])  # -1 first
    best = int(np.argmin(np.abs(ideal - head_row)))
    height = heights[max(0, best - 1)]
    if abs(ideal[best] - head_row) > 0.5 * height:
        return None
    return best - 1


def _rib_bearing(heads: list[float], rows: list[float], n_bodies: int) -> set[int]:
    """Indices of the bodies between the disc ``rows`` that bear ribs (-1: the body just
    above the first disc), from the rows of the ribs' medial ends.

    Ribs come on consecutive vertebrae from the top of the chest down. So the rib-bearing
    bodies are the longest run, allowing gaps of one body (a rib missed): a lowest rib one
    body below a rib-free one is the steep 12th rib whose medial end was seen low beside
    the next body, and it is moved up. Anything apart from that run (two rib-free bodies
    or more between) is not a rib: an iliac wing, a kidney with contrast.
    """
    found = sorted({b for b in (_rib_body(h, rows) for h in heads)
                    if b is not None and b < n_bodies})
    if not found:
        return set()
    groups = [[found[0]]]
    for body in found[1:]:
        if body - groups[-1][-1] > 2:
            groups.append([])
        groups[-1].append(body)
    run = max(groups, key=len)  # the first of the largest: false ones come singly, lower
    if len(run) >= 2 and run[-1] - run[-2] == 2:
        run[-1] -= 1
    return set(run)


def _range_mm(box: _Box, top_row: float, bottom_row: float) -> list[float]:
    """[bottom, top] S (mm) between two (sub-)rows of the box."""
    rows = np.arange(len(box.s_mm))
    top, bottom = np.interp([top_row, bottom_row], rows, box.s_mm)
    return [float(bottom), float(top)]


def read_spine(volume: Volume, projections: Projections,
               config: SecondReaderConfig = SecondReaderConfig(),
               grid: Optional[PatientGrid] = None) -> SecondReading:
    """Count the vertebrae of a CT from the last rib and from the sacrum.

    ``projections`` are the CT's projections (their spine track centres the search);
    ``grid`` is the CT on patient axes when the caller has it (else it is made here).
    Never raises on odd anatomy: a scan it cannot read gives status "cannot_count".
    """
    grid = grid if grid is not None else to_patient_grid(volume, projections.config)
    box = _box(grid, projections, config)
    ds = float(box.step_mm[0])
    track = _track(box, config)
    if track is None or (track.rows[1] - track.rows[0]) * ds < 60.0:
        return _cannot("the column of vertebral bodies could not be followed")
    chains = [c for c in _discs(box, track, config) if len(c.rows) >= 3]
    if not chains:
        return _cannot("fewer than three discs in a row were seen along the spine")
    # The pelvis: a sacrum needs iliac bones reaching far below it, or the wide bone is
    # something else (vessels with contrast beside a lumbar body).
    pelvis: dict[str, Any] = {}
    sacrum_row = _sacrum_top(box, track, config)
    if sacrum_row is not None:
        crest = _iliac_crest(box, sacrum_row, config)
        if crest is None:
            sacrum_row = None
        else:
            pelvis = {"sacrum_top_s_mm": float(box.s_mm[sacrum_row]),
                      "iliac_crest_s_mm": float(box.s_mm[crest])}
    # Ribs: only where the field of view reaches far enough sideways to tell a rib from a
    # transverse process.
    heads = None
    if max(box.fov_r_mm) >= config.rib_fov_mm:
        heads = [row for row, _side in _rib_heads(box, track, config)]
    # L3 lies low on the spine: the lowest chain that gives a count is read.
    readings = [_count_chain(box, chain, sacrum_row, heads, pelvis, config)
                for chain in reversed(chains)]
    for reading in readings:
        if reading.counted:
            return reading
    return max(readings, key=lambda r: len(r.vertebrae))


def _count_chain(box: _Box, chain: _Discs, sacrum_row: Optional[int],
                 heads: Optional[list[float]], pelvis: dict[str, Any],
                 config: SecondReaderConfig) -> SecondReading:
    """The count along one unbroken chain of discs, from the anchors it reaches."""
    ds = float(box.step_mm[0])
    rows = list(chain.rows)
    found: dict[str, Any] = dict(pelvis)
    anchors = ["iliac crests"] if pelvis else []
    ls_disc = None
    if sacrum_row is not None:
        # The chain's disc at the sacrum's top is L5-S1; nothing below it is counted.
        ls_disc = _lumbosacral_disc(rows, sacrum_row, ds)
        if ls_disc is not None:
            anchors.insert(0, "sacrum")
    bodies = [CountedVertebra(*reversed(_range_mm(box, a, b))) for a, b in zip(rows, rows[1:])]
    found["vertebrae"] = bodies

    last_rib = None
    if heads is not None:
        with_rib = _rib_bearing(heads, rows, len(bodies))
        for i in with_rib:
            if i >= 0:
                bodies[i].rib_bearing = True
        found["rib_bearing_seen"] = sum(b.rib_bearing for b in bodies)
        if with_rib and max(with_rib) < len(bodies) - 1:
            last_rib = max(with_rib)
            anchors.insert(0, "last rib")
            if last_rib >= 0:
                found["last_rib_s_mm"] = bodies[last_rib].s_mm

    # Names from each anchor.
    l3_ribs = l3_sacrum = None
    if last_rib is not None:
        for i, body in enumerate(bodies):
            k = i - last_rib
            body.from_ribs = f"T{12 + k}" if k <= 0 else f"L{k}"
        if last_rib + 3 < len(bodies):
            l3_ribs = _range_mm(box, rows[last_rib + 3], rows[last_rib + 4])
    if ls_disc is not None:
        n = len(bodies)
        for i, body in enumerate(bodies):
            k = n - i  # 1 = the body on the sacrum
            body.from_sacrum = f"L{6 - k}" if k <= 5 else f"T{12 - (k - 6)}"
        if n >= 3:
            l3_sacrum = _range_mm(box, rows[n - 3], rows[n - 2])
    found["anchors"] = anchors
    found["l3_from_ribs_s_mm"] = l3_ribs
    found["l3_from_sacrum_s_mm"] = l3_sacrum
    variants = []
    if last_rib is not None and ls_disc is not None:
        between = len(bodies) - 1 - last_rib
        found["lumbar_between"] = between
        variants += _count_variants(between)
        if ls_disc < len(chain.rows) and chain.rows[ls_disc] == rows[ls_disc]:
            others = chain.depth[:ls_disc]
            if others and chain.depth[ls_disc] < 0.35 * float(np.median(others)):
                variants.append(
                    "The disc between the lowest mobile vertebra and the sacrum is barely "
                    "visible: possibly a transitional vertebra (sacralised L5).")
    if (found.get("rib_bearing_seen") or 0) >= 13:
        variants.append("13 rib-bearing vertebrae are in view: a 13th rib pair (T13).")
    found["variants"] = variants
    if l3_ribs is None and l3_sacrum is None:
        return _cannot(_why_not(last_rib, ls_disc, sacrum_row, heads is None), **found)
    reading = SecondReading(COUNTED, "", **found)
    reading.message = _summary(reading)
    return reading


def _lumbosacral_disc(rows: list[float], sacrum_row: int, ds: float) -> Optional[int]:
    """Index in ``rows`` (disc rows, changed in place) of the L5-S1 disc: the chain's disc
    at the top of the sacrum; or, when the steep L5-S1 disc was missed in the chain, the top
    of the sacrum itself, added as a disc when it lies one plausible level below the chain's
    last disc above it. Discs below are dropped (the sacrum's own rudimentary discs).
    None when the chain does not reach the sacrum."""
    near = [i for i, r in enumerate(rows) if -20.0 <= (sacrum_row - r) * ds <= 16.0]
    if near:
        index = min(near, key=lambda i: abs(sacrum_row - 2.0 / ds - rows[i]))
        del rows[index + 1 :]
        return index
    above = [i for i, r in enumerate(rows) if r < sacrum_row]
    if len(above) < 2:
        return None
    last = above[-1]
    # The alae rise above the middle of the L5-S1 disc: about 10 mm on real scans.
    disc = sacrum_row + 10.0 / ds
    level = (disc - rows[last]) / (rows[last] - rows[last - 1])
    if not 0.6 <= level <= 1.5:
        return None
    del rows[last + 1 :]
    rows.append(float(disc))
    return last + 1


def _count_variants(between: int) -> list[str]:
    if between == 5:
        return []
    if between == 4:
        return ["Only 4 rib-free vertebrae lie between the last rib-bearing vertebra and the "
                "sacrum (5 is usual): a 13th rib-bearing vertebra (T13) or a sacralised L5 "
                "(4 lumbar vertebrae)."]
    if between == 6:
        return ["6 rib-free vertebrae lie between the last rib-bearing vertebra and the "
                "sacrum (5 is usual): a sixth lumbar vertebra (L6, or a lumbarised S1) or "
                "11 rib pairs."]
    return [f"{between} rib-free vertebrae lie between the last rib-bearing vertebra and the "
            "sacrum (5 is usual): count the vertebrae yourself."]


def _why_not(last_rib: Optional[int], ls_disc: Optional[int], sacrum_row: Optional[int],
             too_narrow: bool) -> str:
    parts = []
    if too_narrow:
        parts.append("the field of view is too narrow to see the ribs")
    elif last_rib is None:
        parts.append("no last rib-bearing vertebra with a rib-free one below it is in view")
    else:
        parts.append("the discs could not be followed from the last rib down to L3")
    if sacrum_row is None:
        parts.append("the sacrum and pelvis are not in view")
    elif ls_disc is None:
        parts.append("the discs could not be followed down to the sacrum")
    return "; ".join(parts)


def _fmt(s_range: list[float]) -> str:
    return f"S {s_range[0]:.0f} to {s_range[1]:.0f} mm"


def _summary(reading: SecondReading) -> str:
    ribs, sacrum = reading.l3_from_ribs_s_mm, reading.l3_from_sacrum_s_mm
    n = len(reading.vertebrae)
    if ribs is not None and sacrum is not None:
        if _overlap(ribs, sacrum):
            text = (f"Counted {n} vertebral bodies: down from the last rib and up from the "
                    f"sacrum both put L3 at {_fmt(sacrum)}.")
            if reading.lumbar_between == 5:
                text += (" Five rib-free vertebrae lie between the last rib-bearing one and "
                         "the sacrum: the usual count.")
        else:
            text = (f"Counted {n} vertebral bodies: down from the last rib L3 is at "
                    f"{_fmt(ribs)}, up from the sacrum at {_fmt(sacrum)}: the counts "
                    "disagree.")
    elif sacrum is not None:
        text = (f"Counted {n} vertebral bodies up from the sacrum: L3 at {_fmt(sacrum)} "
                "(the last rib was not counted from).")
    else:
        text = (f"Counted {n} vertebral bodies down from the last rib: L3 at {_fmt(ribs)} "
                "(the sacrum is not in view or not reached).")
    return " ".join([text, *reading.variants])


def _overlap(a: list[float], b: list[float]) -> bool:
    """Two [bottom, top] S ranges share their middle: the same vertebra."""
    return a[0] <= 0.5 * (b[0] + b[1]) <= a[1] or b[0] <= 0.5 * (a[0] + a[1]) <= b[1]


def against_network(reading: SecondReading, s_mm: Optional[float],
                    slice_index: Optional[int]) -> tuple[str, list[str]]:
    """Plain words comparing the network's L3 (its S in mm and slice) with each count:
    (the agreement or disagreement in words, review reasons for each disagreement)."""
    if not reading.counted or s_mm is None:
        return reading.message, []
    where = f"slice {slice_index}" if slice_index is not None else f"S {s_mm:.0f} mm"
    agree, reasons = [], []
    for anchor, s_range in (("down from the last rib", reading.l3_from_ribs_s_mm),
                            ("up from the sacrum", reading.l3_from_sacrum_s_mm)):
        if s_range is None:
            continue
        if s_range[0] - 3.0 <= s_mm <= s_range[1] + 3.0:
            agree.append(anchor)
        else:
            reasons.append(f"The network says {where} (S {s_mm:.0f} mm); counting {anchor} "
                           f"gives L3 at {_fmt(s_range)}. Count the vertebrae yourself.")
    if agree and not reasons:
        words = (f"The second reader agrees: counting {' and '.join(agree)} puts L3 where "
                 f"the network does ({where}).")
    elif agree:
        words = (f"The second reader agrees counting {' and '.join(agree)}, not counting "
                 "from the other anchor.")
    else:
        words = "The second reader's count disagrees with the network."
    return words, reasons


def second_read(result: Any, volume: Volume, projections: Projections) -> SecondReading:
    """Read the spine of ``volume`` and put the reading on ``result`` (an ``L3Result``):
    ``result.second_reading``, its words against the network's L3 in ``verdict``, and a
    review reason when both anchors agree with each other but not with a found L3 (the
    status is never changed). Never raises: a failure is a "cannot_count" reading."""
    try:
        reading = read_spine(volume, projections)
    except Exception:  # noqa: BLE001 - the second opinion must never cost the first
        log.warning("The second reader failed on this scan.", exc_info=True)
        reading = SecondReading(CANNOT_COUNT, "The vertebrae could not be counted: the "
                                "second reader failed on this scan (see the log).")
    s_mm = result.s_mm if result.found else result.candidate_s_mm
    voxel = result.shown_voxel
    slice_index = voxel[result.slice_axis] if voxel and result.slice_axis is not None else None
    words, reasons = against_network(reading, s_mm, slice_index)
    reading.verdict = words
    both_agree = reading.lumbar_between == 5 and len(reading.l3_ranges()) == 2
    if result.found and both_agree:
        result.review += [r for r in reasons if r not in result.review]
    result.second_reading = reading
    return reading
