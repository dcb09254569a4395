"""Accuracy on real CT: every real scan in ``../shared/data``, whole and cut to harder views.

    python benchmarks/real_ct.py [--model JSON] [--data ../shared/data] [--qa-dir DIR]
                                 [--patients ct328,lidc0001] [--json FILE]

The real scans (none of them ever trained on):

``ct328``  ``real_skeleton_ct328.nrrd`` (TotalSegmentator data set, CC BY 4.0): a real
           patient's skeleton, pelvis to lower thorax, everything but bone set to 0 HU
           (located as it is: a 0 HU background lies below the HU window like air).
``lidc0001``  ``real_chest_ct_lidc0001.nii.gz`` (LIDC-IDRI-0001, CC BY 3.0): a real contrast
           chest CT with arms and table, neck to upper abdomen; it ends inside L3, so L3 is
           only partly in view. Its T12, L1 and L2 rows are checked against the labels.
``verse012``  ``real_spine_ct_verse012.nii.gz`` (VerSe'19, CC BY-SA 4.0): a real CT slab
           105 mm wide around the spine (3 mm sagittal sections), T9 to the top of L4, with a
           manual mask T10-L3; L3 lies 21 mm above the lower edge. A spine crop.
``acrin001``  ``real_ct_acrin_flt001.nii.gz`` (TCIA ACRIN-FLT-Breast 001, CC BY 3.0): the
           low-dose non-contrast CT of a PET/CT, T10 to the coccyx, full field with soft
           tissue; levels counted by eye (S ranges only, +/- 3 mm), so no body centre (dR, dA)
           and its narrow fields of view are centred on the spine track at L3.

Each scan is cut to the fields of view that published tools get wrong, where its
anatomy allows: no pelvis (counting must start from the ribs), no ribs (counting
from the sacrum only), tight windows, and cuts without L3 (above it, below it,
above L1), which must answer "not found". A cut that keeps all of L3 must find it
inside its extent from ``truth.json``; one that keeps none of it must answer "not
found"; one that keeps part of L3 may answer either way, but a slice it reports
must lie inside L3 (on lidc0001 every cut that keeps the scan's lower edge is such
a case). The same rule judges the whole scan degraded the ways clinical scans
differ: about 5 mm slices, 40 HU noise, bone 150 HU less dense, and in-plane fields
of view narrowed to 200, 150 and 100 mm around the spine.

A sweep then moves one edge of the field of view through the lumbar spine in 4 mm
steps (the lower edge from the L2 centre down to the bottom of L4 or of the scan,
the upper edge from the L4 centre up to the top of L2 when L4 is in the scan). The
sweep counts the wrong answers that were not flagged for review
(``L3Result.needs_review``): the ones a user would trust.

Columns: status and confidence; S of the reported slice and its distance to the L3
centroid (mm); the reported point's right-left and anterior-posterior distance to
the centre of the L3 vertebral body (dR, dA, mm; body centres from the masks, see
``body_centres.py``; only where all of L3 is in the scan); "flag" when the answer
asks for review, "mid" when the point fell back to the spine's midline; the second reader
against the answer ("2nd": R / S when its count from the ribs / sacrum puts L3 there, x for
a count that does not, - when it could not count); the verdict. A status "unsure" is an
answer given below the model's threshold (flagged).
A "not found" that names a candidate slice (``L3Result.candidate_s_mm``, a near miss)
shows its S in brackets and whether it lies in L3; the sweep counts those too.
Then, per patient, every level the model predicts against the labelled centroids
(S, mm; levels partly outside the scan are marked "edge"). The last line is one
JSON object with everything.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from body_centres import body_centres_for, thin_bone

from L3LocatorLib.errors import L3LocatorError
from L3LocatorLib.locate import locate
from L3LocatorLib.network import load_model, predict_views
from L3LocatorLib.projection import PreprocessConfig, project
from L3LocatorLib.qa import save_qa_png
from L3LocatorLib.second_reader import confirming_anchors
from L3LocatorLib.volume import Volume, read_volume

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Real scans with intensities, by short name: file in the data folder.
PATIENTS = {
    "ct328": "real_skeleton_ct328.nrrd",
    "lidc0001": "real_chest_ct_lidc0001.nii.gz",
    "verse012": "real_spine_ct_verse012.nii.gz",
    "acrin001": "real_ct_acrin_flt001.nii.gz",
}

#: Levels whose rows must be found near the labels (issue 12: the chest CT's T12, L1, L2).
LEVELS_CHECKED = {"lidc0001": ("T12", "L1", "L2")}
#: Largest allowed distance (mm) between a predicted level and its labelled centroid (S).
LEVEL_TOLERANCE_MM = 10.0
SWEEP_STEP_MM = 4.0


@dataclass(frozen=True)
class Case:
    name: str
    s_min: Optional[float]  #: keep slices whose centre S >= this (mm); None = no cut
    s_max: Optional[float]
    l3_expected: Optional[bool]  #: True must find, False must not, None either way


@dataclass
class Patient:
    """One real scan with its labelled vertebrae (``truth.json`` entry, RAS mm)."""

    key: str
    volume: Volume
    vertebrae: dict
    #: level -> centre of the vertebral body (RAS mm, from the masks; ``body_centres``)
    body_centres: dict = field(default_factory=dict)

    @property
    def s_range(self) -> tuple[float, float]:
        """S (mm) of the lowest and highest slice centre."""
        s = slice_s(self.volume)
        return float(s.min()), float(s.max())

    @property
    def l3_extent(self) -> tuple[float, float]:
        low, high = self.vertebrae["L3"]["s_extent_mm"]
        return float(low), float(high)

    def centroid_s(self, level: str) -> float:
        """S (mm) of the level's centroid (the middle of its extent where only that is known,
        as for the ACRIN CT's counted levels)."""
        v = self.vertebrae[level]
        if "centroid_ras_mm" in v:
            return float(v["centroid_ras_mm"][2])
        return float(v.get("centroid_s_mm", 0.5 * sum(v["s_extent_mm"])))

    def spine_centre(self, level: str) -> np.ndarray:
        """RAS (mm) to centre narrow fields of view on: the level's centroid, else the spine
        track of the whole scan's projections at the level's S (no model involved)."""
        v = self.vertebrae[level]
        if "centroid_ras_mm" in v:
            return np.asarray(v["centroid_ras_mm"], dtype=float)
        projections = project(self.volume, PreprocessConfig())
        geometry = projections.geometry
        row = int(np.clip(round(float(geometry.s_to_row(self.centroid_s(level)))), 0,
                          geometry.n_rows - 1))
        return np.asarray(geometry.to_ras(row, float(projections.spine_frontal_col[row]),
                                          float(projections.spine_sagittal_col[row])))

    def fully_in_view(self, level: str) -> bool:
        """The level's labelled extent lies inside the scan and does not touch its edge."""
        v = self.vertebrae.get(level)
        return v is not None and not v.get("touches_scan_edge", False)


