"""Phantoms with body-composition truth: exact muscle, IMAT, VAT and SAT in the L3 slab.

``make_tissue_phantom(seed, variant=..., **options) -> (Volume, Truth, TissueTruth)`` is
``make_phantom`` with the soft tissue of a slab around L3 (``TissueSpec.slab_half_mm``)
re-rendered at full resolution from a tissue label map, so every voxel of the slab has a
known tissue. Outside the slab, and everything drawn as a structure (bone, contrast
vessels, kidneys, metal, table), the phantom is the one ``make_phantom`` gives for the
same seed and options; ``make_phantom`` itself is unchanged (its outputs stay
byte-identical: training caches depend on it). The tissue model draws from its own
random stream, so the rest of the phantom does not move.

Patient frame (mm): x towards the patient's right, y anterior, z superior. From the skin
inwards: skin (1.5 mm, not measured), SAT, the muscle wall (with optional missing
sectors, whose fat is SAT outside the wall's midline and VAT inside), the visceral
cavity (fat = VAT, with bowel loops, optional ascites); the paraspinal mass behind the
vertebral body, quadratus lumborum and psoas beside it; fat blobs inside any muscle are
IMAT. Arms are separate pieces outside the body (not measured).

Labels: 0 not measured (air, bone and every structure voxel, their partial-volume rim),
1 muscle, 2 IMAT, 3 VAT, 4 SAT, 5 other soft tissue (skin, bowel, fluid, canal, arms).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

import numpy as np

from ..volume import Volume
from .anatomy import Anatomy, Pose
from .render import KEY_BASE

NONE, MUSCLE, IMAT, VAT, SAT, OTHER = 0, 1, 2, 3, 4, 5
#: Label value of each measured tissue (``composition.presets.TISSUES`` order).
TISSUE_LABELS = {"muscle": MUSCLE, "imat": IMAT, "vat": VAT, "sat": SAT}
SKIN_MM = 1.5
#: Value of ``render_tissue_slab``'s fine HU outside the slab (never a CT value).
NOT_IN_SLAB = -32768

#: The situations the benchmark covers, each a ``TissueSpec`` change plus phantom options.
VARIANTS = ("typical", "thin_wall", "obese", "cachexia", "bowel_at_wall", "ascites",
            "arms_in_view", "contrast")


@dataclass(frozen=True)
class TissueSpec:
    """How the slab's soft tissue is drawn (mm, HU). None: drawn from the seed."""

    variant: str = "typical"
    slab_half_mm: float = 20.0
    sat_mm: Optional[float] = None  #: mean SAT thickness
    wall_mm: Optional[float] = None  #: mean muscle-wall thickness (anterior/lateral)
    wall_gap_deg: float = 0.0  #: a sector (degrees) with no wall at all
    muscle_scale: float = 1.0  #: psoas / paraspinal size factor (cachexia < 1)
    imat_blobs: int = 25  #: fat blobs inside the muscles (IMAT)
    bowel_loops: int = 6
    bowel_at_wall: int = 0  #: loops lying against the wall's inner side
    ascites_mm: float = 0.0  #: fluid layer against the wall (thickness)
    fat_hu: Optional[float] = None
    muscle_hu: Optional[float] = None


@dataclass
class TissueTruth:
    """Tissue labels of the slab (``TISSUE_LABELS``), as a volume of the phantom's grid
    (``labels``: uint8 ``[k, j, i]``, 0 outside the slab) and what drew them."""

    labels: np.ndarray
    spec: TissueSpec
    slab_s_mm: tuple[float, float]  #: RAS S range of the slab (mm, at the L3 landmark)

    def label_volume(self, volume: Volume) -> Volume:
        """The labels as a ``Volume`` on the phantom's grid."""
        return Volume(self.labels, volume.ijk_to_ras, name=f"{volume.name}_tissues")

    def to_dict(self) -> dict[str, Any]:
        return {"spec": asdict(self.spec), "slab_s_mm": list(self.slab_s_mm),
                "labels": dict(TISSUE_LABELS, other=OTHER)}


