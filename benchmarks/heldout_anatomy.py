"""Levels on synthetic CTs of a real anatomy the model never trained on.

    python benchmarks/heldout_anatomy.py [--model JSON] [--n 40] [--seed 20000]
                                         [--data ../shared/data] [--cache DIR]

One real chest CT is a single data point; its own label map (TotalSegmentator v2,
kept for validation only, never a training source) rendered ``--n`` times with
random contrast, noise, field of view and bone density gives many views of the same
unseen patient. Each render is run once with its usual walls and once with thin
vertebral walls (``thin_walls=1``, the look of older patients' real CT).

Per level (T12, L1, L2) and per view (the combined answer and each view alone): how
often the peak lies within ``LEVEL_TOLERANCE_MM`` of the labelled landmark, how often
the level is found there (peak at or above the model's threshold), how often it is
found elsewhere (a confident wrong level), and how many of those wrong answers the
review policy's view-disagreement check would flag. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from real_ct import LEVEL_TOLERANCE_MM

from L3LocatorLib.network import load_model
from L3LocatorLib.review import views_apart_mm
from training.evaluate import predict_samples
from training.sources import parse_sources

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LABEL_MAP = "real_chest_labelmap_lidc0001.nii.gz"
LEVELS = ("T12", "L1", "L2")
VARIANTS = {"usual walls": "", "thin walls": ":thin_walls=1"}


def level_counts(samples, predictions, model, level: str) -> dict[str, dict[str, int]]:
    """Per view: renders showing ``level``, peaks within tolerance, found right, found
    wrong, and wrong answers the view-disagreement check flags (combined view only)."""
    index = model.levels.index(level)
    counts: dict[str, dict[str, int]] = {}
    for sample, probs in zip(samples, predictions):
        if level not in sample.level_rows:
            continue
        true_row = sample.level_rows[level]
        peaks = {view: int(np.argmax(p[index])) for view, p in probs.items()}
        for view, p in probs.items():
            c = counts.setdefault(view, dict.fromkeys(
                ("n", "within", "found", "wrong", "wrong_flagged"), 0))
            peak = peaks[view]
            near = abs(peak - true_row) * sample.pixel_mm <= LEVEL_TOLERANCE_MM
            found = float(p[index, peak]) >= model.threshold
            c["n"] += 1
            c["within"] += near
            c["found"] += found and near
            c["wrong"] += found and not near
            if found and not near and view == "fused":
                singles = {v: float(r) for v, r in peaks.items() if v != view}
                c["wrong_flagged"] += bool(views_apart_mm(peak, singles, sample.pixel_mm))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model JSON (default: the shipped one)")
    parser.add_argument("--n", type=int, default=40, help="renders per wall variant")
    parser.add_argument("--seed", type=int, default=20000, help="first render seed")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder to keep the renders in between runs")
    args = parser.parse_args(argv)
    label_map = args.data / LABEL_MAP
    if not label_map.is_file():
        print(f"{label_map} is not there: nothing to measure (see ../shared/data/README.md).")
        return 0
    model = load_model(args.model) if args.model else load_model()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="l3_heldout_"))
    print(f"model {model.metadata.name} version {model.metadata.version}, threshold "
          f"{model.threshold:.3f}; {args.n} renders of {LABEL_MAP} per variant "
          f"(seeds {args.seed}..)")
    print(f"{'variant':12s} {'level':5s} {'view':9s} {'n':>3s} {'within':>7s} {'found':>6s} "
          f"{'wrong':>6s} {'flagged':>8s}")
    summary = {}
    for variant, option in VARIANTS.items():
        source = f"labelmap:{label_map}:{args.n}:{args.seed}{option}"
        samples = parse_sources(source, model.preprocess, cache)
        predictions = predict_samples(model.predict, samples, model.views, model.preprocess)
        for level in LEVELS:
            for view, c in level_counts(samples, predictions, model, level).items():
                flagged = f"{c['wrong_flagged']}/{c['wrong']}" if view == "fused" else "-"
                print(f"{variant:12s} {level:5s} {view:9s} {c['n']:3d} {c['within']:7d} "
                      f"{c['found']:6d} {c['wrong']:6d} {flagged:>8s}")
                summary[f"{variant}/{level}/{view}"] = c
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