def slice_s(volume: Volume) -> np.ndarray:
    """S (mm) of every slice centre along k; k must run along S."""
    k = np.arange(volume.array.shape[0])
    return volume.ijk_to_ras_points(np.stack([np.zeros_like(k), np.zeros_like(k), k], 1))[:, 2]


def l3_expectation(patient: Patient, s_min: Optional[float], s_max: Optional[float]
                   ) -> Optional[bool]:
    """Whether a cut ``[s_min, s_max]`` (mm) keeps all of L3 (True), none (False), or part."""
    scan_low, scan_high = patient.s_range
    low = scan_low if s_min is None else max(scan_low, s_min)
    high = scan_high if s_max is None else min(scan_high, s_max)
    l3_low, l3_high = patient.l3_extent
    if high < l3_low or low > l3_high:
        return False
    if patient.fully_in_view("L3") and low <= l3_low and high >= l3_high:
        return True
    return None


def cases_for(patient: Patient) -> list[Case]:
    """Fields of view cut at levels taken from the scan's own vertebra extents; only the cuts
    the scan's anatomy allows (no pelvis cut on a chest CT that has none)."""
    v = patient.vertebrae
    cuts: list[tuple[str, Optional[float], Optional[float]]] = [("whole scan", None, None)]
    if "L5" in v:
        # T10-L5 with no sacrum or pelvis: an abdomen series that stops at L5 (counting
        # must come from the ribs)
        cuts.append(("no sacrum (cut at L5/S1)", v["L5"]["s_extent_mm"][0], None))
    if "L4" in v:
        l4 = v["L4"]["s_extent_mm"]
        cuts += [("no pelvis (cut mid L4)", 0.5 * (l4[0] + l4[1]), None),
                 ("no pelvis (cut at L3/L4)", l4[1] - 5.0, None)]
    if "L2" in v:
        cuts.append(("no ribs (cut at L1/L2)", None, v["L2"]["s_extent_mm"][1] + 5.0))
    if "L4" in v and "L2" in v:
        cuts.append(("tight L2-L4", v["L4"]["s_extent_mm"][0], v["L2"]["s_extent_mm"][1]))
    if "T11" in v and not patient.fully_in_view("L3"):
        # A chest CT's lowest 80-100 mm: the last ribs and the upper lumbar spine only.
        cuts.append(("tight T11 and down", None, v["T11"]["s_extent_mm"][1]))
    cuts.append(("above L3 (L2 and up)", patient.l3_extent[1] + 8.0, None))
    if "L4" in v:
        cuts.append(("below L3 (L4 and down)", None, patient.l3_extent[0] - 8.0))
    if "L1" in v:
        cuts.append(("above L1 (T12 and up)", v["L1"]["s_extent_mm"][1] + 5.0, None))
    return [Case(name, lo, hi, l3_expectation(patient, lo, hi)) for name, lo, hi in cuts]


