"""Accuracy on real CT: the shared development scans, whole and cut to harder fields of view.

    python benchmarks/real_ct.py [--model JSON] [--data ../shared/data] [--qa-dir DIR]

``real_skeleton_ct328.nrrd`` (TotalSegmentator data set, CC BY 4.0; a real
patient's skeleton, everything else set to 0 HU) is validation-only: no model is
ever trained on it. Besides the whole scan, it is cut to fields of view that
published tools get wrong: no pelvis (counting must start from the ribs), no
ribs (counting from the sacrum only), a tight window around L3, and two cuts
without L3 (above it, below it), which must answer "not found".

A sweep then moves one edge of the field of view through the lumbar spine in
4 mm steps (the lower edge from the L2 centre down to the bottom of L4, the
upper edge from the L4 centre up to the top of L2). A cut that leaves all of
L3 must find it inside its extent, one that leaves none of it must answer "not
found", and one through L3 may answer either way but a slice it reports must
lie inside L3. This is where counting from the ribs alone, or from the sacrum
alone, goes wrong; the sweep also counts how many wrong answers were not flagged
for review (``L3Result.needs_review``), the ones a user would trust.

Last, the whole scan degraded the ways clinical scans differ: 4.5 mm slices,
40 HU noise, bone 150 HU less dense (osteoporosis), and in-plane fields of view
narrowed to 200, 150 and 100 mm around the spine (targeted reconstructions).

Per case: the status, the error of the chosen slice's S position against the L3
centroid (mm), and whether that slice lies inside the L3 extent from
``truth.json``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from L3LocatorLib.errors import L3LocatorError
from L3LocatorLib.inference import load_model
from L3LocatorLib.locate import locate
from L3LocatorLib.qa import save_qa_png
from L3LocatorLib.volume import Volume, read_volume

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Case:
    name: str
    s_min: Optional[float]  #: keep slices whose centre S >= this (mm); None = no cut
    s_max: Optional[float]
    l3_expected: bool


def cases_for(vertebrae: dict) -> list[Case]:
    """Fields of view cut at levels taken from the scan's own vertebra extents."""
    l2, l3, l4 = (vertebrae[n]["s_extent_mm"] for n in ("L2", "L3", "L4"))
    return [
        Case("whole scan", None, None, True),
        Case("no pelvis (cut mid L4)", 0.5 * (l4[0] + l4[1]), None, True),
        Case("no pelvis (cut at L3/L4)", l4[1] - 5.0, None, True),
        Case("no ribs (cut at L1/L2)", None, l2[1] + 5.0, True),
        Case("tight L2-L4", l4[0], l2[1], True),
        Case("above L3 (L2 and up)", l3[1] + 8.0, None, False),
        Case("below L3 (L4 and down)", None, l3[0] - 8.0, False),
    ]


SWEEP_STEP_MM = 4.0


def sweep_cases(vertebrae: dict) -> list[tuple[Case, Optional[bool]]]:
    """Cuts moving the lower, then the upper, field-of-view edge through L2..L4.

    Each case comes with whether L3 must be found (True), must not be (False), or
    may be either way because the cut passes through L3 (None).
    """
    l3_low, l3_high = vertebrae["L3"]["s_extent_mm"]
    out: list[tuple[Case, Optional[bool]]] = []
    for s_min in np.arange(vertebrae["L2"]["centroid_ras_mm"][2],
                           vertebrae["L4"]["s_extent_mm"][0], -SWEEP_STEP_MM):
        expected = False if s_min > l3_high else (True if s_min <= l3_low else None)
        out.append((Case(f"lower edge at S {s_min:.0f}", float(s_min), None, bool(expected)),
                    expected))
    for s_max in np.arange(vertebrae["L4"]["centroid_ras_mm"][2],
                           vertebrae["L2"]["s_extent_mm"][1], SWEEP_STEP_MM):
        expected = False if s_max < l3_low else (True if s_max >= l3_high else None)
        out.append((Case(f"upper edge at S {s_max:.0f}", None, float(s_max), bool(expected)),
                    expected))
    return out


def inside_l3(result, vertebrae: dict) -> bool:
    """Whether ``result`` found L3 at an S position within the true L3 extent."""
    low, high = vertebrae["L3"]["s_extent_mm"]
    return result.found and low <= result.s_mm <= high


def sweep(volume: Volume, vertebrae: dict, model) -> dict:
    """Run :func:`sweep_cases`; count the wrong answers of each kind."""
    tally = {"cases": 0, "missed": 0, "false_alarms": 0, "outside_l3": 0,
             "confident_wrong": 0, "flagged_right": 0, "wrong": []}
    for case, expected in sweep_cases(vertebrae):
        result = locate(crop_s(volume, case.s_min, case.s_max), model=model)
        tally["cases"] += 1
        inside = inside_l3(result, vertebrae)
        problem = None
        if result.found and not inside:
            problem = "false_alarms" if expected is False else "outside_l3"
        elif expected is True and not result.found:
            problem = "missed"
        if problem:
            tally[problem] += 1
            tally["confident_wrong"] += int(result.found and not result.needs_review)
            tally["wrong"].append({"case": case.name, "problem": problem,
                                   "confidence": round(result.confidence, 3),
                                   "s_mm": result.s_mm, "flagged": result.needs_review})
        else:
            tally["flagged_right"] += int(result.needs_review)
    tally["correct"] = tally["cases"] - len(tally["wrong"])
    return tally


