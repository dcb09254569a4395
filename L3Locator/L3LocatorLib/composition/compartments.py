"""Compartments of one axial slice: body, subcutaneous, muscle and visceral (no HU ranges).

Images are ``image[r, a]`` in patient axes (axis 0 right -> left, axis 1 anterior ->
posterior; ``spacing`` in mm along each), values in HU. Compartments come first, the
tissue HU ranges are applied afterwards (``measure``), so that fat in the muscle
compartment is IMAT and ascites or bowel are never muscle.

1. **Body**: voxels above -500 HU (smoothed), opened with a 3 mm disk (cuts the table and
   thin contacts), the largest piece, holes filled. Other large pieces are arms.
   ``truncated`` when the outline touches the image's edge or the padding outside the
   reconstructed field of view.
2. **Muscle wall** along 360 rays from the body's centre, from the skin inwards: past
   the skin, through the subcutaneous fat, the wall starts at the first non-fat run of at
   least ``WALL_MIN_MM``; it ends where fat, gas or bone begins. A ray whose fat runs far
   deeper than its neighbours' passes through a gap in the wall (thin or missing wall,
   hernia): there the boundary is bridged from the neighbours. A wall much thicker than
   its neighbours' has bowel or fluid against it: its thickness is clamped to theirs.
   Both boundaries are smoothed around the body.
3. **Psoas and paraspinal compartments** from the L3 body point (RAS): the paraspinal
   block behind the vertebra, inside the wall; the psoas as the soft-tissue pieces beside
   the vertebral body. Both are placed in the patient's own axes in the slice (the
   principal axes of the body outline, ``patient_axes``), not the image's, so that a
   patient lying turned gets the same compartments.
4. **Visceral cavity**: inside the wall, minus muscle compartments and bone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

#: Body: HU threshold (air / body) and the opening radius (mm) that cuts table and contacts.
BODY_HU = -500.0
BODY_OPEN_MM = 3.0
BODY_GRID_MM = 2.0  #: the opening's working grid (mm)
#: A separate piece larger than this (cm^2) beside the body is reported as an arm.
ARM_MIN_CM2 = 10.0
#: Values at or below this are padding outside the reconstructed field of view (HU).
PADDING_HU = -1500.0
#: Fat along the rays (HU, on the lightly smoothed image): the SAT/IMAT range.
FAT_HU = (-190.0, -30.0)
#: Gas (bowel) below this (HU).
GAS_HU = -190.0
#: Bone above this (HU; smoothed): ends the wall, excluded from every compartment.
BONE_HU = 200.0
#: Rays, their sampling step (mm) and the smoothing of the image for profiles (mm).
N_RAYS = 360
RAY_STEP_MM = 0.5
SMOOTH_MM = 0.6
#: The skin: at most this deep (mm) before the subcutaneous fat starts.
SKIN_MM = 4.0
#: A non-fat run this long (mm) starts the wall; a fat or gas run this long ends it.
WALL_MIN_MM = 1.5
WALL_END_MM = 2.0
#: Fluid against the wall: the wall ends where the HU averaged over FLUID_AVERAGE_MM
#: falls below both the wall's own HU minus FLUID_DROP_HU and FLUID_MAX_HU.
FLUID_AVERAGE_MM = 3.0
FLUID_DROP_HU = 18.0
FLUID_MAX_HU = 25.0
#: Gap detection: half-window (degrees) of the neighbours' median, and how much deeper
#: (mm, or fraction of the neighbours' depth, whichever is larger) a gap's fat runs.
GAP_WINDOW_DEG = 15
GAP_EXTRA_MM = 8.0
GAP_EXTRA_FRACTION = 0.6
#: Rays cut by the field of view are compared with the wall's radius over +/- this (deg).
CUT_WINDOW_DEG = 30
#: Wall thickness clamp outside the paraspinal sector: half-window (degrees), allowed
#: excess over the neighbours (fraction and mm) and a hard ceiling (mm).
THICK_WINDOW_DEG = 25
THICK_EXCESS_FRACTION = 0.5
THICK_EXCESS_MM = 4.0
THICK_MAX_MM = 40.0
#: Boundary smoothing around the body: circular median then mean, in rays.
SMOOTH_MEDIAN_RAYS = 5
#: The wall's thickness (outside the paraspinal sector) takes a wider median: a fat
#: pocket (IMAT) at the wall's inner side ends the ray's wall early, a notch a few rays
#: wide that would turn the pocket and the muscle behind it into VAT.
THICK_MEDIAN_RAYS = 9
SMOOTH_MEAN_RAYS = 3
#: Paraspinal block, relative to the L3 body point (mm): behind it by at least
#: ``PARASPINAL_BEHIND_MM``, within ``PARASPINAL_HALF_WIDTH_MM`` right or left.
PARASPINAL_BEHIND_MM = 15.0
PARASPINAL_HALF_WIDTH_MM = 55.0
#: Patient axes in the slice: the body outline's long axis is the patient's right-left
#: axis when its axes' length ratio is at least PATIENT_AXES_MIN_RATIO (a near-round
#: outline has no reliable axis: the image axes are kept); the turn is capped (degrees).
PATIENT_AXES_MIN_RATIO = 1.15
PATIENT_AXES_MAX_DEG = 30.0
#: Fat enclosed by muscle after a closing of this radius (mm) is IMAT.
ENVELOPE_CLOSE_MM = 3.0
#: Fat wholly enclosed by the union of the muscle compartments (where wall, paraspinal
#: block and psoas meet) is IMAT up to this area (cm^2); larger holes are not IMAT.
ENCLOSED_FAT_MAX_CM2 = 3.0
#: Psoas search: the elliptic window beside the body point (mm, lateral and A extents) and
#: the opening (mm) that separates it from touching bowel (then grown back as far).
PSOAS_LATERAL_MM = (5.0, 80.0)
PSOAS_A_MM = (-38.0, 34.0)
PSOAS_OPEN_MM = 4.0
PSOAS_MIN_CM2 = 1.0
#: A psoas piece must reach within this distance (mm) of the body point, left or right.
PSOAS_SEED_MM = 40.0
#: Bone (vertebra, ribs) filled and grown by this much (mm) is excluded everywhere; 0:
#: the bone's partial-volume rim below 150 HU counts as muscle, as with thresholds alone.
BONE_GROW_MM = 0.0


@dataclass
class Compartments:
    """Boolean masks ``[r, a]`` of one slice and what was seen on the way.

    ``muscle`` is the muscle compartment (wall, paraspinal block, psoas: muscle and
    IMAT come from it), ``subcutaneous`` lies between the skin and the wall, ``visceral``
    inside the wall. ``wall_outer``/``wall_inner`` are (n, 2) pixel polygons (r, a) of the
    smoothed wall boundaries, for pictures. ``bridged_deg``: degrees of the circumference
    where the wall was bridged; ``clamped_deg``: where its thickness was clamped.
    ``turn_deg``: how far the patient's axes used for psoas and paraspinals are turned
    from the image's (``patient_axes``).
    """

    body: np.ndarray
    subcutaneous: np.ndarray
    muscle: np.ndarray
    visceral: np.ndarray
    bone: np.ndarray
    truncated: bool = False
    arms_cm2: float = 0.0
    bridged_deg: float = 0.0
    clamped_deg: float = 0.0
    turn_deg: float = 0.0  #: the patient's right-left axis from the image's r axis (towards a)
    centre_px: tuple[float, float] = (0.0, 0.0)
    body_point_px: Optional[tuple[float, float]] = None  #: the vertebral body point used
    wall_outer: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    wall_inner: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    notes: list[str] = field(default_factory=list)


def _disk(radius_px: tuple[float, float]) -> np.ndarray:
    """Elliptic structuring element with the given radii (pixels along r and a)."""
    rr, ra = (max(1, int(np.floor(v))) for v in radius_px)
    y, x = np.mgrid[-rr:rr + 1, -ra:ra + 1]
    return (y / max(radius_px[0], 1e-6)) ** 2 + (x / max(radius_px[1], 1e-6)) ** 2 <= 1.0


def body_mask(image: np.ndarray, spacing: tuple[float, float]
              ) -> tuple[np.ndarray, float, bool, np.ndarray]:
    """The body (bool ``[r, a]``), the area (cm^2) of other large pieces (arms), whether
    the body touches the field of view's edge, and that edge (image border and padding).

    The opening runs on a ~2 mm grid (speed); the outline keeps full resolution.
    """
    inside = image > BODY_HU
    f = max(1, int(round(BODY_GRID_MM / min(spacing))))
    small = inside[::f, ::f]
    radius = (BODY_OPEN_MM / (f * spacing[0]), BODY_OPEN_MM / (f * spacing[1]))
    opened = ndimage.binary_opening(small, structure=_disk(radius))
    labels, n = ndimage.label(opened)
    if n == 0:
        return np.zeros_like(inside), 0.0, False, np.zeros_like(inside)
    areas = ndimage.sum_labels(opened, labels, index=np.arange(1, n + 1))
    biggest = int(np.argmax(areas)) + 1
    pixel_cm2 = f * f * spacing[0] * spacing[1] / 100.0
    arms = float(sum(a for i, a in enumerate(areas, 1) if i != biggest
                     and a * pixel_cm2 >= ARM_MIN_CM2) * pixel_cm2)
    grown = ndimage.binary_dilation(labels == biggest, structure=_disk(
        (radius[0] + 1.5, radius[1] + 1.5)))
    grown = np.repeat(np.repeat(grown, f, axis=0), f, axis=1)[:inside.shape[0], :inside.shape[1]]
    body = inside & grown
    # The growth may reach a piece lying a few mm away (an arm): keep the trunk's piece.
    pieces, count = ndimage.label(body)
    if count > 1:
        core = np.repeat(np.repeat(labels == biggest, f, axis=0), f, axis=1)[
            :inside.shape[0], :inside.shape[1]]
        overlap = ndimage.sum_labels(core & body, pieces, index=np.arange(1, count + 1))
        body = pieces == int(np.argmax(overlap)) + 1
    rows, cols = np.nonzero(body)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    body[box] = ndimage.binary_fill_holes(body[box])
    edge = np.zeros_like(body)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    padded = image <= PADDING_HU
    cut = edge | (ndimage.binary_dilation(padded, iterations=2) if padded.any() else padded)
    truncated = bool(np.any(body & cut))
    return body, arms, truncated, cut


def bone_mask(smooth: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Bone with its marrow and the spinal canal (filled shells), grown by BONE_GROW_MM."""
    raw = smooth > BONE_HU
    bone = np.zeros_like(raw)
    box = _bbox(raw, 2)
    if box is None:
        return bone
    part = ndimage.binary_closing(raw[box], structure=np.ones((3, 3), bool))
    bone[box] = ndimage.binary_fill_holes(part)
    steps = int(round(BONE_GROW_MM / min(spacing)))
    return ndimage.binary_dilation(bone, iterations=steps) if steps > 0 else bone


