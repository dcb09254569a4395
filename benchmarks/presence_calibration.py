"""Where to draw the line between "L3 here", "L3 probably here, check it" and "no L3".

    python benchmarks/presence_calibration.py [--model JSON] [--data ../shared/data]
                                              [--phantoms 150] [--renders 20]
                                              [--features FILE] [--json FILE]

The model calls L3 present when its L3 confidence (peak probability) reaches the
model's ``threshold``, which was chosen on phantoms. Real CT sits lower on that scale:
on real scans the peak often lies inside L3 at 0.2-0.6. The product therefore answers
in three ways (``L3LocatorLib.presence``, ``locate``): sure (at or above ``threshold``);
a flagged low-confidence answer (at or above ``flag_threshold``, both single views
agreeing with the combined peak, and, where the peak lies within one vertebra of a scan
edge, the second reader's count confirming it); absent otherwise. This script measures every case
the decision can be judged on and chooses ``flag_threshold``:

* real CT (``benchmarks/real_ct.py``'s patients): every cut, degraded copy and
  field-of-view sweep step; a case with all of L3 in view must be answered inside L3,
  one with none of it must be absent, one with part of it may be either (an answer must
  lie inside L3);
* renders of the LIDC chest CT's label map with the real look (thin vertebral walls,
  osteoporotic bone; validation anatomy, never trained on), cut with and without L3;
* held-out phantoms (seeds 880000..., as ``reliability.py``).

The threshold is chosen leave one patient out: for each real patient, the lowest value
that keeps every case of the OTHER patients, the renders and the phantoms free of
wrong answers (an answer outside L3 or on a scan without L3), then applied to the patient
left out. The value shipped is the largest of these (the most cautious), and the table
shows what each patient would have got from the others alone. ``--features`` saves (or,
if the file exists, reuses) the per-case numbers so the choice can be re-run quickly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from real_ct import (
    PATIENTS,
    cases_for,
    crop_s,
    degraded,
    load_patient,
    slice_s,
    sweep_cases,
)

from L3LocatorLib.locate import locate
from L3LocatorLib.network import load_model
from L3LocatorLib.phantoms import make_phantom

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHANTOM_SEED0 = 880000
RENDER_SEED0 = 60000
#: Candidate flag thresholds tried (the decision uses >=).
GRID = np.round(np.arange(0.05, 0.70, 0.01), 2)


def features(model, volume) -> dict:
    """What the product says about one scan, with ``model``'s flag threshold set to the
    lowest of :data:`GRID`: the L3 confidence, the presence ("sure", "unsure": an answer
    at any flag threshold up to the confidence, "absent"), the S (mm) of the answer, and
    whether it is flagged for review."""
    result = locate(volume, model=model)
    return {"confidence": float(result.confidence), "presence": result.presence,
            "s_mm": result.s_mm, "flagged": bool(result.needs_review)}


def real_cases(model, data: Path) -> list[dict]:
    """Features of every cut, degraded copy and sweep step of each real patient, with the
    L3 extent (S mm) and whether the case holds all of L3 (True), none (False) or part."""
    out = []
    for key in PATIENTS:
        patient = load_patient(key, data)
        if patient is None:
            print(f"{key}: not in {data}; skipped", file=sys.stderr)
            continue
        low, high = patient.l3_extent
        whole = cases_for(patient)[0].l3_expected
        runs = [(c.name, crop_s(patient.volume, c.s_min, c.s_max), c.l3_expected)
                for c in cases_for(patient) + sweep_cases(patient)]
        runs += [(name, v, whole) for name, v in degraded(patient.volume,
                                                          patient.spine_centre("L3"))]
        for name, volume, expected in runs:
            try:
                row = features(model, volume)
            except Exception as error:  # noqa: BLE001  (a cut too small to read)
                print(f"{key} {name}: {error}", file=sys.stderr)
                continue
            row.update(domain="real", patient=key, case=name, expected=expected,
                       l3_extent=[low, high])
            out.append(row)
        print(f"{key}: {sum(r['patient'] == key for r in out)} cases", file=sys.stderr)
    return out


def render_cases(model, data: Path, n: int) -> list[dict]:
    """Features of ``n`` renders of the LIDC chest CT's label map with thin walls and
    osteoporotic bone, each whole and cut above L3 (validation anatomy)."""
    from L3LocatorLib.phantoms.label_conventions import resolve_class_map
    from L3LocatorLib.phantoms.labelmap_ct import labelmap_phantom
    from L3LocatorLib.volume import read_volume

    path = data / "real_chest_labelmap_lidc0001.nii.gz"
    if not path.exists() or n <= 0:
        return []
    labels = read_volume(path)
    class_map = resolve_class_map(path)
    out = []
    for seed in range(RENDER_SEED0, RENDER_SEED0 + n):
        volume, truth = labelmap_phantom(labels, class_map, seed, wall_fraction=0.25,
                                         bone_density=0.7)
        l3 = truth.vertebra("L3") if "L3" in [v.name for v in truth.vertebrae] else None
        if l3 is None:
            continue
        extent = [float(l3.bottom_s_mm), float(l3.top_s_mm)]
        s = slice_s(volume)
        inside = (s >= extent[0]) & (s <= extent[1])
        expected: Optional[bool] = bool(truth.l3_in_fov) if inside.any() else False
        if inside.any() and not (s.min() < extent[0] and s.max() > extent[1]):
            expected = None
        cuts = [("render", volume, expected)]
        above = np.flatnonzero(s > extent[1] + 8.0)
        if len(above) > 20:
            cuts.append(("render above L3", volume.crop_slices(int(above.min()),
                                                               int(above.max()) + 1), False))
        for name, v, exp in cuts:
            row = features(model, v)
            row.update(domain="render", patient="lidc0001-map", case=f"{name} {seed}",
                       expected=exp, l3_extent=extent)
            out.append(row)
    return out


def phantom_cases(model, n: int) -> list[dict]:
    """Features of ``n`` random phantoms at 3 mm (L3 present when its body centre is in
    the scan, ``Truth.l3_in_fov``)."""
    out = []
    for seed in range(PHANTOM_SEED0, PHANTOM_SEED0 + n):
        volume, truth = make_phantom(seed, preset="random", spacing=(3, 3, 3))
        row = features(model, volume)
        l3 = truth.vertebra("L3")
        row.update(domain="phantom", patient="phantoms", case=str(seed),
                   expected=bool(truth.l3_in_fov),
                   l3_extent=[float(l3.bottom_s_mm), float(l3.top_s_mm)])
        out.append(row)
    return out


def outcome(case: dict, threshold: float, flag_threshold: float) -> str:
    """What the product answers for ``case`` with ``flag_threshold``: "sure", "flagged"
    (an unsure answer) or "absent"."""
    if case["presence"] == "sure" or case["confidence"] >= threshold:
        return "sure"
    if case["presence"] == "unsure" and case["confidence"] >= flag_threshold:
        return "flagged"
    return "absent"


def verdict(case: dict, answer: str) -> str:
    """"right", "missed" (all of L3 in view, absent), "wrong" (an answer outside L3 or
    without L3) or "absent_ok"."""
    if answer == "absent":
        return "missed" if case["expected"] is True else "absent_ok"
    low, high = case["l3_extent"]
    inside = low <= case["s_mm"] <= high and case["expected"] is not False
    return "right" if inside else "wrong"


def tally(cases: list[dict], threshold: float, flag_threshold: float) -> dict:
    """Counts of each outcome: right (sure / flagged), wrong (sure / flagged), missed,
    absent and right to be."""
    counts = {"cases": len(cases), "right_sure": 0, "right_flagged": 0, "wrong_sure": 0,
              "wrong_flagged": 0, "missed": 0, "absent_ok": 0, "right_unflagged": 0}
    for case in cases:
        answer = outcome(case, threshold, flag_threshold)
        v = verdict(case, answer)
        counts[f"{v}_{answer}" if v in ("right", "wrong") else v] += 1
        counts["right_unflagged"] += int(v == "right" and answer == "sure"
                                         and not case["flagged"])
    return counts


def lowest_safe(cases: list[dict], threshold: float) -> float:
    """The lowest flag threshold of :data:`GRID` that adds no wrong answer on ``cases``
    (the wrong answers at or above ``threshold`` are the model's, whatever this value)."""
    for value in GRID:
        if tally(cases, threshold, float(value))["wrong_flagged"] == 0:
            return float(value)
    return float(threshold)


def choose(cases: list[dict], threshold: float) -> dict:
    """Leave one real patient out: the threshold from the others, applied to it."""
    patients = sorted({c["patient"] for c in cases if c["domain"] == "real"})
    folds = {}
    for held in patients:
        others = [c for c in cases if c["patient"] != held]
        value = lowest_safe(others, threshold)
        folds[held] = {"flag_threshold": value,
                       "held_out": tally([c for c in cases if c["patient"] == held],
                                         threshold, value)}
    chosen = max([f["flag_threshold"] for f in folds.values()] or [threshold])
    return {"folds": folds, "flag_threshold": chosen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model JSON (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--phantoms", type=int, default=150)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--features", type=Path, help="cache of the per-case numbers")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--write-model", action="store_true",
                        help="store the chosen flag threshold in the model's JSON (with the "
                             "leave-one-patient-out table under metrics)")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    threshold = model.threshold
    shipped_flag = model.metadata.flag_threshold
    model.metadata.flag_threshold = float(GRID[0])  # every unsure answer, judged below
    if args.features and args.features.exists():
        cases = json.loads(args.features.read_text())
    else:
        cases = (real_cases(model, args.data) + render_cases(model, args.data, args.renders)
                 + phantom_cases(model, args.phantoms))
        if args.features:
            args.features.write_text(json.dumps(cases, indent=0))
    result = choose(cases, threshold)
    chosen = result["flag_threshold"]
    print(f"model {model.metadata.name} {model.metadata.version}: threshold {threshold:.3f}, "
          f"flag threshold in the model {shipped_flag}")
    print(f"{'held out':12s} {'flag thr':>8s} {'cases':>5s} {'sure':>5s} {'flagged':>7s} "
          f"{'missed':>6s} {'wrong':>5s}")
    for held, fold in result["folds"].items():
        t = fold["held_out"]
        print(f"{held:12s} {fold['flag_threshold']:8.2f} {t['cases']:5d} {t['right_sure']:5d} "
              f"{t['right_flagged']:7d} {t['missed']:6d} "
              f"{t['wrong_sure'] + t['wrong_flagged']:5d}")
    print(f"\nchosen flag threshold {chosen:.2f} (the most cautious fold); per domain and "
          "patient, today's threshold alone against the three outcomes:")
    groups = sorted({(c["domain"], c["patient"]) for c in cases})
    summary = {}
    for domain, patient in groups:
        subset = [c for c in cases if c["patient"] == patient]
        before, after = tally(subset, threshold, 2.0), tally(subset, threshold, chosen)
        summary[patient] = {"before": before, "after": after}
        print(f"{domain:8s} {patient:13s} n={len(subset):4d}  before: right "
              f"{before['right_sure']:3d} missed {before['missed']:3d} wrong "
              f"{before['wrong_sure']}  |  after: right {after['right_sure']:3d} + flagged "
              f"{after['right_flagged']:3d}, missed {after['missed']:3d}, wrong "
              f"{after['wrong_sure']} + flagged {after['wrong_flagged']}; right and not "
              f"flagged {after['right_unflagged']}")
    out = {"model": model.metadata.name, "version": model.metadata.version,
           "threshold": threshold, **result, "summary": summary}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    if args.write_model:
        write_flag_threshold(model.path, chosen, result["folds"])
    print(json.dumps(out))
    return 0


def write_flag_threshold(model_json: Path, value: float, folds: dict) -> None:
    """Set ``flag_threshold`` in ``model_json``, recording how it was chosen."""
    meta = json.loads(Path(model_json).read_text())
    meta["flag_threshold"] = round(float(value), 3)
    meta.setdefault("metrics", {})["flag_threshold_calibration"] = {
        "command": "python benchmarks/presence_calibration.py --write-model",
        "rule": "the most cautious of the leave-one-real-patient-out choices",
        "folds": {k: f["flag_threshold"] for k, f in folds.items()}}
    Path(model_json).write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote flag_threshold {value:.2f} into {model_json}")


if __name__ == "__main__":
    sys.exit(main())
