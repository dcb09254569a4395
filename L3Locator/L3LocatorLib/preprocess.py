"""The preprocessing settings (pixel size, HU window, slab, spine thresholds) and the HU
window: one source of truth, recorded in every model's metadata, shared by training
and inference."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import refuse_other_version, refuse_unknown_fields


@dataclass(frozen=True)
class PreprocessConfig:
    """Every constant of the preprocessing; recorded in each model's metadata.

    Training and inference build their network inputs from the same instance,
    so a model always sees what it was trained on.
    """

    pixel_mm: float = 2.0  #: working pixel size of both projections (mm)
    hu_min: float = 100.0  #: HU window lower bound (maps to 0)
    hu_max: float = 1500.0  #: HU window upper bound (maps to 1)
    width_mm: float = 512.0  #: width of both projections after centring (mm)
    slab_mm: float = 40.0  #: thickness (right-left) of the restricted sagittal slab (mm)
    sagittal_spine_fraction: float = 0.6  #: spine's place across the sagittal width (0 = anterior)
    bone_hu: float = 200.0  #: threshold for bone when locating the spine (HU)
    body_hu: float = -400.0  #: threshold for the body when locating the spine (HU)
    oblique_tolerance: float = 1e-3  #: largest off-axis direction cosine treated as aligned
    version: int = 1  #: bump when the meaning of any field changes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Build from a model's metadata; refuses fields or versions it does not know."""
        refuse_unknown_fields(cls, data, "The model's preprocessing")
        config = cls(**data)
        refuse_other_version(config.version, cls.version, "The model's preprocessing")
        return config

    @property
    def width_px(self) -> int:
        return int(round(self.width_mm / self.pixel_mm))


def window(image_hu: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Clip HU to ``[hu_min, hu_max]`` and scale to float32 0..1 (a fixed window, the same
    for every scan, unlike the seed's per-image min-max)."""
    scale = 1.0 / (config.hu_max - config.hu_min)
    out = (np.asarray(image_hu, dtype=np.float32) - config.hu_min) * scale
    return np.clip(out, 0.0, 1.0, out=out)
