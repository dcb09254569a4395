"""The column of vertebral bodies: its posterior wall along S, and the discs on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from .box import Box, runs, shift, slab_along_track, window
from .reading import SecondReaderConfig


@dataclass(frozen=True)
class Track:
    """The posterior wall of the vertebral bodies along the scan."""

    wall: np.ndarray  #: a index (box grid) of the bodies' posterior wall, per row
    score: np.ndarray  #: wall contrast (HU) per row
    rows: tuple[int, int]  #: (start, stop) rows of the spine run


def follow_track(box: Box, config: SecondReaderConfig) -> Optional[Track]:
    """The bodies' posterior wall per row, superior -> inferior, on the mid-sagittal slab;
    the longest run of rows that show it is the spine; None when no row does."""
    ds, dr, da = box.step_mm
    sagittal = slab_along_track(box.mean, box.track_r,
                                max(1, int(round(config.slab_half_mm / dr))))
    smooth = ndimage.gaussian_filter1d(sagittal, max(0.5, 5.0 / ds), axis=0, mode="nearest")

    def idx(mm: float) -> int:
        return int(round(mm / da))

    body = window(smooth, -max(1, idx(config.wall_body_mm)) + 1, 0, "mean")
    canal = window(smooth, idx(config.wall_canal_mm[0]), idx(config.wall_canal_mm[1]), "mean")
    arch = window(smooth, idx(config.wall_arch_mm[0]), idx(config.wall_arch_mm[1]), "max")
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
        options = np.stack([shift(total, d) - penalty * abs(d) for d in range(-jump, jump + 1)])
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
    spans = runs(good)
    if not spans:
        return None
    start, stop = max(spans, key=lambda r: r[1] - r[0])
    return Track(wall, along, (int(start), int(stop)))


@dataclass(frozen=True)
class DiscChain:
    """One unbroken chain of discs."""

    rows: list[float]  #: disc centres (box rows, sub-row), superior -> inferior
    depth: list[float]  #: dip (HU) of each disc


def column_band(box: Box, track: Track, config: SecondReaderConfig) -> np.ndarray:
    """HU of the body column ``[s, c]``: the mid-sagittal slab (``column_half_r_mm`` each
    side of the track) at the front-back offsets ``column_a_mm`` from the wall."""
    ds, dr, da = box.step_mm
    half = max(1, int(round(config.column_half_r_mm / dr)))
    slab = slab_along_track(box.mean, box.track_r, half)  # [s, a]
    lo, hi = (int(round(v / da)) for v in config.column_a_mm)
    cols = np.clip(track.wall[:, None] + np.arange(lo, hi + 1), 0, slab.shape[1] - 1)
    return slab[np.arange(slab.shape[0])[:, None], cols]


def disc_chains(box: Box, track: Track, config: SecondReaderConfig) -> list[DiscChain]:
    """Discs along the body column. Each front-back column of the band gets its own dip
    (darker than the brightest row within ``disc_window_mm`` above and below); a disc
    darkens the whole depth of the body, so the median over the columns is taken: the
    basivertebral vein's notch in the back of a body's middle, or a dim middle seen only
    in part of the depth, does not count. Returns the chains superior -> inferior: where
    the spacing breaks (a missed or extra disc), a new chain starts, and no count crosses
    the break."""
    ds = box.step_mm[0]
    band = column_band(box, track, config)
    start, stop = track.rows
    band = ndimage.gaussian_filter1d(band, max(0.4, 1.0 / ds), axis=0)
    band[:start] = np.nan
    band[stop:] = np.nan
    w = max(2, int(round(config.disc_window_mm / ds)))
    above = window(band, -w, -1, "max", axis=0)
    below = window(band, 1, w, "max", axis=0)
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
        chains.append(DiscChain([_subrow(f, c) for c in chain], [float(dip[c]) for c in chain]))
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
