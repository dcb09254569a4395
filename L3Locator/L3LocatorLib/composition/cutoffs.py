"""SMI and the published cut-offs (``presets.PRADO_2008``, ``presets.MARTIN_2013``).

A cut-off is only applied when what it needs is known: sex for Prado 2008; sex and BMI
for Martin 2013 (weight from DICOM PatientWeight or the user). Unknown -> None, never a
guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .presets import (
    MARTIN_2013,
    MARTIN_DENSITY_HU,
    MARTIN_SMI,
    PRADO_2008,
    PRADO_SMI,
)

#: Heights outside this range (m) are refused as typing or unit errors.
HEIGHT_RANGE_M = (0.5, 2.6)


@dataclass(frozen=True)
class Patient:
    """What the cut-offs need. ``height_source``: "DICOM PatientSize" or "user"."""

    height_m: Optional[float] = None
    height_source: str = ""
    sex: Optional[str] = None  #: "M" or "F"
    weight_kg: Optional[float] = None

    @property
    def bmi(self) -> Optional[float]:
        if self.height_m and self.weight_kg:
            return self.weight_kg / self.height_m ** 2
        return None


def checked_height(height_m: Optional[float]) -> Optional[float]:
    """The height in metres, or a clear error when it cannot be one (e.g. given in cm)."""
    if height_m is None:
        return None
    height = float(height_m)
    if not HEIGHT_RANGE_M[0] <= height <= HEIGHT_RANGE_M[1]:
        raise ValueError(f"A height of {height:g} m is not plausible: give the height in "
                         "metres (e.g. 1.72).")
    return height


def smi(muscle_cm2: float, height_m: Optional[float]) -> Optional[float]:
    """Skeletal muscle index, cm^2/m^2 (None without a height)."""
    if not height_m:
        return None
    return muscle_cm2 / height_m ** 2


def cutoff_flags(smi_value: Optional[float], muscle_hu: Optional[float], patient: Patient
                 ) -> tuple[dict[str, Optional[bool]], dict[str, str]]:
    """Named flags (True = below the cut-off) and the rule of each, in words."""
    flags: dict[str, Optional[bool]] = {}
    rules: dict[str, str] = {}
    sex = (patient.sex or "").upper()[:1] or None
    bmi = patient.bmi
    flags["prado2008_low_smi"] = None
    rules["prado2008_low_smi"] = PRADO_2008.citation
    if smi_value is not None and sex in PRADO_SMI:
        flags["prado2008_low_smi"] = smi_value < PRADO_SMI[sex]
    flags["martin2013_low_smi"] = None
    flags["martin2013_low_density"] = None
    rules["martin2013_low_smi"] = rules["martin2013_low_density"] = MARTIN_2013.citation
    if bmi is not None:
        heavy = bmi >= 25.0
        if smi_value is not None and sex in ("M", "F"):
            flags["martin2013_low_smi"] = smi_value < MARTIN_SMI[(sex, heavy)]
        if muscle_hu is not None:
            flags["martin2013_low_density"] = muscle_hu < MARTIN_DENSITY_HU[heavy]
    return flags, rules
