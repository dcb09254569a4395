"""Where the 3-D point lands: vertebral body centres on real CT and on phantoms.

    python benchmarks/body_centres.py [--data ../shared/data] [--phantoms 3]

For each vertebra the point is placed at the row of its true centre (so a level
error does not enter) and compared with the centre of its vertebral body: dR
(right-left) and dA (front-back), mm; the goal is |dR| <= 15 and |dA| <= 12.

Body centres of the real scans come from masks, not from the vertebra centroids in
``truth.json`` (those include the posterior elements and lie 5-10 mm behind the
body): within +/- 6 mm of the centroid's level, each slice's vertebra mask, its
enclosed holes above 400 mm^2 filled (a cancellous interior left out of the mask),
opened with a 5 mm disk (cuts off pedicles, laminae, processes and rib heads); the
largest piece is the body. ``ct328``'s mask is its non-zero voxels (a bone-only CT),
the chest CT's its TotalSegmentator label. Phantoms know their body centres.

Phantom variants: 2 mm and 3 mm voxels, 1.5 x 1.5 x 5 mm, 4 x 4 x 5 mm in a random
orientation with tilt, a contrast-filled calcified aorta, metal (spine and hip),
and a 120 mm spine crop; the real scans also as 120 mm spine crops ("crop"), with
only every n-th slice kept, about 5 mm apart ("5 mm"), and with bone 150 HU less dense
("thin bone": osteoporotic marrow and cortex, as in older patients).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from L3LocatorLib.body_point import vertebral_body_point
from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.projection import PreprocessConfig, project
from L3LocatorLib.volume import Volume, read_volume

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GOAL_MM = (15.0, 12.0)  #: right-left, front-back
#: In-plane width (mm) of the spine crops (real scans and phantoms).
CROP_MM = 120.0
#: A vertebra touching the scan's edge keeps its body when its centroid is this far inside (mm).
EDGE_MARGIN_MM = 20.0
LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4")

PHANTOM_VARIANTS = {
    "2 mm": dict(spacing=(2, 2, 2), matrix=200),
    "3 mm, contrast aorta": dict(spacing=(3, 3, 3), contrast="arterial", calcification=1.0),
    "1.5 x 1.5 x 5 mm": dict(spacing=(1.5, 1.5, 5), matrix=256, contrast="portal"),
    "4 x 4 x 5 mm, oblique": dict(spacing=(4, 4, 5), orientation="random", tilt_deg=8),
    "metal spine + hip": dict(spacing=(2.5, 2.5, 3), metal=("hip", "spine"),
                              contrast="arterial"),
}


def body_centre_from_mask(mask: np.ndarray, volume: Volume, centroid_ras: np.ndarray,
                          half_s_mm: float = 6.0, radius_mm: float = 5.0) -> np.ndarray:
    """RAS (mm) centre of the vertebral body of a vertebra mask ``[k, j, i]`` (axial, k
    along S) whose whole-vertebra centroid is ``centroid_ras``."""
    s = volume.ijk_to_ras_points(np.stack([np.zeros(mask.shape[0]), np.zeros(mask.shape[0]),
                                           np.arange(mask.shape[0])], 1))[:, 2]
    ci, cj, _ = np.round(volume.ras_to_ijk_points(np.asarray(centroid_ras))).astype(int)
    sp = volume.spacing
    half = int(45.0 / sp[0])
    ri, rj = radius_mm / sp[0], radius_mm / sp[1]
    y, x = np.mgrid[-int(rj) : int(rj) + 1, -int(ri) : int(ri) + 1]
    disk = (x / ri) ** 2 + (y / rj) ** 2 <= 1
    points = []
    for k in np.flatnonzero(np.abs(s - centroid_ras[2]) <= half_s_mm):
        window = np.zeros(mask.shape[1:], bool)
        box = (slice(max(0, cj - half), cj + half), slice(max(0, ci - half), ci + half))
        window[box] = mask[k][box]
        holes = ndimage.binary_fill_holes(window) & ~window
        labels, n = ndimage.label(holes)
        if n:
            areas = ndimage.sum(holes, labels, range(1, n + 1)) * sp[0] * sp[1]
            window |= np.isin(labels, 1 + np.flatnonzero(areas > 400.0))
        opened = ndimage.binary_opening(window, structure=disk)
        labels, n = ndimage.label(opened)
        if n == 0:
            continue
        sizes = ndimage.sum(opened, labels, range(1, n + 1))
        jj, ii = np.nonzero(labels == 1 + int(np.argmax(sizes)))
        points.append(np.stack([ii, jj, np.full_like(ii, k)], 1))
    return volume.ijk_to_ras_points(np.concatenate(points).astype(float)).mean(axis=0)


#: The label map (same grid) of each real CT that has one.
LABEL_MAPS = {"lidc0001": "real_chest_labelmap_lidc0001.nii.gz",
              "verse012": "real_spine_labelmap_verse012.nii.gz"}


def body_centres_for(key: str, volume: Volume, vertebrae: dict, data: Path
                     ) -> dict[str, np.ndarray]:
    """Level -> body centre (RAS mm) of the real scan ``key`` ("ct328": its non-zero voxels
    are the bone mask; "lidc0001", "verse012": the label map in ``data``); empty when there
    is no mask (the ACRIN CT).
    Levels cut by the scan's edge are left out (their centroid is not their body's), unless
    only a process touches the edge: centroid more than ``EDGE_MARGIN_MM`` from it."""
    if key == "ct328":
        mask_of = lambda level: volume.array != 0  # noqa: E731
    elif key in LABEL_MAPS and (data / LABEL_MAPS[key]).exists():
        label_map = read_volume(data / LABEL_MAPS[key]).array
        mask_of = lambda level: label_map == vertebrae[level]["label"]  # noqa: E731
    else:
        return {}
    k = np.arange(volume.array.shape[0])
    s = volume.ijk_to_ras_points(np.stack([0 * k, 0 * k, k], 1))[:, 2]

    def whole_body(level: str) -> bool:
        v = vertebrae[level]
        centre_s = v["centroid_ras_mm"][2]
        edge_mm = min(abs(centre_s - s.min()), abs(centre_s - s.max()))
        return not v.get("touches_scan_edge", False) or edge_mm > EDGE_MARGIN_MM

    return {level: body_centre_from_mask(mask_of(level), volume,
                                         np.asarray(vertebrae[level]["centroid_ras_mm"]))
            for level in LEVELS if level in vertebrae and whole_body(level)}


def real_body_centres(data: Path) -> dict[str, tuple[Volume, dict[str, np.ndarray]]]:
    """Scan key -> (CT, level -> body centre RAS mm) for the real scans present in ``data``."""
    truth = json.loads((data / "truth.json").read_text())
    out = {}
    for key, name in (("ct328", "real_skeleton_ct328.nrrd"),
                      ("lidc0001", "real_chest_ct_lidc0001.nii.gz")):
        if (data / name).exists():
            volume = read_volume(data / name)
            out[key] = (volume, body_centres_for(key, volume, truth[name]["vertebrae"], data))
    return out


def narrow(volume: Volume, centre_ras: np.ndarray, width_mm: float) -> Volume:
    """The volume cut in-plane to ``width_mm`` around ``centre_ras`` (a spine crop)."""
    i, j, _ = np.round(volume.ras_to_ijk_points(centre_ras)).astype(int)
    h = int(width_mm / 2 / volume.spacing[0])
    i0, j0 = max(0, i - h), max(0, j - h)
    matrix = np.array(volume.ijk_to_ras)
    matrix[:3, 3] = volume.ijk_to_ras_points((float(i0), float(j0), 0.0))
    return Volume(volume.array[:, j0 : j + h, i0 : i + h], matrix, "crop")


def thick_slices(volume: Volume, mm: float) -> Volume:
    """Every n-th slice (k), n chosen so the slices are about ``mm`` apart."""
    step = max(1, int(round(mm / volume.spacing[2])))
    matrix = np.array(volume.ijk_to_ras)
    matrix[:3, 2] *= step
    return Volume(volume.array[::step], matrix, "thick")


def thin_bone(volume: Volume, hu: float = 150.0) -> Volume:
    """Every voxel above ``hu`` made ``hu`` less dense (thinner, osteoporotic bone)."""
    a = volume.array
    return Volume(np.where(a > hu, a - hu, a).astype(np.float32), volume.ijk_to_ras, "thin")


def phantom_body_centres(n: int) -> list[tuple[str, Volume, dict[str, np.ndarray]]]:
    """``n`` phantoms of each variant (seeds 100...), plus 120 mm spine crops of the
    contrast ones: (variant, CT, level -> body centre RAS mm)."""
    out = []
    for name, options in PHANTOM_VARIANTS.items():
        for seed in range(100, 100 + n):
            volume, truth = make_phantom(seed, preset="abdomen_pelvis", **options)
            centres = {v.name: np.asarray(v.centre_ras) for v in truth.vertebrae
                       if v.name in LEVELS and v.in_fov}
            out.append((name, volume, centres))
            if "aorta" in name and "L3" in centres:
                out.append((f"{CROP_MM:.0f} mm spine crop", narrow(volume, centres["L3"], CROP_MM),
                            centres))
    return out


def point_errors(volume: Volume, centres: dict[str, np.ndarray]) -> list[dict]:
    """The point at each vertebra's row against its body centre (mm)."""
    projections = project(volume, PreprocessConfig())
    geometry = projections.geometry
    rows = []
    for level, centre in centres.items():
        row = float(geometry.s_to_row(centre[2]))
        if not 0 <= row <= geometry.n_rows - 1:
            continue
        point = vertebral_body_point(volume, projections, row)
        d = point.ras - centre
        rows.append({"level": level, "d_r_mm": float(d[0]), "d_a_mm": float(d[1]),
                     "in_body": point.in_body,
                     "within_goal": bool(abs(d[0]) <= GOAL_MM[0] and abs(d[1]) <= GOAL_MM[1])})
    return rows