def degraded(volume: Volume, l3_ras: np.ndarray) -> list[tuple[str, Volume]]:
    """The whole scan made harder: thick slices, noise, thin bone, narrow fields of view."""
    a = volume.array
    out = []
    thick = np.array(volume.ijk_to_ras)
    thick[:3, 2] *= 3
    out.append(("4.5 mm slices (every 3rd)", Volume(a[::3], thick, "thick")))
    noise = np.random.default_rng(0).normal(0.0, 40.0, a.shape)
    out.append(("noise 40 HU", Volume((a + noise).astype(np.float32), volume.ijk_to_ras, "n")))
    thin = np.where(a > 150, a - 150, a).astype(np.float32)
    out.append(("bone 150 HU less dense", Volume(thin, volume.ijk_to_ras, "thin")))
    i, j, _ = np.round(volume.ras_to_ijk_points(l3_ras)).astype(int)
    for width_mm in (200, 150, 100):
        h = int(width_mm / 2 / volume.spacing[0])
        i0, j0 = max(0, i - h), max(0, j - h)
        matrix = np.array(volume.ijk_to_ras)
        matrix[:3, 3] = volume.ijk_to_ras_points((float(i0), float(j0), 0.0))
        out.append((f"in-plane {width_mm} mm wide", Volume(a[:, j0 : j + h, i0 : i + h], matrix,
                                                          "narrow")))
    return out


def crop_s(volume: Volume, s_min: Optional[float], s_max: Optional[float]) -> Volume:
    """Keep the slices whose centres lie in ``[s_min, s_max]`` (mm); k must run along S."""
    k = np.arange(volume.array.shape[0])
    s = volume.ijk_to_ras_points(np.stack([np.zeros_like(k), np.zeros_like(k), k], 1))[:, 2]
    keep = np.ones_like(k, dtype=bool)
    if s_min is not None:
        keep &= s >= s_min
    if s_max is not None:
        keep &= s <= s_max
    kept = np.flatnonzero(keep)
    return volume.crop_slices(int(kept.min()), int(kept.max()) + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="model JSON (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--qa-dir", type=Path)
    args = parser.parse_args()
    scan = args.data / "real_skeleton_ct328.nrrd"
    if not scan.exists():
        print(f"{scan} is not here; nothing to evaluate.", file=sys.stderr)
        return 0
    truth = json.loads((args.data / "truth.json").read_text())[scan.name]["vertebrae"]
    l3_s = truth["L3"]["centroid_ras_mm"][2]
    l3_low, l3_high = truth["L3"]["s_extent_mm"]
    model = load_model(args.model, device="cpu")
    volume = read_volume(scan)
    rows = []
    print(f"model {model.metadata.name} {model.metadata.version}; L3 centroid S {l3_s:.1f} mm, "
          f"extent {l3_low:.1f}..{l3_high:.1f} mm")
    print(f"{'case':28s} {'status':10s} {'conf':>5s} {'S mm':>7s} {'err mm':>7s}  verdict")
    for case in cases_for(truth):
        cropped = crop_s(volume, case.s_min, case.s_max)
        try:
            result = locate(cropped, model=model)
        except L3LocatorError as error:
            print(f"{case.name:28s} error: {error}")
            rows.append({"case": case.name, "status": "error", "correct": False})
            continue
        error_mm = abs(result.s_mm - l3_s) if result.found else None
        inside = inside_l3(result, truth)
        correct = inside if case.l3_expected else not result.found
        verdict = "ok" if correct else "WRONG"
        s_text = f"{result.s_mm:7.1f}" if result.found else "      -"
        err_text = f"{error_mm:7.1f}" if error_mm is not None else "      -"
        print(f"{case.name:28s} {result.status:10s} {result.confidence:5.2f} {s_text} "
              f"{err_text}  {verdict}")
        for reason in result.review:
            print(f"{'':28s} check: {reason}")
        if args.qa_dir:
            slug = "".join(c if c.isalnum() else "_" for c in case.name)
            save_qa_png(result, args.qa_dir / f"ct328_{slug}.png", title=f"ct328: {case.name}")
        rows.append({
            "case": case.name, "status": result.status, "confidence": round(result.confidence, 3),
            "s_mm": result.s_mm, "error_mm": error_mm, "inside_l3": bool(inside),
            "l3_expected": case.l3_expected, "correct": bool(correct),
        })
    n_correct = sum(r["correct"] for r in rows)
    print(f"{n_correct}/{len(rows)} cases correct")
    robustness = []
    for name, harder in degraded(volume, np.asarray(truth["L3"]["centroid_ras_mm"])):
        result = locate(harder, model=model)
        inside = inside_l3(result, truth)
        verdict = "ok" if inside else ("not found" if not result.found else "WRONG")
        print(f"{name:28s} {result.status:10s} {result.confidence:5.2f}  {verdict}")
        robustness.append({"case": name, "status": result.status, "inside_l3": bool(inside),
                           "confidence": round(result.confidence, 3)})
    swept = sweep(volume, truth, model)
    print(f"sweep of field-of-view edges every {SWEEP_STEP_MM:.0f} mm: {swept['correct']}/"
          f"{swept['cases']} correct ({swept['false_alarms']} false alarms, "
          f"{swept['missed']} missed, {swept['outside_l3']} outside L3); wrong and not flagged "
          f"for review: {swept['confident_wrong']}; right but flagged: {swept['flagged_right']}")
    for wrong in swept["wrong"]:
        flag = "flagged" if wrong.get("flagged") else "NOT flagged"
        print(f"  {wrong['case']:24s} {wrong['problem']:12s} conf {wrong['confidence']:.2f} "
              f"{flag}")
    print(json.dumps({"scan": scan.name, "model": model.metadata.name, "correct": n_correct,
                      "cases": len(rows), "rows": rows, "sweep": swept,
                      "degraded": robustness}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
