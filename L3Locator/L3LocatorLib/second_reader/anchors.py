"""The anchors of the count: the ribs, the sacrum and the iliac crests."""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from .box import Box, lateral_mm, runs
from .column import Track
from .reading import SecondReaderConfig

#: How far (mm) the lowest ribs drop per mm away from the spine, near their neck.
RIB_SLOPE = 0.7
#: Right-left half-width (mm) of the spine's core left out when looking for ribs: the
#: bodies, pedicles and the rib heads beside them.
SPINE_CORE_MM = 20.0


def rib_heads(box: Box, track: Track, config: SecondReaderConfig) -> list[tuple[float, int]]:
    """(row of the medial end, side -1 right / +1 left) of every rib in the box."""
    ds, dr, da = box.step_mm
    start, stop = track.rows
    # Only what can hold a rib's medial end or tell its reach: up to a little beyond
    # ``rib_reach_mm`` sideways, from in front of the bodies' wall to behind the arch
    # (labelling is the costly step). Every row: the ilium must show its full height to be
    # told from a rib.
    lateral = lateral_mm(box)
    reach_cols = np.flatnonzero((np.abs(lateral) <= config.rib_reach_mm + 6.0).any(axis=0))
    cols = slice(int(reach_cols[0]), int(reach_cols[-1]) + 1)
    wall = track.wall
    a_lo = max(0, int(wall.min() + round(-40.0 / da)))
    a_hi = min(box.high.shape[2], int(wall.max() + round(60.0 / da)) + 1)
    lateral = lateral[:, cols]
    bone = box.high[:, cols, a_lo:a_hi] > config.bone_hu
    # Without the spine's core each rib (with the transverse process it touches) is its
    # own component.
    bone &= (np.abs(lateral) > SPINE_CORE_MM)[:, :, None]
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
        top = float(np.min(s_i[medial])) - RIB_SLOPE * max(0.0, inner - SPINE_CORE_MM) / ds
        heads.append((top, side))
    return heads


def sacrum_top(box: Box, track: Track, config: SecondReaderConfig) -> Optional[int]:
    """First row (box grid) of the sacrum: the top of the lowest run of rows where bone in
    front of the canal reaches beyond any lumbar body on both sides for
    ``config.sacrum_rows_mm`` and, within 40 mm of its top, out to the iliac bones; None
    when not in view."""
    ds, dr, da = box.step_mm
    n_s, n_r, n_a = box.high.shape
    lateral = lateral_mm(box)
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
        for lo, hi in runs(bone[s]):
            if lo <= mid < hi:
                half_width[s] = min(lateral[s, hi - 1], -lateral[s, lo])
                break
    need = max(1, int(round(config.sacrum_rows_mm / ds)))
    pelvis = int(round(40.0 / ds))
    found = None
    for lo, hi in runs(half_width >= config.sacrum_half_width_mm):
        # The sacrum's alae are joined to the iliac bones (across the sacroiliac joints)
        # within a few centimetres below its top; the rib heads beside a thoracic body
        # are not. The lowest such run: kidneys with contrast beside L1-L2, bridged to
        # the transverse processes, can make a short one higher up.
        if hi - lo >= need and lo > start \
                and half_width[lo : lo + pelvis].max() >= config.ilium_reach_mm:
            found = int(lo)
    return found


def iliac_crest(box: Box, sacrum_row: int, config: SecondReaderConfig) -> Optional[int]:
    """Top row of the iliac wings: the first row where bone far lateral (beyond 50 mm),
    belonging to a structure that reaches from above the sacrum's top to far below it, is
    as wide as a wing on both sides (a low rib touching the crest is only a few voxels
    across). None when the pelvis is not in view."""
    # From 100 mm above the sacrum's top down: the crests lie at most one or two levels up.
    first = max(0, sacrum_row - int(round(100.0 / box.step_mm[0])))
    sacrum_row -= first
    lateral = lateral_mm(box)[first:]
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


def rib_bearing(heads: list[float], rows: list[float], n_bodies: int) -> set[int]:
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


def lumbosacral_disc(rows: list[float], sacrum_row: int, ds: float) -> Optional[int]:
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
