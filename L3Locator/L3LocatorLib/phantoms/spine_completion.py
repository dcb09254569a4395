"""Complete a vertebra-only label map (VerSe) into a whole-trunk label map.

One job: around a real spine segmentation that has no ribs, pelvis or organs,
paint synthetic ones as TotalSegmentator-named labels, so that
:func:`~labelmap_ct.labelmap_to_ct` renders a CT whose MIPs look like a real
trunk while the vertebrae (shape, height, spacing, curvature) stay the real ones.

Painted in label space on a new axis-aligned grid (i -> R, j -> A, k -> S,
``spacing_mm`` voxels), in this order, each only where nothing is yet:
vertebrae (resampled from the map), ribs on the thoracic levels (the last
one short, sometimes absent: the real counting failures), long L1 transverse
processes (sometimes), sternum, lungs, heart, aorta with optional wall
calcifications, inferior vena cava, liver, spleen, stomach, kidneys, psoas and
back muscles, bowel loops, a sacrum, iliac wings, pubis and femoral heads below
the last lumbar vertebra, bladder, arms beside the trunk (sometimes), and the
subcutaneous fat of a body outline. The patient lies supine, head first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .truth import VertebraTruth

_VERT = re.compile(r"^vertebrae_([CTL])(\d+)$")


@dataclass
class _Grid:
    """The new label grid: ``labels[k, j, i]``, RAS of voxel (0, 0, 0), voxel size (mm)."""

    labels: np.ndarray
    origin: np.ndarray
    spacing: float
    names: dict[int, str]

    def label(self, name: str) -> int:
        for value, n in self.names.items():
            if n == name:
                return value
        value = max(self.names, default=0) + 1
        self.names[value] = name
        return value

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] *= self.spacing
        m[:3, 3] = self.origin
        return m

    def spheres(self, centres: np.ndarray, radii: np.ndarray | float, name: str,
                overwrite: bool = False) -> None:
        """Balls (RAS centres ``[n, 3]`` mm, radii mm) painted with label ``name``."""
        self.ellipsoids(centres, np.broadcast_to(np.atleast_1d(radii)[:, None]
                                                 if np.ndim(radii) else radii,
                                                 (len(centres), 3)), name, overwrite)

    def ellipsoids(self, centres: np.ndarray, radii: np.ndarray, name: str,
                   overwrite: bool = False) -> None:
        """Axis-aligned ellipsoids (RAS centres ``[n, 3]``, radii ``[n, 3]`` R, A, S mm)."""
        value = self.label(name)
        shape = np.array(self.labels.shape[::-1])  # i, j, k
        for c, r in zip(np.atleast_2d(centres), np.atleast_2d(radii)):
            lo = np.maximum(np.floor((c - r - self.origin) / self.spacing).astype(int), 0)
            hi = np.minimum(np.ceil((c + r - self.origin) / self.spacing).astype(int) + 1, shape)
            if np.any(hi <= lo):
                continue
            axes = [(self.origin[d] + self.spacing * np.arange(lo[d], hi[d]) - c[d]) / r[d]
                    for d in range(3)]
            inside = (axes[2][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                      + axes[0][None, None, :] ** 2) <= 1.0
            view = self.labels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
            if not overwrite:
                inside &= view == 0
            view[inside] = value

    def tube(self, points: np.ndarray, radius: float | np.ndarray, name: str,
             overwrite: bool = False) -> None:
        """A tube along a polyline (RAS points ``[n, 3]``), sampled every half voxel."""
        pts = np.asarray(points, dtype=float)
        rad = np.broadcast_to(np.asarray(radius, dtype=float), (len(pts),))
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        n = max(2, int(arc[-1] / (0.5 * self.spacing)) + 1)
        t = np.linspace(0.0, arc[-1], n)
        dense = np.stack([np.interp(t, arc, pts[:, d]) for d in range(3)], axis=1)
        self.spheres(dense, np.interp(t, arc, rad), name, overwrite)


def _lr(side: float) -> str:
    """TotalSegmentator side suffix of a +R (right) or -R (left) direction."""
    return "right" if side > 0 else "left"


def _number(name: str) -> tuple[str, int]:
    m = _VERT.match("vertebrae_" + name)
    return (m.group(1), int(m.group(2))) if m else ("", 0)


def complete_spine_map(
    labels: Volume,
    class_map: dict[int, str],
    vertebrae: Sequence[VertebraTruth],
    rng: np.random.Generator,
    spacing_mm: float = 2.0,
) -> tuple[Volume, dict[int, str]]:
    """A whole-trunk label map around the vertebrae of ``labels``.

    Args:
        labels: vertebra-only label map (array ``[k, j, i]``, any orientation).
        class_map: ``{label: name}`` in TotalSegmentator names (see
            :mod:`label_conventions`).
        vertebrae: the map's vertebrae (``truth_from_labelmap``), RAS mm.
        rng: all random choices (sizes, variants, organs).
        spacing_mm: voxel size of the new grid (mm, isotropic).

    Returns:
        (label volume on the new grid, ``{label: name}`` of the new map).
    """
    verts = sorted((v for v in vertebrae if _number(v.name)[0]), key=lambda v: -v.landmark_s_mm)
    if len(verts) < 2:
        raise ValueError(f"{labels.name}: fewer than two vertebrae; cannot complete the trunk")
    centres = np.array([v.centre_ras for v in verts])
    s_top = max(v.top_s_mm for v in verts) + float(rng.uniform(10, 60))
    last = verts[-1]
    lumbar = [v for v in verts if v.name.startswith("L")]
    has_pelvis = bool(lumbar) and last.name in ("L5", "L6", "L4") and last is lumbar[-1]
    s_bottom = last.bottom_s_mm - (float(rng.uniform(120, 230)) if has_pelvis
                                   else float(rng.uniform(5, 40)))
    size = float(rng.uniform(0.85, 1.18))  # patient size factor
    cx, ca = float(np.median(centres[:, 0])), float(np.median(centres[:, 1]))
    half_w = 200.0 * max(size, 1.0)
    origin = np.array([cx - half_w, ca - 140.0, s_bottom])
    extent = np.array([2 * half_w, 140.0 + 260.0 * size, s_top - s_bottom])
    shape_ijk = np.ceil(extent / spacing_mm).astype(int) + 1
    grid = _Grid(np.zeros(shape_ijk[::-1], dtype=np.int16), origin, spacing_mm, {})
    _resample_vertebrae(grid, labels, class_map)

    # the spine's centre line: R and A of the body centres against S, extended linearly
    s_c = centres[:, 2][::-1]
    order = np.argsort(s_c)

    def spine_at(s: float | np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        xs = centres[::-1][order]
        x = np.interp(s, xs[:, 2], xs[:, 0])
        a = np.interp(s, xs[:, 2], xs[:, 1])
        return np.stack([x, a, s], axis=-1)

    thoracic = [v for v in verts if v.name.startswith("T")]
    by_name = {v.name: v for v in verts}
    body_r = 20.0 * size  # vertebral body radius (mm), for organs beside it
    chest = _paint_ribs(grid, thoracic, size, rng)
    _paint_l1_processes(grid, by_name.get("L1"), size, rng)
    diaphragm = _diaphragm_s(by_name, thoracic)
    _paint_chest(grid, thoracic, chest, diaphragm, size, rng, spine_at)
    _paint_abdomen(grid, verts, diaphragm, size, body_r, rng, spine_at, has_pelvis)
    if has_pelvis:
        _paint_pelvis(grid, last, by_name, size, rng, spine_at)
    if rng.random() < 0.45:
        _paint_arms(grid, size, rng, spine_at, s_top, s_bottom)
    _paint_body(grid, chest, size, rng, spine_at)
    volume = Volume(grid.labels, grid.matrix(), name=f"{labels.name}_completed")
    return volume, dict(grid.names)


def _resample_vertebrae(grid: _Grid, labels: Volume, class_map: dict[int, str]) -> None:
    """Nearest-neighbour copy of the map's vertebrae (renamed) onto the new grid."""
    src = np.asarray(labels.array)
    lut = np.zeros(int(src.max()) + 1, dtype=np.int16)
    for value in np.unique(src):
        name = class_map.get(int(value))
        if value and name:
            lut[int(value)] = grid.label(name)
    # new voxel (i, j, k) -> source voxel (i, j, k); arrays are indexed [k, j, i]
    to_src = np.linalg.inv(np.asarray(labels.ijk_to_ras, dtype=float)) @ grid.matrix()
    flip = np.eye(4)[[2, 1, 0, 3]]
    m = flip @ to_src @ flip
    out = ndimage.affine_transform(lut[src], m[:3, :3], offset=m[:3, 3],
                                   output_shape=grid.labels.shape, order=0, mode="constant",
                                   cval=0)
    grid.labels[:] = out


