"""Spine variants on phantoms: what the model counts, and which variants the result flags.

    python benchmarks/variants.py [--model JSON] [--seeds 6]

Phantoms (abdomen-pelvis field of view, 3 mm voxels, seeds 8000...) with a normal
spine (5 lumbar vertebrae, 12 rib pairs) and each variant the generator draws: 4 or 6
lumbar vertebrae, 11 or 13 rib pairs, a sacralised L5 or a lumbarised S1. Phantom
vertebrae are named counting up from the sacrum, so "L3 inside" means the model found
the third vertebra above the sacrum. Per variant: scans, L3 inside, results whose
``variants`` (``counting.count_levels``) flag an unlabelled vertebra (L6/T13) or a short
L5-S1 step (transitional), and the median ratio of the L5-S1 step to the other steps.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from L3LocatorLib.locate import locate
from L3LocatorLib.network import load_model
from L3LocatorLib.phantoms import make_phantom

NORMAL = dict(n_lumbar=5, n_rib_pairs=12, lstv="none")
VARIANTS = {
    "normal": NORMAL,
    "4 lumbar": {**NORMAL, "n_lumbar": 4},
    "6 lumbar": {**NORMAL, "n_lumbar": 6},
    "11 rib pairs": {**NORMAL, "n_rib_pairs": 11},
    "13 rib pairs": {**NORMAL, "n_rib_pairs": 13},
    "sacralised L5": {**NORMAL, "lstv": "sacralised_L5"},
    "lumbarised S1": {**NORMAL, "lstv": "lumbarised_S1"},
}


def l5_s1_ratio(levels_s_mm: dict[str, float]) -> float:
    """L5-S1 distance over the median distance between the other adjacent levels."""
    names = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
    steps = {(a, b): levels_s_mm[a] - levels_s_mm[b] for a, b in zip(names, names[1:])
             if a in levels_s_mm and b in levels_s_mm}
    if ("L5", "S1") not in steps or len(steps) < 3:
        return float("nan")
    others = [v for k, v in steps.items() if k != ("L5", "S1")]
    return float(steps[("L5", "S1")] / np.median(others))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model JSON (default: the shipped model)")
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    print(f"model {model.metadata.name} {model.metadata.version}")
    print(f"{'variant':16s} {'n':>3s} {'L3 inside':>9s} {'flag L6/T13':>11s} "
          f"{'flag LSTV':>9s} {'any flag':>8s} {'L5-S1/usual':>11s}")
    summary = {}
    for name, options in VARIANTS.items():
        rows = []
        for seed in range(8000, 8000 + args.seeds):
            volume, truth = make_phantom(seed, preset="abdomen_pelvis", spacing=(3, 3, 3),
                                         **options)
            result = locate(volume, model=model)
            inside = bool(result.found and truth.l3_in_fov
                          and truth.l3_bottom_s_mm <= result.s_mm <= truth.l3_top_s_mm)
            rows.append({
                "inside": inside,
                "skip": any("room for one vertebra" in v for v in result.variants),
                "lstv": any("transitional" in v for v in result.variants),
                "flagged": bool(result.variants),
                "ratio": l5_s1_ratio(result.levels_s_mm),
                "lumbar_counted": result.lumbar_counted,
            })
        count = {k: sum(r[k] for r in rows) for k in ("inside", "skip", "lstv", "flagged")}
        ratio = float(np.nanmedian([r["ratio"] for r in rows]))
        print(f"{name:16s} {len(rows):3d} {count['inside']:9d} {count['skip']:11d} "
              f"{count['lstv']:9d} {count['flagged']:8d} {ratio:11.2f}")
        summary[name] = {"n": len(rows), **count, "l5_s1_ratio_median": ratio}
    print(json.dumps({"model": model.metadata.name, "variants": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
