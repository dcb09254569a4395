"""Is the L3 confidence calibrated? A reliability plot on phantoms and on real CT.

    python benchmarks/reliability.py [--model JSON] [--phantoms 120] [--data ../shared/data]
                                     [--out L3Locator/Resources/Models/reliability.png]

The confidence is the peak probability of the L3 channel; the model calls L3
present when it reaches the model's threshold. Presence truth:

* phantoms: ``make_phantom(seed, preset="random", spacing=(3, 3, 3))`` for seeds
  880000... (never used for training), L3 present when its body centre is in the scan
  (``Truth.l3_in_fov``);
* real CT: every cut, degraded copy and field-of-view sweep step of
  ``benchmarks/real_ct.py`` that keeps all of L3 (present) or none of it (absent);
  cuts through L3 are left out.

Per confidence bin: the number of scans, their mean confidence and the fraction
with L3 present (a calibrated model lies on the diagonal), for phantoms and real CT
separately; then the expected calibration error (ECE: bin-size weighted mean of
|fraction present - mean confidence|) and, at the model's threshold, how many
present scans were called absent and absent ones present. The plot goes to
``--out``; the last line is one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from real_ct import PATIENTS, cases_for, crop_s, degraded, load_patient, sweep_cases

from L3LocatorLib.locate import locate
from L3LocatorLib.network import load_model
from L3LocatorLib.phantoms import make_phantom

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = (Path(__file__).resolve().parents[1] / "L3Locator" / "Resources" / "Models"
               / "reliability.png")
BINS = np.linspace(0.0, 1.0, 11)
PHANTOM_SEED0 = 880000


def phantom_samples(model, n: int) -> list[tuple[float, bool]]:
    """(confidence, L3 present) of ``n`` random phantoms."""
    out = []
    for seed in range(PHANTOM_SEED0, PHANTOM_SEED0 + n):
        volume, truth = make_phantom(seed, preset="random", spacing=(3, 3, 3))
        out.append((locate(volume, model=model).confidence, bool(truth.l3_in_fov)))
    return out


def real_samples(model, data: Path) -> list[tuple[float, bool]]:
    """(confidence, L3 present) of every real cut that keeps all or none of L3."""
    out = []
    for key in PATIENTS:
        patient = load_patient(key, data)
        if patient is None:
            continue
        whole = cases_for(patient)[0].l3_expected
        volumes = [(crop_s(patient.volume, c.s_min, c.s_max), c.l3_expected)
                   for c in cases_for(patient) + sweep_cases(patient)]
        centre = np.asarray(patient.vertebrae["L3"]["centroid_ras_mm"])
        volumes += [(v, whole) for _, v in degraded(patient.volume, centre)]
        for volume, present in volumes:
            if present is not None:
                out.append((locate(volume, model=model).confidence, bool(present)))
    return out


def reliability_table(samples: list[tuple[float, bool]], threshold: float) -> dict:
    """Per-bin counts, mean confidence and fraction present; ECE; errors at ``threshold``."""
    conf = np.array([c for c, _ in samples], dtype=float)
    present = np.array([p for _, p in samples], dtype=bool)
    index = np.clip(np.digitize(conf, BINS) - 1, 0, len(BINS) - 2)
    bins = []
    ece = 0.0
    for b in range(len(BINS) - 1):
        mask = index == b
        if not mask.any():
            continue
        mean_conf, frac = float(conf[mask].mean()), float(present[mask].mean())
        ece += mask.sum() / len(conf) * abs(frac - mean_conf)
        bins.append({"low": float(BINS[b]), "high": float(BINS[b + 1]), "n": int(mask.sum()),
                     "mean_confidence": mean_conf, "fraction_present": frac})
    called = conf >= threshold
    return {"n": len(samples), "n_present": int(present.sum()), "bins": bins, "ece": ece,
            "present_called_absent": int((present & ~called).sum()),
            "absent_called_present": int((~present & called).sum())}


def plot(tables: dict[str, dict], threshold: float, out: Path, title: str) -> None:
    """Reliability diagram: fraction present against mean confidence, one line per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 5.0), dpi=110)
    axis.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="calibrated")
    axis.axvline(threshold, color="0.4", linestyle="--", linewidth=1,
                 label=f"threshold {threshold:.2f}")
    for (name, table), marker in zip(tables.items(), ("o", "s")):
        x = [b["mean_confidence"] for b in table["bins"]]
        y = [b["fraction_present"] for b in table["bins"]]
        sizes = [20 + 4 * b["n"] for b in table["bins"]]
        axis.plot(x, y, marker=marker, markersize=0, linewidth=1.2)
        axis.scatter(x, y, s=sizes, marker=marker, alpha=0.7,
                     label=f"{name} (n={table['n']}, ECE {table['ece']:.2f})")
    axis.set_xlim(0, 1)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("L3 confidence (mean in bin)")
    axis.set_ylabel("fraction of scans with L3 in view")
    axis.set_title(title, fontsize=10)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model JSON (default: the shipped model)")
    parser.add_argument("--phantoms", type=int, default=120)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    threshold = model.threshold
    tables = {"phantoms": reliability_table(phantom_samples(model, args.phantoms), threshold)}
    real = real_samples(model, args.data)
    if real:
        tables["real CT"] = reliability_table(real, threshold)
    for name, table in tables.items():
        print(f"{name}: {table['n']} scans, {table['n_present']} with L3; ECE {table['ece']:.3f}; "
              f"at threshold {threshold:.3f}: {table['present_called_absent']} present called "
              f"absent, {table['absent_called_present']} absent called present")
        print(f"  {'bin':9s} {'n':>4s} {'mean conf':>9s} {'L3 present':>10s}")
        for b in table["bins"]:
            print(f"  {b['low']:.1f}-{b['high']:.1f}   {b['n']:4d} {b['mean_confidence']:9.2f} "
                  f"{b['fraction_present']:10.2f}")
    plot(tables, threshold, args.out,
         f"L3 presence, model {model.metadata.name} {model.metadata.version}")
    print(f"wrote {args.out}")
    print(json.dumps({"model": model.metadata.name, "threshold": threshold, **tables}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
