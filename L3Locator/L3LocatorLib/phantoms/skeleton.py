"""Draw the phantom skeleton into a :class:`~phantom_render.Canvas` (one job: bones).

Spine (bodies with cortical end plates, pedicles, laminae, spinous, transverse
and articular processes), ribs with costal cartilage, sternum, clavicles,
scapulae, sacrum and coccyx, iliac wings with crests, pubis and ischium,
femora, arms, cervical spine and skull. Geometry comes from
:mod:`phantom_anatomy` (patient frame, mm) and is mapped to RAS by a
:class:`~phantom_anatomy.Pose`.
"""

from __future__ import annotations

import logging

import numpy as np

from .anatomy import Anatomy, Pose, Vertebra, body_section
from .render import Canvas, Material

log = logging.getLogger(__name__)


def register_bone_materials(canvas: Canvas, rng: np.random.Generator, density: float,
                            body_wall: float = 1.0, rib_wall: float = 1.0) -> dict:
    """Bone materials, scaled by ``density`` (osteoporotic ~0.6 .. young ~1.2); the
    vertebral bodies' cortex lies ``body_wall`` of the way from their core HU to their
    cortical HU, the ribs' ``rib_wall`` of the way (1: dense cortex)."""
    d = density

    def m(cort, core, shell, wall=1.0):
        if wall != 1.0:  # exactly the dense cortex otherwise: same phantoms as before
            cort = core + wall * (cort - core)
        return canvas.add_material(Material(cort * d, core * d, shell))

    return {
        "body": m(rng.uniform(1300, 1800), rng.uniform(230, 320), 0.7, body_wall),
        "posterior": m(rng.uniform(1100, 1500), rng.uniform(220, 300), 1.1),
        "pedicle": m(rng.uniform(1300, 1650), rng.uniform(200, 280), 1.3),
        "rib": m(rng.uniform(1100, 1500), rng.uniform(180, 280), 1.0, rib_wall),
        "sternum": m(rng.uniform(600, 900), rng.uniform(180, 250), 0.9),
        "flat": m(rng.uniform(1100, 1500), rng.uniform(250, 350), 1.3),
        "plate": m(rng.uniform(1100, 1500), rng.uniform(250, 350), 0.8),
        "head": m(rng.uniform(1100, 1400), rng.uniform(250, 350), 1.3),
        "shaft": canvas.add_material(
            Material(rng.uniform(1500, 1900) * d, rng.uniform(-40, 60), 4.5)),
        "cartilage": canvas.add_material(
            Material(rng.uniform(110, 180), rng.uniform(90, 140), 0.8)),
        "calc_cartilage": canvas.add_material(
            Material(rng.uniform(300, 600), rng.uniform(150, 250), 1.0)),
    }


def _frame_from_axis(axis: np.ndarray) -> np.ndarray:
    """Rows e1 (~right), e2 (~anterior), e3 (= axis) for a body whose long axis is ``axis``."""
    e3 = axis / np.linalg.norm(axis)
    x = np.array([1.0, 0.0, 0.0])
    e1 = x - (x @ e3) * e3
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(e3, e1)
    return np.stack([e1, e2, e3])


def draw_cylinder(
    canvas: Canvas, pose: Pose, centre: np.ndarray, frame: np.ndarray, hw: float, hd: float,
    hh: float, material: int, waist: float = 0.06, flat_back: float | None = None,
) -> None:
    """An elliptic cylinder (vertebral body) with end plates; patient-frame inputs.

    ``frame`` rows: e1 (half-width ``hw``), e2 (half-depth ``hd``), e3 (axis, half-height
    ``hh``), all mm. ``waist`` narrows the middle; ``flat_back`` cuts the posterior side
    at e2 = -flat_back (mm).
    """
    c = pose.points(centre)
    f = pose.frames(frame)
    ext = np.abs(f.T) @ np.array([hw, hd, hh]) + canvas.edge_mm + 1.0
    box = canvas.ijk_box(c - ext, c + ext)
    if box is None:
        return
    u, v, w = canvas.local_coords(box, f, c)
    t = np.clip(w * np.float32(1.0 / hh), -1, 1)
    sc = np.float32(1.0) - np.float32(waist) * (np.float32(1.0) - t * t)
    a = np.float32(hw) * sc
    b = np.float32(hd) * sc
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2) + np.float32(1e-6)
    g = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2) / r + np.float32(1e-6)
    # Depth scaled down where the cortex is thicker in real vertebrae: the end plates and
    # the lateral walls (bright edges in the frontal MIP, as in real CT).
    lat = (u / a) ** 2 / (r * r)
    radial = (1.0 - r) / g * (np.float32(1.0) - np.float32(0.45) * lat)
    depth = np.minimum(radial, np.float32(0.55) * (np.float32(hh) - np.abs(w)))
    if flat_back is not None:
        depth = np.minimum(depth, v + np.float32(flat_back))
    canvas.composite_block(box, depth, material)


