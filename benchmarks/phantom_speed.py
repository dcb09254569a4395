"""How long one synthetic CT phantom takes (full resolution and training resolution).

Usage (from the repository root)::

    python benchmarks/phantom_speed.py [--repeats 3]

Prints the median wall time of ``make_phantom`` for a 512 x 512 x 400 volume
(0.8 x 0.8 x 1.0 mm, chest-abdomen-pelvis) and for the cheap 2 mm training mode
(``spacing=(2, 2, 2), matrix=200``, random preset), plus their ratio.
Targets: < 2 s and < 0.2 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "L3Locator") not in sys.path:
    sys.path.insert(0, str(REPO / "L3Locator"))

from L3LocatorLib.phantoms import make_phantom  # noqa: E402

CASES = {
    "full 512x512x400": dict(preset="chest_abdomen_pelvis", spacing=(0.8, 0.8, 1.0),
                             matrix=512, n_slices=400),
    "training 2 mm": dict(preset="random", spacing=(2.0, 2.0, 2.0), matrix=200),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    make_phantom(0, preset="abdomen", spacing=(4, 4, 4), matrix=64)  # imports, caches
    medians = {}
    for name, opts in CASES.items():
        times, shape = [], None
        for seed in range(args.repeats):
            t0 = time.perf_counter()
            volume, _ = make_phantom(seed, **opts)
            times.append(time.perf_counter() - t0)
            shape = volume.array.shape
        medians[name] = statistics.median(times)
        print(f"{name:18s} median {medians[name]:.3f} s  (min {min(times):.3f}, "
              f"max {max(times):.3f}; last array [k, j, i] = {shape})")
    full, low = medians.values()
    print(f"ratio full / training: {full / low:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