def sweep_cases(patient: Patient) -> list[Case]:
    """Cuts moving the lower, then the upper, field-of-view edge through L2..L4 (4 mm steps)."""
    v = patient.vertebrae
    scan_low, _ = patient.s_range
    out: list[Case] = []
    lowest = v["L4"]["s_extent_mm"][0] if "L4" in v else scan_low
    for s_min in np.arange(patient.centroid_s("L2"), max(lowest, scan_low), -SWEEP_STEP_MM):
        out.append(Case(f"lower edge at S {s_min:.0f}", float(s_min), None,
                        l3_expectation(patient, float(s_min), None)))
    if "L4" in v:
        for s_max in np.arange(patient.centroid_s("L4"), v["L2"]["s_extent_mm"][1],
                               SWEEP_STEP_MM):
            out.append(Case(f"upper edge at S {s_max:.0f}", None, float(s_max),
                            l3_expectation(patient, None, float(s_max))))
    return out


def inside_l3(result, patient: Patient) -> bool:
    """Whether ``result`` found L3 at an S position within the true L3 extent."""
    low, high = patient.l3_extent
    return bool(result.found and low <= result.s_mm <= high)


def candidate_in_l3(result, patient: Patient) -> Optional[bool]:
    """For a not-found answer that names a candidate slice: whether it lies within the true
    L3 extent; None when there is no candidate."""
    if result.candidate_s_mm is None:
        return None
    low, high = patient.l3_extent
    return bool(low <= result.candidate_s_mm <= high)


def judge(result, patient: Patient, expected: Optional[bool]) -> Optional[str]:
    """The problem with ``result`` given what the cut holds, or None when it is right:
    "false_alarm" (found without L3 in view), "outside_l3" (found elsewhere), "missed"."""
    if result.found and not inside_l3(result, patient):
        return "false_alarm" if expected is False else "outside_l3"
    if expected is True and not result.found:
        return "missed"
    return None


def sweep(patient: Patient, model) -> dict:
    """Run :func:`sweep_cases`; count the wrong answers of each kind."""
    tally = {"cases": 0, "missed": 0, "false_alarm": 0, "outside_l3": 0,
             "confident_wrong": 0, "flagged_right": 0, "wrong": [],
             "candidates_in_l3": 0, "candidates_elsewhere": 0}
    for case in sweep_cases(patient):
        result = locate(crop_s(patient.volume, case.s_min, case.s_max), model=model)
        tally["cases"] += 1
        problem = judge(result, patient, case.l3_expected)
        candidate = candidate_in_l3(result, patient)
        if candidate is not None:
            tally["candidates_in_l3" if candidate else "candidates_elsewhere"] += 1
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


