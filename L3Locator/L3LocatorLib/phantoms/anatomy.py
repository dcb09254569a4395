"""Anatomy of the synthetic CT phantoms: where every bone and organ is (one job: geometry).

All positions are in the *patient frame* (mm): x toward the patient's right
(RAS +R), y anterior (+A), z superior (+S), with z = 0 at the centre of the S1
upper end plate and x = 0 on the midline. :class:`Pose` maps patient frame to
RAS (small rotations and a shift); :mod:`phantom` chooses the grid.

Vertebra naming counts *up from the sacrum* (the radiologists' and
body-composition convention): the first mobile vertebra above the sacrum is
"L5", then "L4", "L3", ... and on past "L1" into "T12", "T11", ... whatever their
shape. ``kind`` records the morphology: "lumbar" (no ribs), "thoracic" (ribs),
"cervical". So with six rib-less (lumbar-type) vertebrae the sixth is named
"T12" with kind "lumbar"; with four, "L1" carries ribs (kind "thoracic").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

LEVEL_NAMES = ["L5", "L4", "L3", "L2", "L1"] + [f"T{n}" for n in range(12, 0, -1)] + ["T0"]


@dataclass
class Vertebra:
    """One presacral vertebra (patient frame, mm)."""

    name: str
    kind: str  # "lumbar" | "thoracic" | "cervical"
    index: int  # 0 = first above the sacrum
    height: float  # body height (mm)
    disc_below: float  # disc thickness below (mm)
    half_width: float  # body half-width, left-right (mm)
    half_depth: float  # body half-depth, anterior-posterior (mm)
    z_bottom: float = 0.0
    z_top: float = 0.0
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))
    axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    tp_span: float = 0.0  # transverse process tip distance from the midline (mm)
    landmark_z: float = 0.0  # S of pedicle middle / top of transverse processes
    rib: bool = False


@dataclass
class Anatomy:
    """Every generated structure's parameters (patient frame, mm)."""

    scale: float
    habitus: float
    vertebrae: list[Vertebra]
    n_lumbar: int
    n_rib_pairs: int
    lstv: str
    cervical: list[Vertebra]
    sacrum_top: np.ndarray
    sacrum_axis: np.ndarray
    crest_z: float
    head_centres: np.ndarray  # (2, 3) femoral heads (right, left)
    rib_present: dict
    arms: str
    hands: str
    body_back_y: np.ndarray  # (Z,) with body_z
    body_z: np.ndarray
    body_half_width: np.ndarray
    body_half_depth: np.ndarray
    fat_mm: float
    spine_x: object
    spine_y: object
    diaphragm_z: float
    extras: dict = field(default_factory=dict)

    def by_name(self, name: str) -> Vertebra | None:
        for v in self.vertebrae:
            if v.name == name:
                return v
        return None


