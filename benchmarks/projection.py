"""Time to read and project a 512x512x400 int16 CT, and the projection's peak memory.

    python benchmarks/projection.py

Reading is reported as its own stage (raw NRRD and .nii.gz); the projections'
time is the in-memory work after reading. The last line is one JSON object.
Target: projections under 0.3 s on a 2-core machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import benchmark_ct, median_time  # noqa: E402

from L3LocatorLib.projection import PreprocessConfig, project  # noqa: E402
from L3LocatorLib.volume import read_volume, write_volume  # noqa: E402


def main() -> None:
    volume = benchmark_ct()
    config = PreprocessConfig()
    volume_mb = volume.array.nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        nrrd = write_volume(volume, Path(tmp) / "ct.nrrd", compress=False)
        niigz = write_volume(volume, Path(tmp) / "ct.nii.gz", compress=True)
        read_nrrd_s, _ = median_time(lambda: read_volume(nrrd), 3)
        read_niigz_s, _ = median_time(lambda: read_volume(niigz), 3)
    project(volume, config)  # warm-up (imports, caches)
    projection_s, projections = median_time(lambda: project(volume, config), 7)
    tracemalloc.start()
    project(volume, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {
        "shape_kji": list(volume.array.shape),
        "volume_mb": round(volume_mb, 1),
        "read_nrrd_s": round(read_nrrd_s, 3),
        "read_nii_gz_s": round(read_niigz_s, 3),
        "projection_s": round(projection_s, 4),
        "projection_over_read_nrrd": round(projection_s / read_nrrd_s, 3),
        "projection_peak_mb": round(peak / 2**20, 1),
        "projection_peak_over_volume": round(peak / 2**20 / volume_mb, 3),
        "output_shape": list(projections.frontal_hu.shape),
        "target_projection_s": 0.3,
    }
    print(f"read raw NRRD      {read_nrrd_s:7.3f} s")
    print(f"read .nii.gz       {read_niigz_s:7.3f} s")
    ratio = projection_s / read_nrrd_s
    print(f"both projections   {projection_s:7.3f} s  ({ratio:.2f} x NRRD read)")
    print(f"projection peak    {peak / 2**20:7.1f} MB  (volume {volume_mb:.0f} MB)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
