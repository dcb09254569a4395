"""Would assigning all levels jointly find L3 better than the L3 channel alone? (No.)

    python benchmarks/joint_decoding.py [--model JSON] [--phantoms 200] [--data ../shared/data]

The shipped decoder takes each level's peak on its own (``decode.decode_levels``): L3
is the peak of the L3 channel when it reaches the threshold. Two joint decoders are
compared with it on the same network output; both keep the levels found in anatomical
order, levels ``k`` apart ``k`` times 15-55 mm apart, and maximise the sum of the
log-probabilities of the chosen rows plus log(threshold) for every level not found
(counted from both ends at once):

``run``   the levels found form one unbroken run (a scan is one block of the spine);
``gaps``  a level inside the run may be left out too (the model may be unsure of one).

Scans: random phantoms (3 mm, seeds 880000...) and every cut, degraded copy and
field-of-view sweep step of the real scans (``benchmarks/real_ct.py``). A scan is
right when L3 is found inside its extent, or answered absent where L3 is not (or
only partly) in view. Measured on the shipped model (2026-12-02): 200 phantoms
198 / 197 / 198 right (alone / run / gaps), ct328 58 / 59 / 58 of 60, the chest CT
18 / 18 / 18: "run" removes one flagged false alarm of the ct328 sweep and loses a
child phantom's L3; "gaps" changes nothing. Joint decoding is therefore not in the
pipeline. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from real_ct import PATIENTS, cases_for, crop_s, degraded, load_patient, sweep_cases

from L3LocatorLib.decode import LEVEL_SPACING_MM, decode_levels, subpixel_peak
from L3LocatorLib.network import load_model, predict_views
from L3LocatorLib.phantoms import make_phantom
from L3LocatorLib.projection import project

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DECODERS = ("alone", "run", "gaps")
_EPS = 1e-6


def joint_rows(probs: np.ndarray, threshold: float, pixel_mm: float, *, gaps: bool,
               spacing_mm: tuple[float, float] = LEVEL_SPACING_MM) -> list[Optional[int]]:
    """Rows (None = not found) of every level of ``probs`` ``[n_levels, H]`` (levels
    superior -> inferior, rows ``pixel_mm`` apart) assigned jointly: the levels found
    come in order, ``k`` levels apart means ``k`` times ``spacing_mm`` (min, max) apart,
    every level not found costs log(threshold), and without ``gaps`` the levels found
    are adjacent ones."""
    probs = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=0.0)
    n_levels, n_rows = probs.shape
    unary = np.log(np.clip(probs, _EPS, 1.0))
    absent = float(np.log(threshold))
    low = max(1, int(np.floor(spacing_mm[0] / pixel_mm)))
    high = max(low, int(np.ceil(spacing_mm[1] / pixel_mm)))
    rows = np.arange(n_rows)
    # best[l][r]: best score of levels 0..l with level l found at row r.
    best = np.empty((n_levels, n_rows))
    back_level = np.full((n_levels, n_rows), -1, dtype=int)
    back_row = np.zeros((n_levels, n_rows), dtype=int)
    for level in range(n_levels):
        best[level] = unary[level] + level * absent  # the first level found
        for before in range(0 if gaps else max(0, level - 1), level):
            k = level - before
            candidates = rows[:, None] - k * low - np.arange(k * (high - low) + 1)[None, :]
            valid = candidates >= 0
            window = np.where(valid, best[before][np.clip(candidates, 0, None)], -np.inf)
            pick = np.argmax(window, axis=1)
            score = window[rows, pick] + (k - 1) * absent + unary[level]
            better = score > best[level]
            best[level][better] = score[better]
            back_level[level][better] = before
            back_row[level][better] = candidates[rows, pick][better]
    totals = best.max(axis=1) + (n_levels - 1 - np.arange(n_levels)) * absent
    out: list[Optional[int]] = [None] * n_levels
    if totals.max() <= n_levels * absent:
        return out
    level = int(np.argmax(totals))
    row = int(np.argmax(best[level]))
    while level >= 0:
        out[level] = row
        level, row = int(back_level[level][row]), int(back_row[level][row])
    return out


def l3_row(probs: np.ndarray, threshold: float, pixel_mm: float, answer_index: int, *,
           gaps: bool) -> Optional[float]:
    """Sub-pixel L3 row of the joint assignment (None when not found)."""
    row = joint_rows(probs, threshold, pixel_mm, gaps=gaps)[answer_index]
    if row is None:
        return None
    profile = probs[answer_index]
    local_max = (row == 0 or profile[row] >= profile[row - 1]) and (
        row == profile.size - 1 or profile[row] >= profile[row + 1])
    return subpixel_peak(profile, row) if local_max else float(row)


def scans(data: Path, n_phantoms: int):
    """(group, case, volume, L3 extent S mm or None, expected) for every scan compared."""
    for seed in range(880000, 880000 + n_phantoms):
        volume, truth = make_phantom(seed, preset="random", spacing=(3, 3, 3))
        extent = ((truth.l3_bottom_s_mm, truth.l3_top_s_mm) if truth.l3_in_fov else None)
        yield "phantoms", f"seed {seed}", volume, extent, bool(truth.l3_in_fov)
    for key in PATIENTS:
        patient = load_patient(key, data)
        if patient is None:
            continue
        whole = cases_for(patient)[0].l3_expected
        for case in cases_for(patient) + sweep_cases(patient):
            yield (f"real {key}", case.name, crop_s(patient.volume, case.s_min, case.s_max),
                   patient.l3_extent, case.l3_expected)
        centre = np.asarray(patient.vertebrae["L3"]["centroid_ras_mm"])
        for name, volume in degraded(patient.volume, centre):
            yield f"real {key}", name, volume, patient.l3_extent, whole


def verdict(s_mm: Optional[float], extent, expected: Optional[bool]) -> bool:
    """Right or wrong (see the module doc)."""
    if s_mm is None:
        return expected is not True
    return extent is not None and extent[0] <= s_mm <= extent[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model JSON (default: the shipped model)")
    parser.add_argument("--phantoms", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    answer, pixel_mm = model.metadata.answer_level, model.preprocess.pixel_mm
    index = model.levels.index(answer)
    tally: dict[str, dict] = {}
    changed = []
    for group, case, volume, extent, expected in scans(args.data, args.phantoms):
        projections = project(volume, model.preprocess)
        probs = predict_views(model, projections, per_view=False)["fused"]
        rows = {
            "alone": decode_levels(probs, model.levels, model.threshold, pixel_mm,
                                   answer).decoded[answer].row,
            "run": l3_row(probs, model.threshold, pixel_mm, index, gaps=False),
            "gaps": l3_row(probs, model.threshold, pixel_mm, index, gaps=True),
        }
        s_mm = {k: None if r is None else float(projections.geometry.row_to_s(r))
                for k, r in rows.items()}
        right = {k: verdict(s_mm[k], extent, expected) for k in DECODERS}
        t = tally.setdefault(group, {"scans": 0, **{k: 0 for k in DECODERS}})
        t["scans"] += 1
        for k in DECODERS:
            t[k] += right[k]
        if len(set(right.values())) > 1:
            changed.append({"group": group, "case": case, "expected": expected,
                            "s_mm": s_mm, "right": right})
    print(f"{'scans right':16s} {'n':>4s} " + " ".join(f"{k:>6s}" for k in DECODERS))
    for group, t in tally.items():
        print(f"{group:16s} {t['scans']:4d} " + " ".join(f"{t[k]:6d}" for k in DECODERS))
    for c in changed:
        print(f"  {c['group']} {c['case']} (L3 expected {c['expected']}): " + "; ".join(
            f"{k} {'-' if c['s_mm'][k] is None else round(c['s_mm'][k])} "
            f"{'right' if c['right'][k] else 'WRONG'}" for k in DECODERS))
    print(json.dumps({"model": model.metadata.name, "groups": tally, "changed": changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
