"""The count from each anchor, its words, and the comparison with the network."""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from ..patient_grid import PatientGrid, to_patient_grid
from ..projection import Projections
from ..volume import Volume
from .anchors import iliac_crest, lumbosacral_disc, rib_bearing, rib_heads, sacrum_top
from .box import Box, make_box
from .column import DiscChain, disc_chains, follow_track
from .reading import CANNOT_COUNT, COUNTED, CountedVertebra, SecondReaderConfig, SecondReading

log = logging.getLogger(__name__)

#: An S position within this distance (mm) of a count's L3 range agrees with that count.
AGREE_MARGIN_MM = 3.0


def _cannot(reason: str, **found: Any) -> SecondReading:
    return SecondReading(CANNOT_COUNT, f"The vertebrae could not be counted: {reason}.",
                         **found)


def _range_mm(box: Box, top_row: float, bottom_row: float) -> list[float]:
    """[bottom, top] S (mm) between two (sub-)rows of the box."""
    rows = np.arange(len(box.s_mm))
    top, bottom = np.interp([top_row, bottom_row], rows, box.s_mm)
    return [float(bottom), float(top)]


def read_spine(volume: Volume, projections: Projections,
               config: Optional[SecondReaderConfig] = None,
               grid: Optional[PatientGrid] = None) -> SecondReading:
    """Count the vertebrae of a CT from the last rib and from the sacrum.

    ``projections`` are the CT's projections (their spine track centres the search);
    ``grid`` is the CT on patient axes when the caller has it (else it is made here).
    Never raises on odd anatomy: a scan it cannot read gives status "cannot_count".
    """
    config = config or SecondReaderConfig()
    grid = grid if grid is not None else to_patient_grid(volume, projections.config)
    box = make_box(grid, projections, config)
    ds = float(box.step_mm[0])
    track = follow_track(box, config)
    if track is None or (track.rows[1] - track.rows[0]) * ds < 60.0:
        return _cannot("the column of vertebral bodies could not be followed")
    chains = [c for c in disc_chains(box, track, config) if len(c.rows) >= 3]
    if not chains:
        return _cannot("fewer than three discs in a row were seen along the spine")
    # The pelvis: a sacrum needs iliac bones reaching far below it, or the wide bone is
    # something else (vessels with contrast beside a lumbar body).
    pelvis: dict[str, Any] = {}
    sacrum_row = sacrum_top(box, track, config)
    if sacrum_row is not None:
        crest = iliac_crest(box, sacrum_row, config)
        if crest is None:
            sacrum_row = None
        else:
            pelvis = {"sacrum_top_s_mm": float(box.s_mm[sacrum_row]),
                      "iliac_crest_s_mm": float(box.s_mm[crest])}
    # Ribs: only where the field of view reaches far enough sideways to tell a rib from a
    # transverse process.
    heads = None
    if max(box.fov_r_mm) >= config.rib_fov_mm:
        heads = [row for row, _side in rib_heads(box, track, config)]
    # L3 lies low on the spine: the lowest chain that gives a count is read.
    readings = [_count_chain(box, chain, sacrum_row, heads, pelvis, config)
                for chain in reversed(chains)]
    for reading in readings:
        if reading.counted:
            return reading
    return max(readings, key=lambda r: len(r.vertebrae))