def _ell(canvas: Canvas, pose: Pose, centres, frames, radii, material: int) -> None:
    centres = np.atleast_2d(np.asarray(centres, dtype=float))
    frames = np.asarray(frames, dtype=float)
    if frames.ndim == 2:
        frames = np.broadcast_to(frames, (len(centres), 3, 3))
    canvas.ellipsoids(pose.points(centres), pose.frames(frames), radii, material)


def _tube(canvas: Canvas, pose: Pose, points, radii, material: int, up=None) -> None:
    pts = pose.points(np.asarray(points, dtype=float))
    upv = None if up is None else pose.vectors(np.asarray(up, dtype=float))
    canvas.tube(pts, radii, material, up=upv)


def _bezier(p0, p1, p2, n: int = 12) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


# ---------------------------------------------------------------------- spine


def draw_vertebra(canvas: Canvas, pose: Pose, v: Vertebra, mats: dict, lstv_l5: bool,
                  s: float) -> None:
    """Body, pedicles, laminae, spinous, transverse and articular processes of one vertebra."""
    fr = _frame_from_axis(v.axis)
    e1, e2, e3 = fr
    c = v.centre
    hh = v.height / 2
    draw_cylinder(canvas, pose, c, fr, v.half_width, v.half_depth, hh, mats["body"],
                  flat_back=0.8 * v.half_depth)

    def P(a, b, h):  # local (right, anterior, up) mm -> patient
        return c + a * e1 + b * e2 + h * e3

    lm = v.landmark_z - c[2]
    lumbar = v.kind == "lumbar"
    cerv = v.kind == "cervical"
    plen = (13.0 if lumbar else 9.0 if v.kind == "thoracic" else 6.0) * s
    ped_r = (0.26 * v.height, 0.17 * v.half_width + 1.0 * s)
    back = -0.8 * v.half_depth
    px = 0.62 * v.half_width
    post = P  # alias
    for side in (1.0, -1.0):
        a0 = side * px
        _tube(canvas, pose, [post(a0, back + 2 * s, lm), post(a0 * 1.05, back - plen, lm)],
              ped_r, mats["pedicle"], up=e3)
        # lamina to the midline
        lam_end = post(0.0, back - plen - 9 * s, lm - 0.12 * v.height)
        _tube(canvas, pose, [post(a0 * 1.05, back - plen, lm), lam_end],
              (0.26 * v.height, 2.3 * s), mats["posterior"], up=e3)
        # articular processes
        _ell(canvas, pose, [post(a0 * 1.1, back - plen - 2 * s, hh * 0.85)], fr,
             [[4.0 * s, 4.0 * s, 0.24 * v.height + 2 * s]], mats["posterior"])
        _ell(canvas, pose, [post(a0 * 0.8, back - plen - 6 * s, -hh * 0.8)], fr,
             [[3.8 * s, 4.0 * s, 0.22 * v.height + 2 * s]], mats["posterior"])
        # transverse process: top edge level with the landmark
        tip = side * v.tp_span
        if lumbar:
            rv = (7.5 if v.index == 0 else 6.0) * s
            root = post(a0 * 1.1, back - plen * 0.7, lm - rv)
            end = post(tip, back - plen - 3 * s, lm - rv + (4 * s if v.index == 0 else 1.5 * s))
            if lstv_l5 and v.index == 0:
                rv = 12.0 * s
                root = post(a0 * 1.1, back - plen * 0.5, lm - rv)
                end = post(side * (v.tp_span + 8 * s), back - plen, lm - rv - 10 * s)
            taper = np.array([[rv, 4.2 * s], [0.75 * rv, 3.4 * s], [0.5 * rv, 2.6 * s]])
            _tube(canvas, pose, [root, 0.5 * (root + end) + 1.5 * s * e3, end],
                  taper, mats["posterior"], up=e3)
        elif cerv:
            _tube(canvas, pose, [post(a0, back, lm), post(tip, back + 3 * s, lm)],
                  (3.0 * s, 3.0 * s), mats["posterior"], up=e3)
        else:
            rv = 5.5 * s
            root = post(a0 * 1.1, back - plen * 0.8, lm - rv + 2 * s)
            end = post(tip, back - plen - 14 * s, lm - rv + 5 * s)
            _tube(canvas, pose, [root, end], (rv, 5.0 * s), mats["posterior"], up=e3)
    # spinous process
    base = post(0.0, back - plen - 9 * s, lm - 0.12 * v.height)
    if lumbar:
        sp = [base, post(0.0, back - plen - 30 * s, lm - 0.25 * v.height)]
        rad = (0.36 * v.height, 3.5 * s)
    elif cerv:
        sp = [base, post(0.0, back - plen - 22 * s, lm - 0.4 * v.height)]
        rad = (3.5 * s, 2.5 * s)
    else:
        sp = [base, post(0.0, back - plen - 24 * s, lm - 1.2 * v.height)]
        rad = (4.5 * s, 3.0 * s)
    _tube(canvas, pose, sp, rad, mats["posterior"], up=e3)


