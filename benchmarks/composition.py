"""Body composition at L3: accuracy on held-out tissue phantoms, consistency on real CT.

    python benchmarks/composition.py [--per-variant 3] [--data ../shared/data] [--json FILE]
                                     [--qa-dir DIR] [--skip-phantoms] [--skip-real]

Phantoms (``phantoms.tissue.make_tissue_phantom``, seeds from 90000: never used while the
method was tuned, which used seeds below 1000): every variant (typical, thin wall, obese,
cachexia, bowel against the wall, ascites, arms in view, contrast), 2.5 mm slices, 0.8-1.0
mm pixels, noise 8-20 HU. The measured slice is the one nearest the L3 landmark, the body
point is the truth's L3 centre (the locator's own point error is benchmarked elsewhere).
Per tissue: Dice against the truth labels and the area error (method - truth) / truth.
"oracle" is the truth compartment x the preset's HU range: the ceiling that noise leaves.

Real CT (every ``real_*ct*.nii.gz`` in the data folder with an L3 range in
``truth.json``): the slice in the middle of L3's S range; the vertebral body point is the
L3 centroid of ``truth.json`` (acrin: none there, the one found in the slice), the same
for every variant (in the product it comes from the locator). Area change of each tissue
one slice up and down; after resampling in-plane to 0.7, 1 and 3 mm pixels; after rotating
the patient 5 degrees about the head-foot axis.
There are no reference masks for these scans: this measures consistency, not accuracy.

Time: ``CompositionResult.seconds`` (slice and +/-5 mm slab, in memory), per scan.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "L3Locator"), str(REPO)]

from L3LocatorLib.composition import TISSUES, measure_composition  # noqa: E402
from L3LocatorLib.composition.axial import axial_slab  # noqa: E402
from L3LocatorLib.composition.picture import save_composition_picture  # noqa: E402
from L3LocatorLib.composition.presets import ALBERTA  # noqa: E402
from L3LocatorLib.phantoms.tissue import TISSUE_LABELS, VARIANTS, make_tissue_phantom  # noqa: E402
from L3LocatorLib.volume import Volume, read_volume, volume_from_sitk, volume_to_sitk  # noqa: E402

FIRST_SEED = 90000
REAL_SCANS = ("real_ct_acrin_flt001.nii.gz", "real_chest_ct_lidc0001.nii.gz",
              "real_spine_ct_verse012.nii.gz")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def phantom_case(seed: int, variant: str, qa_dir: Optional[Path]) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    pixel = float(rng.uniform(0.8, 1.0))
    volume, truth, tissue = make_tissue_phantom(
        seed, variant=variant, z_range_mm=(-20.0, 20.0), spacing=(pixel, pixel, 2.5),
        fov_mm=500.0, fov_shift_mm=0.0, noise_hu=float(rng.uniform(8, 20)))
    s_mm = float(truth.l3_landmark_ras[2])
    result = measure_composition(volume, s_mm, body_point_ras=truth.l3_centre_ras)
    labels = axial_slab(tissue.label_volume(volume), s_mm).image.astype(np.uint8)
    image = result.slab_geometry.image
    row: dict[str, Any] = {"seed": seed, "variant": variant, "seconds": result.seconds,
                           "flags": result.flags}
    compartment = {"muscle": (labels == 1) | (labels == 2), "imat": (labels == 1) | (labels == 2),
                   "vat": labels == 3, "sat": labels == 4}
    for tissue_name in TISSUES:
        found = result.masks[tissue_name]
        true = labels == TISSUE_LABELS[tissue_name]
        low, high = ALBERTA.hu_range(tissue_name)
        oracle = compartment[tissue_name] & (image >= low) & (image <= high)
        area = int(true.sum())
        row[tissue_name] = {
            "dice": dice(found, true), "oracle_dice": dice(oracle, true),
            "area_error": (int(found.sum()) - area) / area if area else None,
            "truth_cm2": area * result.slab_geometry.pixel_mm2 / 100.0}
    if qa_dir is not None:
        save_composition_picture(result, qa_dir / f"phantom_{variant}_{seed}.png",
                                 f"phantom {variant} {seed}")
    return row


def resampled(volume: Volume, pixel_mm: float) -> Volume:
    """The volume resampled in-plane to ``pixel_mm`` (linear), slice spacing kept."""
    import SimpleITK as sitk

    image = volume_to_sitk(volume)
    spacing = list(image.GetSpacing())
    size = list(image.GetSize())
    axis = volume.slice_axis
    new_spacing = [pixel_mm if a != axis else spacing[a] for a in range(3)]
    new_size = [int(round(size[a] * spacing[a] / new_spacing[a])) for a in range(3)]
    out = sitk.Resample(image, new_size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                        new_spacing, image.GetDirection(), -1024.0, image.GetPixelID())
    return volume_from_sitk(out, volume.name)


def rotated(volume: Volume, degrees: float, centre_ras: np.ndarray, point_ras: np.ndarray
            ) -> tuple[Volume, np.ndarray]:
    """The patient rotated by ``degrees`` about the S axis through ``centre_ras`` (the
    image data moves; the grid stays), and where ``point_ras`` moved to."""
    import SimpleITK as sitk

    image = volume_to_sitk(volume)
    transform = sitk.Euler3DTransform()
    lps = np.array([-centre_ras[0], -centre_ras[1], centre_ras[2]])
    transform.SetCenter([float(v) for v in lps])
    transform.SetRotation(0.0, 0.0, float(np.radians(degrees)))
    out = sitk.Resample(image, image, transform, sitk.sitkLinear, -1024.0, image.GetPixelID())
    moved = transform.GetInverse().TransformPoint(
        [float(-point_ras[0]), float(-point_ras[1]), float(point_ras[2])])
    return volume_from_sitk(out, volume.name), np.array([-moved[0], -moved[1], moved[2]])


def areas(result: Any) -> dict[str, float]:
    return {t: result.slice[t].area_cm2 for t in TISSUES}


def change(new: dict[str, float], base: dict[str, float]) -> dict[str, Optional[float]]:
    return {t: (new[t] - base[t]) / base[t] if base[t] > 0 else None for t in TISSUES}


def real_case(path: Path, s_range: tuple[float, float], centroid: Optional[list[float]],
              qa_dir: Optional[Path]) -> dict[str, Any]:
    """One real CT. The vertebral body point (which places psoas and paraspinals; in the
    product it comes from the locator) is the L3 centroid of truth.json where it has one,
    else the one found in the slice; every variant is measured with that same point."""
    volume = read_volume(path)
    s_mm = 0.5 * (s_range[0] + s_range[1])
    point = None if centroid is None else np.array([centroid[0], centroid[1], s_mm])
    base = measure_composition(volume, s_mm, body_point_ras=point)
    point = np.asarray(base.body_point_ras, float)
    spacing_s = float(base.slab_geometry.s_mm[0] - base.slab_geometry.s_mm[-1]) / max(
        1, len(base.slab_geometry.s_mm) - 1) if len(base.slab_geometry.s_mm) > 1 else None
    row: dict[str, Any] = {"scan": path.name, "s_mm": base.s_mm, "areas_cm2": areas(base),
                           "seconds": base.seconds, "flags": base.flags,
                           "slab_slices": len(base.slab_s_mm)}
    grid_step = abs(float(np.diff(base.slab_geometry.s_mm).mean())) if spacing_s else None
    if grid_step:
        row["neighbour_change"] = {
            f"{sign:+d} slice": change(areas(measure_composition(
                volume, s_mm + sign * grid_step, body_point_ras=point)), areas(base))
            for sign in (1, -1)}
    row["resampled_change"] = {
        f"{pixel} mm": change(areas(measure_composition(resampled(volume, pixel), s_mm,
                                                        body_point_ras=point)), areas(base))
        for pixel in (0.7, 1.0, 3.0)}
    centre = np.array([*base.slab_geometry.pixel_to_ras(np.array(base.compartments.centre_px))])
    row["rotated_change"] = {}
    for deg in (5, -5):
        turned, moved = rotated(volume, deg, centre, point)
        row["rotated_change"][f"{deg:+d} deg"] = change(areas(measure_composition(
            turned, s_mm, body_point_ras=moved)), areas(base))
    if qa_dir is not None:
        save_composition_picture(base, qa_dir / f"real_{path.name.split('.')[0]}.png", path.name)
    return row


def speed_case(repeats: int = 3) -> dict[str, Any]:
    """Median time of the whole measurement (slice and +/-5 mm slab) on 512 x 512 slices,
    1 mm and 2.5 mm apart, in memory."""
    out = {}
    for thickness in (1.0, 2.5):
        volume, truth, _ = make_tissue_phantom(FIRST_SEED + 999, spacing=(0.8, 0.8, thickness),
                                               fov_mm=409.6, z_range_mm=(-15.0, 15.0))
        times = []
        for _ in range(repeats):
            result = measure_composition(volume, float(truth.l3_landmark_ras[2]),
                                         body_point_ras=truth.l3_centre_ras)
            times.append(result.seconds)
        out[f"{thickness} mm slices"] = {"matrix": list(volume.array.shape[1:]),
                                         "slab_slices": len(result.slab_s_mm),
                                         "seconds_median": statistics.median(times)}
    return out


def summarise_phantoms(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for t in TISSUES:
        dices = [r[t]["dice"] for r in rows]
        errors = [abs(r[t]["area_error"]) for r in rows if r[t]["area_error"] is not None]
        out[t] = {"dice_median": statistics.median(dices), "dice_min": min(dices),
                  "oracle_dice_median": statistics.median(r[t]["oracle_dice"] for r in rows),
                  "abs_area_error_median": statistics.median(errors),
                  "abs_area_error_max": max(errors)}
    out["seconds_median"] = statistics.median(r["seconds"] for r in rows)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-variant", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--qa-dir", type=Path)
    parser.add_argument("--skip-phantoms", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {}
    if not args.skip_phantoms:
        rows = []
        for n, variant in enumerate(VARIANTS):
            for k in range(args.per_variant):
                row = phantom_case(FIRST_SEED + 100 * n + k, variant, args.qa_dir)
                rows.append(row)
                print(f"{variant:14s} seed {row['seed']}: " + "  ".join(
                    f"{t} Dice {row[t]['dice']:.3f} err {100 * row[t]['area_error']:+.1f}%"
                    for t in TISSUES) + f"  {row['seconds']:.2f} s", flush=True)
        report["phantoms"] = rows
        report["phantom_summary"] = summarise_phantoms(rows)
        for t in TISSUES:
            s = report["phantom_summary"][t]
            print(f"{t:7s} Dice median {s['dice_median']:.3f} (min {s['dice_min']:.3f}, "
                  f"oracle {s['oracle_dice_median']:.3f}); |area error| median "
                  f"{100 * s['abs_area_error_median']:.1f} % (max "
                  f"{100 * s['abs_area_error_max']:.1f} %)")
    report["speed"] = speed_case()
    print("speed:", json.dumps(report["speed"]))
    if not args.skip_real:
        truth_file = args.data / "truth.json"
        if not truth_file.exists():
            print(f"{truth_file} not found: real CT skipped")
        else:
            truth = json.loads(truth_file.read_text())
            report["real"] = []
            for name in REAL_SCANS:
                l3 = truth.get(name, {}).get("vertebrae", {}).get("L3")
                if l3 is None or not (args.data / name).exists():
                    print(f"{name}: no scan or no L3 range, skipped")
                    continue
                row = real_case(args.data / name, tuple(l3["s_extent_mm"]),
                                l3.get("centroid_ras_mm"), args.qa_dir)
                report["real"].append(row)
                print(json.dumps(row, indent=1, default=lambda v: round(v, 4)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