def degraded(volume: Volume, centre_ras: np.ndarray) -> list[tuple[str, Volume]]:
    """The whole scan made harder: thick slices, noise, thin bone, narrow fields of view
    (``centre_ras``: RAS mm of the spine point the narrow fields of view are centred on)."""
    a = volume.array
    out = []
    step = max(2, int(round(4.5 / volume.spacing[2])))
    thick = np.array(volume.ijk_to_ras)
    thick[:3, 2] *= step
    out.append((f"{step * volume.spacing[2]:.1f} mm slices", Volume(a[::step], thick, "thick")))
    noise = np.random.default_rng(0).normal(0.0, 40.0, a.shape)
    out.append(("noise 40 HU", Volume((a + noise).astype(np.float32), volume.ijk_to_ras, "n")))
    out.append(("bone 150 HU less dense", thin_bone(volume, 150.0)))
    i, j, _ = np.round(volume.ras_to_ijk_points(centre_ras)).astype(int)
    scan_width_mm = min(a.shape[2] * volume.spacing[0], a.shape[1] * volume.spacing[1])
    for width_mm in (200, 150, 100):
        if width_mm >= scan_width_mm:  # already this narrow (a spine crop)
            continue
        hi, hj = (int(width_mm / 2 / volume.spacing[axis]) for axis in (0, 1))
        i0, j0 = max(0, i - hi), max(0, j - hj)
        matrix = np.array(volume.ijk_to_ras)
        matrix[:3, 3] = volume.ijk_to_ras_points((float(i0), float(j0), 0.0))
        out.append((f"in-plane {width_mm} mm wide",
                    Volume(a[:, j0 : j + hj, i0 : i + hi], matrix, "narrow")))
    return out


def crop_s(volume: Volume, s_min: Optional[float], s_max: Optional[float]) -> Volume:
    """Keep the slices whose centres lie in ``[s_min, s_max]`` (mm); k must run along S."""
    s = slice_s(volume)
    keep = np.ones_like(s, dtype=bool)
    if s_min is not None:
        keep &= s >= s_min
    if s_max is not None:
        keep &= s <= s_max
    kept = np.flatnonzero(keep)
    return volume.crop_slices(int(kept.min()), int(kept.max()) + 1)


def run_case(name: str, volume: Volume, patient: Patient, expected: Optional[bool], model,
             qa_dir: Optional[Path] = None) -> dict:
    """Locate L3 in one cut; print one table line and return the row."""
    try:
        result = locate(volume, model=model)
    except L3LocatorError as error:
        print(f"{name:28s} error: {error}")
        return {"case": name, "status": "error", "correct": False, "l3_expected": expected}
    centroid_s = patient.centroid_s("L3")
    body = patient.body_centres.get("L3")
    problem = judge(result, patient, expected)
    row = {"case": name, "status": result.status, "confidence": round(result.confidence, 3),
           "l3_expected": expected, "inside_l3": inside_l3(result, patient),
           "flagged": result.needs_review, "problem": problem, "correct": problem is None,
           "s_mm": result.s_mm, "error_mm": None, "d_r_mm": None, "d_a_mm": None,
           "point_in_body": result.point_in_body,
           "candidate_s_mm": result.candidate_s_mm,
           "candidate_in_l3": candidate_in_l3(result, patient)}
    s_text = err_text = dr_text = da_text = "      -"
    if result.found:
        row["error_mm"] = abs(result.s_mm - centroid_s)
        s_text, err_text = f"{result.s_mm:7.1f}", f"{row['error_mm']:7.1f}"
        if body is not None and row["inside_l3"]:
            row["d_r_mm"] = result.l3_ras_mm[0] - body[0]
            row["d_a_mm"] = result.l3_ras_mm[1] - body[1]
            dr_text, da_text = f"{row['d_r_mm']:+7.1f}", f"{row['d_a_mm']:+7.1f}"
    expect = {True: "L3", False: "none", None: "part"}[expected]
    verdict = "ok" if problem is None else f"WRONG ({problem})"
    if row["candidate_in_l3"] is not None:
        s_text = f"({result.candidate_s_mm:5.0f})"
        verdict += f", candidate slice {'in' if row['candidate_in_l3'] else 'outside'} L3"
    row["presence"] = result.presence
    row["second_reader"] = reader_code(result)
    flag = ("flag" if result.needs_review else "") + ("" if result.point_in_body in (None, True)
                                                       else " mid")
    status = "unsure" if result.presence == "unsure" else result.status
    print(f"{name:28s} {expect:5s} {status:10s} {result.confidence:5.2f} {s_text} "
          f"{err_text} {dr_text} {da_text} {flag:4s} {row['second_reader']:3s} {verdict}")
    if qa_dir:
        slug = "".join(c if c.isalnum() else "_" for c in name)
        save_qa_png(result, qa_dir / f"{patient.key}_{slug}.png", title=f"{patient.key}: {name}")
    return row