def draw_spine(canvas: Canvas, pose: Pose, anat: Anatomy, mats: dict, z_lo: float,
               z_hi: float) -> None:
    """All presacral vertebrae (and cervical ones) overlapping the S range [z_lo, z_hi]."""
    s = anat.scale
    for v in anat.vertebrae + anat.cervical:
        if v.z_top + 60 * s < z_lo or v.z_bottom - 60 * s > z_hi:
            continue
        draw_vertebra(canvas, pose, v, mats, anat.lstv == "sacralised_L5" and v.index == 0, s)


# ---------------------------------------------------------------------- ribs

_HALF_W = np.array([62, 85, 100, 112, 122, 130, 135, 138, 140, 140, 138, 134, 130.0])
_HALF_D = np.array([38, 52, 63, 72, 80, 86, 90, 93, 95, 95, 93, 91, 89.0])
_DROP = np.array([28, 55, 75, 92, 102, 112, 120, 126, 132, 136, 138, 138, 138.0])


def rib_paths(anat: Anatomy, rng: np.random.Generator) -> list[dict]:
    """Polylines (patient frame) of every rib and its costal cartilage."""
    s = anat.scale
    ribs = []
    thor = [v for v in anat.vertebrae if v.kind == "thoracic"]
    thor = sorted(thor, key=lambda v: -v.index)  # top first
    n = len(thor)
    width = rng.uniform(0.92, 1.08) * min(anat.habitus, 1.25) ** 0.2
    for tpos, v in enumerate(thor, start=1):
        from_last = n - tpos  # 0 = lowest pair
        k = min(tpos, 10) - 1
        A_tot = _HALF_W[k] * s * width
        if from_last <= 2:
            A_tot = _HALF_W[min(k, 9)] * s * width * (1.0 - 0.02 * (2 - from_last))
        B = _HALF_D[k] * s
        cx = 42.0 * s
        A = A_tot - cx
        if from_last == 0:
            phi1 = rng.uniform(0.12, 0.36) * np.pi
            drop = rng.uniform(40, 75) * s
        elif from_last == 1:
            phi1 = rng.uniform(0.38, 0.55) * np.pi
            drop = rng.uniform(75, 105) * s
        elif from_last == 2:
            phi1 = rng.uniform(0.62, 0.72) * np.pi
            drop = rng.uniform(118, 140) * s
        else:
            phi1 = (0.84 - 0.03 * max(0, tpos - 7)) * np.pi
            drop = _DROP[k] * s * rng.uniform(0.9, 1.1)
        if tpos == 1:
            phi1 = 0.86 * np.pi
        e = _frame_from_axis(v.axis)
        lm = v.landmark_z
        y_post = v.centre[1] - v.half_depth - 26 * s
        y_cc = y_post + B
        present = anat.rib_present.get(v.name, (True, True))
        for side_i, side in enumerate((1.0, -1.0)):
            if not present[side_i]:
                continue
            head = v.centre + side * 0.8 * v.half_width * e[0] - 0.55 * v.half_depth * e[1] \
                + (v.height / 2 + v.disc_below * 0.2 - 3 * s) * e[2]
            x_tp = v.tp_span * 0.95
            sphi0 = np.clip((x_tp - cx) / A, -0.95, 0.95)
            phi0 = np.arcsin(sphi0)
            phis = np.linspace(phi0, phi1, 24)
            f = ((phis - phi0) / (phi1 - phi0)) ** 0.6
            xs = side * (cx + A * np.sin(phis))
            ys = y_cc - B * np.cos(phis)
            zs = lm + 2 * s - drop * f
            tub = np.array([side * x_tp, y_post + 10 * s, lm - 3 * s])
            pts = np.concatenate([[head, 0.5 * (head + tub)], np.stack([xs, ys, zs], axis=1)])
            pts[:, 0] += v.centre[0]
            rad = np.ones((len(pts), 2))
            taper = np.linspace(0, 1, len(pts))
            if tpos == 1:
                rad[:] = (3.5 * s, 5.5 * s)
            elif from_last == 0:
                rad[:, 0] = (4.2 - 1.6 * taper) * s
                rad[:, 1] = (2.9 - 0.9 * taper) * s
            else:
                rad[:, 0] = (3.8 + 0.8 * np.clip(taper * 3, 0, 1)) * s
                rad[:, 1] = (3.2 - 0.9 * np.clip(taper * 3, 0, 1)) * s
            rad[:2] = (4.0 * s, 3.6 * s)
            cart = None
            if from_last >= 2 and tpos <= 10:
                end = pts[-1]
                if tpos <= 7:
                    st_z = anat.extras["sternum"]["z_at"](end[2])
                    target = np.array([side * 16 * s, y_cc + B + 4 * s, st_z])
                else:
                    target = np.array([side * (30 + 14 * (tpos - 7)) * s, y_cc + 0.92 * B,
                                       end[2] + 30 * s])
                mid = 0.5 * (end + target) + np.array([0, 6 * s, -8 * s])
                cart = _bezier(end, mid, target, 10)
            ribs.append({"points": pts, "radii": rad, "cartilage": cart, "vertebra": v.name,
                         "side": side})
    return ribs