def _count_chain(box: Box, chain: DiscChain, sacrum_row: Optional[int],
                 heads: Optional[list[float]], pelvis: dict[str, Any],
                 config: SecondReaderConfig) -> SecondReading:
    """The count along one unbroken chain of discs, from the anchors it reaches."""
    ds = float(box.step_mm[0])
    rows = list(chain.rows)
    found: dict[str, Any] = dict(pelvis)
    anchors = ["iliac crests"] if pelvis else []
    ls_disc = None
    if sacrum_row is not None:
        # The chain's disc at the sacrum's top is L5-S1; nothing below it is counted.
        ls_disc = lumbosacral_disc(rows, sacrum_row, ds)
        if ls_disc is not None:
            anchors.insert(0, "sacrum")
    bodies = [CountedVertebra(*reversed(_range_mm(box, a, b))) for a, b in zip(rows, rows[1:])]
    found["vertebrae"] = bodies

    last_rib = None
    if heads is not None:
        with_rib = rib_bearing(heads, rows, len(bodies))
        for i in with_rib:
            if i >= 0:
                bodies[i].rib_bearing = True
        found["rib_bearing_seen"] = sum(b.rib_bearing for b in bodies)
        if with_rib and max(with_rib) < len(bodies) - 1:
            last_rib = max(with_rib)
            anchors.insert(0, "last rib")
            if last_rib >= 0:
                found["last_rib_s_mm"] = bodies[last_rib].s_mm

    # Names from each anchor.
    l3_ribs = l3_sacrum = None
    if last_rib is not None:
        for i, body in enumerate(bodies):
            k = i - last_rib
            body.from_ribs = f"T{12 + k}" if k <= 0 else f"L{k}"
        if last_rib + 3 < len(bodies):
            l3_ribs = _range_mm(box, rows[last_rib + 3], rows[last_rib + 4])
    if ls_disc is not None:
        n = len(bodies)
        for i, body in enumerate(bodies):
            k = n - i  # 1 = the body on the sacrum
            body.from_sacrum = f"L{6 - k}" if k <= 5 else f"T{12 - (k - 6)}"
        if n >= 3:
            l3_sacrum = _range_mm(box, rows[n - 3], rows[n - 2])
    found["anchors"] = anchors
    found["l3_from_ribs_s_mm"] = l3_ribs
    found["l3_from_sacrum_s_mm"] = l3_sacrum
    variants = []
    if last_rib is not None and ls_disc is not None:
        between = len(bodies) - 1 - last_rib
        found["lumbar_between"] = between
        variants += _count_variants(between)
        if ls_disc < len(chain.rows) and chain.rows[ls_disc] == rows[ls_disc]:
            others = chain.depth[:ls_disc]
            if others and chain.depth[ls_disc] < 0.35 * float(np.median(others)):
                variants.append(
                    "The disc between the lowest mobile vertebra and the sacrum is barely "
                    "visible: possibly a transitional vertebra (sacralised L5).")
    if (found.get("rib_bearing_seen") or 0) >= 13:
        variants.append("13 rib-bearing vertebrae are in view: a 13th rib pair (T13).")
    found["variants"] = variants
    if l3_ribs is None and l3_sacrum is None:
        return _cannot(_why_not(last_rib, ls_disc, sacrum_row, heads is None), **found)
    reading = SecondReading(COUNTED, "", **found)
    reading.message = _summary(reading)
    return reading


def _count_variants(between: int) -> list[str]:
    if between == 5:
        return []
    if between == 4:
        return ["Only 4 rib-free vertebrae lie between the last rib-bearing vertebra and the "
                "sacrum (5 is usual): a 13th rib-bearing vertebra (T13) or a sacralised L5 "
                "(4 lumbar vertebrae)."]
    if between == 6:
        return ["6 rib-free vertebrae lie between the last rib-bearing vertebra and the "
                "sacrum (5 is usual): a sixth lumbar vertebra (L6, or a lumbarised S1) or "
                "11 rib pairs."]
    return [f"{between} rib-free vertebrae lie between the last rib-bearing vertebra and the "
            "sacrum (5 is usual): count the vertebrae yourself."]


def _why_not(last_rib: Optional[int], ls_disc: Optional[int], sacrum_row: Optional[int],
             too_narrow: bool) -> str:
    parts = []
    if too_narrow:
        parts.append("the field of view is too narrow to see the ribs")
    elif last_rib is None:
        parts.append("no last rib-bearing vertebra with a rib-free one below it is in view")
    else:
        parts.append("the discs could not be followed from the last rib down to L3")
    if sacrum_row is None:
        parts.append("the sacrum and pelvis are not in view")
    elif ls_disc is None:
        parts.append("the discs could not be followed down to the sacrum")
    return "; ".join(parts)


def _fmt(s_range: list[float]) -> str:
    return f"S {s_range[0]:.0f} to {s_range[1]:.0f} mm"