def _circular(values: np.ndarray, half: int, how: str) -> np.ndarray:
    """Circular running median or mean (NaN ignored; NaN where a window has no value)
    over ``2 * half + 1`` rays."""
    n = values.size
    idx = (np.arange(n)[:, None] + np.arange(-half, half + 1)[None, :]) % n
    window = values[idx]
    count = np.count_nonzero(~np.isnan(window), axis=1)
    rows = np.arange(n)
    if how == "mean":
        total = np.nansum(window, axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
    ordered = np.sort(window, axis=1)  # NaN sort last
    low = ordered[rows, np.maximum((count - 1) // 2, 0)]
    high = ordered[rows, np.maximum(count // 2, 0)]
    return np.where(count > 0, 0.5 * (low + high), np.nan)


def _fill_circular(values: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Linear interpolation around the circle over the ``bad`` entries."""
    good = np.flatnonzero(~bad)
    if good.size == 0:
        return values
    if good.size == values.size:
        return values
    n = values.size
    x = np.concatenate([good - n, good, good + n])
    y = np.tile(values[good], 3)
    out = values.copy()
    out[bad] = np.interp(np.flatnonzero(bad), x, y)
    return out


def _first(mask: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per row, the first column ``>= start`` where ``mask`` is True (-1 when none)."""
    cols = np.arange(mask.shape[1])[None, :]
    hit = mask & (cols >= start[:, None])
    found = hit.any(axis=1)
    return np.where(found, np.argmax(hit, axis=1), -1)


def _run_starts(mask: np.ndarray, length: int) -> np.ndarray:
    """True where a run of at least ``length`` True values starts (rows independent)."""
    padded = np.concatenate([np.zeros((mask.shape[0], 1), np.int32),
                             np.cumsum(mask, axis=1, dtype=np.int32)], axis=1)
    out = np.zeros(mask.shape, bool)
    n = mask.shape[1] - length + 1
    if n > 0:
        out[:, :n] = (padded[:, length:length + n] - padded[:, :n]) == length
    return out


def wall_along_rays(kind: np.ndarray, hu: np.ndarray, valid: np.ndarray,
                    step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The wall's outer and inner boundary on rays sampled from the skin inwards.

    ``kind[ray, sample]`` is 0 fat, 1 other soft tissue, 2 gas, 3 bone (sample 0 at the
    skin); ``hu`` the smoothed HU there; ``valid`` False past the ray's end. Returns the
    two boundaries as sample indices (float, NaN when absent): the wall starts at the
    first non-fat run of ``WALL_MIN_MM`` after the subcutaneous fat (at the skin when no
    fat lies within ``SKIN_MM``); it ends at the first fat or gas run of ``WALL_END_MM``,
    at bone, or where the HU drops to that of fluid (``FLUID_*``).
    """
    n_rays, n = kind.shape
    min_run = max(1, int(round(WALL_MIN_MM / step_mm)))
    end_run = max(1, int(round(WALL_END_MM / step_mm)))
    skin_run = int(round(SKIN_MM / step_mm))
    fluid_run = max(2, int(round(FLUID_AVERAGE_MM / step_mm)))
    zero = np.zeros(n_rays, int)
    fat = (kind == 0) & valid
    # The skin: the first soft-tissue sample (the air-skin edge's partial volume passes
    # through the fat range and must not count as fat); the fat starts after it.
    # A ray meeting the outline at a glancing angle starts in air: skip it.
    lead = np.maximum(_first((kind != 2) & valid, zero), 0)
    cols = np.arange(n)[None, :]
    near = (cols >= lead[:, None]) & (cols <= (lead + skin_run)[:, None])
    skin = _first((kind == 1) & valid & near, lead)
    skin = np.where(skin < 0, lead, skin)
    first_fat = _first(fat, skin)
    first_fat = np.where(first_fat > skin + skin_run, -1, first_fat)
    wall_start = _run_starts((kind != 0) & valid, min_run)
    outer = _first(wall_start, np.maximum(first_fat, 0))
    outer = np.where(first_fat < 0, np.minimum(skin + 2, n - 1), outer)  # no fat under skin
    ending = _run_starts(((kind == 0) | (kind == 2)) & valid, end_run) | (kind == 3) | ~valid
    stop = _first(ending, np.maximum(outer, 0))
    stop = np.where(stop < 0, n, stop)
    # Fluid (ascites) or bowel content against the wall: the HU averaged over fluid_run
    # samples drops well below the wall's own HU before the run ends.
    cums = np.concatenate([np.zeros((n_rays, 1)), np.cumsum(hu, axis=1)], axis=1)
    average = np.full(hu.shape, np.inf)
    average[:, :n - fluid_run + 1] = (cums[:, fluid_run:] - cums[:, :n - fluid_run + 1]) / fluid_run
    o = np.clip(outer, 0, n - 1)
    wall_hu = average[np.arange(n_rays), np.clip(o + fluid_run // 2, 0, n - 1)]
    limit = np.minimum(wall_hu - FLUID_DROP_HU, FLUID_MAX_HU)
    low = ((average < limit[:, None]) & (cols >= (o + fluid_run)[:, None])
           & (cols + fluid_run <= stop[:, None]))
    drop = np.where(low.any(axis=1), np.argmax(low, axis=1), -1)
    inner = np.where(drop >= 0, drop, stop).astype(float)
    inner[stop >= n] = np.nan
    outer_f = outer.astype(float)
    outer_f[outer < 0] = np.nan
    inner[outer < 0] = np.nan
    return outer_f, inner


def find_compartments(image: np.ndarray, spacing: tuple[float, float],
                      body_point_px: Optional[tuple[float, float]] = None) -> Compartments:
    """Compartments of one axial slice ``image[r, a]`` (HU) with pixel ``spacing`` (mm).

    ``body_point_px``: the L3 vertebral body point as a continuous pixel ``(r, a)``; when
    None the psoas and paraspinal compartments are placed from the bone nearest the
    body's left-right middle in its back half (``spine_point``).
    """
    sp_r, sp_a = float(spacing[0]), float(spacing[1])
    body, arms_cm2, truncated, cut = body_mask(image, (sp_r, sp_a))
    empty = np.zeros_like(body)
    if body.sum() * sp_r * sp_a < 2000.0:  # < 20 cm^2: no trunk in this slice
        return Compartments(body, empty, empty.copy(), empty.copy(), empty.copy(), truncated,
                            arms_cm2, notes=["No body large enough to measure in this slice."])
    rows, cols = np.nonzero(body)
    r0, r1, a0, a1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # Work on the body's bounding box only (speed); masks are put back at the end.
    pad = 2
    r0, a0 = max(0, r0 - pad), max(0, a0 - pad)
    r1, a1 = min(image.shape[0], r1 + pad), min(image.shape[1], a1 + pad)
    box = (slice(r0, r1), slice(a0, a1))
    img = image[box]
    bod = body[box]
    smooth = ndimage.gaussian_filter(img, (SMOOTH_MM / sp_r, SMOOTH_MM / sp_a))
    bone = bone_mask(smooth, (sp_r, sp_a)) & bod
    centre = np.array(ndimage.center_of_mass(bod))  # pixels (r, a) in the box
    if body_point_px is None:
        point = spine_point(smooth, bod, (sp_r, sp_a))
    else:
        point = np.asarray(body_point_px, float) - np.array([r0, a0])

    # ---- polar coordinates of every pixel (mm, ray units) around the centre
    gr = ((np.arange(bod.shape[0]) - centre[0]) * sp_r).astype(np.float32)[:, None]
    ga = ((np.arange(bod.shape[1]) - centre[1]) * sp_a).astype(np.float32)[None, :]
    rho = np.hypot(gr, ga)
    phi = np.mod(np.arctan2(ga, gr), np.float32(2 * np.pi)) * np.float32(N_RAYS / (2 * np.pi))
    # The skin on each ray: the farthest outline pixel in its direction.
    inner = bod.copy()  # 4-neighbour erosion by slicing (cheaper than ndimage here)
    inner[1:] &= bod[:-1]
    inner[:-1] &= bod[1:]
    inner[:, 1:] &= bod[:, :-1]
    inner[:, :-1] &= bod[:, 1:]
    outline = bod & ~inner
    r_skin = np.zeros(N_RAYS)
    np.maximum.at(r_skin, np.round(phi[outline]).astype(int) % N_RAYS, rho[outline])
    has_body = r_skin > 0
    r_skin = np.where(has_body, r_skin, _fill_circular(r_skin, ~has_body))
    has_body = r_skin > 0

    # ---- rays from the centre outwards, in mm, sampled on the smoothed image
    angles = np.linspace(0.0, 2 * np.pi, N_RAYS, endpoint=False)
    dr, da = np.cos(angles), np.sin(angles)  # unit steps along r and a (mm)
    radii = np.arange(0.0, float(r_skin.max()) + RAY_STEP_MM, RAY_STEP_MM)
    pr = centre[0] + np.outer(dr, radii) / sp_r
    pa = centre[1] + np.outer(da, radii) / sp_a
    hu = ndimage.map_coordinates(smooth, np.stack([pr.ravel(), pa.ravel()]), order=1,
                                 cval=-1000.0).reshape(pr.shape)
    kind = np.ones(hu.shape, np.int8)
    kind[(hu >= FAT_HU[0]) & (hu <= FAT_HU[1])] = 0
    kind[hu < GAS_HU] = 2
    kind[hu > BONE_HU] = 3
    skin_idx = np.minimum(np.round(r_skin / RAY_STEP_MM).astype(int), kind.shape[1] - 1)
    # Resample every ray from its skin inwards (sample 0 at the skin).
    back = skin_idx[:, None] - np.arange(kind.shape[1])[None, :]
    valid = (back >= 0) & has_body[:, None]
    rows = np.arange(N_RAYS)[:, None]
    outer, inner = wall_along_rays(kind[rows, np.clip(back, 0, None)],
                                   hu[rows, np.clip(back, 0, None)], valid, RAY_STEP_MM)
    r_outer = np.where(has_body, r_skin - outer * RAY_STEP_MM, np.nan)
    r_inner = np.where(has_body, r_skin - inner * RAY_STEP_MM, np.nan)

    # A ray whose "skin" lies on the image's edge or the padding: the body goes on beyond
    # the field of view there.
    skin_r = np.round(centre[0] + r0 + dr * r_skin / sp_r).astype(int)
    skin_a = np.round(centre[1] + a0 + da * r_skin / sp_a).astype(int)
    off_view = cut[np.clip(skin_r, 0, image.shape[0] - 1), np.clip(skin_a, 0, image.shape[1] - 1)]

    # ---- paraspinal sector: rays whose wall starts behind the vertebral body, in the
    # patient's axes (lateral unit vector u, posterior unit vector v, both in (r, a) mm)
    turn = patient_axes(bod, (sp_r, sp_a))
    u = np.array([np.cos(turn), np.sin(turn)])
    v = np.array([-np.sin(turn), np.cos(turn)])
    end_r = dr * np.nan_to_num(r_outer) - (point[0] - centre[0]) * sp_r
    end_a = da * np.nan_to_num(r_outer) - (point[1] - centre[1]) * sp_a
    para = ((end_r * v[0] + end_a * v[1]) > 0.0) & (np.abs(end_r * u[0] + end_a * u[1]) < 110.0)

    # ---- gaps in the wall: fat running much deeper than the neighbours'
    depth = r_skin - r_outer
    # Rays cut by the field of view start inside the fat, not at the skin: their wall is
    # still found, but their depth says nothing about a gap and is not a reference.
    reference = _circular(np.where(off_view, np.nan, depth), GAP_WINDOW_DEG * N_RAYS // 360,
                          "median")
    excess = np.maximum(GAP_EXTRA_MM, GAP_EXTRA_FRACTION * reference)
    gap = np.isnan(depth) | (~off_view & np.isfinite(reference) & (depth > reference + excess))
    # A cut ray whose wall lies far inside its neighbours' has met an organ, not the wall.
    radius_ref = _circular(r_outer, CUT_WINDOW_DEG * N_RAYS // 360, "median")
    gap |= off_view & (r_outer < radius_ref - np.maximum(GAP_EXTRA_MM, 0.1 * radius_ref))
    gap &= has_body
    depth = _fill_circular(depth, gap | ~has_body)
    # ---- wall thickness: clamp bowel or fluid lying against the wall
    thick = r_outer - r_inner
    thick[gap] = np.nan
    front = ~para & ~gap & np.isfinite(thick)
    masked = np.where(front, thick, np.nan)
    thick_ref = _circular(masked, THICK_WINDOW_DEG * N_RAYS // 360, "median")
    too_thick = ~para & np.isfinite(thick) & np.isfinite(thick_ref) & (
        (thick > thick_ref * (1 + THICK_EXCESS_FRACTION) + THICK_EXCESS_MM)
        | (thick > THICK_MAX_MM))
    thick = np.where(too_thick, thick_ref, thick)
    thick = _fill_circular(thick, ~np.isfinite(thick))
    depth = _circular(_circular(depth, SMOOTH_MEDIAN_RAYS // 2, "median"),
                      SMOOTH_MEAN_RAYS // 2, "mean")
    r_out = np.clip(r_skin - depth, 0.0, None)
    # The paraspinal sector keeps its own thickness (it ends at bone), unsmoothed across.
    thick_s = _circular(_circular(thick, THICK_MEDIAN_RAYS // 2, "median"),
                        SMOOTH_MEAN_RAYS // 2, "mean")
    thick = np.where(para, _circular(thick, SMOOTH_MEDIAN_RAYS // 2, "median"), thick_s)
    r_in = np.clip(r_out - np.clip(thick, 0.0, None), 0.0, None)

    # ---- rasterise the two boundaries by polar coordinates of each pixel
    lo = np.floor(phi).astype(np.int32) % N_RAYS
    hi = (lo + 1) % N_RAYS
    w = phi - np.floor(phi)
    wall_out = (1 - w) * r_out[lo] + w * r_out[hi]
    wall_in = (1 - w) * r_in[lo] + w * r_in[hi]
    inside_wall = bod & (rho <= wall_out)
    annulus = inside_wall & (rho > wall_in)

    # ---- paraspinal block and psoas, from the body point
    # Offsets (mm) from the body point along the patient's axes: + left, + posterior.
    off_r = ((np.arange(bod.shape[0]) - point[0]) * sp_r).astype(np.float32)[:, None]
    off_a = ((np.arange(bod.shape[1]) - point[1]) * sp_a).astype(np.float32)[None, :]
    rr = off_r * np.float32(u[0]) + off_a * np.float32(u[1])
    aa = off_r * np.float32(v[0]) + off_a * np.float32(v[1])
    block = inside_wall & (aa > PARASPINAL_BEHIND_MM) & (np.abs(rr) < PARASPINAL_HALF_WIDTH_MM)
    block = _envelope(block & (smooth > FAT_HU[1]), (sp_r, sp_a)) & block
    psoas = _psoas(smooth, inside_wall & ~bone, rr, aa, (sp_r, sp_a))
    muscle = _enclosed(annulus | block | psoas, bod, (sp_r, sp_a)) & ~bone
    # Fat on the muscle compartment's rim lies across a boundary drawn to a pixel or so:
    # it belongs to the fat next to it (SAT outside the wall's middle, VAT inside), not to
    # IMAT, which is fat enclosed by muscle.
    core = ndimage.binary_erosion(muscle)
    rim_fat = muscle & ~core & (smooth <= FAT_HU[1])
    muscle &= ~rim_fat
    outer_half = rim_fat & (rho > 0.5 * (wall_out + wall_in))
    visceral = inside_wall & ~muscle & ~bone & ~outer_half
    subcut = (bod & ~inside_wall) | outer_half

    def full(mask: np.ndarray) -> np.ndarray:
        out = np.zeros(image.shape, bool)
        out[box] = mask
        return out

    def polygon(radius: np.ndarray) -> np.ndarray:
        return np.stack([centre[0] + r0 + dr * radius / sp_r,
                         centre[1] + a0 + da * radius / sp_a], axis=1)

    notes = []
    if body_point_px is None:
        notes.append("No L3 body point was given: psoas and paraspinal compartments were "
                     "placed from the spine found in this slice.")
    return Compartments(
        body=body, subcutaneous=full(subcut), muscle=full(muscle), visceral=full(visceral),
        bone=full(bone), truncated=truncated, arms_cm2=arms_cm2,
        bridged_deg=float(np.count_nonzero(gap)) * 360.0 / N_RAYS,
        clamped_deg=float(np.count_nonzero(too_thick)) * 360.0 / N_RAYS,
        turn_deg=float(np.degrees(turn)),
        centre_px=(float(centre[0] + r0), float(centre[1] + a0)),
        body_point_px=(float(point[0] + r0), float(point[1] + a0)),
        wall_outer=polygon(r_out), wall_inner=polygon(r_in), notes=notes)


def patient_axes(body: np.ndarray, spacing: tuple[float, float]) -> float:
    """How far (radians, from the image's r axis towards a) the patient's right-left axis
    is turned in this slice: the long principal axis of the body outline (in mm). 0 when
    the outline is nearly round (no reliable axis); capped at +/- PATIENT_AXES_MAX_DEG."""
    rows, cols = np.nonzero(body)
    if rows.size < 3:
        return 0.0
    points = np.stack([rows * spacing[0], cols * spacing[1]]).astype(float)
    values, vectors = np.linalg.eigh(np.cov(points))
    if values[0] <= 0 or np.sqrt(values[1] / values[0]) < PATIENT_AXES_MIN_RATIO:
        return 0.0
    long_axis = vectors[:, 1] if vectors[0, 1] >= 0 else -vectors[:, 1]
    turn = float(np.arctan2(long_axis[1], long_axis[0]))
    return float(np.clip(turn, -np.radians(PATIENT_AXES_MAX_DEG),
                         np.radians(PATIENT_AXES_MAX_DEG)))


def _bbox(mask: np.ndarray, pad: int) -> Optional[tuple[slice, slice]]:
    """Slices of ``mask``'s bounding box grown by ``pad`` pixels (None when empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (slice(max(0, rows[0] - pad), rows[-1] + pad + 1),
            slice(max(0, cols[0] - pad), cols[-1] + pad + 1))


def _enclosed(muscle: np.ndarray, body: np.ndarray, spacing: tuple[float, float]
              ) -> np.ndarray:
    """``muscle`` closed by ENVELOPE_CLOSE_MM with the small holes (< ENCLOSED_FAT_MAX_CM2)
    it then encloses: fat where two compartments meet (a blob across the paraspinal
    block's edge) is enclosed by muscle only in their union, and is IMAT like fat enclosed
    by one of them."""
    radius = (ENVELOPE_CLOSE_MM / spacing[0], ENVELOPE_CLOSE_MM / spacing[1])
    closed = (muscle | ndimage.binary_closing(muscle, structure=_disk(radius))) & body
    holes = ndimage.binary_fill_holes(closed) & ~closed
    labels, n = ndimage.label(holes)
    if n == 0:
        return muscle
    # The largest hole, the visceral cavity inside the wall, is far above the limit.
    sizes = ndimage.sum_labels(holes, labels, index=np.arange(1, n + 1))
    small = sizes * spacing[0] * spacing[1] / 100.0 < ENCLOSED_FAT_MAX_CM2
    return muscle | np.concatenate([[False], small])[labels]


def _envelope(soft: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Soft tissue closed by ``ENVELOPE_CLOSE_MM`` with its holes filled: fat enclosed by
    muscle (IMAT) belongs to the muscle; fat outside it (retroperitoneal) does not."""
    radius = (ENVELOPE_CLOSE_MM / spacing[0], ENVELOPE_CLOSE_MM / spacing[1])
    out = np.zeros_like(soft)
    box = _bbox(soft, int(np.ceil(max(radius))) + 1)
    if box is None:
        return out
    part = soft[box]
    closed = ndimage.binary_closing(part, structure=_disk(radius))
    out[box] = ndimage.binary_fill_holes(closed | part)
    return out


def _psoas(smooth: np.ndarray, allowed: np.ndarray, rr: np.ndarray, aa: np.ndarray,
           spacing: tuple[float, float]) -> np.ndarray:
    """The psoas muscles: soft-tissue pieces in the windows beside the vertebral body.

    ``rr``/``aa``: each pixel's offset (mm) from the body point along r (towards the
    patient's left) and a (towards posterior).
    """
    soft = allowed & (smooth > FAT_HU[1]) & (smooth <= BONE_HU)
    lateral = np.abs(rr)
    # An ellipse on each side (a rectangle would cut the psoas differently when the
    # patient lies turned).
    (l0, l1), (a0, a1) = PSOAS_LATERAL_MM, PSOAS_A_MM
    window = ((((lateral - 0.5 * (l0 + l1)) / (0.5 * (l1 - l0))) ** 2
               + ((aa - 0.5 * (a0 + a1)) / (0.5 * (a1 - a0))) ** 2 <= 1.0)
              & (lateral >= l0))
    radius = (PSOAS_OPEN_MM / spacing[0], PSOAS_OPEN_MM / spacing[1])
    opened = np.zeros_like(soft)
    box = _bbox(window, int(np.ceil(max(radius))) + 1)
    if box is None:
        return opened
    opened[box] = ndimage.binary_opening((soft & window)[box], structure=_disk(radius))
    labels, n = ndimage.label(opened)
    if n == 0:
        return opened
    # Keep the pieces that reach the vertebral body's side.
    near = window & (lateral <= PSOAS_SEED_MM) & (np.abs(aa) <= 20.0)
    keep = np.unique(labels[near & opened])
    keep = keep[keep > 0]
    pixel_cm2 = spacing[0] * spacing[1] / 100.0
    sizes = ndimage.sum_labels(opened, labels, index=keep) * pixel_cm2 if keep.size else []
    keep = [k for k, s in zip(keep, sizes) if s >= PSOAS_MIN_CM2]
    # Grow back what the opening shaved off, no farther than its radius: a bowel loop
    # touching the psoas stays outside.
    psoas = np.zeros_like(soft)
    psoas[box] = ndimage.binary_dilation(np.isin(labels[box], keep),
                                         structure=_disk(radius)) & soft[box]
    return _envelope(psoas, spacing) & window & allowed


def spine_point(smooth: np.ndarray, body: np.ndarray, spacing: tuple[float, float]
                ) -> np.ndarray:
    """A vertebral body point (pixel r, a) found in the slice itself: the centroid of the
    anterior half of the largest bone piece near the body's left-right middle and in its
    back half. Falls back on the body's centre line 60 % of the way back."""
    rows, cols = np.nonzero(body)
    mid_r = rows.mean()
    front, back = cols.min(), cols.max()
    bone = smooth > BONE_HU
    rr = (np.arange(body.shape[0]) - mid_r)[:, None] * spacing[0]
    aa = np.arange(body.shape[1])[None, :]
    region = bone & (np.abs(rr) < 50.0) & (aa > front + 0.35 * (back - front))
    # Close 1-pixel cracks only on fine grids: on coarse ones a closing joins a
    # contrast-filled aorta to the vertebral body.
    closed = (ndimage.binary_closing(region, structure=np.ones((3, 3), bool))
              if max(spacing) <= 1.2 else region)
    labels, n = ndimage.label(closed)
    if n:
        areas = ndimage.sum_labels(region, labels, index=np.arange(1, n + 1))
        piece = ndimage.binary_fill_holes(labels == int(np.argmax(areas)) + 1)
        pr, pa = np.nonzero(piece)
        # The vertebral body is the piece's front: within 35 mm of its most anterior pixel.
        front_part = pa <= pa.min() + 35.0 / spacing[1]
        return np.array([pr[front_part].mean(), pa[front_part].mean()])
    return np.array([mid_r, front + 0.6 * (back - front)])
