"""Soft tissue, contrast, calcification, metal and the CT table of the phantoms.

One job: everything that is not the skeleton. Plain soft tissue (fat, muscle,
organs, lungs, gas; below ~100 HU, invisible in the MIP window) is painted on
a coarse grid; enhancing structures (contrast vessels and kidneys, oral and
excreted contrast, calcified plaques, metal, the table) are keyed structures
drawn at full resolution on the :class:`~phantom_render.Canvas`. Patient-frame
geometry (mm) comes from :mod:`phantom_anatomy`.
"""

from __future__ import annotations

import logging

import numpy as np

from .anatomy import Anatomy, Pose, body_section
from .render import Canvas, Material, paint_mask

log = logging.getLogger(__name__)

FAT, MUSCLE, LUNG, AIR = -100.0, 45.0, -850.0, -1000.0


def _paint(grid, matrix, pose: Pose, value, kind, centre, radii, frame=None):
    fr = np.eye(3) if frame is None else np.asarray(frame, dtype=float)
    paint_mask(grid, matrix, value, kind, pose.points(centre), pose.frames(fr), radii)


def _walk(rng: np.random.Generator, start: np.ndarray, n: int, step: float,
          lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    pts = [np.asarray(start, dtype=float)]
    d = rng.normal(size=3)
    d[2] *= 0.5
    for _ in range(n - 1):
        d = d / np.linalg.norm(d) + 0.6 * rng.normal(size=3)
        d /= np.linalg.norm(d)
        p = np.clip(pts[-1] + step * d, lo, hi)
        pts.append(p)
    return np.array(pts)


def paint_soft_tissue(
    grid: np.ndarray, matrix: np.ndarray, anat: Anatomy, pose: Pose, rng: np.random.Generator,
    z_lo: float, z_hi: float, contrast: str,
) -> None:
    """Paint body outline, fat, muscle, organs, lungs and gas on a coarse HU grid ``[k, j, i]``.

    ``z_lo, z_hi``: patient-frame S range (mm) to cover; ``contrast`` is the phase
    ("none", "arterial", "portal", "delayed"), which sets organ enhancement.
    """
    s = anat.scale
    fat_hu = FAT + rng.uniform(-20, 20)
    mus_hu = MUSCLE + rng.uniform(-10, 15)
    _paint_body(grid, matrix, anat, pose, fat_hu, mus_hu, rng)
    thor = sorted([v for v in anat.vertebrae if v.kind == "thoracic"], key=lambda v: -v.index)

    # paraspinal muscles and psoas
    for v in anat.vertebrae:
        c = v.centre
        if c[2] < z_lo - 60 or c[2] > z_hi + 60:
            continue
        for side in (1.0, -1.0):
            _paint(grid, matrix, pose, mus_hu, "ellipsoid",
                   c + np.array([side * 30 * s, -v.half_depth - 40 * s, 0]),
                   [26 * s, 24 * s, v.height])
            if v.kind == "lumbar":
                k = v.index
                _paint(grid, matrix, pose, mus_hu, "ellipsoid",
                       c + np.array([side * (v.half_width + (10 + 4 * (4 - k)) * s), -4 * s, 0]),
                       [(12 + 3 * (4 - k)) * s, (14 + 2 * (4 - k)) * s, v.height])
    enh = {"none": 0.0, "arterial": 0.4, "portal": 1.0, "delayed": 0.6}[contrast]
    # lungs above the diaphragm
    if len(thor) >= 3:
        t1, t6 = thor[0], thor[min(5, len(thor) - 1)]
        dia = anat.diaphragm_z
        apex = t1.z_top + 25 * s
        zc = 0.5 * (apex + dia)
        for side in (1.0, -1.0):
            yc, w, d = body_section(anat, t6.centre[2])
            _paint(grid, matrix, pose, LUNG + rng.uniform(-50, 50), "ellipsoid",
                   [side * 0.45 * w, t6.centre[1] + 0.3 * d, zc],
                   [0.42 * w, 0.75 * d, 0.5 * (apex - dia) + 20 * s])
        # heart
        _paint(grid, matrix, pose, 40 + 80 * enh, "ellipsoid",
               [-20 * s, thor[5].centre[1] + 75 * s, dia + 50 * s], [60 * s, 50 * s, 55 * s])
    # liver, spleen, stomach, bowel gas, bladder
    dia = anat.diaphragm_z
    yb, wb, db = body_section(anat, dia - 60 * s)
    _paint(grid, matrix, pose, 60 + 50 * enh + rng.uniform(-5, 5), "ellipsoid",
           [0.35 * wb, yb - 0.05 * db, dia - 55 * s], [0.6 * wb, 0.7 * db, 85 * s])
    _paint(grid, matrix, pose, 50 + 60 * enh, "ellipsoid",
           [-0.62 * wb, yb - 0.35 * db, dia - 50 * s], [0.22 * wb, 0.3 * db, 55 * s])
    _paint(grid, matrix, pose, rng.choice([AIR, 20.0]), "ellipsoid",
           [-0.3 * wb, yb + 0.35 * db, dia - 40 * s], [0.25 * wb, 0.3 * db, 45 * s])
    l3 = anat.vertebrae[2]
    yb, wb, db = body_section(anat, l3.centre[2])
    for _ in range(rng.integers(3, 12)):
        p = np.array([rng.uniform(-0.6, 0.6) * wb, yb + rng.uniform(-0.1, 0.6) * db,
                      rng.uniform(anat.crest_z - 40 * s, dia - 60 * s)])
        _paint(grid, matrix, pose, AIR, "ellipsoid", p, rng.uniform(8, 25, size=3) * s)
    h = anat.head_centres[0]
    _paint(grid, matrix, pose, 10.0, "ellipsoid", [0, h[1] + 25 * s, h[2] + 10 * s],
           [45 * s, 35 * s, 35 * s])
    # arms' soft tissue
    for arm in anat.extras.get("arms", []):
        pts = np.array([arm["humeral_head"], arm["elbow"], arm["wrist"]])
        for a, b, r in ((pts[0], pts[1], 45.0), (pts[1], pts[2], 35.0)):
            for t in np.linspace(0, 1, 8):
                p = a + t * (b - a)
                _paint(grid, matrix, pose, mus_hu, "ellipsoid", p,
                       [r * s * min(anat.habitus, 1.4)] * 2 + [np.linalg.norm(b - a) / 10])


def _paint_body(grid: np.ndarray, matrix: np.ndarray, anat: Anatomy, pose: Pose,
                fat_hu: float, mus_hu: float, rng: np.random.Generator) -> None:
    """Body outline in one vectorised pass: subcutaneous fat, muscle wall, inner fat;
    two thighs below the hips and a round head above the neck."""
    s = anat.scale
    nk, nj, ni = grid.shape
    ii = np.arange(ni, dtype=np.float32)[None, None, :]
    jj = np.arange(nj, dtype=np.float32)[None, :, None]
    kk = np.arange(nk, dtype=np.float32)[:, None, None]
    # patient coordinates of every voxel: p = R^T (M ijk + t - shift)
    a = (pose.rotation.T @ matrix[:3, :3]).astype(np.float32)
    b = (pose.rotation.T @ (matrix[:3, 3] - pose.shift)).astype(np.float32)
    x = a[0, 0] * ii + a[0, 1] * jj + a[0, 2] * kk + b[0]
    y = a[1, 0] * ii + a[1, 1] * jj + a[1, 2] * kk + b[1]
    z = a[2, 0] * ii + a[2, 1] * jj + a[2, 2] * kk + b[2]
    zf = z.ravel()
    half_w = np.interp(zf, anat.body_z, anat.body_half_width).astype(np.float32).reshape(z.shape)
    half_d = np.interp(zf, anat.body_z, anat.body_half_depth).astype(np.float32).reshape(z.shape)
    back = np.interp(zf, anat.body_z, anat.body_back_y).astype(np.float32).reshape(z.shape)
    yc = back + half_d
    hz = float(anat.head_centres[0][2])
    top_spine = (anat.cervical[-1] if anat.cervical else anat.vertebrae[-1]).z_top
    legs = z < hz - 70 * s
    # thighs: two circles of radius ~0.48 w at x = +-0.52 w
    xl = np.where(legs, np.abs(x) - 0.52 * half_w, x)
    w_eff = np.where(legs, 0.48 * half_w, half_w)
    d_eff = np.where(legs, np.minimum(half_d, 0.53 * half_w), half_d)
    f = np.float32(anat.fat_mm)
    wall = np.float32(12.0 * s)
    dy = y - yc

    def inside(w, d, shift=0.0):
        w = np.maximum(w, 5.0)
        d = np.maximum(d, 5.0)
        return (xl / w) ** 2 + ((dy - shift) / d) ** 2 <= 1.0

    out = np.full(grid.shape, -1000.0, dtype=np.float32)
    out = np.where(inside(w_eff, d_eff), np.float32(fat_hu), out)
    out = np.where(inside(w_eff - f, d_eff - f, f * 0.1), np.float32(mus_hu), out)
    head = z > top_spine + 40 * s
    inner_hu = np.where(z < anat.diaphragm_z, np.float32(fat_hu + rng.uniform(0, 20)),
                        np.float32(mus_hu - 20))
    inner = inside(w_eff - f - wall, d_eff - f - wall - 4 * s, f * 0.1 + 4 * s) & ~legs & ~head
    out = np.where(inner, inner_hu, out)
    grid[...] = out.astype(np.int16)


def register_enhancing_materials(canvas: Canvas, rng: np.random.Generator, contrast: str) -> dict:
    """Materials for contrast, calcium, metal and the table (HU)."""
    art = {"none": 45, "arterial": rng.uniform(250, 420), "portal": rng.uniform(150, 220),
           "delayed": rng.uniform(110, 150)}[contrast]
    ven = {"none": 40, "arterial": rng.uniform(70, 120), "portal": rng.uniform(130, 190),
           "delayed": rng.uniform(100, 140)}[contrast]
    kid = {"none": 35, "arterial": rng.uniform(150, 220), "portal": rng.uniform(160, 240),
           "delayed": rng.uniform(120, 170)}[contrast]

    def m(a, b=None, t=0.0):
        return canvas.add_material(Material(a, a if b is None else b, t))

    return {
        "artery": m(art), "vein": m(ven), "kidney": m(kid + 30, kid, 4.0),
        "urine": m(rng.uniform(500, 1400)), "oral": m(rng.uniform(180, 600)),
        "calcium": m(rng.uniform(400, 1000)), "metal": m(3071.0),
        "stent": m(rng.uniform(900, 2000)),
    }


def draw_enhancing(
    canvas: Canvas, anat: Anatomy, pose: Pose, mats: dict, rng: np.random.Generator,
    contrast: str, oral: bool, calcified: float, z_lo: float, z_hi: float,
) -> None:
    """Aorta, IVC, iliac vessels, kidneys, excreted and oral contrast, calcified plaques."""
    s = anat.scale
    verts = anat.vertebrae
    thor = sorted([v for v in verts if v.kind == "thoracic"], key=lambda v: -v.index)
    # aorta: arch at T4, descending left-anterior of the spine, bifurcation at L4
    path = []
    for v in sorted(verts, key=lambda v: -v.index):
        if v.index < 1:
            continue
        path.append(v.centre + np.array([-(0.55 * v.half_width + 6 * s),
                                         v.half_depth + 13 * s, 0]))
    path = np.array(path)
    if len(thor) > 4:
        t4 = thor[3]
        top = t4.centre + np.array([-20 * s, t4.half_depth + 40 * s, 30 * s])
        asc = top + np.array([25 * s, 45 * s, -50 * s])
        path = np.concatenate([[asc, top], path[path[:, 2] < t4.centre[2]]])
    r_ao = rng.uniform(9, 13) * s
    if contrast == "none":
        pass
    else:
        _tube(canvas, pose, path, r_ao, mats["artery"])
    l4 = verts[1]
    bif = l4.centre + np.array([-4 * s, l4.half_depth + 12 * s, 0])
    ivc = np.array([v.centre + np.array([0.6 * v.half_width + 10 * s, v.half_depth + 12 * s, 0])
                    for v in verts[:8]])
    h = anat.head_centres
    iliac = []
    for side_i, side in enumerate((1.0, -1.0)):
        iliac.append(np.array([bif, bif + np.array([side * 30 * s, -10 * s, -60 * s]),
                               h[side_i] + np.array([-side * 20 * s, 35 * s, 0]),
                               h[side_i] + np.array([-side * 10 * s, 30 * s, -120 * s])]))
    if contrast != "none":
        _tube(canvas, pose, ivc, (r_ao * 1.1, r_ao * 0.8), mats["vein"], up=[1, 0, 0])
        for il in iliac:
            _tube(canvas, pose, il, 5.5 * s, mats["artery"])
        # kidneys
        for side in (1.0, -1.0):
            lv = verts[3] if side > 0 else verts[4]
            c = lv.centre + np.array([side * 62 * s, -5 * s, 0])
            fr = np.array([[np.cos(0.5), np.sin(0.5) * side, 0], [-np.sin(0.5) * side,
                                                                     np.cos(0.5), 0], [0, 0, 1]])
            canvas.solid_ellipsoid(pose.points(c), pose.frames(fr), [26 * s, 20 * s, 55 * s],
                                   mats["kidney"])
            if contrast == "delayed":
                _ell(canvas, pose, [c - np.array([side * 12 * s, -6 * s, 0])],
                     [[8 * s, 6 * s, 22 * s]], mats["urine"])
                ure = [c - np.array([side * 12 * s, -6 * s, 15 * s]),
                       verts[1].centre + np.array([side * 45 * s, 10 * s, 0]),
                       anat.head_centres[0] * [0, 1, 1] + np.array([side * 30 * s, 20 * s,
                                                                   40 * s])]
                _tube(canvas, pose, ure, 2.5 * s, mats["urine"])
        if contrast == "delayed" and rng.random() < 0.7:
            hb = anat.head_centres[0]
            canvas.solid_ellipsoid(pose.points([0, hb[1] + 25 * s, hb[2] + 2 * s]),
                                   pose.frames(np.eye(3)), [40 * s, 30 * s, 18 * s],
                                   mats["urine"])
    if oral:
        l3 = verts[2]
        yb, wb, db = body_section(anat, l3.centre[2])
        lo = np.array([-0.7 * wb, yb - 0.1 * db, anat.head_centres[0][2] + 40 * s])
        hi = np.array([0.7 * wb, yb + 0.7 * db, anat.diaphragm_z - 40 * s])
        for _ in range(rng.integers(2, 7)):
            start = lo + rng.random(3) * (hi - lo)
            loop = _walk(rng, start, int(rng.integers(6, 18)), 18 * s, lo, hi)
            _tube(canvas, pose, loop, rng.uniform(7, 13) * s, mats["oral"])
        if rng.random() < 0.5:  # contrast in the colon frame
            colon = np.array([[0.6 * wb, yb + 0.2 * db, anat.crest_z - 20 * s],
                              [0.6 * wb, yb + 0.3 * db, anat.diaphragm_z - 60 * s],
                              [-0.6 * wb, yb + 0.3 * db, anat.diaphragm_z - 50 * s],
                              [-0.65 * wb, yb + 0.15 * db, anat.crest_z - 30 * s]])
            _tube(canvas, pose, colon, rng.uniform(14, 22) * s, mats["oral"])
    if calcified > 0:
        n = int(calcified * 60)
        seg = np.concatenate([path[path[:, 2] < thor[-1].centre[2]] if len(thor) else path,
                              iliac[0][1:3], iliac[1][1:3]])
        if len(seg) >= 2:
            idx = rng.integers(0, len(seg) - 1, size=n)
            t = rng.random(n)[:, None]
            cen = seg[idx] * (1 - t) + seg[idx + 1] * t
            ang = rng.uniform(0, 2 * np.pi, n)
            off = np.stack([np.cos(ang), np.sin(ang), np.zeros(n)], axis=1) * r_ao * 0.95
            radii = np.stack([rng.uniform(1.0, 2.5, n), rng.uniform(1.0, 2.5, n),
                              rng.uniform(1.5, 5, n)], axis=1)
            _ell(canvas, pose, cen + off, radii, mats["calcium"])
    anat.extras["aorta"] = path
    anat.extras["r_aorta"] = r_ao


def draw_metal(canvas: Canvas, anat: Anatomy, pose: Pose, mats: dict,
               rng: np.random.Generator, kinds: list[str]) -> list[np.ndarray]:
    """Metal implants; returns the RAS centres of streak-producing objects."""
    s = anat.scale
    streak = []
    for kind in kinds:
        if kind == "hip":
            side_i = int(rng.integers(0, 2))
            side = (1.0, -1.0)[side_i]
            h = anat.head_centres[side_i]
            _ell(canvas, pose, [h], [[15 * s] * 3], mats["metal"])
            canvas.solid_ellipsoid(pose.points(h), pose.frames(np.eye(3)), [26 * s] * 3,
                                   mats["metal"], shell_mm=3.0)
            stem = [h + np.array([side * 38 * s, -6 * s, -30 * s]),
                    h + np.array([side * 45 * s, -4 * s, -60 * s]),
                    h + np.array([side * 40 * s, 2 * s, -180 * s])]
            _tube(canvas, pose, stem, 7 * s, mats["metal"])
            streak.append(pose.points(h))
        elif kind == "spine":
            k0 = int(rng.integers(0, 3))
            levels = anat.vertebrae[k0:k0 + int(rng.integers(2, 4))]
            rods = {1.0: [], -1.0: []}
            for v in levels:
                for side in (1.0, -1.0):
                    tip = v.centre + np.array([side * 0.3 * v.half_width, 0.3 * v.half_depth,
                                               v.landmark_z - v.centre[2]])
                    tail = tip + np.array([side * 14 * s, -48 * s, 0])
                    _tube(canvas, pose, [tip, tail], 3.2 * s, mats["metal"])
                    rods[side].append(tail + np.array([0, -4 * s, 0]))
            for side in rods:
                if len(rods[side]) >= 2:
                    _tube(canvas, pose, rods[side], 3.0 * s, mats["metal"])
            streak.append(pose.points(levels[0].centre))
        elif kind == "stent":
            ao = anat.extras.get("aorta")
            if ao is None or len(ao) < 4:
                continue
            i0 = int(rng.integers(len(ao) // 2, len(ao) - 2))
            a, b = ao[i0], ao[i0 + 1]
            r = anat.extras["r_aorta"]
            for t in np.linspace(0, 1, 8):
                c = a + t * (b - a)
                ang = np.linspace(0, 2 * np.pi, 25)
                ring = c + np.stack([r * np.cos(ang), r * np.sin(ang), 3 * np.sin(6 * ang)], 1)
                _tube(canvas, pose, ring, 0.7, mats["stent"])
        elif kind == "clips":
            l1 = anat.vertebrae[4 if len(anat.vertebrae) > 4 else -1]
            for _ in range(int(rng.integers(2, 6))):
                c = l1.centre + np.array([rng.uniform(30, 80), rng.uniform(40, 90),
                                          rng.uniform(-20, 40)]) * s
                _ell(canvas, pose, [c], [[1.2, 1.2, 4.0]], mats["metal"])
    return streak


def draw_table(canvas: Canvas, pose: Pose, anat: Anatomy, rng: np.random.Generator) -> None:
    """The CT table under the patient's back, in scanner (world) axes.

    A thin curved carbon shell (and sometimes a second one below); thinner than
    a voxel it is drawn one voxel thick with the HU scaled down (partial volume).
    """
    l3 = anat.vertebrae[2]
    back = float(np.interp(l3.centre[2], anat.body_z, anat.body_back_y))
    p = pose.points([0.0, back, l3.centre[2]])
    y0 = p[1] - rng.uniform(3, 25)
    curv = rng.uniform(0.0, 0.0006)
    thick = rng.uniform(1.5, 4.0)
    hu = rng.uniform(80, 400)
    half = rng.uniform(180, 240)
    eff = max(thick, 1.3 * float(canvas.spacing.max()))
    mat = canvas.add_material(Material(hu * thick / eff, hu * thick / eff, 0.0))
    d = canvas.matrix[:3, :3] / canvas.spacing
    along = np.nonzero(np.abs(np.abs(d[2]) - 1.0) < 1e-6)[0]
    for layer, dy in enumerate((0.0, -rng.uniform(20, 40))):
        if layer == 1 and rng.random() < 0.5:
            continue
        lo = np.array([p[0] - half, y0 + dy - eff, -1e5])
        hi = np.array([p[0] + half, y0 + dy + curv * half * half + eff, 1e5])
        box = canvas.ijk_box(lo, hi)
        if box is None:
            continue
        sub = list(box)
        if along.size:  # z-invariant: evaluate one slice and broadcast
            ax = 2 - int(along[0])  # array axis of the grid axis along S
            sub[ax] = slice(box[ax].start, box[ax].start + 1)
        x, y, _ = canvas.local_coords(tuple(sub), np.eye(3), np.array([p[0], y0 + dy, 0.0]))
        depth = np.minimum(np.float32(eff / 2) - np.abs(y - np.float32(curv) * x * x),
                           np.float32(half) - np.abs(x))
        key = canvas.keys_from_depth(depth, mat)
        view = canvas.array[box]
        np.maximum(view, key, out=view)


def _tube(canvas: Canvas, pose: Pose, points, radii, material: int, up=None) -> None:
    upv = None if up is None else pose.vectors(np.asarray(up, dtype=float))
    canvas.tube(pose.points(np.asarray(points, dtype=float)), radii, material, up=upv)


def _ell(canvas: Canvas, pose: Pose, centres, radii, material: int, frame=None) -> None:
    centres = np.atleast_2d(np.asarray(centres, dtype=float))
    fr = np.eye(3) if frame is None else np.asarray(frame, dtype=float)
    canvas.ellipsoids(pose.points(centres), pose.frames(fr), np.asarray(radii, dtype=float),
                      material)