def _diaphragm_s(by_name: dict[str, VertebraTruth], thoracic: list) -> Optional[float]:
    """S (mm) of the diaphragm dome: about the T10/T11 disc (None when unknown)."""
    for name, frac in (("T10", 1.0), ("T11", 0.0), ("T12", -1.0), ("T9", 2.0)):
        v = by_name.get(name)
        if v is not None:
            height = v.top_s_mm - v.bottom_s_mm + 5.0
            return v.bottom_s_mm + frac * height
    return None


def _chest_size(level: int, size: float) -> tuple[float, float]:
    """Half width and half depth (mm) of the rib cage at thoracic level ``level``."""
    t = np.clip((level - 1) / 8.0, 0.0, 1.0)
    return size * (60.0 + 85.0 * np.sqrt(t)), size * (45.0 + 60.0 * np.sqrt(t))


def _paint_ribs(grid: _Grid, thoracic: list, size: float, rng: np.random.Generator) -> dict:
    """Ribs on each thoracic vertebra; returns {S of the rib origin: (half width, depth)}."""
    chest: dict[float, tuple[float, float, float, float]] = {}
    if not thoracic:
        return chest
    n_last = max(_number(v.name)[1] for v in thoracic)
    absent_last = rng.random() < 0.12
    radius = float(rng.uniform(4.0, 5.5)) * size
    for v in thoracic:
        level = _number(v.name)[1]
        rank = n_last - level  # 0 = the last rib-bearing vertebra
        w, d = _chest_size(min(level, 12), size)
        if rank == 0:
            frac = float(rng.uniform(0.08, 0.42))
            if absent_last:
                frac = 0.0
        elif rank == 1:
            frac = float(rng.uniform(0.4, 0.65))
        elif level >= 8:
            frac = float(rng.uniform(0.72, 0.85))
        else:
            frac = float(rng.uniform(0.85, 0.95))
        c = np.asarray(v.centre_ras, dtype=float)
        height = v.top_s_mm - v.bottom_s_mm
        s0 = v.top_s_mm - 0.2 * height
        a_c = c[1] - 30.0 * size + d  # chest centre: the ribs' posterior angle 30 mm behind
        chest[float(s0)] = (float(c[0]), float(a_c), float(w), float(d))
        if frac <= 0.0:
            continue
        # the anterior end lies 2-4 vertebrae below the head (less for the first ribs)
        drop = (30.0 + 80.0 * np.clip((level - 1) / 6.0, 0, 1)) * size * rng.uniform(0.8, 1.2)
        phi0 = 0.28
        phi = np.linspace(phi0, phi0 + frac * (np.pi - phi0), 40)
        for side in (1.0, -1.0):
            x = c[0] + side * w * np.sin(phi)
            a = a_c - d * np.cos(phi)
            s = s0 - drop * ((phi - phi0) / (np.pi - phi0)) ** 0.9
            start = np.array([[c[0] + side * 12.0, c[1] - 8.0, s0]])
            pts = np.concatenate([start, np.stack([x, a, s], axis=1)])
            name = f"rib_{_lr(side)}_{min(level, 12)}"
            grid.tube(pts, radius, name)
    return chest


