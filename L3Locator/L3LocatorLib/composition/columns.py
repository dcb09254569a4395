"""The results-row columns of a body-composition measurement (``--composition``)."""

from __future__ import annotations

from typing import Any, Optional

from .presets import TISSUES

_PER_TISSUE = ("area_cm2", "mean_hu", "sd_hu", "slab_area_cm2", "slab_mean_hu", "slab_sd_hu",
               "slab_area_sd_cm2", "slab_area_spread")
#: Columns added to every row, in order (empty on rows without a measurement).
COLUMNS = (
    ("comp_preset", "comp_s_mm", "comp_slab_mm")
    + tuple(f"{t}_{what}" for t in TISSUES for what in _PER_TISSUE)
    + ("height_m", "height_source", "smi_cm2_m2", "prado2008_low_smi", "martin2013_low_smi",
       "martin2013_low_density", "aorta_hu", "comp_flags", "comp_masks", "comp_qa_png",
       "comp_error")
)


def _round(value: Optional[float], digits: int = 2) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def row_of(result: Any) -> dict[str, Any]:
    """The columns of a ``CompositionResult`` (numbers rounded for a readable file)."""
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row["comp_preset"] = result.preset
    row["comp_s_mm"] = _round(result.s_mm)
    row["comp_slab_mm"] = (f"{min(result.slab_s_mm):.1f}..{max(result.slab_s_mm):.1f}"
                           if result.slab_s_mm else None)
    for t in TISSUES:
        one, slab = result.slice[t], result.slab[t]
        row[f"{t}_area_cm2"] = _round(one.area_cm2)
        row[f"{t}_mean_hu"] = _round(one.mean_hu, 1)
        row[f"{t}_sd_hu"] = _round(one.sd_hu, 1)
        row[f"{t}_slab_area_cm2"] = _round(slab.area_cm2)
        row[f"{t}_slab_mean_hu"] = _round(slab.mean_hu, 1)
        row[f"{t}_slab_sd_hu"] = _round(slab.sd_hu, 1)
        row[f"{t}_slab_area_sd_cm2"] = _round(result.slab_area_sd_cm2[t])
        row[f"{t}_slab_area_spread"] = _round(result.slab_area_spread[t], 3)
    row["height_m"] = result.height_m
    row["height_source"] = result.height_source or None
    row["smi_cm2_m2"] = _round(result.smi_cm2_m2)
    for name in ("prado2008_low_smi", "martin2013_low_smi", "martin2013_low_density"):
        row[name] = result.cutoffs.get(name)
    row["aorta_hu"] = _round(result.aorta_hu, 0)
    row["comp_flags"] = " ".join(result.flags) or None
    return row