@dataclass
class Pose:
    """Patient frame -> RAS: ``ras = rotation @ p + shift``."""

    rotation: np.ndarray
    shift: np.ndarray

    def points(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=float) @ self.rotation.T + self.shift

    def frames(self, f: np.ndarray) -> np.ndarray:
        """Frames whose rows are unit axes in the patient frame -> rows in RAS."""
        return np.asarray(f, dtype=float) @ self.rotation.T

    def vectors(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(v, dtype=float) @ self.rotation.T


def rotation_xyz(deg: np.ndarray) -> np.ndarray:
    """Rotation matrix from angles (degrees) about x, then y, then z."""
    ax, ay, az = np.radians(np.asarray(deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_curve(z_knots: np.ndarray, values: np.ndarray):
    """A smooth function of z through knots (monotone cubic, flat outside)."""
    from scipy.interpolate import PchipInterpolator

    order = np.argsort(z_knots)
    f = PchipInterpolator(z_knots[order], values[order], extrapolate=True)
    lo, hi = float(z_knots.min()), float(z_knots.max())
    vlo, vhi = float(f(lo)), float(f(hi))

    def curve(z):
        z = np.asarray(z, dtype=float)
        out = f(np.clip(z, lo, hi))
        return np.where(z < lo, vlo, np.where(z > hi, vhi, out))

    return curve


def build_anatomy(
    rng: np.random.Generator, scale: float = 1.0, habitus: float = 1.0,
    n_lumbar: int = 5, n_rib_pairs: int = 12, lstv: str = "none", arms: str = "side",
    with_c7: bool = True,
) -> Anatomy:
    """Draw one patient's anatomy.

    Args:
        rng: the generator all random choices come from.
        scale: skeletal size factor (adult 1.0; child ~0.6).
        habitus: soft-tissue girth factor (thin 0.75 .. obese 1.6).
        n_lumbar: rib-less mobile vertebrae above the sacrum (4, 5 or 6).
        n_rib_pairs: rib-bearing vertebrae (11, 12 or 13).
        lstv: "none", "sacralised_L5" or "lumbarised_S1".
        arms: "side" or "up".
    """
    s = scale
    jitter = lambda a=0.06: 1.0 + rng.uniform(-a, a)  # noqa: E731
    n_total = n_lumbar + n_rib_pairs
    verts: list[Vertebra] = []
    for idx in range(n_total):
        name = LEVEL_NAMES[idx] if idx < len(LEVEL_NAMES) else f"T{-(idx - 17)}"
        if idx < n_lumbar:
            kind = "lumbar"
            lpos = n_lumbar - idx  # 1 = top lumbar
            frac = (lpos - 1) / max(n_lumbar - 1, 1)  # 0 top .. 1 bottom
            h = (24.5 + 3.0 * frac) * s * jitter()
            disc = (8.0 + 3.0 * frac) * s * jitter(0.15)
            hw = (23.0 + 4.0 * frac) * s * jitter()
            hd = (15.5 + 1.5 * frac) * s * jitter()
        else:
            kind = "thoracic"
            tpos = n_total - idx  # 1 = top thoracic
            frac = (tpos - 1) / max(n_rib_pairs - 1, 1)
            h = (15.0 + 8.0 * frac) * s * jitter()
            disc = (3.8 + 3.2 * frac) * s * jitter(0.15)
            hw = (13.5 + 7.5 * frac ** 1.2) * s * jitter()
            hd = (9.5 + 5.0 * frac) * s * jitter()
        verts.append(Vertebra(name, kind, idx, h, disc, hw, hd, rib=(kind == "thoracic")))
    # L5/S1 disc a bit thinner, sacralised L5 has a rudimentary disc.
    verts[0].disc_below *= 0.9
    if lstv == "sacralised_L5":
        verts[0].disc_below *= 0.35
    # Stack bodies upward from the S1 end plate (z = 0), along z first.
    z = 0.0
    for v in verts:
        v.z_bottom = z + v.disc_below
        v.z_top = v.z_bottom + v.height
        z = v.z_top
    cervical: list[Vertebra] = []
    n_cerv = 7 if with_c7 else 0
    for c in range(n_cerv):
        name = f"C{7 - c}"
        h = (14.0 - 0.4 * c) * s * jitter()
        disc = 4.5 * s * jitter(0.15)
        v = Vertebra(name, "cervical", n_total + c, h, disc, 11.0 * s, 8.0 * s)
        v.z_bottom = z + disc
        v.z_top = v.z_bottom + h
        z = v.z_top
        cervical.append(v)

    # Sagittal curve: anterior offset (mm) of body centres, from a typical adult
    # profile keyed on the position above the sacrum, scaled by a random curvature.
    lord = rng.uniform(0.6, 1.4)
    kyph = rng.uniform(0.6, 1.5)
    prof_lumbar = np.array([-5.0, 1.0, 0.0, -4.0, -9.0, -14.0])
    prof_thor = np.array([-14, -20, -26, -31, -35, -37, -38, -37, -34, -29, -23, -16, -10.0])
    offs = []
    for v in verts:
        if v.index < 6:
            o = prof_lumbar[min(v.index, 5)] * lord
        else:
            o = prof_lumbar[5] * lord + (prof_thor[min(v.index - 5, 12)] - prof_thor[0]) * kyph
        offs.append(o * s)
    for c in range(len(cervical)):
        offs.append(offs[-1] + (6.0 + 4.0 * c) * s)
    allv = verts + cervical
    zc = np.array([(v.z_bottom + v.z_top) / 2 for v in allv])
    y_knots = np.concatenate([[-12.0 * s * lord], np.array(offs)])
    z_knots = np.concatenate([[0.0], zc])
    spine_y = _smooth_curve(z_knots, y_knots)
    # Mild scoliosis: lateral sinusoid (mm).
    amp = rng.choice([0.0, rng.uniform(1, 4), rng.uniform(4, 10)], p=[0.4, 0.45, 0.15]) * s
    period = rng.uniform(250, 500) * s
    phase = rng.uniform(0, 2 * np.pi)

    def spine_x(zz):
        zz = np.asarray(zz, dtype=float)
        return amp * np.sin(2 * np.pi * zz / period + phase) * np.clip(zz / (40 * s), 0, 1)

    # Place the bodies on the curve; axis along the curve's tangent.
    for v in allv:
        zcen = (v.z_bottom + v.z_top) / 2
        v.centre = np.array([float(spine_x(zcen)), float(spine_y(zcen)), zcen])
        dz = 4.0
        t = np.array([
            float(spine_x(zcen + dz) - spine_x(zcen - dz)),
            float(spine_y(zcen + dz) - spine_y(zcen - dz)), 2 * dz,
        ])
        v.axis = t / np.linalg.norm(t)
        v.landmark_z = v.z_top - 0.37 * v.height
    # Transverse process span (tip from midline, mm).
    tp_l = {5: [30, 38, 47, 43, 39], 4: [33, 45, 44, 40], 6: [28, 34, 40, 47, 43, 39]}
    for v in verts:
        if v.kind == "lumbar":
            lpos = n_lumbar - v.index - 1
            v.tp_span = tp_l[n_lumbar][lpos] * s * jitter(0.1)
        else:
            tpos = n_total - v.index  # 1 = T1
            v.tp_span = (30.0 + 8.0 * np.sin(np.pi * tpos / 13.0)) * s * jitter(0.08)
            if v.index == n_lumbar:  # last rib-bearing vertebra: small TPs
                v.tp_span = 22.0 * s * jitter(0.1)
    for v in cervical:
        v.tp_span = 24.0 * s

    # Ribs: which exist. The last pair is often short, sometimes absent on one side.
    rib_present = {}
    for v in verts:
        if v.kind != "thoracic":
            continue
        tpos = n_total - v.index
        if tpos == n_rib_pairs:  # lowest rib pair
            rib_present[v.name] = (rng.random() > 0.06, rng.random() > 0.06)
        else:
            rib_present[v.name] = (True, True)
    # Cervical rib on C7 (rare), lumbar-type rib on L1 (when 13 pairs it is already thoracic).
    extras = {"cervical_rib": bool(rng.random() < 0.01) and with_c7}

    # Sacrum and pelvis.
    s1 = np.array([float(spine_x(0.0)), float(spine_y(0.0)), 0.0])
    slope = np.radians(rng.uniform(32, 48))
    sac_axis = np.array([0.0, np.sin(slope), np.cos(slope)])  # end-plate normal (up, anterior)
    pel = s * jitter(0.05)
    crest_z = verts[0].z_top + rng.uniform(-6, 14) * s
    if n_lumbar == 4 or lstv == "sacralised_L5":
        crest_z = verts[0].z_top + rng.uniform(-12, 6) * s
    head_y = s1[1] + rng.uniform(45, 65) * pel
    head_z = -rng.uniform(118, 135) * pel
    head_x = rng.uniform(88, 100) * pel
    heads = np.array([[head_x, head_y, head_z], [-head_x, head_y, head_z]])

    # Body outline (soft tissue), sampled along z.
    top_z = (cervical[-1].z_top if cervical else verts[-1].z_top) + 220 * s
    bz = np.linspace(head_z - 700 * s, top_z, 80)
    key_z = np.array([
        head_z - 700 * s, head_z - 60 * s, head_z, crest_z, verts[min(2, n_total - 1)].z_top,
        verts[min(7, n_total - 1)].z_top, verts[-1].z_top, verts[-1].z_top + 40 * s,
        verts[-1].z_top + 90 * s, verts[-1].z_top + 150 * s, top_z,
    ])
    hab_w = habitus
    hab_d = habitus ** 1.3
    half_w = np.array([150, 175, 175, 160, 150 * hab_w, 155, 175, 70, 60, 80, 70]) * s
    half_w[1:7] *= hab_w ** 0.8
    half_d = np.array([80, 105, 110, 110, 105 * hab_d, 115, 110, 60, 55, 95, 80]) * s
    half_d[1:7] *= hab_d ** 0.7
    half_w *= jitter(0.05)
    half_d *= jitter(0.05)
    order = np.argsort(key_z)
    bw = np.interp(bz, key_z[order], half_w[order])
    bd = np.interp(bz, key_z[order], half_d[order])
    fat = float(np.clip(rng.normal(18, 9) * habitus ** 2, 3, 70)) * s
    back = np.array([float(spine_y(zz)) for zz in np.clip(bz, 0, None)])
    back = back - (17 * s + 55 * s + fat * 0.6 + 8 * s)
    diaphragm_z = verts[min(n_lumbar + 2, n_total - 1)].z_top + rng.uniform(-10, 20) * s
    return Anatomy(
        scale=s, habitus=habitus, vertebrae=verts, n_lumbar=n_lumbar, n_rib_pairs=n_rib_pairs,
        lstv=lstv, cervical=cervical, sacrum_top=s1, sacrum_axis=sac_axis, crest_z=crest_z,
        head_centres=heads, rib_present=rib_present, arms=arms,
        hands=str(rng.choice(["side", "belly"], p=[0.7, 0.3])), body_back_y=back, body_z=bz,
        body_half_width=bw, body_half_depth=bd, fat_mm=fat, spine_x=spine_x, spine_y=spine_y,
        diaphragm_z=diaphragm_z, extras=extras,
    )


def body_section(anat: Anatomy, z: float) -> tuple[float, float, float]:
    """Body outline at height z: (centre y, half-width, half-depth) in mm."""
    w = float(np.interp(z, anat.body_z, anat.body_half_width))
    d = float(np.interp(z, anat.body_z, anat.body_half_depth))
    back = float(np.interp(z, anat.body_z, anat.body_back_y))
    return back + d, w, d