def reader_code(result) -> str:
    """The second reader against the answer (or candidate), in three letters: "R" / "S" when
    its count from the ribs / the sacrum puts L3 there, "x" for a count that does not, "-"
    when it could not count."""
    reading = result.second_reading
    if reading is None or not reading.counted:
        return "-"
    s_mm = result.s_mm if result.found else result.candidate_s_mm
    confirmed = confirming_anchors(reading, s_mm)
    code = "".join(letter for anchor, letter in (("ribs", "R"), ("sacrum", "S"))
                   if anchor in confirmed)
    return code + "x" * (len(reading.l3_ranges()) - len(confirmed))


def level_table(patient: Patient, model) -> list[dict]:
    """Every predicted level of the whole scan against its labelled centroid (S, mm).

    Reports the decoded S where the level is found (above the model's threshold) and,
    for every level and view (fused, frontal only, sagittal only), the profile's peak S
    with its probability, so a level the model sees but is unsure of still shows where
    it looked.
    """
    result = locate(patient.volume, model=model)
    geometry = result.evidence.projections.geometry
    probs = predict_views(model, result.evidence.projections)
    views = list(probs)
    rows = []
    print(f"{'level':6s} {'true S':>7s} {'found S':>8s} {'err':>6s}  "
          + "  ".join(f"{v + ' peak S, p':>19s}" for v in views) + "  verdict")
    for index, level in enumerate(model.levels):
        truth = patient.vertebrae.get(level)
        if truth is None:
            continue
        true_s = patient.centroid_s(level)
        peaks = {}
        for view in views:
            peak = int(np.argmax(probs[view][index]))
            peaks[view] = (float(geometry.row_to_s(peak)), float(probs[view][index, peak]))
        found_s = result.levels_s_mm.get(level)
        error = abs(found_s - true_s) if found_s is not None else None
        if found_s is None:
            verdict = "not found"
        elif error <= LEVEL_TOLERANCE_MM:
            verdict = "ok"
        else:
            verdict = f"WRONG (> {LEVEL_TOLERANCE_MM:.0f} mm)"
        edge = "" if patient.fully_in_view(level) else " (edge)"
        found_text = f"{found_s:8.1f}" if found_s is not None else "       -"
        error_text = f"{error:6.1f}" if error is not None else "     -"
        peak_text = "  ".join(f"{s:13.1f} {p:5.2f}" for s, p in peaks.values())
        print(f"{level:6s} {true_s:7.1f} {found_text} {error_text}  {peak_text}  {verdict}{edge}")
        rows.append({"level": level, "true_s_mm": true_s, "found_s_mm": found_s,
                     "error_mm": error, "verdict": verdict,
                     "complete": patient.fully_in_view(level),
                     "peaks": {v: {"s_mm": s, "p": round(p, 3)} for v, (s, p) in peaks.items()}})
    checked = [r for r in rows if r["level"] in LEVELS_CHECKED.get(patient.key, ())]
    if checked:
        ok = sum(r["verdict"] == "ok" for r in checked)
        print(f"{', '.join(r['level'] for r in checked)} found within "
              f"{LEVEL_TOLERANCE_MM:.0f} mm of the labels: {ok}/{len(checked)}")
    return rows


