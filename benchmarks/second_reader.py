"""The second reader (``L3LocatorLib.second_reader``) against known counts.

    python benchmarks/second_reader.py [--seeds 4] [--data ../shared/data] [--no-renders]

1. Phantoms (abdomen-pelvis field of view, 2 mm voxels, seeds 8000...) with a normal
   spine and each variant (4 or 6 lumbar vertebrae, 11 or 13 rib pairs, transitional
   L5/S1): whether each count's L3 holds the right vertebra's centre. Phantom vertebrae
   are named up from the sacrum, so the sacrum's count must find the truth's "L3"; the
   rib count must find the third vertebra below the lowest rib-bearing one.
2. Every real CT in ``--data`` and CT renders of the real label maps
   (``labelmap_to_ct``, whole map, seeds 0 and 1 with usual discs and seed 2 with the
   renderer's degenerate spine): what it found and whether each count's L3 lies inside
   the labelled L3 (``truth.json`` for the real CTs, the render's own truth for the
   renders: the middle of the count's L3 inside L3's S extent).

Times are the second reader alone (the CT already on patient axes and projected, as in
``locate``). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
from variants import VARIANTS

from L3LocatorLib.patient_grid import to_patient_grid
from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.phantoms.labelmap_ct import labelmap_to_ct
from L3LocatorLib.projection import project
from L3LocatorLib.second_reader import SecondReading, read_spine
from L3LocatorLib.volume import Volume, read_volume

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_CTS = ("real_skeleton_ct328.nrrd", "real_chest_ct_lidc0001.nii.gz",
            "real_spine_ct_verse012.nii.gz", "real_ct_acrin_flt001.nii.gz")
#: label map -> its class map file (names every structure, ribs and pelvis included)
RENDERS = {
    "real_labelmap_s0327_gt_bones.nii.gz": "class_map_s0327_gt_bones.json",
    "real_labelmap_ct327.nrrd": "class_map_ct327.json",
    "real_chest_labelmap_lidc0001.nii.gz": "class_map_lidc0001.json",
}


#: (seed, degenerate) of each label-map render: the renderer's "degenerate" older spine
#: bridges the discs with sclerosis, so that they show brighter than the bodies.
RENDER_SEEDS = ((0, False), (1, False), (2, True))


def timed_read(volume: Volume) -> tuple[SecondReading, float]:
    """The reading and the seconds of the second reader alone."""
    projections = project(volume)
    grid = to_patient_grid(volume, projections.config)
    start = time.perf_counter()
    reading = read_spine(volume, projections, grid=grid)
    return reading, time.perf_counter() - start


def holds(s_range: Optional[list[float]], s_mm: Optional[float]) -> Optional[bool]:
    """Whether a count's [bottom, top] S range holds ``s_mm``; None without that count."""
    if s_range is None or s_mm is None:
        return None
    return bool(s_range[0] <= s_mm <= s_range[1])


def inside(s_range: Optional[list[float]], extent: Optional[list[float]]) -> Optional[bool]:
    """Whether the middle of a count's L3 range lies inside the labelled L3 extent."""
    if s_range is None or extent is None:
        return None
    middle = 0.5 * (s_range[0] + s_range[1])
    return bool(min(extent) <= middle <= max(extent))


def phantom_rows(seeds: int) -> list[dict[str, Any]]:
    rows = []
    for name, options in VARIANTS.items():
        for seed in range(8000, 8000 + seeds):
            volume, truth = make_phantom(seed, preset="abdomen_pelvis", spacing=(2, 2, 2),
                                         **options)
            reading, seconds = timed_read(volume)
            spine = sorted(truth.vertebrae, key=lambda v: -v.centre_ras[2])
            thoracic = [i for i, v in enumerate(spine) if v.kind == "thoracic"]
            by_ribs = None
            if thoracic and thoracic[-1] + 3 < len(spine):
                by_ribs = spine[thoracic[-1] + 3].centre_ras[2]
            l3 = truth.vertebra("L3")
            rows.append({
                "variant": name, "seed": seed, "status": reading.status,
                "anchors": reading.anchors, "lumbar_between": reading.lumbar_between,
                "ribs_right": holds(reading.l3_from_ribs_s_mm, by_ribs),
                "sacrum_right": holds(reading.l3_from_sacrum_s_mm,
                                      None if l3 is None else l3.centre_ras[2]),
                "variant_words": len(reading.variants), "seconds": seconds,
            })
    return rows


