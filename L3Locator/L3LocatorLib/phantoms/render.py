"""Voxel rasterisation for the synthetic CT phantoms (one job: shapes -> voxels, fast).

Everything is drawn in world (RAS mm) coordinates onto a voxel grid of any
orientation (the grid's 4x4 IJK->RAS matrix), so flips, permutations and
oblique grids need no resampling. The array is indexed ``[k, j, i]``.

Two layers:

* **Soft tissue** is painted with "last write wins" on a *coarse* grid (a few mm)
  with :meth:`Canvas.paint` and copied into the fine grid slab by slab (nearest
  neighbour). Soft tissue below 100 HU vanishes in the MIP window, so its
  resolution matters little.
* **Bone, contrast, metal, table** are drawn at full resolution as *keys*
  stored directly in the int16 output: ``KEY_BASE + depth_q * N_MATERIALS +
  material`` where ``depth_q`` is the depth below the structure's surface in
  0.1 mm steps (negative in the partial-volume rim). Keys exceed every HU, so a
  plain maximum composites bone over soft tissue and the *deepest* structure
  wins where bones touch: a union of overlapping pieces gets one continuous
  cortical shell, no internal walls. :meth:`Canvas.decode` turns keys into HU
  (cortical shell, cancellous core, partial-volume blend with the soft tissue).

Shapes: ellipsoids and capsule chains are "splatted" in batches (one stencil of
voxel offsets for many centres); elliptic cylinders and curved shells are
evaluated on their bounding box.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Keys start above every HU value.
KEY_BASE = 4096
#: Number of material slots in a key.
N_MATERIALS = 32
#: Depth quantum (mm) and the most negative depth stored (partial-volume rim).
DEPTH_STEP_MM = 0.1
DEPTH_MIN_Q = -30
DEPTH_MAX_Q = (32767 - KEY_BASE) // N_MATERIALS + DEPTH_MIN_Q - 1
#: int16 value meaning "no key" in intermediate arrays.
NO_KEY = -32768


@dataclass
class Material:
    """How a keyed structure turns into HU.

    Attributes:
        cortical_hu: HU of the outer shell (bone cortex; equals core for contrast).
        core_hu: HU deeper than ``shell_mm`` below the surface (cancellous bone).
        shell_mm: shell thickness in mm.
    """

    cortical_hu: float
    core_hu: float
    shell_mm: float = 0.0


class Canvas:
    """An int16 voxel grid ``[k, j, i]`` with its IJK->RAS matrix, plus drawing helpers.

    Args:
        shape_kji: array shape (nk, nj, ni).
        ijk_to_ras: 4x4 matrix, voxel index (i, j, k) -> RAS mm.
        fill: initial value (HU).
        edge_mm: width of the partial-volume rim of keyed structures (mm).
    """

    def __init__(
        self, shape_kji: tuple[int, int, int], ijk_to_ras: np.ndarray, fill: int = -1000,
        edge_mm: float = 0.7,
    ) -> None:
        self.array = np.full(shape_kji, fill, dtype=np.int16)
        self.matrix = np.asarray(ijk_to_ras, dtype=np.float64)
        self.inverse = np.linalg.inv(self.matrix)
        self.spacing = np.linalg.norm(self.matrix[:3, :3], axis=0)
        self.edge_mm = float(edge_mm)
        self.materials: list[Material] = []
        #: when a dict, ``ellipsoids`` collects per material until ``flush``
        self.deferred: dict | None = None

    # ------------------------------------------------------------ geometry helpers

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        k, j, i = self.array.shape
        return (i, j, k)

    def add_material(self, material: Material) -> int:
        """Register a material; returns its id (0..N_MATERIALS-1)."""
        if len(self.materials) >= N_MATERIALS:
            raise ValueError("too many materials")
        self.materials.append(material)
        return len(self.materials) - 1

    def ijk_box(self, lo_ras: np.ndarray, hi_ras: np.ndarray, pad: int = 1):
        """Index slices ``(sk, sj, si)`` covering a RAS box, clipped to the grid, or None."""
        corners = np.array(
            [[x, y, z] for x in (lo_ras[0], hi_ras[0]) for y in (lo_ras[1], hi_ras[1])
             for z in (lo_ras[2], hi_ras[2])]
        )
        ijk = corners @ self.inverse[:3, :3].T + self.inverse[:3, 3]
        lo = np.floor(ijk.min(axis=0)).astype(int) - pad
        hi = np.ceil(ijk.max(axis=0)).astype(int) + pad + 1
        n = np.array(self.shape_ijk)
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, n)
        if np.any(hi <= lo):
            return None
        return (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))

    def local_coords(self, box, frame: np.ndarray, centre: np.ndarray) -> list[np.ndarray]:
        """Coordinates (mm) of the voxels of ``box`` in a local frame.

        ``frame`` is 3x3 with rows = local unit axes (in RAS), ``centre`` the local
        origin (RAS). Returns three broadcastable float32 arrays ``[k, j, i]``.
        """
        sk, sj, si = box
        a = frame @ self.matrix[:3, :3]  # local per unit index step
        b = frame @ (self.matrix[:3, 3] - centre)
        ii = np.arange(si.start, si.stop, dtype=np.float32)[None, None, :]
        jj = np.arange(sj.start, sj.stop, dtype=np.float32)[None, :, None]
        kk = np.arange(sk.start, sk.stop, dtype=np.float32)[:, None, None]
        out = []
        for r in range(3):
            out.append(
                (np.float32(a[r, 0]) * ii + np.float32(a[r, 1]) * jj)
                + (np.float32(a[r, 2]) * kk + np.float32(b[r]))
            )
        return out

    # ------------------------------------------------------------ keyed structures

    def keys_from_depth(self, depth: np.ndarray, material: int) -> np.ndarray:
        """int16 keys from depth (mm, positive inside); NO_KEY outside the rim."""
        q = np.rint(depth * (1.0 / DEPTH_STEP_MM))
        inside = q >= max(DEPTH_MIN_Q, -self.edge_mm / DEPTH_STEP_MM)
        q = np.clip(q, DEPTH_MIN_Q, DEPTH_MAX_Q)
        key = (q - DEPTH_MIN_Q) * N_MATERIALS + (KEY_BASE + material)
        return np.where(inside, key, NO_KEY).astype(np.int16)

    def composite_block(self, box, depth: np.ndarray, material: int) -> None:
        """Max-composite a depth block (mm, broadcastable to the box) into the grid."""
        view = self.array[box]
        key = self.keys_from_depth(depth, material)
        np.maximum(view, key, out=view)

    def solid_ellipsoid(
        self, centre: np.ndarray, frame: np.ndarray, radii: np.ndarray, material: int,
        shell_mm: float | None = None,
    ) -> None:
        """One (large) ellipsoid evaluated on its bounding box; RAS inputs.

        With ``shell_mm`` only a shell of that thickness (mm) is drawn (skull, cup).
        """
        c = np.asarray(centre, dtype=float)
        f = np.asarray(frame, dtype=float)
        r = np.asarray(radii, dtype=float)
        ext = np.abs(f.T) @ r + self.edge_mm + 1.0
        box = self.ijk_box(c - ext, c + ext)
        if box is None:
            return
        u, v, w = self.local_coords(box, f, c)
        ia, ib, ic = (np.float32(1.0 / x) for x in r)
        rr = np.sqrt((u * ia) ** 2 + (v * ib) ** 2 + (w * ic) ** 2) + np.float32(1e-6)
        g = np.sqrt((u * ia * ia) ** 2 + (v * ib * ib) ** 2 + (w * ic * ic) ** 2) / rr
        depth = (np.float32(1.0) - rr) / (g + np.float32(1e-6))
        if shell_mm is not None:
            depth = np.float32(shell_mm / 2) - np.abs(depth - np.float32(shell_mm / 2))
        self.composite_block(box, depth, material)

    def ellipsoids(
        self, centres: np.ndarray, frames: np.ndarray, radii: np.ndarray, material: int,
    ) -> None:
        """Splat many ellipsoids of one material.

        Args:
            centres: (N, 3) RAS mm.
            frames: (N, 3, 3) rows = the ellipsoid's unit axes in RAS, or (3, 3) for all.
            radii: (N, 3) semi-axes (mm) along those axes, or (3,) for all.
        """
        centres = np.atleast_2d(np.asarray(centres, dtype=np.float64))
        n = len(centres)
        if n == 0:
            return
        frames = np.asarray(frames, dtype=np.float64)
        if frames.ndim == 2:
            frames = np.broadcast_to(frames, (n, 3, 3))
        radii = np.asarray(radii, dtype=np.float64)
        if radii.ndim == 1:
            radii = np.broadcast_to(radii, (n, 3))
        if self.deferred is not None:
            self.deferred.setdefault(material, []).append((centres, frames, radii))
            return
        self._ellipsoids_now(centres, frames, radii, material)

    def flush(self) -> None:
        """Draw the ellipsoids collected while ``deferred`` was a dict (batched: fewer,
        larger vectorised groups), and stop deferring."""
        pending, self.deferred = self.deferred, None
        for material, items in (pending or {}).items():
            self._ellipsoids_now(np.concatenate([c for c, _, _ in items]),
                                 np.concatenate([f for _, f, _ in items]),
                                 np.concatenate([r for _, _, r in items]), material)

    def _ellipsoids_now(self, centres: np.ndarray, frames: np.ndarray, radii: np.ndarray,
                        material: int) -> None:
        n = len(centres)
        # Group by size so each group shares one stencil.
        rmax = radii.max(axis=1) + self.edge_mm
        order = np.argsort(rmax, kind="stable")
        start = 0
        while start < n:
            lim = rmax[order[start]] * 1.35
            stop = start
            while stop < n and rmax[order[stop]] <= lim:
                stop += 1
            sel = order[start:stop]
            if len(sel) < 4 and rmax[sel].max() > 6 * self.spacing.min():
                for q in sel:  # few big ones: cheaper on their bounding boxes
                    self.solid_ellipsoid(centres[q], frames[q], radii[q], material)
                start = stop
                continue
            self._splat_group(centres[sel], frames[sel], radii[sel], float(rmax[sel].max()),
                              material)
            start = stop

    def _stencil(self, rmax: float):
        """Voxel offsets (M, 3) within ``rmax`` mm (+ half a voxel) and their RAS offsets."""
        cache = self.__dict__.setdefault("_stencils", {})
        hit = cache.get(rmax)
        if hit is not None:
            return hit
        m3 = self.matrix[:3, :3]
        half = np.ceil(rmax / self.spacing).astype(int)
        ax = [np.arange(-h, h + 1) for h in half]
        # squared world distance of offset (i, j, k), via the metric tensor
        g = m3.T @ m3
        i = ax[0][None, None, :].astype(np.float64)
        j = ax[1][None, :, None].astype(np.float64)
        k = ax[2][:, None, None].astype(np.float64)
        d2 = (g[0, 0] * i * i + g[1, 1] * j * j + g[2, 2] * k * k
              + 2 * (g[0, 1] * i * j + g[0, 2] * i * k + g[1, 2] * j * k))
        lim = rmax + 0.5 * float(self.spacing.max())
        kk, jj, ii = np.nonzero(d2 <= lim * lim)
        off = np.stack([ax[0][ii], ax[1][jj], ax[2][kk]], axis=1)
        wo = (off @ m3.T).astype(np.float32)
        cache[rmax] = (half, off, wo)
        return cache[rmax]

    def _splat_group(
        self, centres: np.ndarray, frames: np.ndarray, radii: np.ndarray, rmax: float,
        material: int,
    ) -> None:
        m3 = self.matrix[:3, :3]
        rmax = float(np.ceil(rmax * 4.0) / 4.0)  # quantised so stencils can be reused
        half, off, wo = self._stencil(rmax)
        n_ijk = np.array(self.shape_ijk)
        ni, nj, nk = (int(v) for v in n_ijk)
        ijk_c = centres @ self.inverse[:3, :3].T + self.inverse[:3, 3]
        base = np.rint(ijk_c).astype(np.int64)
        vis = np.all((base + half >= 0) & (base - half < n_ijk), axis=1)
        if not np.any(vis):
            return
        base, frames, radii, centres = base[vis], frames[vis], radii[vis], centres[vis]
        resid = (base @ m3.T + self.matrix[:3, 3] - centres).astype(np.float32)  # (N, 3)
        inside = np.all((base - half >= 0) & (base + half < n_ijk), axis=1)
        inv_r = (1.0 / radii).astype(np.float32)
        fs = frames.astype(np.float32) * inv_r[:, :, None]  # rows scaled: u = fs @ d
        lin_base = (base[:, 2] * nj + base[:, 1]) * ni + base[:, 0]
        lin_off = (off[:, 2] * nj + off[:, 1]) * ni + off[:, 0]
        flat = self.array.reshape(-1)
        m = len(off)
        chunk = max(1, int(65536 // max(m, 1)))
        edge_r = np.float32(self.edge_mm) * inv_r.max(axis=1)  # rim in scaled units
        n = len(base)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            f = fs[s:e]
            r0 = resid[s:e]
            d0 = r0[:, 0, None] + wo[None, :, 0]
            d1 = r0[:, 1, None] + wo[None, :, 1]
            d2 = r0[:, 2, None] + wo[None, :, 2]
            u0 = f[:, 0, 0, None] * d0 + f[:, 0, 1, None] * d1 + f[:, 0, 2, None] * d2
            u1 = f[:, 1, 0, None] * d0 + f[:, 1, 1, None] * d1 + f[:, 1, 2, None] * d2
            u2 = f[:, 2, 0, None] * d0 + f[:, 2, 1, None] * d1 + f[:, 2, 2, None] * d2
            rr2 = u0 * u0 + u1 * u1 + u2 * u2
            lim = (1.0 + edge_r[s:e, None]) ** 2
            sel = rr2 <= lim
            if not inside[s:e].all():
                ii = (base[s:e, None, :] + off[None, :, :])
                sel &= np.all((ii >= 0) & (ii < n_ijk), axis=2)
            rows, cols = np.nonzero(sel)
            if rows.size == 0:
                continue
            u0, u1, u2, rr2 = u0[sel], u1[sel], u2[sel], rr2[sel]
            ir = inv_r[s:e][rows]
            rr = np.sqrt(rr2) + np.float32(1e-6)
            g = np.sqrt((u0 * ir[:, 0]) ** 2 + (u1 * ir[:, 1]) ** 2 + (u2 * ir[:, 2]) ** 2)
            depth = (np.float32(1.0) - rr) * rr / (g + np.float32(1e-6))
            key = self.keys_from_depth(depth, material)
            good = key != NO_KEY
            lin = (lin_base[s:e][rows] + lin_off[cols])[good]
            key = key[good]
            if e - s > 1:
                # Sorted by (voxel, key), a fancy assignment with repeated indices leaves
                # the last (largest) key: an exact scatter-max without ufunc.at, and the
                # voxel order keeps memory access local.
                comb = (lin << 16) | (key.astype(np.int64) + 32768)
                comb.sort()
                lin = comb >> 16
                key = ((comb & 0xFFFF) - 32768).astype(np.int16)
            flat[lin] = np.maximum(flat[lin], key)

    def tube(
        self, points: np.ndarray, radii: np.ndarray, material: int,
        up: np.ndarray | None = None, step_mm: float | None = None,
    ) -> None:
        """A tube along a polyline (RAS mm) with elliptical section.

        Args:
            points: (P, 3) polyline.
            radii: (P, 2) or (2,) semi-axes (mm): along ``up`` (projected normal to the
                tangent) and across it; or (P,) / scalar for a round tube.
            up: preferred direction of the first semi-axis (RAS); default superior.
        """
        points = np.asarray(points, dtype=np.float64)
        radii = np.asarray(radii, dtype=np.float64)
        if radii.ndim == 0:
            radii = np.full((len(points), 2), float(radii))
        elif radii.ndim == 1 and radii.shape[0] == 2 and len(points) != 2:
            radii = np.broadcast_to(radii, (len(points), 2))
        elif radii.ndim == 1:
            radii = np.stack([radii, radii], axis=1)
        seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        total = arc[-1]
        if total <= 0:
            return
        if step_mm is None:
            step_mm = max(0.5 * float(radii.max()), 0.8 * self.spacing.min(), 0.4)
        n = max(2, int(np.ceil(total / step_mm)) + 1)
        s = np.linspace(0.0, total, n)
        c = np.stack([np.interp(s, arc, points[:, a]) for a in range(3)], axis=1)
        r = np.stack([np.interp(s, arc, radii[:, a]) for a in range(2)], axis=1)
        t = np.gradient(c, axis=0)
        t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-9
        upv = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=float)
        n1 = upv[None, :] - (t @ upv)[:, None] * t
        bad = np.linalg.norm(n1, axis=1) < 1e-3
        if np.any(bad):
            alt = np.array([1.0, 0.0, 0.0])
            n1[bad] = alt - (t[bad] @ alt)[:, None] * t[bad]
        n1 /= np.linalg.norm(n1, axis=1, keepdims=True)
        n2 = np.cross(t, n1)
        frames = np.stack([t, n1, n2], axis=1)
        # Tangential semi-axis twice the step: the union of neighbours dips < 4 %.
        a_t = np.full(n, 2.0 * step_mm)
        # Round off the two ends of the tube.
        a_t[0] = a_t[-1] = max(min(float(r[0].min()), 2.0 * step_mm), 0.5 * step_mm)
        rad = np.stack([a_t, r[:, 0], r[:, 1]], axis=1)
        self.ellipsoids(c, frames, rad, material)

    # ------------------------------------------------------------ decoding

    def decode(self, soft_lookup=None, texture: np.ndarray | None = None) -> None:
        """Turn keys into HU in place (cortical shell, core, partial-volume rim).

        ``soft_lookup(flat_index) -> HU`` gives the soft tissue under a rim voxel
        (default 0 HU). ``texture`` is an optional small 1-D array of HU offsets
        added to cancellous cores (indexed by voxel index modulo its length).
        """
        if not self.materials:
            return
        cort = np.array([m.cortical_hu for m in self.materials], dtype=np.float32)
        core = np.array([m.core_hu for m in self.materials], dtype=np.float32)
        shell = np.array([m.shell_mm for m in self.materials], dtype=np.float32)
        flat = self.array.reshape(-1)
        step = 1 << 22
        edge = np.float32(max(self.edge_mm, 1e-3))
        for s in range(0, flat.size, step):
            blk = flat[s:s + step]
            idx = np.flatnonzero(blk >= KEY_BASE)
            if idx.size == 0:
                continue
            key = blk[idx].astype(np.int32) - KEY_BASE
            mat = key % N_MATERIALS
            depth = ((key // N_MATERIALS) + DEPTH_MIN_Q).astype(np.float32) * DEPTH_STEP_MM
            sh = shell[mat]
            # Average the radial profile (soft | cortex | core) over a voxel-wide
            # window [depth - edge, depth + edge]: partial volume of thin cortex.
            a = depth - edge
            b = depth + edge
            l_soft = np.clip(np.minimum(b, 0.0) - a, 0.0, None)
            l_cort = np.clip(np.minimum(b, sh) - np.maximum(a, 0.0), 0.0, None)
            l_core = np.clip(b - np.maximum(a, sh), 0.0, None)
            core_v = core[mat]
            cort_v = cort[mat]
            if texture is not None:
                tex = texture[(idx + s) % texture.size]
                core_v = core_v + tex
                cort_v = cort_v + 1.5 * texture[(idx + s + 1021) % texture.size]
            if soft_lookup is not None:
                soft = soft_lookup(idx + s).astype(np.float32)
            else:
                soft = np.float32(0.0)
            val = (soft * l_soft + cort_v * l_cort + core_v * l_core) * (0.5 / edge)
            blk[idx] = np.clip(val, -1024, 3071).astype(np.int16)


def paint_mask(
    grid: np.ndarray, matrix: np.ndarray, value: float, kind: str, centre: np.ndarray,
    frame: np.ndarray, radii: np.ndarray, lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
) -> None:
    """Paint a soft-tissue shape ("ellipsoid" or "cylinder": elliptic, along the frame's
    third axis with half-length ``radii[2]``) into a small HU grid ``[k, j, i]`` with
    "last write wins". ``frame`` rows are the shape's unit axes in RAS."""
    canvas = _GridView(grid, matrix)
    r = np.asarray(radii, dtype=float)
    ext = np.abs(np.asarray(frame).T) @ r
    box = canvas.ijk_box(centre - ext, centre + ext, pad=1)
    if box is None:
        return
    u, v, w = canvas.local_coords(box, np.asarray(frame, dtype=float), np.asarray(centre))
    if kind == "ellipsoid":
        m = (u / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2 <= 1.0
    else:
        m = ((u / r[0]) ** 2 + (v / r[1]) ** 2 <= 1.0) & (np.abs(w) <= r[2])
    view = grid[box]
    m = np.broadcast_to(m, view.shape)
    view[m] = value


class _GridView(Canvas):
    """Geometry helpers around an existing array (no allocation)."""

    def __init__(self, array: np.ndarray, matrix: np.ndarray) -> None:  # noqa: D107
        self.array = array
        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.inverse = np.linalg.inv(self.matrix)
        self.spacing = np.linalg.norm(self.matrix[:3, :3], axis=0)
        self.edge_mm = 0.0
        self.materials = []
        self.deferred = None


def finish_ct(arr: np.ndarray, spacing_k_mm: float, thickness_mm: float | None, noise_hu: float,
              kernel: str, rng: np.random.Generator) -> None:
    """Slice-thickness blur along k and kernel-correlated noise, in place (int16 HU).

    The noise is a tile of ~13 slices of filtered white noise (s.d. ``noise_hu``),
    shifted at random for each block of slices: cheap, and no visible repetition.
    """
    from scipy import ndimage

    sk = float(spacing_k_mm)
    th = float(thickness_mm or sk)
    if th > 1.2 * sk:
        sigma = np.sqrt(th ** 2 - sk ** 2) / 2.355 / sk
        tmp = ndimage.gaussian_filter1d(arr, sigma, axis=0, mode="nearest", output=np.float32)
        np.copyto(arr, tmp, casting="unsafe")  # a blur stays within the input's range
    if noise_hu <= 0:
        return
    nk, nj, ni = arr.shape
    period = min(nk, 13)
    pad = 32
    sig = {"soft": 1.3, "standard": 0.8, "sharp": 0.45}.get(kernel, 0.8)
    tile = rng.standard_normal((period, nj + pad, ni + pad), dtype=np.float32)
    tile = ndimage.gaussian_filter(tile, (0, sig, sig), mode="wrap")
    tile *= np.float32(noise_hu / max(float(tile.std()), 1e-6))
    tile = np.clip(tile, -3000, 3000).astype(np.int16)
    for s in range(0, nk, period):
        e = min(nk, s + period)
        dj, di = (int(v) for v in rng.integers(0, pad, 2))
        block = arr[s:e]
        block += tile[: e - s, dj:dj + nj, di:di + ni]
    np.clip(arr, -1024, 3071, out=arr)
