"""Make the Extensions Index screenshots from a real run (the catalog shows these).

    python Screenshots/make_screenshots.py

L3Locator-1.png: the QA picture of ``l3locator demo`` (built-in abdomen-pelvis phantom,
seed 3, shipped model): both projections with the levels and the L3 line, as the panel
shows it. L3Locator-2.png: what the red slice view shows after Locate: the reported axial
slice (voxel centre, soft-tissue window -160..240 HU, the body-composition window) with
the L3 point. Both are computed, not drawn by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from L3LocatorLib.locate import locate
from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.qa import _font, save_qa_png

HERE = Path(__file__).resolve().parent
SEED = 3  # the demo's phantom
WINDOW_HU = (-160.0, 240.0)


def red_view(volume, result) -> Image.Image:
    """The reported axial slice (k = slice_index) as Slicer's red view would show it
    (patient right on the image's left, anterior up), with the point and a caption."""
    k = int(result.slice_index)
    plane = np.asarray(volume.array[k], dtype=np.float32)  # [j, i]
    low, high = WINDOW_HU
    grey = np.clip((plane - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)
    # Slicer's axial view: patient right on the screen's left, anterior at the top. The
    # phantom is axial, so each voxel axis runs along one patient axis (read its sign).
    m = np.asarray(volume.ijk_to_ras)[:3, :3]
    flip_columns = m[0, 0] > 0  # i runs towards patient right: right must end up left
    flip_rows = m[1, 1] > 0  # j runs anterior: anterior must end up at the top
    if flip_columns:
        grey = grey[:, ::-1]
    if flip_rows:
        grey = grey[::-1, :]
    image = Image.fromarray(grey).convert("RGB")
    height, width = grey.shape
    spacing = np.linalg.norm(m, axis=0)
    scale = 640 / (max(width * spacing[0], height * spacing[1]))  # pixels per mm
    image = image.resize((round(width * spacing[0] * scale), round(height * spacing[1] * scale)))
    i, j = float(result.l3_ijk[0]), float(result.l3_ijk[1])
    x = ((width - 1 - i) if flip_columns else i) + 0.5
    y = ((height - 1 - j) if flip_rows else j) + 0.5
    x, y = x * image.width / width, y * image.height / height
    canvas = Image.new("RGB", (image.width, image.height + 56), "black")
    canvas.paste(image, (0, 56))
    draw = ImageDraw.Draw(canvas)
    label = "L3?" if result.needs_review else "L3"
    draw.ellipse((x - 6, y + 56 - 6, x + 6, y + 56 + 6), outline=(255, 80, 80), width=3)
    draw.text((x + 10, y + 56 - 10), label, fill=(255, 80, 80), font=_font(18))
    draw.text((8, 6), f"Red view after Locate L3: slice {k} (S = {result.s_mm:.1f} mm)",
              fill=(120, 220, 120), font=_font(18))
    draw.text((8, 30), f"confidence {result.confidence:.2f}; window {low:.0f} to {high:.0f} HU",
              fill=(200, 200, 200), font=_font(14))
    return canvas


def main() -> None:
    volume, _ = make_phantom(SEED, preset="abdomen_pelvis")
    result = locate(volume)
    save_qa_png(result, HERE / "L3Locator-1.png", title="built-in phantom")
    red_view(volume, result).save(HERE / "L3Locator-2.png")
    print(f"slice {result.slice_index}, confidence {result.confidence:.2f}")


if __name__ == "__main__":
    main()
