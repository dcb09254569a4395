"""Synthetic CT phantoms with known vertebra positions (for training and tests).

``make_phantom(seed, **options) -> (Volume, Truth)`` builds a CT in HU (int16,
array ``[k, j, i]``) of a procedurally generated patient: spine T1..L5 (and C7),
ribs, sternum, shoulder girdle, arms, sacrum, pelvis and femora, soft tissue,
organs, contrast, calcification, metal and the CT table, with a field of view,
voxel size, noise, slice thickness and storage orientation of its own.
``write_phantom`` writes it with a JSON sidecar of its :class:`Truth`.

Vertebra names count *up from the sacrum* (the body-composition convention):
"L5" is the first mobile vertebra above the sacrum, "L3" the third, and past
"L1" come "T12", "T11", ... whatever the vertebra's shape. Each
:class:`VertebraTruth` records its morphology in ``kind`` ("lumbar": no ribs,
"thoracic": ribs, "cervical", "sacral"); ``Truth.n_lumbar`` is the number of
rib-less mobile vertebrae, ``Truth.n_rib_pairs`` the number of rib-bearing
ones. So with six lumbar-type vertebrae the sixth is "T12" (kind "lumbar"),
and with a sacralised L5 (enlarged transverse processes fused to the sacrum,
a rudimentary disc) the vertebra is still named "L5": L3 is always the third
vertebra above the first one that articulates with the iliac bones.

RAS throughout: +x toward the patient's right, +y anterior, +z superior (mm).

Speed (2-core CPU): a 512 x 512 x 400 phantom takes ~1-2 s; a 2 mm training
phantom (``spacing=(2, 2, 2), matrix=200``) ~0.1-0.2 s. See
``benchmarks/phantom_speed.py``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..volume import Volume, write_volume
from .anatomy import Anatomy, Pose, body_section, build_anatomy, rotation_xyz
from .render import Canvas, finish_ct
from .skeleton import (
    arm_geometry,
    draw_pelvis,
    draw_ribs,
    draw_shoulders_arms,
    draw_skull,
    draw_spine,
    register_bone_materials,
    rib_paths,
    sternum_geometry,
)
from .soft import (
    draw_enhancing,
    draw_metal,
    draw_table,
    paint_soft_tissue,
    register_enhancing_materials,
)
from .truth import Truth, VertebraTruth, sidecar_path

log = logging.getLogger(__name__)

#: Bumped whenever the same seed and options give a different volume (cache keys).
GENERATOR_VERSION = "3"

#: Preset names accepted by ``make_phantom(preset=...)``.
PRESETS = (
    "chest", "abdomen", "abdomen_pelvis", "chest_abdomen_pelvis", "whole_body",
    "cut_through_l3", "lumbar_only", "random",
)
#: Weights with which "random" picks among the other presets.
RANDOM_WEIGHTS = {
    "chest": 0.11, "abdomen": 0.17, "abdomen_pelvis": 0.17, "chest_abdomen_pelvis": 0.13,
    "whole_body": 0.05, "cut_through_l3": 0.22, "lumbar_only": 0.15,
}
ORIENTATIONS = ("axial_lps", "feet_first", "random_flip", "random")
#: RAS direction of an ITK/DICOM axial scan with identity LPS direction.
AXIAL_LPS = np.diag([-1.0, -1.0, 1.0])


# ---------------------------------------------------------------------------- options


@dataclass
class PhantomOptions:
    """Resolved options of one phantom (what ``make_phantom`` actually used).

    Lengths in mm, HU for intensities. ``spacing`` and ``matrix`` are per grid axis
    (i, j, k) of an axial grid: (in-plane, in-plane, slice); for permuted
    orientations the same physical extents are kept.
    """

    preset: str = "abdomen"
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5)
    matrix: tuple[int, int] | None = None
    fov_mm: float | None = None
    n_slices: int | None = None
    z_range_mm: tuple[float, float] | None = None
    patient_scale: float = 1.0
    habitus: float = 1.0
    arms: str = "side"
    n_lumbar: int = 5
    n_rib_pairs: int = 12
    lstv: str = "none"
    contrast: str = "portal"
    oral_contrast: bool = False
    calcification: float = 0.0
    metal: tuple[str, ...] = ()
    streaks: bool = True
    table: bool = True
    noise_hu: float = 15.0
    kernel: str = "standard"
    slice_thickness_mm: float | None = None
    orientation: Any = "axial_lps"
    tilt_deg: float = 3.0
    density: float = 1.0
    #: vertebral-body cortex drawn at this fraction of the way from the body's cancellous
    #: HU to its cortical HU (1 = dense cortex; 0.1-0.6: the thin walls of older patients,
    #: whose bodies look dim in a MIP)
    body_wall: float = 1.0
    #: the same for the ribs' cortex: older patients' ribs are thin shells, dim in a MIP
    rib_wall: float = 1.0
    fov_shift_mm: float = 20.0
    with_c7: bool = True


_KNOWN = set(PhantomOptions.__dataclass_fields__)


def resolve_options(seed: int, rng: np.random.Generator, preset: str = "abdomen",
                    **options: Any) -> PhantomOptions:
    """Fill in every option not given, drawing from ``rng`` (realistic rates)."""
    unknown = set(options) - _KNOWN
    if unknown:
        raise ValueError(f"unknown phantom option(s): {sorted(unknown)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {PRESETS}")
    rand = preset == "random"
    if rand:
        names = list(RANDOM_WEIGHTS)
        p = np.array([RANDOM_WEIGHTS[n] for n in names])
        preset = str(rng.choice(names, p=p / p.sum()))
    o = PhantomOptions(preset=preset)
    thickness = None
    # anatomy and appearance: random for every preset
    child = rng.random() < 0.08
    o.patient_scale = float(rng.uniform(0.6, 0.85) if child else rng.uniform(0.88, 1.1))
    o.habitus = float(np.clip(rng.lognormal(0.1, 0.22), 0.7, 1.7))
    o.arms = "up" if rng.random() < 0.55 else "side"
    u = rng.random()
    o.n_lumbar = 4 if u < 0.03 else 6 if u < 0.08 else 5
    u = rng.random()
    o.n_rib_pairs = 11 if u < 0.04 else 13 if u < 0.07 else 12
    # a sixth lumbar-type vertebra often replaces T12 (11 rib pairs), a fourth comes
    # with a 13th rib pair: the thoracolumbar count then stays 17
    if o.n_lumbar == 6 and rng.random() < 0.5:
        o.n_rib_pairs = 11
    if o.n_lumbar == 4 and rng.random() < 0.5:
        o.n_rib_pairs = 13
    u = rng.random()
    o.lstv = "sacralised_L5" if u < 0.05 else "lumbarised_S1" if u < 0.09 else "none"
    o.contrast = str(rng.choice(["none", "arterial", "portal", "delayed"],
                                p=[0.35, 0.15, 0.4, 0.1]))
    o.oral_contrast = bool(rng.random() < 0.25)
    o.calcification = float(0.0 if rng.random() < 0.5 else rng.uniform(0.2, 1.5))
    metal = []
    for kind, prob in (("hip", 0.04), ("spine", 0.04), ("stent", 0.02), ("clips", 0.05)):
        if rng.random() < prob:
            metal.append(kind)
    o.metal = tuple(metal)
    o.table = bool(rng.random() < 0.75)
    o.kernel = str(rng.choice(["soft", "standard", "sharp"], p=[0.3, 0.5, 0.2]))
    o.noise_hu = float(rng.uniform(6, 35))
    o.density = float(rng.uniform(0.75, 1.15))
    o.tilt_deg = 3.0
    if rand:
        # a 512 matrix over a 340-500 mm field (wider when the arms are down)
        fov = float(rng.uniform(440, 500) if o.arms == "side" else rng.uniform(300, 480))
        inplane = fov / 512.0
        sk = float(rng.choice([0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0],
                              p=[0.08, 0.2, 0.1, 0.1, 0.12, 0.15, 0.1, 0.15]))
        o.spacing = (inplane, inplane, sk)
        o.fov_mm = fov  # matrix = fov / spacing: 512 unless the spacing is overridden
        o.orientation = str(rng.choice(["axial_lps", "feet_first", "random_flip"],
                                       p=[0.6, 0.15, 0.25]))
        thickness = float(rng.choice([0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0],
                                     p=[0.08, 0.2, 0.1, 0.1, 0.12, 0.15, 0.1, 0.15]))
    for key, value in options.items():
        if key == "metal" and isinstance(value, str):
            value = () if value in ("", "none") else tuple(value.split(","))
        if key == "metal" and value is True:
            value = ("hip", "spine")
        if key == "metal" and value is False:
            value = ()
        setattr(o, key, value)
    if o.arms == "random":
        o.arms = "up" if rng.random() < 0.55 else "side"
    o.spacing = tuple(float(v) for v in np.broadcast_to(np.asarray(o.spacing, float), (3,)))
    if o.matrix is None:  # in-plane field of view (default 410 mm) / spacing
        fov = o.fov_mm or 410.0
        o.matrix = (int(round(fov / o.spacing[0])), int(round(fov / o.spacing[1])))
    o.matrix = tuple(int(v) for v in np.broadcast_to(np.asarray(o.matrix, int), (2,)))
    if o.slice_thickness_mm is None:  # reconstructed slices at least as thick as spaced
        o.slice_thickness_mm = max(o.spacing[2], thickness or 0.0)
    if o.n_lumbar not in (4, 5, 6) or o.n_rib_pairs not in (11, 12, 13):
        raise ValueError("n_lumbar must be 4, 5 or 6 and n_rib_pairs 11, 12 or 13")
    if o.lstv not in ("none", "sacralised_L5", "lumbarised_S1"):
        raise ValueError(f"unknown lstv {o.lstv!r}")
    return o


# ---------------------------------------------------------------------------- geometry


def _direction(orientation: Any, rng: np.random.Generator) -> np.ndarray:
    """RAS direction matrix (columns = i, j, k unit vectors) for an orientation option."""
    if isinstance(orientation, str):
        if orientation == "random":
            orientation = str(rng.choice(["axial_lps", "feet_first", "random_flip"]))
        if orientation == "axial_lps":
            return AXIAL_LPS.copy()
        if orientation == "feet_first":
            return np.diag([1.0, -1.0, -1.0])
        if orientation == "random_flip":
            perm = [0, 1, 2]
            if rng.random() < 0.15:  # non-axial storage (coronal or sagittal slices)
                perm = list(rng.permutation(3))
            d = np.zeros((3, 3))
            for a, w in enumerate(perm):
                d[w, a] = rng.choice([-1.0, 1.0])
            return d
        raise ValueError(f"unknown orientation {orientation!r}; choose from {ORIENTATIONS} "
                         "or give a 3x3 direction matrix")
    d = np.asarray(orientation, dtype=float)
    if d.shape != (3, 3):
        raise ValueError("orientation matrix must be 3x3")
    d = d / np.linalg.norm(d, axis=0)
    return d


def _fov_z(o: PhantomOptions, anat: Anatomy, rng: np.random.Generator) -> tuple[float, float]:
    """Patient-frame S range (mm) of the field of view for the preset."""
    v = anat.vertebrae
    s = anat.scale
    n = len(v)
    l3 = v[2]
    hz = anat.head_centres[0][2]
    top_t = v[-1]

    def U(a: float, b: float) -> float:  # noqa: N802 - uniform between a and b, any order
        return float(rng.uniform(min(a, b), max(a, b)))
    if o.z_range_mm is not None:
        lo, hi = o.z_range_mm
        return l3.landmark_z + float(lo), l3.landmark_z + float(hi)
    p = o.preset
    abd_top = U(v[min(7, n - 1)].centre[2], v[min(10, n - 1)].centre[2])
    pelvis_bottom = hz - U(50, 100) * s
    if p == "chest":
        return U(v[4].z_bottom, v[6].centre[2]), top_t.z_top + U(20, 70) * s
    if p == "abdomen":
        return U(-40 * s, v[1].z_bottom), abd_top
    if p == "abdomen_pelvis":
        return pelvis_bottom, abd_top
    if p == "chest_abdomen_pelvis":
        return pelvis_bottom, top_t.z_top + U(15, 80) * s
    if p == "whole_body":
        return hz - U(450, 820) * s, (anat.cervical[-1].z_top if anat.cervical
                                      else top_t.z_top) + 190 * s
    if p == "lumbar_only":
        return U(v[0].z_bottom + 5 * s, v[1].z_bottom), U(v[4].z_top + 5 * s, v[5].centre[2])
    if p == "cut_through_l3":
        edge = U(v[1].centre[2], v[3].centre[2])
        if rng.random() < 0.5:  # FOV above the edge (counting must come from the ribs)
            return edge, U(v[min(8, n - 1)].centre[2], top_t.z_top + 40 * s)
        return U(hz - 300 * s, pelvis_bottom), edge
    raise ValueError(p)


def make_phantom(seed: int = 0, preset: str = "abdomen", **options: Any) -> tuple[Volume, Truth]:
    """Generate one synthetic CT and its truth.

    Args:
        seed: everything random comes from ``np.random.default_rng(seed)``.
        preset: one of :data:`PRESETS` (field of view and, for "random", acquisition).
        **options: any :class:`PhantomOptions` field, e.g. ``spacing=(2, 2, 2)`` (mm,
            grid axes i, j, k), ``matrix=200`` (in-plane voxels; default ``fov_mm`` /
            spacing), ``fov_mm`` (in-plane field of view, default 410 mm), ``n_slices``,
            ``z_range_mm=(lo, hi)`` (S range relative to the L3 landmark), ``arms``
            ("side" | "up" | "random"), ``n_lumbar`` (4-6), ``n_rib_pairs`` (11-13),
            ``lstv``, ``contrast`` ("none" | "arterial" | "portal" | "delayed"),
            ``oral_contrast``, ``calcification`` (0..1.5), ``metal`` (tuple of "hip",
            "spine", "stent", "clips"), ``table``, ``noise_hu`` (HU s.d.), ``kernel``
            ("soft" | "standard" | "sharp"), ``slice_thickness_mm``, ``orientation``
            ("axial_lps" | "feet_first" | "random_flip" | "random" | 3x3 RAS direction),
            ``tilt_deg`` (patient rotation, degrees), ``patient_scale``, ``habitus``.

    Returns:
        ``(volume, truth)``: int16 HU volume ``[k, j, i]`` with its IJK->RAS matrix,
        and the :class:`Truth` in RAS mm.
    """
    volume, truth, _ = _make_phantom(seed, preset, None, None, options)
    return volume, truth


def _make_phantom(seed: int, preset: str, tissue_spec: Any, tissue_rng: Any,
                  options: dict[str, Any]) -> tuple[Volume, Truth, Any]:
    """``make_phantom``, plus (when ``tissue_spec`` is given) the L3 slab's soft tissue
    drawn with exact tissue labels from ``tissue_rng`` (``tissue.make_tissue_phantom``).
    Without ``tissue_spec`` nothing differs from before (byte-identical outputs)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    o = resolve_options(seed, rng, preset, **options)
    anat = build_anatomy(rng, o.patient_scale, o.habitus, o.n_lumbar, o.n_rib_pairs, o.lstv,
                         o.arms, o.with_c7)
    anat.extras["sternum"] = sternum_geometry(anat)
    anat.extras["ribs"] = rib_paths(anat, rng)
    anat.extras["arms"] = arm_geometry(anat, rng)
    z_lo, z_hi = sorted(_fov_z(o, anat, rng))

    # Pose: small rotation, L3 landmark somewhere plausible in scanner RAS.
    tilt = rng.uniform(-1, 1, 3) * o.tilt_deg * np.array([0.7, 0.7, 1.0])
    rot = rotation_xyz(tilt)
    l3 = anat.vertebrae[2]
    l3_p = np.array([l3.centre[0], l3.centre[1], l3.landmark_z])
    target = np.array([rng.uniform(-15, 15), rng.uniform(-10, 60), rng.uniform(-300, 900)])
    pose = Pose(rot, target - rot @ l3_p)

    # Grid: world box around the body in-plane, [z_lo, z_hi] along S.
    d = _direction(o.orientation, rng)
    world_axis = np.argmax(np.abs(d), axis=0)
    if len(set(world_axis.tolist())) != 3:
        raise ValueError("orientation matrix must map i, j, k to different patient axes")
    extent = np.array([o.matrix[0] * o.spacing[0], o.matrix[1] * o.spacing[1], z_hi - z_lo])
    if o.n_slices is not None:
        mid = 0.5 * (z_lo + z_hi)
        extent[2] = o.n_slices * o.spacing[2]
        z_lo, z_hi = mid - extent[2] / 2, mid + extent[2] / 2
    axial_sp = np.array(o.spacing)
    shape_ijk = np.zeros(3, dtype=int)
    spacing = np.zeros(3)
    for a in range(3):
        w = world_axis[a]
        spacing[a] = axial_sp[w]
        shape_ijk[a] = max(2, int(round(extent[w] / spacing[a])))
        if o.n_slices is not None and w == 2:
            shape_ijk[a] = int(o.n_slices)
    yc, _, _ = body_section(anat, l3.centre[2])
    centre_p = np.array([0.0, yc, 0.5 * (z_lo + z_hi)])
    centre = pose.points(centre_p)
    centre[:2] += rng.uniform(-1, 1, 2) * o.fov_shift_mm
    # Radiographers keep the spine well inside the field even when the body is cut.
    spine = pose.points(l3_p)
    half = np.array([extent[0], extent[1]]) / 2 - 60.0
    centre[:2] = np.clip(centre[:2], spine[:2] - np.maximum(half, 0), spine[:2]
                         + np.maximum(half, 0))
    centre[2] = 0.5 * (z_lo + z_hi) + pose.shift[2]
    origin = centre - d @ (spacing * (shape_ijk - 1) / 2)
    matrix = np.eye(4)
    matrix[:3, :3] = d @ np.diag(spacing)
    matrix[:3, 3] = origin

    kern = {"soft": 0.8, "standard": 0.5, "sharp": 0.25}.get(o.kernel, 0.5)
    edge = 0.5 * float(max(spacing[world_axis != 2].max(), 0.3)) + kern
    canvas = Canvas((int(shape_ijk[2]), int(shape_ijk[1]), int(shape_ijk[0])), matrix,
                    fill=-1000, edge_mm=edge)

    # Soft tissue on a coarse grid, copied in slab by slab.
    coarse_mm = max(4.0, 3.0 * float(spacing.min()))  # soft tissue: invisible in the window
    fac = np.maximum(1, np.round(coarse_mm / spacing)).astype(int)
    cshape = -(-shape_ijk // fac)
    cmatrix = np.eye(4)
    cmatrix[:3, :3] = d @ np.diag(spacing * fac)
    cmatrix[:3, 3] = origin + d @ (spacing * (fac - 1) / 2)
    coarse = np.full((cshape[2], cshape[1], cshape[0]), -1000, dtype=np.int16)
    paint_soft_tissue(coarse, cmatrix, anat, pose, rng, z_lo, z_hi, o.contrast)
    _upsample_into(canvas.array, coarse, fac)
    t_soft = time.perf_counter()

    mats = register_bone_materials(canvas, rng, o.density, o.body_wall, o.rib_wall)
    canvas.deferred = {}
    draw_spine(canvas, pose, anat, mats, z_lo, z_hi)
    thor_top = anat.vertebrae[-1].z_top
    if z_hi > anat.vertebrae[4].z_bottom - 80 and z_lo < thor_top + 60:
        draw_ribs(canvas, pose, anat, mats, rng, calcified=rng.random() < 0.4)
    if z_lo < anat.crest_z + 20:
        draw_pelvis(canvas, pose, anat, mats, rng, z_lo)
    arm_lo = min(a["wrist"][2] for a in anat.extras["arms"]) - 80
    arm_hi = max(max(a["elbow"][2], a["wrist"][2]) for a in anat.extras["arms"]) + 60
    if z_hi > arm_lo and z_lo < max(arm_hi, thor_top + 80):
        draw_shoulders_arms(canvas, pose, anat, mats)
    if anat.cervical and z_hi > anat.cervical[-1].z_top:
        draw_skull(canvas, pose, anat, mats)
    emats = register_enhancing_materials(canvas, rng, o.contrast)
    draw_enhancing(canvas, anat, pose, emats, rng, o.contrast, o.oral_contrast,
                   o.calcification, z_lo, z_hi)
    streak_at = draw_metal(canvas, anat, pose, emats, rng, list(o.metal))
    if o.table:
        draw_table(canvas, pose, anat, rng)
    canvas.flush()
    tissue_truth = None
    if tissue_spec is not None:
        from .tissue import render_tissue_slab

        labels, fine, box = render_tissue_slab(canvas, anat, pose, tissue_spec, tissue_rng)
    t_bone = time.perf_counter()

    # cancellous texture: skewed (trabecular plates), mean 0, s.d. ~90 HU
    texture = (rng.gamma(2.0, 45.0, 4099) - 90.0).astype(np.float32)
    nk, nj, ni = canvas.array.shape
    ck, cj, ci = coarse.shape
    fk, fj, fi = int(fac[2]), int(fac[1]), int(fac[0])

    def soft_lookup(flat_idx: np.ndarray) -> np.ndarray:
        k, rem = np.divmod(flat_idx, nj * ni)
        j, i = np.divmod(rem, ni)
        return coarse[k // fk, j // fj, i // fi]

    if tissue_spec is not None:
        soft_lookup = _slab_lookup(soft_lookup, fine, box, canvas.array.shape)
    canvas.decode(soft_lookup, texture)
    if o.streaks and streak_at:
        _add_streaks(canvas, streak_at, rng)
    finish_ct(canvas.array, float(spacing[2]), o.slice_thickness_mm, o.noise_hu, o.kernel, rng)
    t_end = time.perf_counter()
    log.debug("phantom seed=%d %s: soft %.2fs bone %.2fs decode+noise %.2fs", seed, o.preset,
              t_soft - t0, t_bone - t_soft, t_end - t_bone)

    volume = Volume(canvas.array, matrix, name=f"phantom_{o.preset}_{seed}")
    truth = _truth(anat, pose, volume, o, seed)
    if tissue_spec is not None:
        from .tissue import TissueTruth

        full = np.zeros(canvas.array.shape, np.uint8)
        full[box] = labels
        s_mm = float(truth.extras["l3_landmark_ras_always"][2])
        half = float(tissue_spec.slab_half_mm)
        tissue_truth = TissueTruth(full, tissue_spec, (s_mm - half, s_mm + half))
    return volume, truth, tissue_truth


def _slab_lookup(coarse_lookup: Any, fine: np.ndarray, box: tuple, shape: tuple) -> Any:
    """Soft tissue under a structure's rim: the slab's fine HU inside the slab, else the
    coarse grid's."""
    from .tissue import NOT_IN_SLAB

    def lookup(flat_idx: np.ndarray) -> np.ndarray:
        out = coarse_lookup(flat_idx).astype(np.int16)
        k, j, i = np.unravel_index(flat_idx, shape)
        inside = np.ones(flat_idx.shape, bool)
        for index, sl in zip((k, j, i), box):
            inside &= (index >= sl.start) & (index < sl.stop)
        if inside.any():
            value = fine[k[inside] - box[0].start, j[inside] - box[1].start,
                         i[inside] - box[2].start]
            keep = out[inside]
            out[inside] = np.where(value == NOT_IN_SLAB, keep, value)
        return out

    return lookup


def _upsample_into(fine: np.ndarray, coarse: np.ndarray, fac: np.ndarray) -> None:
    """Nearest-neighbour copy of a coarse grid ``[k, j, i]`` into the fine one."""
    fi, fj, fk = (int(v) for v in fac)
    nk, nj, ni = fine.shape
    for kc in range(coarse.shape[0]):
        sl = coarse[kc]
        if fj > 1:
            sl = np.repeat(sl, fj, axis=0)
        if fi > 1:
            sl = np.repeat(sl, fi, axis=1)
        fine[kc * fk:(kc + 1) * fk] = sl[None, :nj, :ni]


def _add_streaks(canvas: Canvas, centres: list[np.ndarray], rng: np.random.Generator) -> None:
    """Metal streaks in the axial planes through each metal object (axial grids only)."""
    d = canvas.matrix[:3, :3] / canvas.spacing
    if abs(abs(d[2, 2]) - 1.0) > 1e-3:
        return
    nk, nj, ni = canvas.array.shape
    for c in centres:
        ijk = c @ canvas.inverse[:3, :3].T + canvas.inverse[:3, 3]
        jj = (np.arange(nj)[:, None] - ijk[1]) * canvas.spacing[1]
        ii = (np.arange(ni)[None, :] - ijk[0]) * canvas.spacing[0]
        ang = np.arctan2(jj, ii)
        r = np.hypot(jj, ii) + 5.0
        n_lines = int(rng.integers(3, 7))
        pat = np.zeros((nj, ni), dtype=np.float32)
        for _ in range(n_lines):
            a0 = rng.uniform(0, np.pi)
            w = np.cos(ang - a0) ** 2
            pat += (rng.choice([-1, 1]) * rng.uniform(150, 500) * w ** 40).astype(np.float32)
        pat *= (60.0 / r).clip(0, 1).astype(np.float32)
        half = 25.0 / canvas.spacing[2]
        k0, k1 = int(max(0, ijk[2] - half)), int(min(nk, ijk[2] + half + 1))
        if k1 <= k0:
            continue
        blk = canvas.array[k0:k1].astype(np.float32) + pat[None]
        canvas.array[k0:k1] = np.clip(blk, -1024, 3071).astype(np.int16)


def _truth(anat: Anatomy, pose: Pose, volume: Volume, o: PhantomOptions, seed: int) -> Truth:
    shape = np.array(volume.shape_ijk)

    def inside(p: np.ndarray) -> bool:
        ijk = volume.ras_to_ijk_points(p)
        return bool(np.all(ijk >= -0.5) & np.all(ijk <= shape - 0.5))

    out = []
    s1c = anat.sacrum_top - anat.sacrum_axis * 14 * anat.scale
    for name, kind, centre, axis, h, lmz in (
        [("S1", "sacral", s1c, anat.sacrum_axis, 28 * anat.scale, None)]
        + [(v.name, v.kind, v.centre, v.axis, v.height, v.landmark_z)
           for v in anat.vertebrae + anat.cervical]
    ):
        c = pose.points(centre)
        top = pose.points(centre + axis * h / 2)[2]
        bottom = pose.points(centre - axis * h / 2)[2]
        if lmz is None:
            lm = top - 0.37 * (top - bottom)
        else:
            lm = pose.points(centre + axis * (lmz - centre[2]) / max(axis[2], 1e-6))[2]
        out.append(VertebraTruth(name, c, float(lm), float(top), float(bottom), inside(c), kind))
    l3 = anat.vertebrae[2]
    lm_p = l3.centre + l3.axis * (l3.landmark_z - l3.centre[2]) / l3.axis[2]
    lm_ras = pose.points(lm_p)
    in_fov = inside(lm_ras)
    v3 = next(v for v in out if v.name == "L3")
    extras = {
        "arms": anat.arms, "contrast": o.contrast, "oral_contrast": o.oral_contrast,
        "metal": list(o.metal), "table": o.table, "crest_s_mm": float(
            pose.points([0, anat.sacrum_top[1], anat.crest_z])[2]),
        "spacing": [float(v) for v in volume.spacing], "shape_ijk": [int(v) for v in shape],
        "slice_thickness_mm": float(o.slice_thickness_mm or 0), "kernel": o.kernel,
        "noise_hu": float(o.noise_hu), "patient_scale": o.patient_scale,
        "rib_pairs_present": {k: list(v) for k, v in anat.rib_present.items()},
        "cervical_rib": bool(anat.extras.get("cervical_rib", False)),
        "l3_landmark_ras_always": [float(v) for v in lm_ras],
    }
    return Truth(
        l3_in_fov=in_fov, l3_landmark_ras=lm_ras if in_fov else None,
        l3_centre_ras=v3.centre_ras if in_fov else None,
        l3_top_s_mm=v3.top_s_mm if in_fov else None,
        l3_bottom_s_mm=v3.bottom_s_mm if in_fov else None,
        vertebrae=out, n_lumbar=anat.n_lumbar, n_rib_pairs=anat.n_rib_pairs, lstv=anat.lstv,
        preset=o.preset, seed=int(seed), extras=extras,
    )


# ---------------------------------------------------------------------------- files


def write_phantom(path: str | os.PathLike[str], seed: int = 0, preset: str = "abdomen",
                  **options: Any) -> tuple[Path, Path]:
    """Write a phantom volume (NIfTI/NRRD/MHA by suffix) and its truth as a JSON sidecar.

    Returns ``(volume_path, json_path)``.
    """
    volume, truth = make_phantom(seed, preset=preset, **options)
    path = Path(path)
    write_volume(volume, path)
    js = sidecar_path(path)
    js.write_text(json.dumps(truth.to_dict(), indent=1))
    log.info("wrote %s and %s (L3 in FOV: %s)", path, js, truth.l3_in_fov)
    return path, js


__all__: Sequence[str] = ("GENERATOR_VERSION", "PRESETS", "PhantomOptions", "make_phantom",
                          "write_phantom")
