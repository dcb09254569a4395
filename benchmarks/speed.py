"""End-to-end speed of L3Locator against the seed pipeline, on one synthetic 512x512x400 CT.

    python benchmarks/speed.py [--model JSON] [--repeats N] [--seed-repeats N]

Stages: reading the file (its own stage), then the in-memory work (validation,
projections, network, decoding). The seed pipeline is timed in the same run on
the same scan: its preprocessing of both MIPs to 512x512 at 1 mm and its
31 M-parameter 2-D U-Net (random weights: speed does not depend on them) run on
each view. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import benchmark_ct, median_time  # noqa: E402

from L3LocatorLib.locate import locate  # noqa: E402
from L3LocatorLib.model import import_paddle, preset  # noqa: E402
from L3LocatorLib.network import build_model, load_model  # noqa: E402
from L3LocatorLib.projection import project  # noqa: E402
from L3LocatorLib.volume import read_volume, write_volume  # noqa: E402
from training.original_port import seed_preprocess  # noqa: E402


def seed_scan_seconds(volume, repeats: int) -> float:
    """The seed's per-scan work: 1 mm MIPs, its preprocessing, its U-Net on both views."""
    paddle = import_paddle()
    paddle.set_device("cpu")
    network = build_model(preset("seed"))
    network.eval()

    def run() -> None:
        projections = project(volume)  # the MIPs themselves (the seed got them precomputed)
        spacing = np.array([1.0, 1.0, 1.0])
        sample = seed_preprocess(
            projections.frontal_hu, projections.sagittal_hu, 10.0, spacing
        )
        with paddle.no_grad():
            for image in (sample.frontal, sample.sagittal):
                x = np.repeat(image[None, None], 3, axis=1).astype(np.float32)
                network(paddle.to_tensor(x)).numpy()

    seconds, _ = median_time(run, repeats)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="model JSON (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed-repeats", type=int, default=2)
    args = parser.parse_args()

    volume = benchmark_ct()
    model = load_model(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_volume(volume, Path(tmp) / "ct.nrrd", compress=False)
        locate(read_volume(path), model=model)  # warm-up
        totals, stages = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            loaded = read_volume(path)
            read_s = time.perf_counter() - start
            result = locate(loaded, model=model)
            totals.append(time.perf_counter() - start)
            stages.append({"read": read_s, **result.timings_s})
    stage_median = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
    end_to_end = statistics.median(totals)
    in_memory = end_to_end - stage_median["read"]
    seed_s = seed_scan_seconds(volume, args.seed_repeats)
    for name, value in stage_median.items():
        print(f"{name:12s} {value:8.3f} s")
    print(f"{'in memory':12s} {in_memory:8.3f} s")
    print(f"{'end to end':12s} {end_to_end:8.3f} s   (target <= 1 s)")
    print(f"{'seed scan':12s} {seed_s:8.3f} s   ({seed_s / end_to_end:.0f}x slower; target >= 20x)")
    print(json.dumps({
        "end_to_end_s": round(end_to_end, 4),
        "in_memory_s": round(in_memory, 4),
        "seed_scan_s": round(seed_s, 3),
        "seed_over_end_to_end": round(seed_s / end_to_end, 1),
        "stages_s": {k: round(v, 4) for k, v in stage_median.items()},
        "shape_kji": list(volume.array.shape),
        "model": result.model_name,
        "device": "cpu",
    }))


if __name__ == "__main__":
    main()