def draw_ribs(canvas: Canvas, pose: Pose, anat: Anatomy, mats: dict, rng: np.random.Generator,
              calcified: bool) -> None:
    """Ribs, costal cartilages, sternum (patient frame -> RAS)."""
    s = anat.scale
    for rib in anat.extras["ribs"]:
        _tube(canvas, pose, rib["points"], rib["radii"], mats["rib"], up=[0, 0, 1])
        if rib["cartilage"] is not None:
            m = mats["calc_cartilage"] if calcified and rng.random() < 0.5 else mats["cartilage"]
            _tube(canvas, pose, rib["cartilage"], (5.0 * s, 3.0 * s), m, up=[0, 0, 1])
    if anat.extras.get("cervical_rib") and anat.cervical:
        c7 = anat.cervical[0]
        for side in (1.0, -1.0):
            root = c7.centre + np.array([side * c7.tp_span, -c7.half_depth - 6 * s, 0.0])
            _tube(canvas, pose, [root, root + np.array([side * 25, 10, -12]) * s,
                                 root + np.array([side * 40, 30, -25]) * s],
                  (3.0 * s, 2.5 * s), mats["rib"])
    st = anat.extras["sternum"]
    _tube(canvas, pose, st["points"], st["radii"], mats["sternum"], up=[1, 0, 0])
    _ell(canvas, pose, [st["manubrium"]], np.eye(3), [[26 * s, 7 * s, 20 * s]], mats["sternum"])


def sternum_geometry(anat: Anatomy) -> dict:
    """Sternum polyline (patient frame) from the jugular notch to the xiphoid."""
    s = anat.scale
    thor = sorted([v for v in anat.vertebrae if v.kind == "thoracic"], key=lambda v: -v.index)
    t2 = thor[min(1, len(thor) - 1)]
    t9 = thor[min(8, len(thor) - 1)]
    y_front = t2.centre[1] - t2.half_depth - 26 * s + 2 * _HALF_D[3] * s + 6 * s
    top = np.array([0.0, y_front, t2.z_top - 5 * s])
    bottom = np.array([0.0, y_front + 28 * s, t9.centre[2]])
    pts = np.stack([top + (bottom - top) * t for t in np.linspace(0, 1, 8)])
    rad = np.stack([np.linspace(16, 13, 8) * s, np.full(8, 5.5 * s)], axis=1)
    rad[-1] = (7 * s, 4 * s)

    def z_at(z):  # sternum height receiving a cartilage from a rib end at z
        return float(np.clip(z + 25 * s, bottom[2], top[2] - 10 * s))

    return {"points": pts, "radii": rad, "manubrium": top + np.array([0, -3 * s, -8 * s]),
            "z_at": z_at, "top": top}