def evaluate_patient(patient: Patient, model, qa_dir: Optional[Path] = None) -> dict:
    """All tables of one patient; returns them as one dictionary."""
    l3_low, l3_high = patient.l3_extent
    scan_low, scan_high = patient.s_range
    centroid_s = patient.centroid_s("L3")
    part = "" if patient.fully_in_view("L3") else " (only partly in the scan)"
    print(f"\n== {patient.key}: scan S {scan_low:.1f}..{scan_high:.1f} mm; L3 centroid S "
          f"{centroid_s:.1f} mm, extent {l3_low:.1f}..{l3_high:.1f} mm{part}")
    print(f"{'case':28s} {'L3?':5s} {'status':10s} {'conf':>5s} {'S mm':>7s} {'err mm':>7s} "
          f"{'dR mm':>7s} {'dA mm':>7s} {'':4s} 2nd verdict")
    rows = [run_case(c.name, crop_s(patient.volume, c.s_min, c.s_max), patient, c.l3_expected,
                     model, qa_dir) for c in cases_for(patient)]
    n_correct = sum(r["correct"] for r in rows)
    print(f"{n_correct}/{len(rows)} cuts correct")
    whole = l3_expectation(patient, None, None)
    robustness = [run_case(name, harder, patient, whole, model, qa_dir)
                  for name, harder in degraded(patient.volume, patient.spine_centre("L3"))]
    print(f"{sum(r['correct'] for r in robustness)}/{len(robustness)} degraded copies correct")
    swept = sweep(patient, model)
    print(f"sweep of field-of-view edges every {SWEEP_STEP_MM:.0f} mm: {swept['correct']}/"
          f"{swept['cases']} correct ({swept['false_alarm']} false alarms, "
          f"{swept['missed']} missed, {swept['outside_l3']} outside L3); wrong and not flagged "
          f"for review: {swept['confident_wrong']}; right but flagged: {swept['flagged_right']}; "
          f"candidate slices of not-found answers: {swept['candidates_in_l3']} in L3, "
          f"{swept['candidates_elsewhere']} elsewhere")
    for wrong in swept["wrong"]:
        flag = "flagged" if wrong.get("flagged") else "NOT flagged"
        print(f"  {wrong['case']:24s} {wrong['problem']:12s} conf {wrong['confidence']:.2f} "
              f"{flag}")
    print("levels of the whole scan (S of the labelled centroid):")
    levels = level_table(patient, model)
    unflagged = sum(1 for r in rows + robustness
                    if r.get("problem") in ("false_alarm", "outside_l3") and not r["flagged"])
    return {"patient": patient.key, "correct": n_correct, "cases": len(rows), "rows": rows,
            "degraded": robustness, "sweep": swept, "levels": levels,
            "unflagged_wrong": unflagged + swept["confident_wrong"]}


def load_patient(key: str, data: Path) -> Optional[Patient]:
    """The patient ``key`` of :data:`PATIENTS`, or None when its scan is not in ``data``."""
    scan = data / PATIENTS[key]
    if not scan.exists():
        return None
    truth = json.loads((data / "truth.json").read_text())[scan.name]["vertebrae"]
    volume = read_volume(scan)
    centres = body_centres_for(key, volume, truth, data)
    return Patient(key, volume, truth, centres)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model JSON (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--patients", default=",".join(PATIENTS),
                        help="comma-separated subset of " + ", ".join(PATIENTS))
    parser.add_argument("--qa-dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    print(f"model {model.metadata.name} {model.metadata.version}")
    results = []
    for key in args.patients.split(","):
        patient = load_patient(key, args.data)
        if patient is None:
            print(f"{args.data / PATIENTS[key]} is not here; skipped.", file=sys.stderr)
            continue
        results.append(evaluate_patient(patient, model, args.qa_dir))
    summary = {"model": model.metadata.name, "version": model.metadata.version,
               "patients": results}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=float))
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
