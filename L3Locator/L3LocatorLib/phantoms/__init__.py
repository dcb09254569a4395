"""Synthetic CTs with known vertebra positions, for training, tests and the demo.

Not part of the locating pipeline: nothing outside this package imports it
except the demo and phantom commands, the tests and ``training``.

- ``make_phantom(seed, preset, **options) -> (Volume, Truth)``: procedural phantoms
  (``generator``; anatomy, skeleton, soft tissue and rendering in their own modules).
- ``labelmap_phantom(labels, class_map, seed, **options) -> (Volume, Truth)``: a CT
  synthesised from a real label map (``labelmap_ct``).
- ``Truth`` / ``VertebraTruth``: what a synthetic CT contains (``truth``).
"""

from .generator import GENERATOR_VERSION, PRESETS, PhantomOptions, make_phantom, write_phantom
from .labelmap_ct import labelmap_phantom
from .truth import Truth, VertebraTruth, load_truth, sidecar_path

__all__ = [
    "GENERATOR_VERSION", "PRESETS", "PhantomOptions", "Truth", "VertebraTruth",
    "labelmap_phantom", "load_truth", "make_phantom", "sidecar_path", "write_phantom",
]
