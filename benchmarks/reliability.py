"""Is the L3 confidence calibrated? A reliability plot on phantoms and on real CT.

    python benchmarks/reliability.py [--model JSON] [--phantoms 150] [--renders 20]
                                     [--data ../shared/data] [--features FILE]
                                     [--out L3Locator/Resources/Models/reliability.png]

The confidence is the peak probability of the L3 channel; the model calls L3
present when it reaches the model's threshold. Presence truth:

* phantoms: ``make_phantom(seed, preset="random", spacing=(3, 3, 3))`` for seeds
  880000... (never used for training), L3 present when its body centre is in the scan
  (``Truth.l3_in_fov``);
* real CT: every cut, degraded copy and field-of-view sweep step of
  ``benchmarks/real_ct.py`` that keeps all of L3 (present) or none of it (absent);
  cuts through L3 are left out;
* real anatomy renders: the LIDC chest CT's label map rendered with the real look
  (``presence_calibration.render_cases``).

The cases are those of ``presence_calibration.py`` (``--features`` reuses its file).

Per confidence bin: the number of scans, their mean confidence and the fraction
with L3 present (a calibrated model lies on the diagonal), per domain; then the
expected calibration error (ECE: bin-size weighted mean of |fraction present - mean
confidence|) and, at the model's threshold, how many
present scans were called absent and absent ones present. The plot goes to
``--out``; the last line is one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from presence_calibration import phantom_cases, real_cases, render_cases

from L3LocatorLib.network import load_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = (Path(__file__).resolve().parents[1] / "L3Locator" / "Resources" / "Models"
               / "reliability.png")
BINS = np.linspace(0.0, 1.0, 11)
#: Domains of ``presence_calibration``'s cases, as the plot names them.
DOMAINS = {"phantom": "phantoms", "real": "real CT", "render": "real anatomy renders"}


def samples_by_domain(cases: list[dict]) -> dict[str, list[tuple[float, bool]]]:
    """(confidence, L3 present) per domain, of the cases that hold all or none of L3."""
    out: dict[str, list[tuple[float, bool]]] = {}
    for case in cases:
        if case["expected"] is not None:
            out.setdefault(DOMAINS[case["domain"]], []).append(
                (case["confidence"], bool(case["expected"])))
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


def plot(tables: dict[str, dict], threshold: float, out: Path, title: str,
         flag_threshold: Optional[float] = None) -> None:
    """Reliability diagram: fraction present against mean confidence, one line per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 5.0), dpi=110)
    axis.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="calibrated")
    axis.axvline(threshold, color="0.4", linestyle="--", linewidth=1,
                 label=f"threshold {threshold:.2f}")
    if flag_threshold is not None:
        axis.axvline(flag_threshold, color="0.4", linestyle=":", linewidth=1,
                     label=f"flagged answers from {flag_threshold:.2f}")
    for (name, table), marker in zip(tables.items(), ("o", "s", "^")):
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
    parser.add_argument("--phantoms", type=int, default=150)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--features", type=Path,
                        help="per-case numbers written by presence_calibration.py (reused)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    threshold = model.threshold
    if args.features and args.features.exists():
        cases = json.loads(args.features.read_text())
    else:
        cases = (phantom_cases(model, args.phantoms) + real_cases(model, args.data)
                 + render_cases(model, args.data, args.renders))
    tables = {name: reliability_table(samples, threshold)
              for name, samples in samples_by_domain(cases).items()}
    for name, table in tables.items():
        print(f"{name}: {table['n']} scans, {table['n_present']} with L3; ECE {table['ece']:.3f}; "
              f"at threshold {threshold:.3f}: {table['present_called_absent']} present called "
              f"absent, {table['absent_called_present']} absent called present")
        print(f"  {'bin':9s} {'n':>4s} {'mean conf':>9s} {'L3 present':>10s}")
        for b in table["bins"]:
            print(f"  {b['low']:.1f}-{b['high']:.1f}   {b['n']:4d} {b['mean_confidence']:9.2f} "
                  f"{b['fraction_present']:10.2f}")
    plot(tables, threshold, args.out,
         f"L3 presence, model {model.metadata.name} {model.metadata.version}",
         model.metadata.flag_threshold)
    print(f"wrote {args.out}")
    print(json.dumps({"model": model.metadata.name, "threshold": threshold, **tables}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