def _paint_l1_processes(grid: _Grid, l1: Optional[VertebraTruth], size: float,
                        rng: np.random.Generator) -> None:
    """Long L1 transverse processes (40 % of cases): they look like a short 12th rib."""
    if l1 is None or rng.random() > 0.4:
        return
    c = np.asarray(l1.centre_ras, dtype=float)
    s = l1.top_s_mm - 0.35 * (l1.top_s_mm - l1.bottom_s_mm)
    length = float(rng.uniform(35, 60)) * size
    for side in (1.0, -1.0):
        pts = np.array([[c[0] + side * 10, c[1] - 18, s],
                        [c[0] + side * length, c[1] - 22, s - rng.uniform(0, 8)]])
        grid.tube(pts, 4.0 * size, "vertebrae_L1")  # processes belong to the vertebra


def _paint_chest(grid: _Grid, thoracic: list, chest: dict, diaphragm: Optional[float],
                 size: float, rng: np.random.Generator, spine_at) -> None:
    """Sternum, heart, lungs and the thoracic aorta inside the rib cage."""
    if not chest:
        return
    levels = sorted(chest.items())  # by S ascending
    s_lo = diaphragm if diaphragm is not None else levels[0][0]
    s_hi = levels[-1][0] + 20.0
    # lungs: per 6 mm slab, an ellipse per side inside the cage
    for s in np.arange(s_lo - 30.0, s_hi, 6.0):
        x0, a_c, w, d = _interp_chest(levels, s)
        for side in (1.0, -1.0):
            # posterior recesses go deeper than the dome
            extra = 1.0 if s >= s_lo else max(0.0, 1.0 + (s - s_lo) / 30.0)
            if extra <= 0.05:
                continue
            centre = np.array([[x0 + side * 0.5 * w, a_c - 0.15 * d * (2 - extra), s]])
            radii = np.array([[0.45 * w, 0.8 * d * extra, 4.0]])
            grid.ellipsoids(centre, radii, f"lung_{_lr(side)}")
    mid = 0.5 * (s_lo + s_hi)
    x0, a_c, w, d = _interp_chest(levels, mid)
    grid.ellipsoids(np.array([[x0 - 0.15 * w, a_c + 0.35 * d, s_lo + 55 * size]]),
                    np.array([[0.45 * w, 0.5 * d, 55 * size]]), "heart")
    grid.tube(np.array([[x0, a_c + 0.97 * d, s_hi - 20], [x0, a_c + d * 1.02, s_lo + 10]]),
              np.array([10.0, 7.0]) * size, "sternum", overwrite=True)


