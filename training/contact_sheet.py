"""Contact sheet of synthetic phantoms beside real CT: frontal and sagittal MIPs, L3 marked.

Usage (from the repository root)::

    python -m training.contact_sheet --out sheet.png [--n 16] [--seed 0] [--spacing 0.8 0.8 2.5]

Each panel shows the network's two inputs (``L3LocatorLib.projection.project``:
frontal MIP and restricted sagittal MIP at 2 mm per pixel, HU window 100..1500)
of one phantom, with the L3 landmark row in red, the other levels T12..S1 as
short green ticks, and a caption (preset, seed, variants, "no L3" when L3 is
outside the field of view). The first panels are the real scans in
``../shared/data`` when present: ``real_skeleton_ct328.nrrd`` (bone only, 0 HU
background; L3 centroid from ``truth.json``), the real contrast chest CT
``real_chest_ct_lidc0001.nii.gz`` (soft tissue, arms, no table in the file), a CT
synthesised from ``real_labelmap_ct327.nrrd`` by ``labelmap_to_ct``, and CTs
synthesised from the VerSe vertebra-only masks (completed with synthetic ribs,
pelvis and soft tissue by ``labelmap_phantom``). ``--lidc-synthetic`` adds the
chest CT's own label map rendered by ``labelmap_to_ct`` beside it (as is, and with
thin vertebral walls and osteoporotic bone), to compare
the renderer with the real image of the same patient (a visual check only: that
map is a validation case, never training data).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("training.contact_sheet")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
if str(REPO / "L3Locator") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "L3Locator"))

#: Presets shown, in order (two of each, then "random" for the rest).
SHEET_PRESETS = ("abdomen_pelvis", "chest_abdomen_pelvis", "abdomen", "cut_through_l3",
                 "lumbar_only", "chest", "whole_body")
PANEL_MAX_ROWS = 420
LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")


def _panel(volume, marks: dict[str, float], caption: str, config) -> np.ndarray:
    """RGB uint8 panel: frontal | sagittal MIPs with level marks (S mm) and a caption."""
    from PIL import Image, ImageDraw

    from L3LocatorLib.projection import project, window

    proj = project(volume, config)
    f = window(proj.frontal_hu, config)
    s = window(proj.sagittal_hu, config)
    gap = np.full((f.shape[0], 3), 0.5, dtype=np.float32)
    img = (np.concatenate([f, gap, s], axis=1) * 255).astype(np.uint8)
    rgb = np.stack([img] * 3, axis=2)
    h, w = img.shape
    for name, s_mm in marks.items():
        row = int(round(float(proj.geometry.s_to_row(s_mm))))
        if not 0 <= row < h:
            continue
        if name == "L3":
            rgb[max(0, row - 1):row + 1, :, :] = (255, 40, 40)
        else:
            for x0 in (0, f.shape[1] + 3):
                rgb[row, x0:x0 + 14] = (60, 220, 60)
                rgb[row, x0 + f.shape[1] - 14:x0 + f.shape[1]] = (60, 220, 60)
    pil = Image.fromarray(rgb)
    if h > PANEL_MAX_ROWS:
        pil = pil.resize((int(w * PANEL_MAX_ROWS / h), PANEL_MAX_ROWS), Image.BILINEAR)
    canvas = Image.new("RGB", (w, PANEL_MAX_ROWS + 30), (30, 30, 30))
    canvas.paste(pil, (0, 30))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(caption.split("\n")[:2]):
        draw.text((4, 2 + 13 * i), line, fill=(255, 255, 0))
    return np.asarray(canvas)


def _truth_marks(name: str) -> dict[str, float]:
    truth = json.loads((SHARED_DATA / "truth.json").read_text())[name]["vertebrae"]
    return {k: v["centroid_ras_mm"][2] for k, v in truth.items() if k in LEVELS}


def _real_panels(config, lidc_synthetic: bool = False) -> list[np.ndarray]:
    from L3LocatorLib.volume import read_volume

    panels = []
    truth_path = SHARED_DATA / "truth.json"
    ct328 = SHARED_DATA / "real_skeleton_ct328.nrrd"
    if ct328.is_file() and truth_path.is_file():

        truth = json.loads(truth_path.read_text())["real_skeleton_ct328.nrrd"]["vertebrae"]
        marks = {k: v["centroid_ras_mm"][2] for k, v in truth.items() if k in LEVELS}
        panels.append(_panel(read_volume(ct328), marks, "REAL ct328 (bone only)\nL3 centroid",
                             config))
    else:
        log.warning("%s not found: the sheet has no real CT for comparison", ct328)
    ct327 = SHARED_DATA / "real_labelmap_ct327.nrrd"
    cmap = SHARED_DATA / "class_map_ct327.json"
    if ct327.is_file() and cmap.is_file():
        from L3LocatorLib.phantoms.labelmap_ct import labelmap_to_ct

        volume, truth = labelmap_to_ct(read_volume(ct327), json.loads(cmap.read_text()), seed=1)
        marks = {v.name: v.landmark_s_mm for v in truth.vertebrae if v.name in LEVELS}
        panels.append(_panel(volume, marks, "ct327 label map -> CT\nL3 landmark (derived)",
                             config))
    chest = SHARED_DATA / "real_chest_ct_lidc0001.nii.gz"
    if chest.is_file() and (SHARED_DATA / "truth.json").is_file():
        panels.append(_panel(read_volume(chest), _truth_marks(chest.name),
                             "REAL chest CT lidc0001\ncontrast, arms; centroids", config))
        chest_map = SHARED_DATA / "real_chest_labelmap_lidc0001.nii.gz"
        if lidc_synthetic and chest_map.is_file():
            from L3LocatorLib.phantoms.label_conventions import resolve_class_map
            from L3LocatorLib.phantoms.labelmap_ct import labelmap_to_ct

            chest_labels, chest_cmap = read_volume(chest_map), resolve_class_map(chest_map)
            # The default render, then thin vertebral walls and osteoporotic bone, as on
            # this patient's real CT.
            for caption, bone in (("", {}), (", thin walls, bone 0.6",
                                             {"wall_fraction": 0.25, "bone_density": 0.6})):
                volume, truth = labelmap_to_ct(chest_labels, chest_cmap, seed=1,
                                               contrast="arterial", table=False, **bone)
                marks = {v.name: v.landmark_s_mm for v in truth.vertebrae if v.name in LEVELS}
                panels.append(_panel(volume, marks, "lidc0001 label map -> CT"
                                     f"{caption}\n(visual check only)", config))
    for i, path in enumerate(sorted(SHARED_DATA.glob("real_vertebrae_labelmap_verse*.nii.gz"))):
        from L3LocatorLib.phantoms.label_conventions import resolve_class_map
        from L3LocatorLib.phantoms.labelmap_ct import labelmap_phantom

        volume, truth = labelmap_phantom(read_volume(path), resolve_class_map(path), seed=i,
                                         fov="full", flip=False)
        marks = {v.name: v.landmark_s_mm for v in truth.vertebrae if v.name in LEVELS}
        name = path.name.split("_")[-1].split(".")[0]
        panels.append(_panel(volume, marks, f"{name} VerSe mask + synthetic\nribs, pelvis, "
                             f"soft tissue ({truth.extras.get('contrast')})", config))
    return panels


def make_sheet(out: Path, n: int = 16, seed: int = 0, columns: int = 6,
               options: dict | None = None, real: bool = True,
               lidc_synthetic: bool = False) -> Path:
    """Write the contact sheet PNG; returns its path."""
    from PIL import Image

    from L3LocatorLib.phantoms import make_phantom
    from L3LocatorLib.projection import PreprocessConfig

    config = PreprocessConfig()
    panels = _real_panels(config, lidc_synthetic) if real else []
    presets = [p for p in SHEET_PRESETS for _ in range(2)][:n]
    presets += ["random"] * (n - len(presets))
    for i, preset in enumerate(presets):
        t0 = time.perf_counter()
        volume, truth = make_phantom(seed + i, preset=preset, **(options or {}))
        dt = time.perf_counter() - t0
        marks = {v.name: v.landmark_s_mm for v in truth.vertebrae if v.name in LEVELS}
        if not truth.l3_in_fov:
            marks.pop("L3", None)
        flags = []
        if truth.n_lumbar != 5:
            flags.append(f"{truth.n_lumbar} lumbar")
        if truth.n_rib_pairs != 12:
            flags.append(f"{truth.n_rib_pairs} ribs")
        if truth.lstv != "none":
            flags.append(truth.lstv)
        flags.append(f"arms {truth.extras.get('arms')}")
        caption = (f"{truth.preset} seed {seed + i}{'' if truth.l3_in_fov else '  NO L3'}\n"
                   + ", ".join(flags))
        panels.append(_panel(volume, marks, caption, config))
        log.info("phantom %d (%s): %.2f s, shape %s", seed + i, truth.preset, dt,
                 volume.array.shape)
    width = max(p.shape[1] for p in panels)
    height = panels[0].shape[0]
    rows = -(-len(panels) // columns)
    sheet = np.zeros((rows * (height + 6), columns * (width + 6), 3), dtype=np.uint8)
    for i, p in enumerate(panels):
        r, c = divmod(i, columns)
        y, x = r * (height + 6), c * (width + 6)
        sheet[y:y + p.shape[0], x:x + p.shape[1]] = p
    out = Path(out)
    Image.fromarray(sheet).save(out)
    log.info("wrote %s (%d panels)", out, len(panels))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("sheet.png"), help="PNG to write")
    parser.add_argument("--n", type=int, default=16, help="number of phantoms")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--columns", type=int, default=6, help="panels per row")
    parser.add_argument("--spacing", type=float, nargs=3, default=None,
                        help="phantom voxel size i j k in mm (default: the preset's)")
    parser.add_argument("--no-real", action="store_true",
                        help="leave out the real-CT panels (faster)")
    parser.add_argument("--lidc-synthetic", action="store_true",
                        help="also render the chest CT's label map (visual check only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = {"spacing": tuple(args.spacing)} if args.spacing else {}
    make_sheet(args.out, args.n, args.seed, args.columns, options, real=not args.no_real,
               lidc_synthetic=args.lidc_synthetic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
