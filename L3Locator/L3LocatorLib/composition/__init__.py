"""Body composition at L3: skeletal muscle, IMAT, VAT and SAT on one axial slice and the
slab around it (areas cm^2, HU mean and SD), SMI and named cut-offs, flags in words.

Pure Python (numpy, scipy); no Slicer import. The method is described in ``METHOD.md``.

- ``presets``: HU ranges (Alberta and the wide-VAT preset) and cut-offs, one source.
- ``axial``: axial slices in patient axes (real in-plane spacing).
- ``compartments``: body, SAT, muscle wall, psoas/paraspinal and visceral compartments.
- ``measure``: ``measure_composition`` / ``measure_at_l3`` / ``measure_at_slice``.
- ``flags``, ``cutoffs``: plain-words flags; SMI and Prado 2008 / Martin 2013.
- ``columns``, ``cohort``: results-row columns and the CLI hook; ``picture``: QA picture;
  ``slicer_bridge``: the array work behind the Slicer step.
"""

from .cutoffs import Patient
from .measure import (
    CompositionResult,
    TissueStats,
    measure_at_l3,
    measure_at_slice,
    measure_composition,
    tissue_masks,
)
from .presets import ALBERTA, PRESETS, TISSUES, VAT_WIDE, Preset, get_preset

__all__ = [
    "ALBERTA", "PRESETS", "TISSUES", "VAT_WIDE", "CompositionResult", "Patient", "Preset",
    "TissueStats", "get_preset", "measure_at_l3", "measure_at_slice", "measure_composition",
    "tissue_masks",
]