def _summary(reading: SecondReading) -> str:
    ribs, sacrum = reading.l3_from_ribs_s_mm, reading.l3_from_sacrum_s_mm
    n = len(reading.vertebrae)
    if ribs is not None and sacrum is not None:
        if _overlap(ribs, sacrum):
            text = (f"Counted {n} vertebral bodies: down from the last rib and up from the "
                    f"sacrum both put L3 at {_fmt(sacrum)}.")
            if reading.lumbar_between == 5:
                text += (" Five rib-free vertebrae lie between the last rib-bearing one and "
                         "the sacrum: the usual count.")
        else:
            text = (f"Counted {n} vertebral bodies: down from the last rib L3 is at "
                    f"{_fmt(ribs)}, up from the sacrum at {_fmt(sacrum)}: the counts "
                    "disagree.")
    elif sacrum is not None:
        text = (f"Counted {n} vertebral bodies up from the sacrum: L3 at {_fmt(sacrum)} "
                "(the last rib was not counted from).")
    else:
        text = (f"Counted {n} vertebral bodies down from the last rib: L3 at {_fmt(ribs)} "
                "(the sacrum is not in view or not reached).")
    return " ".join([text, *reading.variants])


def _overlap(a: list[float], b: list[float]) -> bool:
    """Two [bottom, top] S ranges share their middle: the same vertebra."""
    return a[0] <= 0.5 * (b[0] + b[1]) <= a[1] or b[0] <= 0.5 * (a[0] + a[1]) <= b[1]


def against_network(reading: SecondReading, s_mm: Optional[float],
                    slice_index: Optional[int]) -> tuple[str, list[str]]:
    """Plain words comparing the network's L3 (its S in mm and slice) with each count:
    (the agreement or disagreement in words, review reasons for each disagreement)."""
    if not reading.counted or s_mm is None:
        return reading.message, []
    where = f"slice {slice_index}" if slice_index is not None else f"S {s_mm:.0f} mm"
    agree, reasons = [], []
    for anchor, s_range in (("down from the last rib", reading.l3_from_ribs_s_mm),
                            ("up from the sacrum", reading.l3_from_sacrum_s_mm)):
        if s_range is None:
            continue
        if s_range[0] - AGREE_MARGIN_MM <= s_mm <= s_range[1] + AGREE_MARGIN_MM:
            agree.append(anchor)
        else:
            reasons.append(f"The network says {where} (S {s_mm:.0f} mm); counting {anchor} "
                           f"gives L3 at {_fmt(s_range)}. Count the vertebrae yourself.")
    if agree and not reasons:
        words = (f"The second reader agrees: counting {' and '.join(agree)} puts L3 where "
                 f"the network does ({where}).")
    elif agree:
        words = (f"The second reader agrees counting {' and '.join(agree)}, not counting "
                 f"from the other anchor: {' '.join(reasons)}")
    else:
        words = f"The second reader's count disagrees with the network: {' '.join(reasons)}"
    return words, reasons


def safe_read(volume: Volume, projections: Projections,
              grid: Optional[PatientGrid] = None) -> SecondReading:
    """:func:`read_spine` that never raises: a failure is a "cannot_count" reading (the
    second opinion must never cost the first)."""
    try:
        return read_spine(volume, projections, grid=grid)
    except Exception:  # noqa: BLE001
        log.warning("The second reader failed on this scan.", exc_info=True)
        return SecondReading(CANNOT_COUNT, "The vertebrae could not be counted: the "
                             "second reader failed on this scan (see the log).")


def confirming_anchors(reading: SecondReading, s_mm: Optional[float]) -> set[str]:
    """The anchors ("ribs", "sacrum") whose count puts L3 at ``s_mm`` (S, mm; within
    ``AGREE_MARGIN_MM`` of that count's L3 range)."""
    if not reading.counted or s_mm is None:
        return set()
    return {anchor for anchor, (low, high) in reading.l3_ranges().items()
            if low - AGREE_MARGIN_MM <= s_mm <= high + AGREE_MARGIN_MM}


def second_read(result: Any, reading: SecondReading) -> None:
    """Put ``reading`` on ``result`` (an ``L3Result``): ``result.second_reading``, its
    words against the network's L3 in ``verdict`` (and in the message of a found L3 the
    reader could count), and a review reason when both anchors agree with each other but
    not with a found L3 (the status is never changed)."""
    s_mm = result.s_mm if result.found else result.candidate_s_mm
    voxel = result.shown_voxel
    slice_index = voxel[result.slice_axis] if voxel and result.slice_axis is not None else None
    words, reasons = against_network(reading, s_mm, slice_index)
    reading.verdict = words
    both_agree = reading.lumbar_between == 5 and len(reading.l3_ranges()) == 2
    if result.found and both_agree:
        result.review += [r for r in reasons if r not in result.review]
    if result.found and reading.counted:
        result.message = f"{result.message} {words}"
    result.second_reading = reading
