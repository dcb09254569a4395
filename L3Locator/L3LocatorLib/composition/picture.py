"""QA picture of a body-composition measurement: the slice (soft-tissue window) with the
four tissues coloured, the muscle wall's outer (SAT boundary) and inner contours, the
areas and the flags. Radiological display: anterior up, patient right on the left.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Union

import numpy as np

from .measure import CompositionResult
from .presets import TISSUE_COLOURS, TISSUES

#: Soft-tissue window (HU) of the grey image.
WINDOW_HU = (-160.0, 240.0)
#: Tissue colour opacity over the grey image.
OPACITY = 0.45
PANEL_MM_PER_PX = 0.8  #: the slice is drawn at this many mm per picture pixel
TEXT_WIDTH = 330


def composition_picture(result: CompositionResult, title: str = "") -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``: the slice with tissues and wall contours, and the numbers."""
    from PIL import Image, ImageDraw

    from ..qa import _font

    slab = result.slab_geometry
    comp = result.compartments
    if slab is None or comp is None:
        raise ValueError("this result carries no slice to draw")
    image = slab.image
    low, high = WINDOW_HU
    grey = np.clip((image - low) / (high - low), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for tissue in TISSUES:
        mask = result.masks[tissue]
        colour = np.asarray(TISSUE_COLOURS[tissue])
        rgb[mask] = (1 - OPACITY) * rgb[mask] + OPACITY * colour
    # [r, a] -> display rows = a (anterior up), columns = r (patient right on the left)
    picture = (np.transpose(rgb, (1, 0, 2)) * 255).astype(np.uint8)
    sp_r, sp_a = slab.spacing_ra
    width = max(1, int(round(image.shape[0] * sp_r / PANEL_MM_PER_PX)))
    height = max(1, int(round(image.shape[1] * sp_a / PANEL_MM_PER_PX)))
    panel = Image.fromarray(picture).resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(panel)
    fx, fy = width / image.shape[0], height / image.shape[1]
    for polygon, colour in ((comp.wall_outer, (255, 255, 255)), (comp.wall_inner, (255, 120, 0))):
        if len(polygon):
            points = [(float(r) * fx, float(a) * fy) for r, a in polygon]
            draw.line(points + points[:1], fill=colour, width=1)
    canvas = Image.new("RGB", (width + TEXT_WIDTH, max(height, 420)), (0, 0, 0))
    canvas.paste(panel, (0, 0))
    text = ImageDraw.Draw(canvas)
    font, small = _font(15), _font(12)
    x, y = width + 10, 8
    text.text((x, y), title or "Body composition", fill=(255, 255, 255), font=font)
    y += 22
    text.text((x, y), f"S = {result.s_mm:.1f} mm, preset {result.preset}", fill=(200, 200, 200),
              font=small)
    y += 20
    for tissue in TISSUES:
        one = result.slice[tissue]
        colour = tuple(int(255 * c) for c in TISSUE_COLOURS[tissue])
        hu = "" if one.mean_hu is None else f", {one.mean_hu:.0f} HU"
        text.text((x, y), f"{tissue.upper():6s} {one.area_cm2:7.1f} cm2{hu}", fill=colour,
                  font=small)
        y += 17
    if result.smi_cm2_m2 is not None:
        text.text((x, y), f"SMI {result.smi_cm2_m2:.1f} cm2/m2 (height {result.height_m} m, "
                          f"{result.height_source})", fill=(255, 255, 255), font=small)
        y += 17
    text.text((x, y), "white: SAT boundary, orange: wall inner", fill=(160, 160, 160),
              font=small)
    y += 22
    for flag in result.flags:
        for line in textwrap.wrap(flag, 50):
            text.text((x, y), line, fill=(255, 190, 40), font=small)
            y += 15
        y += 3
    return np.asarray(canvas)


def save_composition_picture(result: CompositionResult, path: Union[str, os.PathLike[str]],
                             title: str = "") -> Path:
    """Write the QA picture as PNG; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(composition_picture(result, title)).save(path)
    return path