def real_row(name: str, volume: Volume, vertebrae: dict) -> dict[str, Any]:
    reading, seconds = timed_read(volume)
    l3 = vertebrae.get("L3", {}).get("s_extent_mm")
    return {
        "scan": name, "status": reading.status, "anchors": reading.anchors,
        "bodies": len(reading.vertebrae), "rib_bearing_seen": reading.rib_bearing_seen,
        "lumbar_between": reading.lumbar_between,
        "l3_ribs": reading.l3_from_ribs_s_mm, "l3_sacrum": reading.l3_from_sacrum_s_mm,
        "truth_l3": l3, "ribs_inside": inside(reading.l3_from_ribs_s_mm, l3),
        "sacrum_inside": inside(reading.l3_from_sacrum_s_mm, l3),
        "message": reading.message, "seconds": seconds,
    }


def real_rows(data: Path, renders: bool) -> list[dict[str, Any]]:
    truth = json.loads((data / "truth.json").read_text())
    rows = []
    for name in REAL_CTS:
        if (data / name).exists():
            rows.append(real_row(name, read_volume(data / name), truth[name]["vertebrae"]))
    if not renders:
        return rows
    for name, class_file in RENDERS.items():
        if not (data / name).exists():
            continue
        class_map = None
        if class_file:
            class_map = {int(k): v for k, v in
                         json.loads((data / class_file).read_text()).items()}
        labels = read_volume(data / name)
        for seed, degenerate in RENDER_SEEDS:
            volume, vt = labelmap_to_ct(labels, class_map, seed, fov="full",
                                        degenerate=degenerate)
            extents = {v.name: [v.bottom_s_mm, v.top_s_mm] for v in vt.vertebrae}
            look = "degenerate spine" if degenerate else "usual discs"
            row = real_row(f"{name} render {seed} ({look})", volume,
                           {k: {"s_extent_mm": e} for k, e in extents.items()})
            rows.append(row)
    return rows


def _mark(value: Optional[bool]) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--no-renders", action="store_true")
    args = parser.parse_args()
    phantoms = phantom_rows(args.seeds)
    print(f"{'variant':15s} {'n':>2s} {'counted':>7s} {'ribs: L3 right':>14s} "
          f"{'sacrum: L3 right':>16s} {'wrong':>5s} {'with variant words':>18s} {'s':>5s}")
    summary: dict[str, Any] = {}
    for name in VARIANTS:
        rows = [r for r in phantoms if r["variant"] == name]
        c = {
            "n": len(rows), "counted": sum(r["status"] == "counted" for r in rows),
            "ribs_right": sum(r["ribs_right"] is True for r in rows),
            "ribs_counted": sum(r["ribs_right"] is not None for r in rows),
            "sacrum_right": sum(r["sacrum_right"] is True for r in rows),
            "sacrum_counted": sum(r["sacrum_right"] is not None for r in rows),
            "variant_words": sum(r["variant_words"] > 0 for r in rows),
            "seconds": float(np.median([r["seconds"] for r in rows])),
        }
        c["wrong"] = (c["ribs_counted"] - c["ribs_right"]) + (c["sacrum_counted"]
                                                             - c["sacrum_right"])
        summary[name] = c
        print(f"{name:15s} {c['n']:2d} {c['counted']:7d} "
              f"{c['ribs_right']:>7d}/{c['ribs_counted']:<6d} "
              f"{c['sacrum_right']:>9d}/{c['sacrum_counted']:<6d} {c['wrong']:5d} "
              f"{c['variant_words']:18d} {c['seconds']:5.2f}")
    real = real_rows(args.data, not args.no_renders) if args.data.exists() else []
    if not real:
        print(f"{args.data} holds no real scans; real scans skipped.", file=sys.stderr)
    for r in real:
        print(f"\n{r['scan']}: {r['status']}, anchors {', '.join(r['anchors']) or 'none'}, "
              f"{r['bodies']} bodies, {r['seconds']:.2f} s")
        print(f"  L3 by the ribs {r['l3_ribs'] and [round(v) for v in r['l3_ribs']]} inside: "
              f"{_mark(r['ribs_inside'])}; by the sacrum "
              f"{r['l3_sacrum'] and [round(v) for v in r['l3_sacrum']]} inside: "
              f"{_mark(r['sacrum_inside'])}; truth L3 "
              f"{r['truth_l3'] and [round(v) for v in r['truth_l3']]}")
        print(f"  {r['message']}")
    print(json.dumps({"phantoms": summary, "real": real}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
