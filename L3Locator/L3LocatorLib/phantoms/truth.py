"""What a synthetic CT contains: every vertebra's position and the L3 landmark (RAS mm).

Written beside a phantom as a JSON sidecar (``sidecar_path``) and read back with
``load_truth``; label-map CTs produce the same record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..result import jsonable


@dataclass
class VertebraTruth:
    """One vertebra's position (RAS mm).

    Attributes:
        name: counted up from the sacrum ("L5" = first above the sacrum), or "S1", "C7".
        centre_ras: body centre, shape (3,).
        landmark_s_mm: S of the paper-style landmark (middle of the pedicles, level with
            the top of the transverse processes).
        top_s_mm, bottom_s_mm: S of the superior and inferior end plates (body centre line).
        in_fov: the body centre lies inside the volume.
        kind: morphology, "lumbar" (no ribs), "thoracic", "cervical" or "sacral".
    """

    name: str
    centre_ras: np.ndarray
    landmark_s_mm: float
    top_s_mm: float
    bottom_s_mm: float
    in_fov: bool
    kind: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name, "centre_ras": [float(v) for v in self.centre_ras],
            "landmark_s_mm": float(self.landmark_s_mm), "top_s_mm": float(self.top_s_mm),
            "bottom_s_mm": float(self.bottom_s_mm), "in_fov": bool(self.in_fov),
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, d: dict) -> VertebraTruth:
        return cls(d["name"], np.asarray(d["centre_ras"], dtype=float),
                   float(d["landmark_s_mm"]), float(d["top_s_mm"]), float(d["bottom_s_mm"]),
                   bool(d["in_fov"]), d.get("kind", ""))


@dataclass
class Truth:
    """What a phantom (or a labelled CT) contains; all positions RAS mm.

    ``l3_landmark_ras`` is the paper's landmark level (middle of the L3 pedicles, top
    of its transverse processes) placed on the body's centre line, so it lies in bone;
    it and the other ``l3_*`` fields are None when L3 is outside the field of view
    (the vertebra list still has L3's position). ``lstv`` is "none",
    "sacralised_L5" or "lumbarised_S1".
    """

    l3_in_fov: bool
    l3_landmark_ras: np.ndarray | None
    l3_centre_ras: np.ndarray | None
    l3_top_s_mm: float | None
    l3_bottom_s_mm: float | None
    vertebrae: list[VertebraTruth]
    n_lumbar: int
    n_rib_pairs: int
    lstv: str
    preset: str
    seed: int
    extras: dict = field(default_factory=dict)

    def vertebra(self, name: str) -> VertebraTruth | None:
        """The vertebra called ``name`` (e.g. "L3"), or None."""
        for v in self.vertebrae:
            if v.name == name:
                return v
        return None

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        def arr(a):
            return None if a is None else [float(v) for v in a]

        return {
            "l3_in_fov": bool(self.l3_in_fov), "l3_landmark_ras": arr(self.l3_landmark_ras),
            "l3_centre_ras": arr(self.l3_centre_ras),
            "l3_top_s_mm": None if self.l3_top_s_mm is None else float(self.l3_top_s_mm),
            "l3_bottom_s_mm": None if self.l3_bottom_s_mm is None else float(self.l3_bottom_s_mm),
            "vertebrae": [v.to_dict() for v in self.vertebrae],
            "n_lumbar": int(self.n_lumbar), "n_rib_pairs": int(self.n_rib_pairs),
            "lstv": self.lstv, "preset": self.preset, "seed": int(self.seed),
            "extras": jsonable(self.extras),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Truth:
        def arr(a):
            return None if a is None else np.asarray(a, dtype=float)

        return cls(
            bool(d["l3_in_fov"]), arr(d.get("l3_landmark_ras")), arr(d.get("l3_centre_ras")),
            d.get("l3_top_s_mm"), d.get("l3_bottom_s_mm"),
            [VertebraTruth.from_dict(v) for v in d["vertebrae"]], int(d["n_lumbar"]),
            int(d["n_rib_pairs"]), d.get("lstv", "none"), d.get("preset", ""),
            int(d.get("seed", 0)), dict(d.get("extras", {})),
        )


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``OUT.nii.gz`` -> ``OUT.json`` (also .nii, .nrrd, .nhdr, .mha, .mhd)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


def load_truth(path: str | os.PathLike[str]) -> Truth:
    """Read a truth JSON sidecar."""
    return Truth.from_dict(json.loads(Path(path).read_text()))
