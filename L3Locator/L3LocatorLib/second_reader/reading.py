"""What the second reader reports, and its settings (mm, HU)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

#: ``SecondReading.status`` values.
COUNTED = "counted"
CANNOT_COUNT = "cannot_count"



@dataclass(frozen=True)
class SecondReaderConfig:
    """Settings of :func:`read_spine` (mm and HU)."""

    #: Working grid (mm): the voxels are pooled in blocks of about this size.
    grid_mm: float = 2.0
    #: Half-size of the box around the spine track, right-left, and its reach in front of
    #: and behind the back of the spine (mm).
    box_half_r_mm: float = 90.0
    box_front_mm: float = 170.0
    box_back_mm: float = 15.0
    #: Right-left half-width of the mid-sagittal slab that shows bodies, canal and arch.
    slab_half_mm: float = 6.0
    #: Posterior-wall detector: depth of body in front, canal behind, arch behind that.
    wall_body_mm: float = 6.0
    wall_canal_mm: tuple[float, float] = (2.0, 8.0)
    wall_arch_mm: tuple[float, float] = (8.0, 40.0)
    #: Body and arch must be brighter than this (HU, slab mean) to be bone.
    wall_bone_hu: float = 100.0
    #: Largest wall contrast (HU) that counts, and the preference (HU per mm) for a wall
    #: farther back.
    wall_clip_hu: float = 150.0
    wall_back_bias: float = 0.5
    #: Smallest wall contrast (HU) for a row to be on the spine.
    wall_min_hu: float = 35.0
    #: The track may lose the pattern for at most this long (mm) and still be one spine.
    track_gap_mm: float = 12.0
    #: Disc profile: right-left half-width and front-back range in front of the wall.
    column_half_r_mm: float = 8.0
    column_a_mm: tuple[float, float] = (-24.0, -4.0)
    #: A disc: dip this far (mm) on either side to the endplates' peak.
    disc_window_mm: float = 8.0
    #: Smallest dip (HU) and fraction of the column's bone contrast for a disc.
    disc_min_hu: float = 20.0
    disc_min_fraction: float = 0.18
    #: Plausible distance (mm) between neighbouring discs (one vertebral level), and the
    #: largest ratio between two neighbouring levels' heights.
    level_mm: tuple[float, float] = (14.0, 55.0)
    level_ratio: float = 1.5
    #: Bone threshold (HU) of the block maximum, for ribs.
    bone_hu: float = 200.0
    #: ... and for the iliac bones, which confirm a sacrum: higher, as kidneys with contrast
    #: lie beside the lumbar bodies and would pass for sacral alae joined to iliac wings.
    pelvis_hu: float = 300.0
    #: Ribs: medial end within this distance (mm) of the midline, reach at least this far.
    rib_medial_mm: float = 42.0
    rib_reach_mm: float = 62.0
    #: Ribs: largest mean cross-section (mm^2 of axial slice per slice): ribs show 70-150
    #: on real and synthetic CT, a kidney or vessel with contrast 500 and more.
    rib_max_section_mm2: float = 250.0
    #: Ribs: the medial end lies between these distances (mm) behind the body's wall.
    rib_behind_wall_mm: tuple[float, float] = (-15.0, 35.0)
    #: Sacrum: bone in front of the canal wider than this (mm) from the midline on both
    #: sides, for at least ``sacrum_rows_mm``.
    sacrum_half_width_mm: float = 38.0
    sacrum_rows_mm: float = 16.0
    #: ... and joined to the iliac bones, this far (mm) from the midline on both sides.
    ilium_reach_mm: float = 70.0
    #: The field of view must reach this far (mm) sideways for ribs to be judged.
    rib_fov_mm: float = 70.0


@dataclass
class CountedVertebra:
    """One vertebral body found on the track.

    Attributes:
        top_s_mm, bottom_s_mm: S (mm) of the disc centres above and below it.
        rib_bearing: a rib meets it on the right or left (False also when the
            field of view is too narrow to tell: see ``SecondReading.anchors``).
        from_ribs: its name counted down from the last rib-bearing vertebra (that one
            is "T12"), or None when that count is not possible.
        from_sacrum: its name counted up from the sacrum ("L5" is the body on it).
    """

    top_s_mm: float
    bottom_s_mm: float
    rib_bearing: bool = False
    from_ribs: Optional[str] = None
    from_sacrum: Optional[str] = None

    @property
    def s_mm(self) -> float:
        return 0.5 * (self.top_s_mm + self.bottom_s_mm)


@dataclass
class SecondReading:
    """What the second reader counted.

    Attributes:
        status: "counted" (at least one anchor gives L3) or "cannot_count".
        message: plain words for the user (what was counted from what, or why not).
        vertebrae: bodies found, superior -> inferior.
        anchors: which anchors were seen: "last rib", "sacrum", "iliac crests".
        l3_from_ribs_s_mm, l3_from_sacrum_s_mm: [bottom, top] S (mm) of L3 by each count,
            None when that count is not possible.
        rib_bearing_seen: rib-bearing vertebrae in view (None when ribs cannot be judged).
        lumbar_between: rib-free vertebrae between the last rib-bearing vertebra and the
            sacrum (None unless both anchors are seen and joined by discs).
        last_rib_s_mm, sacrum_top_s_mm, iliac_crest_s_mm: where the anchors are (S, mm).
        variants: plain-words variant findings (T13, L6, 4 or 6 lumbar, transitional).
        verdict: where the count agrees or disagrees with the network's L3, in words.
    """

    status: str
    message: str
    vertebrae: list[CountedVertebra] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    l3_from_ribs_s_mm: Optional[list[float]] = None
    l3_from_sacrum_s_mm: Optional[list[float]] = None
    rib_bearing_seen: Optional[int] = None
    lumbar_between: Optional[int] = None
    last_rib_s_mm: Optional[float] = None
    sacrum_top_s_mm: Optional[float] = None
    iliac_crest_s_mm: Optional[float] = None
    variants: list[str] = field(default_factory=list)
    #: The reading against the network's L3, in words (set by :func:`second_read`).
    verdict: str = ""

    @property
    def counted(self) -> bool:
        return self.status == COUNTED

    def l3_ranges(self) -> dict[str, list[float]]:
        """Anchor ("ribs", "sacrum") -> [bottom, top] S (mm) of L3 by that count."""
        out = {}
        if self.l3_from_ribs_s_mm is not None:
            out["ribs"] = self.l3_from_ribs_s_mm
        if self.l3_from_sacrum_s_mm is not None:
            out["sacrum"] = self.l3_from_sacrum_s_mm
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for v, d in zip(self.vertebrae, out["vertebrae"]):
            d["s_mm"] = v.s_mm
        return out