def _interp_chest(levels: list, s: float) -> tuple[float, float, float, float]:
    ss = np.array([k for k, _ in levels])
    vals = np.array([v for _, v in levels])
    return tuple(float(np.interp(s, ss, vals[:, i])) for i in range(4))  # type: ignore


def _paint_abdomen(grid: _Grid, verts: list, diaphragm: Optional[float], size: float,
                   body_r: float, rng: np.random.Generator, spine_at, pelvis: bool) -> None:
    """Aorta (with calcifications), IVC, liver, spleen, stomach, kidneys, muscles, bowel."""
    s_top = float(grid.origin[2] + grid.spacing * (grid.labels.shape[0] - 1))
    s_bot = float(grid.origin[2])
    by = {v.name: v for v in verts}
    l4 = by.get("L4")
    s_bif = l4.landmark_s_mm if l4 is not None else s_bot - 50
    ss = np.arange(max(s_bif, s_bot), s_top, 5.0)
    if ss.size > 1:
        sp = spine_at(ss)
        aorta = sp + np.array([-0.6 * body_r, body_r + 14 * size, 0.0])
        r_ao = float(rng.uniform(9, 14)) * size
        grid.tube(aorta, r_ao, "aorta")
        if rng.random() < 0.5:  # wall calcifications (older patients)
            n = int(rng.integers(4, 30))
            pick = aorta[rng.integers(0, len(aorta), n)]
            ang = rng.uniform(0, 2 * np.pi, n)
            spots = pick + np.stack([r_ao * np.cos(ang), r_ao * np.sin(ang), rng.normal(0, 2, n)],
                                    axis=1)
            grid.spheres(spots, rng.uniform(1.5, 3.5, n), "calcification", overwrite=True)
    top_ivc = diaphragm + 20 if diaphragm is not None else s_top
    ss = np.arange(max(s_bif, s_bot), min(top_ivc, s_top), 5.0)
    if ss.size > 1:
        grid.tube(spine_at(ss) + np.array([0.9 * body_r, body_r + 10 * size, 0.0]),
                  float(rng.uniform(9, 13)) * size, "inferior_vena_cava")
    if pelvis and s_bif > s_bot:  # iliac arteries
        for side in (1.0, -1.0):
            p0 = spine_at(s_bif) + np.array([-0.6 * body_r, body_r + 14 * size, 0.0])
            p1 = p0 + np.array([side * 60 * size, 20.0, -110.0])
            grid.tube(np.array([p0, p1]), 6.0 * size, f"iliac_artery_{_lr(side)}")
    if diaphragm is not None:
        c = spine_at(diaphragm)
        liver_c = c + np.array([65 * size, 45 * size, -55 * size])
        grid.ellipsoids(liver_c[None], np.array([[90, 80, 75]]) * size, "liver")
        grid.ellipsoids((c + np.array([-85 * size, 0, -55 * size]))[None],
                        np.array([[35, 45, 50]]) * size, "spleen")
        grid.ellipsoids((c + np.array([-45 * size, 80 * size, -50 * size]))[None],
                        np.array([[55, 40, 45]]) * size, "stomach")
    for name, v_name in (("kidney_right", "L2"), ("kidney_left", "L1")):
        v = by.get(v_name) or by.get("L1")
        if v is None:
            continue
        side = 1.0 if name.endswith("right") else -1.0
        c = np.asarray(v.centre_ras) + np.array([side * 65 * size, 5.0, 0.0])
        grid.ellipsoids(c[None], np.array([[28, 25, 55]]) * size, name)
    lumbar = [v for v in verts if v.name.startswith("L")]
    if lumbar:
        s0, s1 = lumbar[0].top_s_mm, lumbar[-1].bottom_s_mm - (100 if pelvis else 0)
        ss = np.arange(max(s1, s_bot), s0, 6.0)
        if ss.size > 1:
            for side in (1.0, -1.0):
                t = (s0 - ss) / max(s0 - s1, 1.0)
                pts = spine_at(ss) + np.stack([side * (body_r + 8 + 20 * t) * size,
                                               np.full_like(ss, 5.0), np.zeros_like(ss)], 1)
                grid.tube(pts, (10 + 16 * t) * size, f"iliopsoas_{_lr(side)}")
    ss = np.arange(s_bot, s_top, 6.0)
    for side in (1.0, -1.0):
        pts = spine_at(ss) + np.array([side * 28 * size, -52 * size, 0.0])
        grid.tube(pts, 22.0 * size, f"autochthon_{_lr(side)}")
    # bowel loops between the lowest rib level and the pelvis
    top = (diaphragm - 60) if diaphragm is not None else s_top
    if top > s_bot:
        n = int(rng.integers(8, 20))
        s = rng.uniform(s_bot, top, n)
        c = spine_at(s) + np.stack([rng.uniform(-110, 110, n) * size,
                                    rng.uniform(50, 150, n) * size, np.zeros(n)], 1)
        for i in range(n):
            grid.ellipsoids(c[i][None], rng.uniform(15, 35, (1, 3)) * size,
                            str(rng.choice(["small_bowel", "colon"])))