# ---------------------------------------------------------------------- shoulder girdle, arms


def draw_shoulders_arms(canvas: Canvas, pose: Pose, anat: Anatomy, mats: dict) -> None:
    """Clavicles, scapulae, humeri, forearms and hands."""
    s = anat.scale
    for arm in anat.extras["arms"]:
        _tube(canvas, pose, arm["clavicle"], 6.0 * s, mats["flat"])
        plates = arm["scapula_plate"]
        _ell(canvas, pose, [q[0] for q in plates], np.array([q[1] for q in plates]),
             np.array([q[2] for q in plates]), mats["plate"])
        _tube(canvas, pose, arm["scapula_spine"], (6 * s, 4 * s), mats["flat"])
        _tube(canvas, pose, arm["scapula_border"], (4.5 * s, 4.5 * s), mats["flat"])
        _ell(canvas, pose, [arm["glenoid"]], np.eye(3), [[9 * s, 12 * s, 16 * s]], mats["flat"])
        _ell(canvas, pose, [arm["humeral_head"]], np.eye(3), [[22 * s] * 3], mats["head"])
        _tube(canvas, pose, arm["humerus"], 11.0 * s, mats["shaft"])
        _ell(canvas, pose, [arm["elbow"]], np.eye(3), [[20 * s, 13 * s, 13 * s]], mats["head"])
        _tube(canvas, pose, arm["radius"], 6.5 * s, mats["shaft"])
        _tube(canvas, pose, arm["ulna"], 6.0 * s, mats["shaft"])
        for bone in arm["hand"]:
            _tube(canvas, pose, bone, 3.5 * s, mats["flat"])


def arm_geometry(anat: Anatomy, rng: np.random.Generator) -> list[dict]:
    """Shoulder girdle and arm bone polylines (patient frame) for both sides."""
    s = anat.scale
    thor = sorted([v for v in anat.vertebrae if v.kind == "thoracic"], key=lambda v: -v.index)
    t1, t3, t7 = thor[0], thor[min(2, len(thor) - 1)], thor[min(6, len(thor) - 1)]
    st_top = anat.extras["sternum"]["top"]
    y_post = t3.centre[1] - t3.half_depth - 30 * s
    out = []
    for side in (1.0, -1.0):
        acromion = np.array([side * 160 * s, y_post + 25 * s, t1.z_top + 18 * s])
        clav = _bezier([side * 20 * s, st_top[1] - 6 * s, st_top[2] + 5 * s],
                       [side * 90 * s, st_top[1] + 8 * s, st_top[2] + 14 * s], acromion, 12)
        glenoid = np.array([side * 150 * s, y_post + 40 * s, t1.z_top - 12 * s])
        sup = np.array([side * 62 * s, y_post + 4 * s, t1.z_top + 5 * s])
        inf = np.array([side * 88 * s, y_post + 6 * s, t7.z_bottom])
        plates = []
        for a in np.linspace(0, 1, 14):
            for b in np.linspace(0, 1, 14):
                if a + b > 1:
                    continue
                p = sup + a * (inf - sup) + b * (glenoid - sup)
                p = p + np.array([0, -6 * s * np.sin(np.pi * b), 0])
                n = np.array([side * np.sin(0.5), -np.cos(0.5), 0.0])
                t = np.array([0.0, 0.0, 1.0])
                fr = np.stack([np.cross(n, t), t, n])
                plates.append((p, fr, [8 * s, 8 * s, 2.0 * s]))
        spine_s = [np.array([side * 65 * s, y_post - 4 * s, t3.z_top]),
                   np.array([side * 120 * s, y_post - 2 * s, t1.z_top]), acromion]
        border = [glenoid, inf]
        head = glenoid + np.array([side * 20 * s, 8 * s, -4 * s])
        if anat.arms == "up":
            elbow = np.array([side * 115 * s, head[1] - 10 * s, head[2] + 280 * s])
            wrist = np.array([-side * 40 * s, head[1] + 20 * s, elbow[2] + 120 * s])
        else:
            zc = head[2] - 290 * s
            _, bw, _ = body_section(anat, zc)
            elbow = np.array([side * (bw + 35 * s), head[1] - 20 * s, zc])
            if anat.hands == "belly":
                yb, _, bd = body_section(anat, zc - 120 * s)
                wrist = np.array([side * 70 * s, yb + bd + 15 * s, zc - 150 * s])
            else:
                _, bw2, _ = body_section(anat, zc - 240 * s)
                wrist = np.array([side * (bw2 + 30 * s), head[1] + 5 * s, zc - 240 * s])
        hum = [head, elbow]
        d = wrist - elbow
        d /= np.linalg.norm(d)
        perp = np.cross(d, [0, 1.0, 0])
        perp /= np.linalg.norm(perp) + 1e-9
        radius = [elbow + 6 * s * perp, wrist + 8 * s * perp]
        ulna = [elbow - 6 * s * perp, wrist - 5 * s * perp]
        hand = []
        for f in np.linspace(-1, 1, 4):
            base = wrist + d * 25 * s + f * 12 * s * perp
            hand.append([base, base + d * 55 * s + f * 6 * s * perp])
        out.append({"clavicle": clav, "scapula_plate": plates, "scapula_spine": spine_s,
                    "scapula_border": border, "glenoid": glenoid, "humeral_head": head,
                    "humerus": hum, "elbow": elbow, "radius": radius, "ulna": ulna,
                    "hand": hand, "wrist": wrist, "side": side})
    return out