def print_group(name: str, rows: list[dict]) -> None:
    dr = np.abs([r["d_r_mm"] for r in rows])
    da = np.array([r["d_a_mm"] for r in rows])
    print(f"{name:24s} {len(rows):3d} {sum(r['within_goal'] for r in rows):6d} "
          f"{np.median(dr):7.1f} {dr.max():7.1f} {np.median(da):+7.1f} {np.abs(da).max():7.1f} "
          f"{sum(not r['in_body'] for r in rows):8d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--phantoms", type=int, default=3, help="phantoms per variant")
    args = parser.parse_args()
    groups: dict[str, list[dict]] = {}
    print("real scans, per vertebra (body centre from the mask):")
    print(f"{'scan':14s} {'level':5s} {'dR mm':>7s} {'dA mm':>7s}  in body")
    for key, (volume, centres) in real_body_centres(args.data).items():
        middle = centres[sorted(centres)[len(centres) // 2]]
        for crop, scan in (("", volume), (" crop", narrow(volume, middle, CROP_MM)),
                           (" 5 mm", thick_slices(volume, 5.0)),
                           (" thin bone", thin_bone(volume))):
            for row in point_errors(scan, centres):
                groups.setdefault(f"real {key}{crop}", []).append(row)
                print(f"{key + crop:14s} {row['level']:5s} {row['d_r_mm']:+7.1f} "
                      f"{row['d_a_mm']:+7.1f}  "
                      f"{'yes' if row['in_body'] else 'no (midline fallback)'}")
    for name, volume, centres in phantom_body_centres(args.phantoms):
        groups.setdefault(f"phantom {name}", []).extend(point_errors(volume, centres))
    print(f"\n{'group':24s} {'n':>3s} {'within':>6s} {'|dR|med':>7s} {'|dR|max':>7s} "
          f"{'dA med':>7s} {'|dA|max':>7s} {'fallback':>8s}   (goal |dR|<=15, |dA|<=12 mm)")
    for name, rows in groups.items():
        print_group(name, rows)
    every = [r for rows in groups.values() for r in rows]
    print_group("all", every)
    print(json.dumps({k: v for k, v in groups.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