def _paint_pelvis(grid: _Grid, last: VertebraTruth, by_name: dict, size: float,
                  rng: np.random.Generator, spine_at) -> None:
    """Sacrum, iliac wings, pubis, femoral heads and bladder below the last lumbar."""
    c = np.asarray(last.centre_ras, dtype=float)
    s0 = last.bottom_s_mm - 3.0
    t = np.linspace(0, 1, 30)
    sac = np.stack([np.full_like(t, c[0]), c[1] - 5 - 45 * t ** 1.5, s0 - 100 * size * t], 1)
    widths = (48 - 33 * t) * size
    grid.ellipsoids(sac, np.stack([widths, (18 - 8 * t) * size, np.full_like(t, 4.0)], 1),
                    "sacrum")
    l4 = by_name.get("L4") or last
    s_crest = l4.landmark_s_mm - float(rng.uniform(-5, 20))
    u, v = np.meshgrid(np.linspace(0, 1, 26), np.linspace(0, 1, 24))
    u, v = u.ravel(), v.ravel()
    for side in (1.0, -1.0):
        spread = np.where(v < 0.55, 1.0, 1.0 - (v - 0.55) / 0.45 * 0.75)
        x = c[0] + side * (38 + 95 * u * spread) * size
        a = c[1] - 20 * size + 65 * u * size + 45 * v * size
        s = s_crest - 10 * (1 - np.sin(np.pi * u)) - 105 * v * size
        name = f"hip_{_lr(side)}"
        grid.spheres(np.stack([x, a, s], 1), np.full(len(x), 4.0 * size), name)
        head = np.array([c[0] + side * 92 * size, c[1] + 45 * size, s_crest - 118 * size])
        grid.spheres(head[None], np.array([23.0 * size]), f"femur_{_lr(side)}")
        grid.tube(np.array([head, head + np.array([side * 25, 0, -150]) * size]), 14.0 * size,
                  f"femur_{_lr(side)}")
        pub = np.array([[c[0] + side * 85 * size, c[1] + 50 * size, s_crest - 115 * size],
                        [c[0] + side * 15 * size, c[1] + 105 * size, s_crest - 125 * size]])
        grid.tube(pub, 8.0 * size, name)
    grid.ellipsoids(np.array([[c[0], c[1] + 95 * size, s_crest - 105 * size]]),
                    np.array([[45, 35, 35]]) * size, "urinary_bladder")