# ---------------------------------------------------------------------- pelvis


def draw_pelvis(canvas: Canvas, pose: Pose, anat: Anatomy, mats: dict, rng: np.random.Generator,
                z_lo: float) -> None:
    """Sacrum, coccyx, iliac wings, pubis, ischium, femora."""
    s = anat.scale
    # --- sacrum: segments along a curve going down and back, curving forward.
    beta = np.arctan2(anat.sacrum_axis[1], anat.sacrum_axis[2])
    lengths = np.array([28, 23, 19, 15, 12.0]) * s
    body_hw = np.array([25, 20, 16, 12, 9.0]) * s
    lat_hw = np.array([54, 48, 38, 27, 16.0]) * s
    thick = np.array([16, 12, 10, 8, 6.0]) * s
    p = anat.sacrum_top.copy()
    lumb_s1 = anat.lstv == "lumbarised_S1"
    centres = []
    for i in range(5):
        d = np.array([0.0, -np.sin(beta), -np.cos(beta)])  # down the sacrum
        up = -d
        fr = _frame_from_axis(up)
        gap = 5.0 * s if (lumb_s1 and i == 1) else 0.0
        p = p + d * gap
        c = p + d * lengths[i] / 2
        centres.append(c)
        hh = lengths[i] / 2 - (0.6 * s if i else 0.0)
        if lumb_s1 and i == 0:
            hh -= 1.5 * s
        draw_cylinder(canvas, pose, c, fr, body_hw[i], thick[i], hh, mats["body"], waist=0.0)
        for side in (1.0, -1.0):
            lc = c + side * (body_hw[i] + (lat_hw[i] - body_hw[i]) * 0.6) * fr[0] - 3 * s * fr[1]
            _ell(canvas, pose, [lc], fr, [[(lat_hw[i] - body_hw[i]) * 0.55 + 2 * s,
                                           thick[i] * 0.9, lengths[i] * 0.4]], mats["plate"])
        # median crest
        _ell(canvas, pose, [c - (thick[i] + 8 * s) * fr[1]], fr,
             [[4 * s, 5 * s, lengths[i] * 0.45]], mats["posterior"])
        p = p + d * lengths[i]
        beta -= np.radians(13)
    centres = np.array(centres)
    fr0 = _frame_from_axis(anat.sacrum_axis)
    for side in (1.0, -1.0):
        # lateral sacral bar closing the foramina, and the ala
        bar = centres + side * (lat_hw[:, None] - 5 * s) * fr0[0]
        _tube(canvas, pose, bar, (5 * s, 6 * s), mats["flat"])
        ala_c = centres[0] + side * 36 * s * fr0[0] + 6 * s * fr0[2] - 4 * s * fr0[1]
        _ell(canvas, pose, [ala_c], fr0, [[20 * s, 16 * s, 14 * s if not lumb_s1 else 10 * s]],
             mats["flat"])
    # coccyx
    cc = [p + np.array([0, 4 * s * i, -9 * s * i]) for i in range(3)]
    _ell(canvas, pose, cc, np.eye(3), [[7 * s, 5 * s, 4.5 * s]] * 3, mats["body"])

    # --- iliac bones
    crest_z = anat.crest_z
    s1 = anat.sacrum_top
    for side_i, side in enumerate((1.0, -1.0)):
        h = anat.head_centres[side_i]
        hx = abs(h[0])
        # crest: PSIS -> top -> ASIS
        # PSIS posterior-medial and low (about S1); the crest rises laterally from it,
        # leaving the gap beside L5 (its transverse processes) open in the frontal MIP
        psis = np.array([side * 42 * s, s1[1] - 46 * s, min(crest_z - 45 * s, -5 * s)])
        top = np.array([side * (hx + 22 * s), s1[1] - 12 * s, crest_z])
        asis = np.array([side * (hx + 28 * s), h[1] + 20 * s, crest_z - 42 * s])
        crest = np.concatenate([
            _bezier(psis, np.array([side * (hx - 5 * s), s1[1] - 45 * s, crest_z - 6 * s]),
                    top, 9),
            _bezier(top, np.array([side * (hx + 36 * s), h[1] - 15 * s, crest_z - 4 * s]),
                    asis, 9)[1:],
        ])
        si = np.array([side * 44 * s, s1[1] - 24 * s, -42 * s])
        roof = np.array([side * (hx + 2 * s), h[1] - 6 * s, h[2] + 30 * s])
        # wing plate: bilinear patch between the crest and the SI joint -> roof line
        fine = float(np.clip(0.9 / canvas.spacing.min(), 0.45, 1.0))  # fewer surfels when coarse
        n_u, n_v = int(34 * fine), int(20 * fine)
        us = np.linspace(0, 1, n_u)
        vs = np.linspace(0.06, 0.95, n_v)
        crest_u = np.stack([np.interp(us, np.linspace(0, 1, len(crest)), crest[:, a])
                            for a in range(3)], axis=1)
        lower_u = si[None] + us[:, None] * (roof - si)[None]
        cen, frs = [], []
        for iu in range(n_u):
            for v_ in vs:
                q = crest_u[iu] * (1 - v_) + lower_u[iu] * v_
                q = q + np.array([side * 10 * s * np.sin(np.pi * v_) * np.sin(np.pi * us[iu]),
                                  0, 0])
                cen.append(q)
        cen = np.array(cen).reshape(n_u, n_v, 3)
        du = np.gradient(cen, axis=0)
        dv = np.gradient(cen, axis=1)
        nrm = np.cross(du, dv)
        nrm /= np.linalg.norm(nrm, axis=2, keepdims=True) + 1e-9
        t1 = du / (np.linalg.norm(du, axis=2, keepdims=True) + 1e-9)
        t2 = np.cross(nrm, t1)
        frs = np.stack([t1, t2, nrm], axis=2).reshape(-1, 3, 3)
        su = np.linalg.norm(du, axis=2).reshape(-1)
        sv = np.linalg.norm(dv, axis=2).reshape(-1)
        vv = np.broadcast_to(vs[None, :], (n_u, n_v)).reshape(-1)
        uu = np.repeat(us, n_v)
        thick_w = (1.3 + 2.2 * vv ** 2 + 2.5 * (1 - uu) ** 3 + 1.5 * (vv < 0.15)) * s
        rad = np.stack([su * 0.9 + 1.5 * s, sv * 0.9 + 1.5 * s, thick_w], axis=1)
        _ell(canvas, pose, cen.reshape(-1, 3), frs, rad, mats["plate"])
        _tube(canvas, pose, crest, (5.5 * s, 4.5 * s), mats["flat"])
        # posterior ilium at the SI joint, thick
        _tube(canvas, pose, [psis, si + np.array([side * 6 * s, -6 * s, 0]),
                             si + np.array([0, 10 * s, -25 * s])], (9 * s, 7 * s), mats["plate"])
        # pelvic brim (arcuate line) SI joint -> iliopubic eminence -> symphysis
        emin = np.array([side * (hx - 20 * s), h[1] + 22 * s, h[2] + 12 * s])
        sym = np.array([side * 9 * s, h[1] + 48 * s, h[2] - 12 * s])
        brim = _bezier(si + np.array([0, 8 * s, -10 * s]),
                       np.array([side * (hx - 8 * s), s1[1] + 10 * s, h[2] + 45 * s]), emin, 12)
        _tube(canvas, pose, brim, (5 * s, 4 * s), mats["flat"])
        # acetabular region
        _ell(canvas, pose, [h + np.array([-side * 8 * s, -4 * s, 16 * s])], np.eye(3),
             [[20 * s, 22 * s, 20 * s]], mats["flat"])
        _tube(canvas, pose, [roof, asis + np.array([-side * 6 * s, -8 * s, 5 * s])],
              (6 * s, 3.5 * s), mats["flat"])
        # superior pubic ramus, inferior ramus, ischium
        tuber = np.array([side * (hx - 30 * s), h[1] - 15 * s, h[2] - 52 * s])
        _tube(canvas, pose, [emin, sym], 7.0 * s, mats["flat"])
        _tube(canvas, pose, _bezier(sym + np.array([0, -4 * s, -18 * s]),
                                    np.array([side * (hx - 45 * s), h[1] + 5 * s, h[2] - 55 * s]),
                                    tuber, 8), 6.0 * s, mats["flat"])
        _tube(canvas, pose, [h + np.array([-side * 6 * s, -22 * s, -5 * s]), tuber],
              (10 * s, 8 * s), mats["flat"])
        _ell(canvas, pose, [sym + np.array([0, -2 * s, -8 * s])], np.eye(3),
             [[7 * s, 8 * s, 18 * s]], mats["flat"])
        _ell(canvas, pose, [tuber], np.eye(3), [[12 * s, 14 * s, 14 * s]], mats["flat"])
        # --- femur
        _ell(canvas, pose, [h], np.eye(3), [[23 * s] * 3], mats["head"])
        neck_end = h + np.array([side * 42 * s, -8 * s, -30 * s])
        _tube(canvas, pose, [h, neck_end], 14 * s, mats["head"])
        _ell(canvas, pose, [h + np.array([side * 58 * s, -14 * s, -22 * s])], np.eye(3),
             [[15 * s, 18 * s, 24 * s]], mats["head"])
        _ell(canvas, pose, [h + np.array([side * 22 * s, -16 * s, -62 * s])], np.eye(3),
             [[9 * s, 9 * s, 10 * s]], mats["head"])
        knee = h + np.array([side * 8 * s, 12 * s, -430 * s])
        shaft = [h + np.array([side * 48 * s, -6 * s, -48 * s]),
                 h + np.array([side * 38 * s, 6 * s, -200 * s]), knee]
        if knee[2] + 100 * s < z_lo:
            shaft = [shaft[0], shaft[1]]
        _tube(canvas, pose, shaft, 13.0 * s, mats["shaft"])
        if knee[2] - 40 * s > z_lo:
            _ell(canvas, pose, [knee], np.eye(3), [[38 * s, 30 * s, 28 * s]], mats["head"])
        if knee[2] - 60 * s > z_lo:
            ankle = knee + np.array([-side * 5 * s, -10 * s, -380 * s])
            _tube(canvas, pose, [knee + np.array([0, 0, -30 * s]), ankle], 13 * s, mats["shaft"])
            _tube(canvas, pose, [knee + np.array([side * 25 * s, -15 * s, -40 * s]),
                                 ankle + np.array([side * 25 * s, -15 * s, 0])], 6 * s,
                  mats["shaft"])


def draw_skull(canvas: Canvas, pose: Pose, anat: Anatomy, mats: dict) -> None:
    """Skull (ellipsoidal shell) and mandible above the cervical spine."""
    s = anat.scale
    top_v = anat.cervical[-1] if anat.cervical else anat.vertebrae[-1]
    c = np.array([0.0, top_v.centre[1] + 20 * s, top_v.z_top + 85 * s])
    r = np.array([72, 92, 86.0]) * s
    cw = pose.points(c)
    f = pose.frames(np.eye(3))
    ext = r + 5
    box = canvas.ijk_box(cw - ext, cw + ext)
    if box is not None:
        u, v, w = canvas.local_coords(box, f, cw)
        rr = np.sqrt((u / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2) + np.float32(1e-6)
        depth = np.float32(3.5 * s) - np.abs(rr - np.float32(1.0)) * np.float32(r.min())
        canvas.composite_block(box, depth, mats["flat"])
    jaw = _bezier([55 * s, c[1] + 10 * s, c[2] - 70 * s], [0, c[1] + 150 * s, c[2] - 120 * s],
                  [-55 * s, c[1] + 10 * s, c[2] - 70 * s], 14)
    _tube(canvas, pose, jaw, (12 * s, 5 * s), mats["flat"])
