"""Tissue definitions (HU ranges) and published sarcopenia cut-offs: the one source of truth.

A tissue is a compartment times an HU range (inclusive, HU): fat inside the muscle
compartment is intermuscular fat (IMAT), never muscle; fat outside the muscle wall is
subcutaneous (SAT); fat inside the wall's cavity is visceral (VAT). Every result names
the preset it was measured with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: The four tissues, in the order of every table, column and segmentation.
TISSUES = ("muscle", "imat", "vat", "sat")
#: Words for each tissue (tables, segment names).
TISSUE_NAMES = {
    "muscle": "Skeletal muscle",
    "imat": "Intermuscular fat (IMAT)",
    "vat": "Visceral fat (VAT)",
    "sat": "Subcutaneous fat (SAT)",
}
#: The usual display colours (RGB 0..1): muscle red, IMAT green, VAT yellow, SAT cyan
#: (the colours Slice-O-Matic and most Alberta-protocol papers use).
TISSUE_COLOURS = {
    "muscle": (0.86, 0.16, 0.16),
    "imat": (0.18, 0.74, 0.22),
    "vat": (0.96, 0.84, 0.15),
    "sat": (0.16, 0.74, 0.86),
}


@dataclass(frozen=True)
class Preset:
    """HU ranges (inclusive) of the four tissues and the default slab half-thickness.

    Attributes:
        name: short key (``--preset``).
        title: what it is, in words, for tables and reports.
        muscle_hu, imat_hu, vat_hu, sat_hu: (low, high) HU.
        slab_half_mm: the slab measured around the slice, +/- this many mm along S.
    """

    name: str
    title: str
    muscle_hu: tuple[float, float] = (-29.0, 150.0)
    imat_hu: tuple[float, float] = (-190.0, -30.0)
    vat_hu: tuple[float, float] = (-150.0, -50.0)
    sat_hu: tuple[float, float] = (-190.0, -30.0)
    slab_half_mm: float = 5.0

    def hu_range(self, tissue: str) -> tuple[float, float]:
        """(low, high) HU of one of ``TISSUES``."""
        return getattr(self, f"{tissue}_hu")


#: Alberta protocol (Mitsiopoulos 1998; Mourtzakis 2008): VAT -150..-50 HU.
ALBERTA = Preset("alberta", "Alberta protocol (muscle -29..150, IMAT/SAT -190..-30, "
                            "VAT -150..-50 HU)")
#: The second convention many studies use: the same fat range for VAT as for SAT.
VAT_WIDE = Preset("vat_wide", "Alberta with VAT -190..-30 HU (muscle -29..150, "
                              "IMAT/SAT/VAT -190..-30 HU)", vat_hu=(-190.0, -30.0))
PRESETS = {p.name: p for p in (ALBERTA, VAT_WIDE)}
DEFAULT_PRESET = ALBERTA.name


def get_preset(name: Optional[str]) -> Preset:
    """The preset called ``name`` (default Alberta); a clear error for unknown names."""
    name = name or DEFAULT_PRESET
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown body-composition preset {name!r}; choose one of "
                         f"{', '.join(PRESETS)}.") from None


# ----------------------------------------------------------------------------- cut-offs


@dataclass(frozen=True)
class CutoffRule:
    """A published cut-off, named, with what it needs."""

    name: str
    citation: str


PRADO_2008 = CutoffRule(
    "Prado 2008", "Prado et al., Lancet Oncol 2008;9:629-35: sarcopenic obesity, SMI < 52.4 "
                  "cm^2/m^2 (men) or < 38.5 cm^2/m^2 (women)")
MARTIN_2013 = CutoffRule(
    "Martin 2013", "Martin et al., J Clin Oncol 2013;31:1539-47: low muscle, SMI < 43 (men, BMI "
                   "< 25), < 53 (men, BMI >= 25), < 41 cm^2/m^2 (women); low muscle density, "
                   "< 41 HU (BMI < 25) or < 33 HU (BMI >= 25)")
PRADO_SMI = {"M": 52.4, "F": 38.5}
MARTIN_SMI = {("M", False): 43.0, ("M", True): 53.0, ("F", False): 41.0, ("F", True): 41.0}
MARTIN_DENSITY_HU = {False: 41.0, True: 33.0}  # keyed by BMI >= 25
