"""Scoring a model on samples: the paper's metrics per view and fused, per-scan CSV, pictures.

Errors are measured on the answer level's (L3's) sub-pixel peak row, whatever
its confidence (as in the paper), in mm (``|row - true row| * pixel_mm``).
Presence is judged separately with the model's threshold: a scan with L3 whose
peak is below it is a "miss", a scan without L3 whose peak reaches it a
"false alarm".
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from L3LocatorLib.decode import decode_prediction, decode_profile
from L3LocatorLib.network import load_model, view_probabilities
from L3LocatorLib.presence import ABSENT, decide
from L3LocatorLib.projection import PreprocessConfig, window
from L3LocatorLib.review import review_reasons

from .sources import Sample

log = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]  # [B, C, H, W] -> [B, L, H] probabilities


def predict_samples(
    predict: PredictFn,
    samples: Sequence[Sample],
    views: Sequence[str],
    preprocess: PreprocessConfig,
    progress: bool = False,
    fusion: str = "network",
) -> list[dict[str, np.ndarray]]:
    """Per sample: view name -> probabilities ``[n_levels, H]`` (``fusion``: how the
    two views are combined, ``network.FUSIONS``)."""
    iterator = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="predicting", unit="scan", leave=False)
    out = []
    for sample in iterator:
        images = {"frontal": sample.frontal_hu, "sagittal": sample.sagittal_hu}
        x = np.stack([window(images[v], preprocess) for v in views]).astype(np.float32)
        out.append(view_probabilities(predict, x, views, fusion))
    return out


def calibrate_threshold(positive: Sequence[float], negative: Sequence[float],
                        default: float = 0.1) -> float:
    """The presence threshold with the best balanced accuracy on validation peaks.

    ``positive``: L3 peak confidences of scans containing L3; ``negative``: of scans
    without it. Without negatives (e.g. the paper's data) returns ``default``
    (Kanavati et al.'s 0.1). Among equally good thresholds the midpoint of the
    best interval is taken.
    """
    pos = np.asarray(positive, dtype=float)
    neg = np.asarray(negative, dtype=float)
    if neg.size == 0 or pos.size == 0:
        return float(default)
    values = np.unique(np.concatenate([pos, neg, [0.0, 1.0]]))
    candidates = np.concatenate([(values[:-1] + values[1:]) / 2, [values[0], values[-1]]])
    best, best_score = [], -1.0
    for t in candidates:
        score = 0.5 * (np.mean(pos >= t) + np.mean(neg < t))
        if score > best_score + 1e-12:
            best, best_score = [t], score
        elif abs(score - best_score) <= 1e-12:
            best.append(t)
    return float(np.clip(np.median(best), 1e-3, 0.999))


def score(
    samples: Sequence[Sample],
    predictions: Sequence[dict[str, np.ndarray]],
    levels: Sequence[str],
    threshold: float,
    answer: str = "L3",
    flag_threshold: Optional[float] = None,
) -> tuple[dict[str, dict[str, float]], list[dict[str, object]]]:
    """Metrics per view and one row per scan.

    Per view: ``n`` (scans with L3), ``mean_mm``, ``median_mm``, ``std_mm`` (of the
    absolute error), ``max_mm``, ``within_5mm``/``within_10mm`` (% of scans with L3),
    ``in_body`` (% whose row lies inside L3's extent, of scans where it is known),
    ``presence_accuracy`` (% of all scans judged present/absent correctly),
    ``missed`` and ``false_alarms`` (counts), ``n_negative``; and with the review
    policy the product applies (``L3LocatorLib.review``): ``flagged`` (% of found L3s
    flagged for review), ``confident_false_alarms`` (found without L3 and not flagged)
    and ``confident_outside`` (found outside the L3 body and not flagged). An answer
    below ``threshold`` that the product gives flagged (``presence.decide`` with
    ``flag_threshold``) counts as found and flagged; the reported row is then the peak's.
    """
    index = list(levels).index(answer)
    rows: list[dict[str, object]] = []
    per_view: dict[str, dict[str, list]] = {}
    for sample, pred in zip(samples, predictions):
        row: dict[str, object] = {
            "name": sample.name,
            "true_row": sample.l3_row,
            "l3_present": sample.l3_present,
            "height": sample.height,
        }
        prediction = decode_prediction(pred, levels, threshold=threshold,
                                       pixel_mm=sample.pixel_mm, answer_level=answer)
        for view, probs in pred.items():
            acc = per_view.setdefault(
                view, {"err": [], "in_body": [], "presence": [], "missed": [], "false": [],
                       "flagged": [], "confident_false": [], "confident_outside": []}
            )
            decoded = decode_profile(probs[index], 0.0)
            decision = decide(prediction, flag_threshold, view)
            said_present = decision.kind != ABSENT
            row[f"{view}_row"] = round(float(decoded.row), 3)
            row[f"{view}_confidence"] = round(decoded.confidence, 4)
            acc["presence"].append(said_present == sample.l3_present)
            flagged = False
            if said_present:
                flagged = bool(review_reasons(prediction.decoded[view], threshold, probs.shape[1],
                                              sample.pixel_mm, answer=answer,
                                              view_rows=prediction.single_view_peaks(view),
                                              unsure_row=decision.row))
                acc["flagged"].append(flagged)
                row[f"{view}_review"] = flagged
            if sample.l3_present:
                error_mm = abs(decoded.row - sample.l3_row) * sample.pixel_mm
                acc["err"].append(error_mm)
                acc["missed"].append(not said_present)
                row[f"{view}_error_mm"] = round(error_mm, 3)
                if sample.l3_top_row is not None and sample.l3_bottom_row is not None:
                    inside = sample.l3_top_row <= decoded.row <= sample.l3_bottom_row
                    acc["in_body"].append(inside)
                    row[f"{view}_in_body"] = inside
                    acc["confident_outside"].append(said_present and not inside and not flagged)
            else:
                acc["false"].append(said_present)
                acc["confident_false"].append(said_present and not flagged)
        rows.append(row)
    metrics: dict[str, dict[str, float]] = {}
    for view, acc in per_view.items():
        err = np.asarray(acc["err"], dtype=float)
        m: dict[str, float] = {"n": int(err.size), "n_negative": len(acc["false"])}
        if err.size:
            m.update(
                mean_mm=float(err.mean()),
                median_mm=float(np.median(err)),
                std_mm=float(err.std()),
                max_mm=float(err.max()),
                within_5mm=float(100 * np.mean(err <= 5.0)),
                within_10mm=float(100 * np.mean(err <= 10.0)),
                missed=int(np.sum(acc["missed"])),
            )
        if acc["in_body"]:
            m["in_body"] = float(100 * np.mean(acc["in_body"]))
        m["presence_accuracy"] = float(100 * np.mean(acc["presence"]))
        m["false_alarms"] = int(np.sum(acc["false"]))
        m["flagged"] = float(100 * np.mean(acc["flagged"])) if acc["flagged"] else 0.0
        m["confident_false_alarms"] = int(np.sum(acc["confident_false"]))
        m["confident_outside"] = int(np.sum(acc["confident_outside"]))
        metrics[view] = m
    return metrics, rows


def presence_confidences(
    samples: Sequence[Sample], predictions: Sequence[dict[str, np.ndarray]],
    levels: Sequence[str], view: str, answer: str = "L3",
) -> tuple[list[float], list[float]]:
    """Peak confidences of the answer level for scans with and without it."""
    index = list(levels).index(answer)
    pos, neg = [], []
    for sample, pred in zip(samples, predictions):
        if view not in pred:
            continue
        peak = float(np.max(pred[view][index]))
        (pos if sample.l3_present else neg).append(peak)
    return pos, neg


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A small fixed-width table of the per-view metrics."""
    cols = ["n", "mean_mm", "median_mm", "std_mm", "max_mm", "within_5mm", "within_10mm",
            "in_body", "presence_accuracy", "n_negative", "false_alarms", "flagged",
            "confident_false_alarms"]
    short = {"presence_accuracy": "presence", "false_alarms": "false_al",
             "confident_false_alarms": "conf_false"}
    head = f"{'view':9s}" + "".join(f"{short.get(c, c):>12s}" for c in cols)
    lines = [head]
    for view, m in metrics.items():
        cells = []
        for c in cols:
            v = m.get(c)
            cells.append(f"{'-':>12s}" if v is None else f"{v:12.2f}" if isinstance(v, float)
                         else f"{v:12d}")
        lines.append(f"{view:9s}" + "".join(cells))
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def worst_case_pictures(
    out_dir: Path,
    samples: Sequence[Sample],
    predictions: Sequence[dict[str, np.ndarray]],
    rows: list[dict[str, object]],
    levels: Sequence[str],
    preprocess: PreprocessConfig,
    view: str,
    count: int = 8,
    answer: str = "L3",
) -> list[Path]:
    """PNGs of the ``count`` worst scans of ``view`` (largest error; false alarms first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def badness(i: int) -> float:
        r = rows[i]
        if not samples[i].l3_present:
            return 1e6 * float(r.get(f"{view}_confidence", 0.0))
        return float(r.get(f"{view}_error_mm", 0.0))

    order = sorted(range(len(rows)), key=badness, reverse=True)[:count]
    index = list(levels).index(answer)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for rank, i in enumerate(order, 1):
        s, pred = samples[i], predictions[i][view]
        fig, axes = plt.subplots(1, 3, figsize=(9, 6), gridspec_kw={"width_ratios": [3, 3, 1]})
        for ax, image, title in zip(axes, (s.frontal_hu, s.sagittal_hu), ("frontal", "sagittal")):
            ax.imshow(window(image, preprocess), cmap="gray", aspect="equal")
            ax.set_title(title)
            ax.set_xticks([])
        prob = pred[index]
        rows_axis = np.arange(prob.size)
        axes[2].plot(prob, rows_axis, "r-")
        for k, _name in enumerate(levels):
            if k != index:
                axes[2].plot(pred[k], rows_axis, lw=0.5, alpha=0.6)
        axes[2].set_ylim(prob.size - 1, 0)
        axes[2].set_xlim(0, 1)
        axes[2].set_title("P(L3)")
        pred_row = rows[i][f"{view}_row"]
        for ax in axes:
            if s.l3_row is not None:
                ax.axhline(s.l3_row, color="lime", lw=1, ls="--")
            ax.axhline(pred_row, color="red", lw=1)
        err = rows[i].get(f"{view}_error_mm")
        label = f"error {err:.1f} mm" if err is not None else "no L3 in scan"
        fig.suptitle(f"#{rank} {s.name} ({view}): {label}, "
                     f"confidence {rows[i][f'{view}_confidence']:.2f}  "
                     "(green: truth, red: prediction)", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"worst_{view}_{rank:02d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def evaluate_model(
    model_json: str | Path,
    samples: Sequence[Sample],
    out_dir: Optional[Path] = None,
    device: str = "cpu",
    worst: int = 8,
) -> dict[str, dict[str, float]]:
    """Load an exported model and score it on ``samples``; write CSV, JSON and PNGs."""
    loaded = load_model(model_json, device=device)
    pixel = loaded.preprocess.pixel_mm
    bad = [s.name for s in samples if abs(s.pixel_mm - pixel) > 1e-6]
    if bad:
        raise ValueError(f"{len(bad)} samples were made at another pixel size than the model's "
                         f"{pixel} mm (e.g. {bad[0]}); load the data with the model's settings")
    predictions = predict_samples(loaded.predict, samples, loaded.views, loaded.preprocess,
                                  progress=True, fusion=loaded.metadata.fusion)
    metrics, rows = score(samples, predictions, loaded.levels, loaded.threshold,
                          loaded.metadata.answer_level,
                          flag_threshold=loaded.metadata.flag_threshold)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_csv(out_dir / "per_scan.csv", rows)
        (out_dir / "metrics.json").write_text(
            json.dumps({"model": str(model_json), "threshold": loaded.threshold,
                        "n_scans": len(samples), "metrics": metrics}, indent=1)
        )
        for view in predictions[0] if predictions else []:
            worst_case_pictures(out_dir, samples, predictions, rows, loaded.levels,
                                loaded.preprocess, view, worst, loaded.metadata.answer_level)
    return metrics