def _paint_arms(grid: _Grid, size: float, rng: np.random.Generator, spine_at,
                s_top: float, s_bottom: float) -> None:
    """Arms down beside the trunk: humerus/forearm bone in a muscle cylinder."""
    s = np.linspace(s_bottom, s_top, 12)
    sp = spine_at(s)
    for side in (1.0, -1.0):
        off = np.array([side * float(rng.uniform(185, 215)) * size, 40 * size, 0.0])
        grid.tube(sp + off, 8.0 * size, f"humerus_{_lr(side)}")
        grid.tube(sp + off, 38.0 * size, "arm_muscle")


def _paint_body(grid: _Grid, chest: dict, size: float, rng: np.random.Generator,
                spine_at) -> None:
    """Subcutaneous fat: per slice an ellipse around the spine, the chest or the abdomen."""
    n_k = grid.labels.shape[0]
    fat = grid.label("subcutaneous_fat")
    jj = grid.origin[1] + grid.spacing * np.arange(grid.labels.shape[1])[:, None]
    ii = grid.origin[0] + grid.spacing * np.arange(grid.labels.shape[2])[None, :]
    w_abd = float(rng.uniform(135, 175)) * size
    d_abd = float(rng.uniform(105, 135)) * size
    levels = sorted(chest.items())
    for k in range(n_k):
        s = grid.origin[2] + grid.spacing * k
        c = spine_at(s)
        back = c[1] - 65 * size
        w, d = w_abd, d_abd
        if levels and s >= levels[0][0] - 40:
            _, a_c, cw, cd = _interp_chest(levels, s)
            w = max(w * 0.9, cw + 25 * size)
            d = max(d * 0.9, (a_c + cd - back) / 2 + 20 * size)
        a_mid = back + d
        inside = ((ii - c[0]) / w) ** 2 + ((jj - a_mid) / d) ** 2 <= 1.0
        sl = grid.labels[k]
        sl[inside & (sl == 0)] = fat
