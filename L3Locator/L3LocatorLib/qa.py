"""The QA picture: both MIPs with the predicted L3 line, the heat-map profile and the answer.

Built for a radiologist's glance: the frontal and sagittal MIPs side by side
(patient right on the image's left, anterior on the left of the sagittal), a
green line at L3 with the slice number, short ticks at the other predicted
levels (T12..S1) so the count can be checked, and the L3 probability per row.
"""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from .outputs import QA_PNG, not_written, output_stem, write_atomically
from .projection import window
from .result import L3Result

log = logging.getLogger(__name__)

PANEL_HEIGHT = 640  #: target height of the MIP panels (px)
MAX_SCALE = 2.5  #: short scans are enlarged at most this much
PROFILE_WIDTH = 150
HEADER_HEIGHT = 74
GREEN = (60, 220, 90)
AMBER = (255, 190, 40)
GREY = (150, 150, 150)
RED = (240, 80, 70)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has a single fixed-size default font
        return ImageFont.load_default()


def qa_picture(result: L3Result, title: str = "") -> np.ndarray:
    """Render the QA picture of a result that carries evidence; uint8 RGB ``[H, W, 3]``."""
    from PIL import Image, ImageDraw

    evidence = result.evidence
    if evidence is None:
        raise ValueError("this result carries no evidence (projections) to draw")
    projections = evidence.projections
    config = projections.config
    n_rows = projections.geometry.n_rows
    scale = min(PANEL_HEIGHT / n_rows, MAX_SCALE)
    height = max(1, int(round(n_rows * scale)))
    panels = []
    for image in (projections.frontal_hu, projections.sagittal_hu):
        grey = (window(image, config) * 255).astype(np.uint8)
        pil = Image.fromarray(grey).resize(
            (max(1, int(round(image.shape[1] * scale))), height), Image.BILINEAR
        )
        panels.append(pil.convert("RGB"))
    gap = 6
    mip_width = panels[0].width + gap + panels[1].width
    canvas = Image.new(
        "RGB", (mip_width + gap + PROFILE_WIDTH, HEADER_HEIGHT + height), (0, 0, 0)
    )
    canvas.paste(panels[0], (0, HEADER_HEIGHT))
    canvas.paste(panels[1], (panels[0].width + gap, HEADER_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    small, large = _font(12), _font(15)

    def y_of(row: float) -> float:
        return HEADER_HEIGHT + (row + 0.5) * scale

    # Other levels: short ticks on the left edge of each MIP, labelled on the frontal.
    for name, row in evidence.level_rows.items():
        if name == "L3":
            continue
        y = y_of(row)
        for x0 in (0, panels[0].width + gap):
            draw.line([(x0, y), (x0 + 14, y)], fill=AMBER, width=2)
        draw.text((17, y - 7), name, fill=AMBER, font=small)

    colour = GREEN if result.found else GREY
    if result.found and evidence.row is not None:
        y = y_of(evidence.row)
        draw.line([(0, y), (mip_width, y)], fill=GREEN, width=2)
        draw.text((panels[0].width - 150, y - 17), f"L3  slice {result.slice_index}",
                  fill=GREEN, font=large)
    elif result.candidate_ijk is not None and result.candidate_s_mm is not None:
        # A near miss: dashed, so it never reads as an answer.
        y = y_of(float(projections.geometry.s_to_row(result.candidate_s_mm)))
        for x in range(0, mip_width, 12):
            draw.line([(x, y), (x + 6, y)], fill=AMBER, width=2)
        axis = result.slice_axis if result.slice_axis is not None else 2
        draw.text((panels[0].width - 190, y - 17),
                  f"L3?  slice {result.candidate_ijk[axis]} (check)", fill=AMBER, font=large)

    # Profile: L3 probability per row (0 at the left, 1 at the right) and the threshold.
    x0 = mip_width + gap
    draw.rectangle([x0, HEADER_HEIGHT, x0 + PROFILE_WIDTH - 1, HEADER_HEIGHT + height - 1],
                   outline=(70, 70, 70))
    profile = np.asarray(evidence.profile, dtype=float)
    if profile.size:
        ys = y_of(np.arange(profile.size))
        xs = x0 + 4 + np.clip(profile, 0, 1) * (PROFILE_WIDTH - 8)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=2)
    tx = x0 + 4 + evidence.threshold * (PROFILE_WIDTH - 8)
    for y in range(HEADER_HEIGHT, HEADER_HEIGHT + height, 8):
        draw.line([(tx, y), (tx, y + 3)], fill=RED)
    draw.text((x0 + 4, HEADER_HEIGHT + 2), "P(L3) per row", fill=GREY, font=small)

    # Header: what, where, how sure.
    if result.found:
        headline = (
            f"L3: slice {result.slice_index}   S = {result.s_mm:.1f} mm   "
            f"confidence {result.confidence:.2f}"
        )
    else:
        headline = f"L3 not found (confidence {result.confidence:.2f})"
    draw.text((6, 4), title or "", fill=(230, 230, 230), font=large)
    draw.text((6, 22), headline[:120], fill=colour if result.found else AMBER, font=large)
    if result.review:
        footer = "Check: " + " ".join(result.review)
    elif not result.found and result.message:
        footer = result.message
    else:
        footer = f"model {result.model_name} {result.model_version}"
    warn = bool(result.review) or not result.found
    chars = max(40, canvas.width // 7)
    for n, line in enumerate(textwrap.wrap(footer, chars)[:2]):
        draw.text((6, 41 + 15 * n), line, fill=AMBER if warn else GREY, font=small)
    return np.asarray(canvas)


def save_qa_png(result: L3Result, path: Union[str, os.PathLike[str]], title: str = "") -> Path:
    """Write the QA picture as a PNG and return its path. Written whole or not at all: when
    the disk is full or the folder cannot be written, ``OSError`` is raised and no file (not
    even an empty one) is left under ``path``."""
    from PIL import Image

    path = Path(path)
    picture = Image.fromarray(qa_picture(result, title))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda temporary: picture.save(temporary, format="PNG"))


def qa_file_name(stem: str, key: Sequence[str]) -> str:
    """The QA picture's file name for one scan: its name plus a short hash of ``key`` (the
    scan's resolved path and series; ``outputs.output_stem``), so that ``p1/CT.nii.gz`` and
    ``p2/CT.nii.gz`` get two pictures, and the same scan always gets the same one."""
    return output_stem(stem, key) + QA_PNG


def write_scan_qa(result: L3Result, qa_dir: Union[str, os.PathLike[str]], stem: str,
                  key: Sequence[str], title: str = "") -> tuple[str, str]:
    """Write one batch scan's QA picture into ``qa_dir`` (named by ``qa_file_name``):
    ``(its path, "")``, or ``("", why it is missing)`` for the row when it cannot be
    written (the batch goes on)."""
    try:
        return str(save_qa_png(result, Path(qa_dir) / qa_file_name(stem, key), title)), ""
    except OSError as error:
        log.warning("Could not write the QA picture of %s: %s", title or stem, error)
        return "", not_written("QA picture", qa_dir, error, "--qa-dir")