def variant_options(variant: str, rng: np.random.Generator) -> tuple[TissueSpec, dict]:
    """The ``TissueSpec`` and ``make_phantom`` options of a named variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown tissue variant {variant!r}; choose from {VARIANTS}")
    spec = TissueSpec(variant=variant)
    # An adult of ordinary build unless the variant says otherwise.
    options: dict[str, Any] = {"arms": "up", "contrast": "none", "metal": (),
                               "habitus": float(rng.uniform(0.85, 1.25)),
                               "patient_scale": float(rng.uniform(0.9, 1.05))}
    if variant == "thin_wall":
        spec = replace(spec, wall_mm=float(rng.uniform(2.5, 4.0)),
                       wall_gap_deg=float(rng.uniform(6, 14)))
    elif variant == "obese":
        spec = replace(spec, sat_mm=float(rng.uniform(40, 65)), imat_blobs=45)
        options["habitus"] = float(rng.uniform(1.45, 1.7))
    elif variant == "cachexia":
        spec = replace(spec, sat_mm=float(rng.uniform(2.5, 5)), wall_mm=float(rng.uniform(4, 6)),
                       muscle_scale=0.7, imat_blobs=10, muscle_hu=float(rng.uniform(22, 35)))
        options["habitus"] = 0.72
    elif variant == "bowel_at_wall":
        spec = replace(spec, bowel_at_wall=int(rng.integers(2, 5)))
    elif variant == "ascites":
        spec = replace(spec, ascites_mm=float(rng.uniform(10, 25)))
    elif variant == "arms_in_view":
        options["arms"] = "side"
    elif variant == "contrast":
        options["contrast"] = str(rng.choice(["arterial", "portal"]))
    return spec, options


def make_tissue_phantom(seed: int = 0, preset: str = "abdomen", variant: str = "typical",
                        spec: Optional[TissueSpec] = None, **options: Any
                        ) -> tuple[Volume, Any, TissueTruth]:
    """A phantom whose L3 slab has exact tissue labels (see the module docstring).

    ``variant`` (``VARIANTS``) sets ``spec`` and some phantom options (habitus, arms,
    contrast); ``options`` given here win. Returns ``(volume, truth, tissue_truth)``.
    """
    from .generator import _make_phantom

    rng = np.random.default_rng([int(seed), 26])  # its own stream: the rest stays put
    variant_spec, variant_opts = variant_options(variant, rng)
    spec = spec or variant_spec
    merged = {**variant_opts, **options}
    volume, truth, tissue = _make_phantom(seed, preset, spec, rng, merged)
    return volume, truth, tissue


def render_tissue_slab(canvas: Any, anat: Anatomy, pose: Pose, spec: TissueSpec,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Any]:
    """Draw the slab's soft tissue into ``canvas.array`` (structure keys kept) and return
    ``(labels, fine_hu, box)``: labels (uint8) and soft-tissue HU (int16, for the
    partial-volume rims of structures; ``NOT_IN_SLAB`` outside the slab) of the array box
    ``box`` (k, j, i slices)."""
    l3 = anat.vertebrae[2]
    z0 = float(l3.landmark_z)
    half = spec.slab_half_mm
    corners = np.array([[x, y, z] for x in (-400, 400) for y in (-400, 400)
                        for z in (z0 - half, z0 + half)], float)
    world = pose.points(corners)
    box = canvas.ijk_box(world.min(axis=0), world.max(axis=0))
    if box is None:
        raise ValueError("the L3 slab lies outside this phantom's field of view")
    sk, sj, si = box
    kk = np.arange(sk.start, sk.stop, dtype=np.float32)[:, None, None]
    jj = np.arange(sj.start, sj.stop, dtype=np.float32)[None, :, None]
    ii = np.arange(si.start, si.stop, dtype=np.float32)[None, None, :]
    a = (pose.rotation.T @ canvas.matrix[:3, :3]).astype(np.float32)
    b = (pose.rotation.T @ (canvas.matrix[:3, 3] - pose.shift)).astype(np.float32)
    x = a[0, 0] * ii + a[0, 1] * jj + a[0, 2] * kk + b[0]
    y = a[1, 0] * ii + a[1, 1] * jj + a[1, 2] * kk + b[1]
    z = a[2, 0] * ii + a[2, 1] * jj + a[2, 2] * kk + b[2]
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    x, y, z = (np.broadcast_to(v, shape) for v in (x, y, z))
    in_slab = np.abs(z - z0) <= half
    labels, hu = _tissue_model(x, y, z, anat, spec, rng)
    keys = canvas.array[box] >= KEY_BASE
    labels[~in_slab] = NONE
    fine = hu.astype(np.int16)
    fine[~in_slab] = NOT_IN_SLAB  # the coarse soft tissue stays there
    region = canvas.array[box]
    write = in_slab & ~keys
    region[write] = fine[write]
    labels[keys] = NONE
    return labels, fine, box


def _room_beside_arms(anat: Anatomy, z0: float) -> Optional[float]:
    """Half-width (mm) the trunk may have at height ``z0`` without touching an arm (a
    6 mm gap), or None when no arm passes there."""
    s = anat.scale
    room = None
    for arm in anat.extras.get("arms", []):
        pts = np.array([arm["humeral_head"], arm["elbow"], arm["wrist"]], float)
        for p0, p1, r in ((pts[0], pts[1], 45.0), (pts[1], pts[2], 35.0)):
            if not min(p0[2], p1[2]) <= z0 <= max(p0[2], p1[2]) or p0[2] == p1[2]:
                continue
            t = (z0 - p0[2]) / (p1[2] - p0[2])
            x = abs(p0[0] + t * (p1[0] - p0[0]))
            free = x - r * s * min(anat.habitus, 1.4) - 6.0
            room = free if room is None else min(room, free)
    return None if room is None or room < 60.0 else room


def _tissue_model(x: np.ndarray, y: np.ndarray, z: np.ndarray, anat: Anatomy,
                  spec: TissueSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels and HU (float32) of patient-frame points (mm)."""
    s = anat.scale
    l3 = anat.vertebrae[2]
    cx, cy = float(l3.centre[0]), float(l3.centre[1])
    hw, hd = float(l3.half_width), float(l3.half_depth)
    fat_hu = spec.fat_hu if spec.fat_hu is not None else float(-100 + rng.uniform(-10, 10))
    mus_hu = spec.muscle_hu if spec.muscle_hu is not None else float(45 + rng.uniform(-8, 10))
    sat_mm = spec.sat_mm if spec.sat_mm is not None else float(np.clip(anat.fat_mm, 6, 45))
    wall_mm = spec.wall_mm if spec.wall_mm is not None else float(rng.uniform(8, 14) * s)
    zf = z.ravel()
    half_w = np.interp(zf, anat.body_z, anat.body_half_width).reshape(z.shape).astype(np.float32)
    half_d = np.interp(zf, anat.body_z, anat.body_half_depth).reshape(z.shape).astype(np.float32)
    back = np.interp(zf, anat.body_z, anat.body_back_y).reshape(z.shape).astype(np.float32)
    # Arms at the sides lie outside the trunk: narrow the trunk where an arm passes (the
    # skeleton draws the arm bones where they are; a trunk around them would hold bone
    # inside its wall).
    room = _room_beside_arms(anat, float(l3.landmark_z))
    if room is not None:
        half_w = np.minimum(half_w, np.float32(room))
    dy = y - (back + half_d)
    phi = np.arctan2(dy / half_d, x / half_w)  # elliptic angle; pi/2 = anterior
    # SAT and wall thickness vary smoothly around the body (low harmonics).
    h1, h2, p1, p2 = rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.15), *rng.uniform(0, 6.3, 2)
    sat = sat_mm * (1 + 0.25 * np.sin(phi) + h1 * np.cos(2 * phi + p1) + h2 * np.cos(3 * phi + p2))
    wall = wall_mm * (1 + 0.2 * np.cos(2 * phi) + 0.1 * np.cos(3 * phi + p2))

    def inset(t: np.ndarray) -> np.ndarray:
        """True inside the outline shrunk by ``t`` mm."""
        w = np.maximum(half_w - t, 3.0)
        d = np.maximum(half_d - t, 3.0)
        return (x / w) ** 2 + (dy / d) ** 2 <= 1.0

    body = inset(np.zeros_like(sat))
    t_sat, t_wall = SKIN_MM + sat, SKIN_MM + sat + wall
    in_sat = inset(np.full_like(sat, SKIN_MM))
    in_wall = inset(t_sat)
    in_cavity = inset(t_wall)
    labels = np.zeros(x.shape, np.uint8)
    hu = np.full(x.shape, -1000.0, np.float32)

    def put(mask: np.ndarray, label: int, value: float) -> None:
        labels[mask] = label
        hu[mask] = value

    put(body, OTHER, 30.0)  # skin
    put(in_sat, SAT, fat_hu)
    put(in_wall, MUSCLE, mus_hu)
    put(in_cavity, VAT, fat_hu)
    if spec.wall_gap_deg > 0:  # a sector with no wall: its fat split at the wall's midline
        centre_angle = rng.uniform(0.25, 0.75) * np.pi  # somewhere anterior
        gap = np.abs(np.angle(np.exp(1j * (phi - centre_angle)))) < np.radians(
            spec.wall_gap_deg) / 2
        in_mid = inset(SKIN_MM + sat + 0.5 * wall)
        put(gap & in_wall & ~in_mid, SAT, fat_hu)
        put(gap & in_mid & ~in_cavity, VAT, fat_hu)
    cavity = labels == VAT
    # ascites against the wall's inner side, over the front and flanks
    if spec.ascites_mm > 0:
        fluid = cavity & ~inset(t_wall + spec.ascites_mm) & (phi > -0.2) & (phi < np.pi + 0.2)
        put(fluid, OTHER, float(rng.uniform(5, 20)))
    # bowel loops: a 3 mm wall around gas, fluid or stool
    m = spec.muscle_scale
    loops = []
    for _ in range(spec.bowel_loops):
        loops.append((rng.uniform(-0.6, 0.6) * float(half_w.mean()),
                      cy + hd + rng.uniform(25, 0.8 * 2 * float(half_d.mean()) - hd - 10),
                      rng.uniform(10, 20) * s))
    for _ in range(spec.bowel_at_wall):  # tangent to the wall's inner side
        angle = rng.uniform(0.15, 0.85) * np.pi
        radius = float(rng.uniform(14, 22) * s)
        w_in = float(half_w.mean()) - float(np.mean(t_wall)) - radius
        d_in = float(half_d.mean()) - float(np.mean(t_wall)) - radius
        yc_body = float((back + half_d).mean())
        loops.append((w_in * np.cos(angle), yc_body + d_in * np.sin(angle), radius))
    for bx, by, radius in loops:
        dist = np.hypot(x - bx, y - by)
        content = float(rng.choice([-1000.0, 15.0, 35.0]))
        loop = (labels == VAT) & (dist <= radius)
        put(loop, OTHER, 40.0)
        put(loop & (dist <= radius - 3.0), OTHER, content)
    # paraspinal mass behind the vertebral body, quadratus lumborum, psoas
    para = (in_wall & (y < cy - hd) & ((x - cx) ** 2 / (62 * s * m) ** 2
                                       + (y - (cy - hd - 10 * s)) ** 2 / (75 * s) ** 2 <= 1.0))
    # quadratus lumborum: against the inside of the posterior wall, beside the paraspinals
    ql_y = back + SKIN_MM + 0.75 * sat_mm + wall_mm + 8 * s
    ql = np.zeros_like(para)
    for side in (1.0, -1.0):
        ql |= (((x - cx - side * 58 * s * m) / (18 * s * m)) ** 2
               + ((y - ql_y) / (15 * s * m)) ** 2 <= 1.0)
    psoas = np.zeros_like(para)
    for side in (1.0, -1.0):
        psoas |= (((x - cx - side * (hw + 18 * s * m)) / (18 * s * m)) ** 2
                  + ((y - (cy - 4 * s)) / (18 * s * m)) ** 2 <= 1.0)
    put((para | ql | psoas) & in_wall, MUSCLE, mus_hu)
    canal = np.hypot(x - cx, y - (cy - hd - 9 * s)) <= 8 * s
    put(canal, OTHER, 15.0)
    # IMAT: fat blobs inside the muscles
    muscle = labels == MUSCLE
    candidates = np.flatnonzero(muscle.ravel())
    if candidates.size and spec.imat_blobs:
        picks = rng.choice(candidates, size=min(spec.imat_blobs, candidates.size), replace=False)
        for p in picks:
            px, py = float(x.ravel()[p]), float(y.ravel()[p])
            r = float(rng.uniform(1.5, 4.0))
            blob = muscle & ((x - px) ** 2 + (y - py) ** 2 <= r * r)
            put(blob, IMAT, fat_hu)
    # arms: separate pieces outside the body (muscle with a fat rim), never measured
    for arm in anat.extras.get("arms", []):
        pts = np.array([arm["humeral_head"], arm["elbow"], arm["wrist"]], float)
        for p0, p1, r in ((pts[0], pts[1], 45.0), (pts[1], pts[2], 35.0)):
            r = r * s * min(anat.habitus, 1.4)
            seg = p1 - p0
            t = np.clip(((x - p0[0]) * seg[0] + (y - p0[1]) * seg[1] + (z - p0[2]) * seg[2])
                        / max(float(seg @ seg), 1e-6), 0.0, 1.0)
            dist = np.sqrt((x - p0[0] - t * seg[0]) ** 2 + (y - p0[1] - t * seg[1]) ** 2
                           + (z - p0[2] - t * seg[2]) ** 2)
            free = ~inset(np.full_like(sat, -4.0))  # keep a gap to the body
            put((dist <= r) & free, OTHER, fat_hu)
            put((dist <= 0.75 * r) & free, OTHER, mus_hu)
    return labels, hu
